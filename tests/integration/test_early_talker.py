#!/usr/bin/env python3
"""early_talker beyond the scenario: the check at later hooks (the flag
set while another connect plugin waited), reject = false, and a pause
that does not fit in the timeout."""
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("early_talker")

# pause = 0: early_talker's connect hook answers at once, then scripted
# holds the greeting 1 s; an EHLO sent meanwhile (after the rDNS lookup
# that precedes connect, a few ms on loopback) is caught at EHLO.
with gh.Relayd(body='plugins = [ "early_talker", "scripted" ];\n'
               'early_talker = { pause = 0; };\n'
               'scripted = { sink_dir = "@SINK@"; '
               'connect = "AGAIN:CONT:1000"; };\n') as r:
    c = gh.Client(r.port)
    time.sleep(0.3)
    c.send("EHLO early.test\r\n")
    code, lines = c.reply()
    R.check("greeting", code == 220, repr(lines))
    code, lines = c.reply()
    R.check("caught at EHLO: 554 5.7.1", code == 554 and
            lines[-1] == "554 5.7.1 You talk too soon", repr(lines))
    R.check("and closed", c.closed())
    c.close()
    c = gh.Client(r.port)
    code, lines = c.reply()
    code, lines = c.cmd("EHLO patient.test")
    R.check("a patient client passes EHLO", code == 250, repr(lines))
    c.close()

# reject = false: the early talker is served, and recorded.
with gh.Relayd(body='plugins = [ "early_talker", "scripted" ];\n'
               'early_talker = { pause = 200; reject = false; };\n'
               'scripted = { sink_dir = "@SINK@"; };\n') as r:
    c = gh.Client(r.port)
    start = time.time()
    c.send("EHLO early.test\r\nMAIL FROM:<a@example.test>\r\n"
           "RCPT TO:<b@example.test>\r\nDATA\r\n")
    replies = [c.reply()[0] for _ in range(5)]
    R.check("served: 220 250 250 250 354", replies ==
            [220, 250, 250, 250, 354], repr(replies))
    R.check("the greeting waited for the pause",
            time.time() - start >= 0.15)
    code, lines = c.cmd("Subject: x\r\n\r\nbody\r\n.")
    R.check("message accepted", code == 250, repr(lines))
    c.close()
    time.sleep(0.2)
    log = r.log_text()
    R.check("recorded in the trace",
            "early_talker=fail(early talker at connect)" in log, log[-600:])
    R.check("logged once, not refused",
            log.count("talked before the greeting") == 1 and
            "talked before the greeting: refused" not in log)

# The pause must end before the plugin's deadline.
tmp = tempfile.mkdtemp(prefix="gh-early-")
conf = os.path.join(tmp, "t.conf")
with open(conf, "w") as f:
    f.write('relayd = { listen = [ "127.0.0.1:%d" ]; };\n'
            'plugins = [ "early_talker" ];\n'
            'early_talker = { pause = 5000; timeout = 5; };\n'
            % gh.free_port())
p = subprocess.run([gh.RELAYD, "-t", "-c", conf], capture_output=True,
                   text=True)
R.check("pause >= timeout stops start-up", p.returncode == 2 and
        "early_talker: pause 5000 ms is not below timeout (5 s)" in p.stderr,
        p.stderr)
sys.exit(R.done())
