#!/usr/bin/env python3
"""is_resolvable against a real DNS server (dnsmasq on a loopback port):
MX, implicit MX, null MX (RFC 7505), bogus exchange addresses, a domain
that does not exist, and DNS that fails or never answers (450, never a
5xx, never a hang)."""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import dnsmasq  # noqa: E402
import gh  # noqa: E402

R = gh.Results("is_resolvable")

# Addresses here are DNS data only: nothing ever connects to them.
RECORDS = [
    ("MX", "good.test", "mx.good.test", 10),
    ("HOST", "mx.good.test", "192.0.2.25"),
    ("HOST", "aonly.test", "192.0.2.26"),
    ("HOST", "v6only.test", "2001:db8::26"),
    ("MX", "nullmx.test", ".", 0),
    ("MX", "bogus.test", "mx.bogus.test", 10),
    ("HOST", "mx.bogus.test", "127.0.0.5"),
    ("MX", "mixed.test", "mx.bogus.test", 10),
    ("MX", "mixed.test", "mx.good.test", 20),
    ("MX", "noaddr.test", "mx.nowhere.test", 10),
    ("MX", "private.test", "mx.private.test", 10),
    ("HOST", "mx.private.test", "10.1.2.3"),
    ("MX", "slowmx.test", "mx.other.zone", 10),
    ("TXT", "txtonly.test", "v=spf1 -all"),
]


def relayd(dns, conf="", extra_dns="timeout = 2;"):
    body = ('dns = { servers = [ "%s" ]; %s };\n'
            'plugins = [ "is_resolvable", "scripted" ];\n'
            'is_resolvable = { %s };\n'
            'scripted = { sink_dir = "@SINK@"; };\n' % (dns, extra_dns, conf))
    return gh.Relayd(body=body).start()


def mail(port, sender):
    c = gh.Client(port, "127.0.0.2")
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("MAIL FROM:<%s>" % sender)
    c.cmd("QUIT")
    c.close()
    return code, lines[-1] if lines else ""


dm = dnsmasq.Dnsmasq(RECORDS).start()
try:
    r = relayd(dm.server)
    try:
        for sender in ("a@good.test", "a@GOOD.test", "a@aonly.test",
                       "a@v6only.test", "a@mixed.test", "a@private.test",
                       ""):
            code, line = mail(r.port, sender)
            R.check("accepted: <%s>" % sender, code == 250, line)
        code, line = mail(r.port, "a@nosuch.test")
        R.check("domain that does not exist: 550 5.1.8",
                line == "550 5.1.8 Sender address rejected: domain "
                "nosuch.test does not exist", line)
        code, line = mail(r.port, "a@txtonly.test")
        R.check("domain without MX or address: 550 5.1.8",
                code == 550 and "5.1.8" in line and "has no MX or address "
                "record" in line, line)
        code, line = mail(r.port, "a@nullmx.test")
        R.check("null MX: 550 5.7.27",
                line == "550 5.7.27 Sender address rejected: domain "
                "nullmx.test accepts no mail (null MX)", line)
        code, line = mail(r.port, "a@bogus.test")
        R.check("MX on a loopback address: 550 5.1.8 naming it",
                code == 550 and "mx.bogus.test (127.0.0.5)" in line, line)
        code, line = mail(r.port, "a@noaddr.test")
        R.check("MX without address: 550 5.1.8",
                code == 550 and "5.1.8" in line and "have no address"
                in line, line)
        code, line = mail(r.port, "a@slowmx.test")
        R.check("MX whose address lookup fails: 450 4.1.8",
                code == 450 and "4.1.8" in line, line)
        code, line = mail(r.port, "a@other.zone")
        R.check("domain lookup refused: 450 4.1.8, never 5xx",
                code == 450 and "4.1.8" in line and "try again later"
                in line, line)
        code, line = mail(r.port, "a@good.test")
        R.check("accepted again (cached)", code == 250, line)
        # A U-label domain (RFC 6531): its xn-- form is what the DNS
        # knows, so it is not looked up as written.
        c = gh.Client(r.port, "127.0.0.2")
        c.reply()
        c.cmd("EHLO client.test")
        c.send("MAIL FROM:<a@b\u00fccher.test> SMTPUTF8\r\n".encode())
        code, lines = c.reply()
        c.close()
        R.check("UTF-8 domain: not refused as missing", code == 250,
                repr(lines))
        c = gh.Client(r.port, "127.0.0.2")
        c.reply()
        c.cmd("EHLO client.test")
        c.cmd("MAIL FROM:<a@good.test>")
        c.cmd("RCPT TO:<b@example.test>")
        c.cmd("DATA")
        code, lines = c.cmd("Subject: t\r\n\r\nhi\r\n.")
        R.check("message from a resolvable sender queued", code == 250,
                repr(lines))
        c.close()
    finally:
        r.stop()
    log = r.log_text()
    R.check("refusal logged", "is_resolvable: refused <a@nosuch.test>: "
            "domain nosuch.test does not exist" in log, log)
    R.check("result in the trace",
            "is_resolvable=pass(good.test: mx.good.test (192.0.2.25))"
            in log, log)
    asked = [q for q in dm.queries() if "query[MX] good.test " in q]
    R.check("repeated sender domain asked once", len(asked) == 1,
            repr(asked))

    r = relayd(dm.server, 'reject_private = true; tempfail = "skip";')
    try:
        code, line = mail(r.port, "a@private.test")
        R.check("reject_private: MX on 10/8 refused",
                code == 550 and "mx.private.test (10.1.2.3)" in line, line)
        code, line = mail(r.port, "a@other.zone")
        R.check("tempfail = skip: accepted", code == 250, line)
    finally:
        r.stop()
finally:
    dm.stop()

# DNS that never answers: 450 after the resolver's deadline, no hang.
with dnsmasq.Silent() as dead:
    r = relayd(dead.server, "", "timeout = 1; tries = 1; rdns = false;")
    try:
        t0 = time.time()
        code, line = mail(r.port, "a@good.test")
        took = time.time() - t0
        R.check("DNS timeout: 450 4.1.8", code == 450 and "4.1.8" in line
                and "timeout" in line, line)
        R.check("answered within the deadline (%.1fs)" % took, took < 6)
    finally:
        r.stop()

sys.exit(R.done())
