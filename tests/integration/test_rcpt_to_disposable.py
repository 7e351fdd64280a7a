#!/usr/bin/env python3
"""rcpt_to_disposable around today (UTC): yesterday is expired, today and
tomorrow are rewritten."""
import datetime
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("rcpt_to_disposable")
BODY = ('plugins = [ "rcpt_to_disposable", "scripted" ];\n'
        'scripted = { sink_dir = "@SINK@"; };\n')


def day(offset):
    d = datetime.datetime.now(datetime.timezone.utc).date() + \
        datetime.timedelta(days=offset)
    return d.strftime("%Y%m%d")


with gh.Relayd(body=BODY) as r:
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO c.test")
    c.cmd("MAIL FROM:<a@sender.test>")
    code, lines = c.cmd("RCPT TO:<u-%s@example.test>" % day(-1))
    R.check("yesterday is expired", code == 550 and
            lines[-1] == "550 5.1.1 Address expired", repr(lines))
    for label, off in (("today", 0), ("tomorrow", 1)):
        code, lines = c.cmd("RCPT TO:<u-%s@example.test>" % day(off))
        R.check("%s is still valid" % label, code == 250, repr(lines))
    c.cmd("DATA")
    code, lines = c.cmd("Subject: x\r\n\r\nbody\r\n.")
    R.check("message accepted", code == 250, repr(lines))
    c.close()
    msgs = r.messages()
    R.check("queued", len(msgs) == 1)
    log = r.log_text()
    R.check("both rewritten to u@example.test",
            log.count("rewritten to u@example.test") == 2, log[-800:])
    R.check("trace counts two recipients", "rcpts=2" in log)

p = subprocess.run([gh.RELAYD, "-h", "rcpt_to_disposable"],
                   capture_output=True, text=True)
R.check("relayd -h rcpt_to_disposable", p.returncode == 0 and
        "Address expired" in p.stdout, p.stdout[:200])
sys.exit(R.done())
