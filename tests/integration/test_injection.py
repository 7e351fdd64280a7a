#!/usr/bin/env python3
"""Injection attack test: CR, LF and NUL inside HELO, addresses and ESMTP
parameters never reach an added header or a log line raw.

The bytes are sent raw inside the command line ("EHLO a\\rb\\r\\n": a bare
CR within the line).  relayd either refuses the command or keeps the
octet escaped (\\x0d); either way:
- every queued message's header block (Received and the decision trace
  header are added by relayd) has only CRLF line ends: no bare CR, no
  bare LF, no NUL, and a HELO that carried a CR appears as "\\x0d";
- relayd's log, at level "protocol" (every command and reply logged),
  has no raw CR or NUL, and every line is a record that starts with its
  timestamp: an injected LF never starts a forged log line.
"""
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("injection")

BODY = ('plugins = [ "host_list", "scripted" ];\n'
        'host_list = { domains = [ "example.test" ]; };\n'
        'scripted = { sink_dir = "@SINK@"; };\n')
EXTRA = '  trace_header = "X-Gatehouse-Trace";\n'

STAMP = re.compile(rb"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} \S+\[\d+\]: ")

# HELO arguments with a control octet inside the line.  "\n" ends the
# line for relayd (what follows is a new command), so it is sent too:
# the part after it must not be taken as anything but a command.
HELOS = [
    b"a\rb",
    b"a\r\rb",
    b"a\x00b",
    b"a\x0bb\x0cc",
    b"a\x1bb",
    b"a\x7fb",
    b"a\r",
    b"a\rReceived: forged",
    b"a\nX-Injected: 1",
    b"[127.0.0.1]\r",
]

# (MAIL or RCPT line with a control octet, sent raw)
ENVELOPE = [
    b"MAIL FROM:<a\rb@sender.test>",
    b"MAIL FROM:<a@sender.test\r>",
    b"MAIL FROM:<a@sender.test> ENVID=x\ry",
    b"MAIL FROM:<a@sender.test> ENVID=x\x00y",
    b"MAIL FROM:<a@sender.test> BODY=8BITMIME\r",
    b"MAIL FROM:<a@sender.test> X\rY=1",
    b"MAIL FROM:<a@sender.test> ENVID=x\x1by",
    b"MAIL FROM:<\"a\rb\"@sender.test>",
    b"MAIL FROM:<a@sen\x00der.test>",
]
RCPTS = [
    b"RCPT TO:<u\r@example.test>",
    b"RCPT TO:<u@example.test> NOTIFY=SUCCESS\r",
    b"RCPT TO:<u@example.test> ORCPT=rfc822;u\r@example.test",
    b"RCPT TO:<u@example.test> ORCPT=rfc822;u+0D+0A@example.test",
    b"RCPT TO:<\"u\rX-Injected: 1\"@example.test>",
    b"RCPT TO:<u@example.test>\x00",
]


def header_block(msg):
    return msg.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def clean_lines(block):
    """Every CR is part of a CRLF and every LF ends one; no NUL."""
    return (b"\x00" not in block and
            block.count(b"\r") == block.count(b"\r\n") and
            block.count(b"\n") == block.count(b"\r\n"))


def deliver(c, helo_raw):
    """One message after EHLO helo_raw: the final reply code, or None."""
    c.send(b"RSET\r\nEHLO " + helo_raw + b"\r\n")
    c.reply()
    code, _ = c.reply()
    if b"\n" in helo_raw:
        c.reply()  # the rest of the line, taken as a command
    if code != 250:
        return None
    if c.cmd("MAIL FROM:<a@sender.test>")[0] != 250:
        return None
    if c.cmd("RCPT TO:<u@example.test>")[0] != 250:
        return None
    if c.cmd("DATA")[0] != 354:
        return None
    return c.cmd("Subject: injection\r\n\r\nbody\r\n.")[0]


def main():
    r = gh.Relayd(relayd_extra=EXTRA, body=BODY, log_level="protocol")
    r.start()
    try:
        c = gh.Client(r.port)
        c.reply()
        accepted = {}
        for h in HELOS:
            accepted[h] = deliver(c, h)
            R.check("HELO %r: answered" % h, accepted[h] in (250, None))

        c.send(b"RSET\r\nEHLO client.test\r\n")
        c.reply()
        c.reply()
        for line in ENVELOPE:
            c.send(line + b"\r\n")
            code, _ = c.reply()
            R.check("refused: %r" % line, code in (500, 501, 553, 555),
                    str(code))
            c.cmd("RSET")
        for line in RCPTS:
            c.cmd("MAIL FROM:<a@sender.test>")
            c.send(line + b"\r\n")
            code, _ = c.reply()
            # An xtext +0D+0A decodes to CR LF: refused too.
            R.check("refused: %r" % line, code in (500, 501, 553, 555),
                    str(code))
            c.cmd("RSET")
        c.cmd("QUIT")
        c.close()

        time.sleep(0.3)
        msgs = r.messages()
        R.check("messages queued for the accepted HELOs",
                len(msgs) == sum(1 for v in accepted.values() if v == 250),
                "%d queued, accepted %r" % (len(msgs), accepted))
        R.check("at least the CR HELOs were accepted (escaped, not lost)",
                accepted[b"a\rb"] == 250)
        for i, m in enumerate(msgs):
            block = header_block(m)
            R.check("message %d: header lines end CRLF, no NUL" % i,
                    clean_lines(block), repr(block[:300]))
            R.check("message %d: no injected header" % i,
                    not re.search(rb"^(X-Injected|Received: forged)", block,
                                  re.M | re.I), repr(block[:300]))
            R.check("message %d: a Received header" % i,
                    block.startswith(b"Received: ") or
                    b"\r\nReceived: " in block)
        blob = b"".join(header_block(m) for m in msgs)
        # Not a domain: "from unknown", and the text in the comment,
        # its backslashes quoted there (RFC 5322 3.2.2).
        R.check("HELO CR shown escaped in Received",
                b"from unknown (unknown [127.0.0.1] helo=a\\\\x0db)" in blob,
                repr(blob[:400]))
        R.check("HELO forged line kept inside Received",
                b"helo=a\\\\x0dReceived: forged)" in blob, repr(blob[:600]))
    finally:
        r.stop()

    with open(r.log, "rb") as f:
        log = f.read()
    lines = log.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    R.check("log has protocol lines", b"protocol:" in log)
    R.check("log: no raw CR", b"\r" not in log)
    R.check("log: no NUL", b"\x00" not in log)
    R.check("log: no other control octet", not re.search(
        rb"[\x00-\x08\x0b-\x1f\x7f]", log))
    bad = [ln for ln in lines if not STAMP.match(ln)]
    R.check("log: every line starts with a timestamp", not bad,
            repr(bad[:3]))
    R.check("log: HELO CR escaped", b"EHLO a\\x0db" in log)
    R.check("log: no forged record", not re.search(
        rb"^(X-Injected|Received: forged)", log, re.M))
    return R.done()


if __name__ == "__main__":
    sys.exit(main())
