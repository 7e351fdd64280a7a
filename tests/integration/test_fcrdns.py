#!/usr/bin/env python3
"""fcrdns and the core's rDNS lookup against a real DNS server (dnsmasq
on a loopback port): confirmed, unconfirmed, missing and generic names,
a temporary failure, and the plugin looking itself when the core lookup
is off."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import dnsmasq  # noqa: E402
import gh  # noqa: E402

R = gh.Results("fcrdns")

RECORDS = [
    ("HOST", "c2.example.test", "127.0.0.2"),          # confirmed
    ("PTR", "3.0.0.127.in-addr.arpa", "liar.test"),    # does not point back
    ("HOST", "liar.test", "192.0.2.50"),
    ("HOST", "c-127-0-0-5.isp.test", "127.0.0.5"),     # generic
    ("PTR", "6.0.0.127.in-addr.arpa", "host.other.zone"),  # refused: tempfail
]


def relayd(dns, conf, extra_dns=""):
    body = ('dns = { servers = [ "%s" ]; timeout = 2; %s };\n'
            'plugins = [ "fcrdns", "scripted" ];\n'
            'fcrdns = { %s };\n'
            'scripted = { sink_dir = "@SINK@"; };\n' % (dns, extra_dns, conf))
    return gh.Relayd(body=body).start()


def greet(port, source):
    c = gh.Client(port, source)
    code, lines = c.reply()
    c.close()
    return code, lines[-1] if lines else ""


def message(port, source):
    c = gh.Client(port, source)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@example.test>")
    c.cmd("RCPT TO:<b@example.test>")
    c.cmd("DATA")
    code, _ = c.cmd("Subject: t\r\n\r\nhi\r\n.")
    c.cmd("QUIT")
    c.close()
    return code


ALL = ('reject_none = true; reject_unconfirmed = true; '
       'reject_generic = true; tempfail = "denysoft";')

dm = dnsmasq.Dnsmasq(RECORDS).start()
try:
    for label, extra in (("core lookup", ""), ("own lookup",
                                                "rdns = false;")):
        r = relayd(dm.server, ALL, extra)
        try:
            code, line = greet(r.port, "127.0.0.2")
            R.check("%s: confirmed client greeted" % label, code == 220,
                    line)
            R.check("%s: its message accepted" % label,
                    message(r.port, "127.0.0.2") == 250)
            code, line = greet(r.port, "127.0.0.3")
            R.check("%s: unconfirmed refused" % label,
                    line == "550 5.7.25 Reverse DNS validation failed for "
                    "127.0.0.3: the name does not resolve back to the "
                    "address", line)
            code, line = greet(r.port, "127.0.0.4")
            R.check("%s: no PTR refused" % label,
                    line == "550 5.7.25 Reverse DNS validation failed for "
                    "127.0.0.4: no PTR record", line)
            code, line = greet(r.port, "127.0.0.5")
            R.check("%s: generic name refused" % label,
                    code == 550 and "end-user" in line, line)
            code, line = greet(r.port, "127.0.0.6")
            R.check("%s: lookup failure: 421 4.7.25" % label,
                    code == 421 and "4.7.25" in line, line)
        finally:
            r.stop()
        log = r.log_text()
        R.check("%s: result in the trace" % label,
                "fcrdns=pass(c2.example.test)" in log, log)
        R.check("%s: refusal logged" % label,
                "fcrdns: refused 127.0.0.4: no PTR record" in log, log)

    # Defaults: record only.
    r = relayd(dm.server, "")
    try:
        for src in ("127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"):
            code, line = greet(r.port, src)
            R.check("default: %s greeted" % src, code == 220, line)
        R.check("default: unconfirmed client's message accepted",
                message(r.port, "127.0.0.3") == 250)
    finally:
        r.stop()
    log = r.log_text()
    R.check("default: failure recorded",
            "fcrdns=fail(liar.test does not resolve back)" in log, log)
finally:
    dm.stop()

sys.exit(R.done())
