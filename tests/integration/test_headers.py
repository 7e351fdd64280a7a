#!/usr/bin/env python3
"""headers with its checks switched: require_date off, a shorter
single_fields list, no Received cap; and BDAT, which reaches the same
check as DATA."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("headers")


def send(port, header, bdat=False):
    c = gh.Client(port)
    c.reply()
    c.cmd("EHLO c.test")
    c.cmd("MAIL FROM:<a@example.test>")
    c.cmd("RCPT TO:<b@example.test>")
    msg = header.replace("\n", "\r\n") + "\r\nbody\r\n"
    if bdat:
        c.send("BDAT %d LAST\r\n" % len(msg) + msg)
        code, lines = c.reply()
    else:
        c.cmd("DATA")
        code, lines = c.cmd(msg + ".")
    c.close()
    return code, lines


BODY = ('plugins = [ "headers", "scripted" ];\n'
        'headers = { require_date = false; single_fields = [ "Subject" ]; '
        'max_received = 0; };\nscripted = { sink_dir = "@SINK@"; };\n')
with gh.Relayd(body=BODY) as r:
    code, lines = send(r.port, "From: a@example.test\n")
    R.check("require_date = false: no Date passes", code == 250, repr(lines))
    code, lines = send(r.port, "From: a@example.test\nTo: a\nTo: b\n")
    R.check("To left out of single_fields may repeat", code == 250,
            repr(lines))
    code, lines = send(r.port, "From: a@example.test\nSubject: a\n"
                       "Subject: b\n")
    R.check("Subject still single", code == 550 and
            "5.6.0 Message must have at most one Subject header"
            in lines[-1], repr(lines))
    code, lines = send(r.port, "From: a@example.test\n" +
                       "Received: x\n" * 150)
    R.check("max_received = 0: no loop cap", code == 250, repr(lines))
    code, lines = send(r.port, "Date: x\n")
    R.check("From still required", code == 550 and
            "Message must have exactly one From header" in lines[-1],
            repr(lines))
    code, lines = send(r.port, "Subject: a\nSubject: b\nFrom: a@e.test\n",
                       bdat=True)
    R.check("BDAT is checked too", code == 550 and "5.6.0" in lines[-1],
            repr(lines))
    R.check("three messages queued", len(r.messages()) == 3,
            str(len(r.messages())))

# Defaults: the 101st Received field is a loop, the 100th is not.
with gh.Relayd(body='plugins = [ "headers", "scripted" ];\n'
               'scripted = { sink_dir = "@SINK@"; };\n') as r:
    base = "Date: x\nFrom: a@example.test\n"
    code, lines = send(r.port, base + "Received: x\n" * 100)
    R.check("100 Received fields pass by default", code == 250, repr(lines))
    code, lines = send(r.port, base + "Received: x\n" * 101)
    R.check("101 Received fields are a loop", code == 550 and
            "5.4.6 Too many Received headers: mail loop" in lines[-1],
            repr(lines))

# Shadow mode: logged, not refused.
with gh.Relayd(body='plugins = [ "headers", "scripted" ];\n'
               'headers = { mode = "shadow"; };\n'
               'scripted = { sink_dir = "@SINK@"; };\n') as r:
    code, lines = send(r.port, "Subject: no date or from\n")
    R.check("shadow mode accepts", code == 250, repr(lines))
    R.check("shadow mode logs what it would do",
            "shadow: would DENY at data_headers" in r.log_text(),
            r.log_text()[-500:])

p = subprocess.run([gh.RELAYD, "-h", "headers"], capture_output=True,
                   text=True)
R.check("relayd -h headers", p.returncode == 0 and "max_received = 100"
        in p.stdout and "Example" in p.stdout, p.stdout[:200])
sys.exit(R.done())
