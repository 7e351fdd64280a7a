#!/usr/bin/env python3
"""helo_checks against a real DNS server (dnsmasq on a loopback port):
each check refusing on its own with its own reply, the checks that only
record by default, forward DNS failures giving 450, and a refused HELO
followed by a good one."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import dnsmasq  # noqa: E402
import gh  # noqa: E402

R = gh.Results("helo_checks")

# 127.0.0.2 has the forward-confirmed rDNS name c2.example.test.
RECORDS = [
    ("HOST", "c2.example.test", "127.0.0.2"),
    ("HOST", "mail.example.test", "192.0.2.30"),
    ("HOST", "example.test", "192.0.2.31"),
    ("HOST", "other.test", "192.0.2.32"),
    ("HOST", "c-127-0-0-3.isp.test", "127.0.0.3"),
    ("HOST", "dsl-5.isp.test", "192.0.2.33"),
]

ALL_REJECT = ('bare_ip = "reject"; valid_hostname = "reject"; '
              'literal_mismatch = "reject"; ours = "reject"; '
              'dynamic = "reject"; rdns_match = "reject"; '
              'forward_dns = "reject"; tempfail = "denysoft"; '
              'our_names = [ "mx2.test" ];')


def relayd(dns, conf):
    body = ('dns = { servers = [ "%s" ]; timeout = 2; };\n'
            'plugins = [ "helo_checks", "scripted" ];\n'
            'helo_checks = { %s };\n'
            'scripted = { sink_dir = "@SINK@"; };\n' % (dns, conf))
    return gh.Relayd(body=body).start()


def ehlo(port, name, source="127.0.0.2"):
    c = gh.Client(port, source)
    c.reply()
    code, lines = c.cmd("EHLO " + name)
    c.cmd("QUIT")
    c.close()
    return code, lines[-1] if lines else ""


dm = dnsmasq.Dnsmasq(RECORDS).start()
try:
    r = relayd(dm.server, ALL_REJECT)
    try:
        for name, src in (("c2.example.test", "127.0.0.2"),
                          ("mail.example.test", "127.0.0.2"),
                          ("example.test", "127.0.0.2"),
                          ("[127.0.0.2]", "127.0.0.2"),
                          ("other.test", "127.0.0.4")):
            code, line = ehlo(r.port, name, src)
            R.check("accepted: %s from %s" % (name, src), code == 250, line)
        CASES = [
            ("127.0.0.2", "127.0.0.2", "550 5.5.2 HELO 127.0.0.2 an "
             "address literal needs brackets (RFC 5321 4.1.3)"),
            ("localhost", "127.0.0.2",
             "550 5.5.2 HELO localhost is not a valid host name"),
            ("host.123", "127.0.0.2",
             "550 5.5.2 HELO host.123 is not a valid host name"),
            ("[127.0.0.300]", "127.0.0.2",
             "550 5.5.2 HELO [127.0.0.300] is not a valid host name"),
            ("[127.0.0.9]", "127.0.0.2",
             "550 5.7.1 HELO [127.0.0.9] is not your address"),
            ("mx.test", "127.0.0.2",
             "550 5.7.1 HELO mx.test is our name, not yours"),
            ("MX2.test", "127.0.0.2",
             "550 5.7.1 HELO MX2.test is our name, not yours"),
            ("c-127-0-0-3.isp.test", "127.0.0.3", "550 5.7.1 HELO "
             "c-127-0-0-3.isp.test looks like a dynamic address"),
            ("dsl-5.isp.test", "127.0.0.4",
             "550 5.7.1 HELO dsl-5.isp.test looks like a dynamic address"),
            ("other.test", "127.0.0.2", "550 5.7.1 HELO other.test does "
             "not match your reverse DNS"),
            ("nowhere.test", "127.0.0.4",
             "550 5.7.1 HELO nowhere.test has no address in the DNS"),
        ]
        for name, src, want in CASES:
            code, line = ehlo(r.port, name, src)
            R.check("refused: %s from %s" % (name, src), line == want,
                    "%r, want %r" % (line, want))
        code, line = ehlo(r.port, "host.other.zone", "127.0.0.4")
        R.check("forward DNS refused by the server: 450 4.7.1",
                code == 450 and "4.7.1" in line, line)
        # A refused HELO leaves the client free to try again.
        c = gh.Client(r.port, "127.0.0.2")
        c.reply()
        code, _ = c.cmd("EHLO 127.0.0.2")
        code2, lines = c.cmd("EHLO c2.example.test")
        R.check("refused, then a good EHLO", code == 550 and code2 == 250,
                repr(lines))
        code, lines = c.cmd("MAIL FROM:<a@example.test>")
        R.check("and MAIL goes on", code == 250, repr(lines))
        c.close()
    finally:
        r.stop()
    log = r.log_text()
    R.check("refusal logged", "helo_checks: refused HELO localhost from "
            "127.0.0.2: valid_hostname" in log, log)

    # Defaults: mismatches are only recorded.
    r = relayd(dm.server, "")
    try:
        code, line = ehlo(r.port, "127.0.0.2")
        R.check("default: bare IP refused", code == 550, line)
        for name, src in (("c-127-0-0-3.isp.test", "127.0.0.3"),
                          ("other.test", "127.0.0.2"),
                          ("nowhere.test", "127.0.0.4"),
                          ("[127.0.0.9]", "127.0.0.2")):
            code, line = ehlo(r.port, name, src)
            R.check("default: %s only recorded" % name, code == 250, line)
        c = gh.Client(r.port, "127.0.0.2")
        c.reply()
        c.cmd("EHLO other.test")
        c.cmd("MAIL FROM:<a@example.test>")
        c.cmd("RCPT TO:<b@example.test>")
        c.cmd("DATA")
        code, lines = c.cmd("Subject: t\r\n\r\nhi\r\n.")
        R.check("message accepted", code == 250, repr(lines))
        c.close()
        code, line = ehlo(r.port, "mx.test")
        R.check("default: our name refused", code == 550 and
                "is our name" in line, line)
    finally:
        r.stop()
    log = r.log_text()
    R.check("recorded failures in the trace",
            "helo_checks=fail(rdns_match (recorded only))" in log, log)

    # Every check off: anything goes.
    r = relayd(dm.server, 'bare_ip = "off"; valid_hostname = "off"; '
               'ours = "off"; forward_dns = "off";')
    try:
        for name in ("127.0.0.2", "localhost", "mx.test"):
            code, line = ehlo(r.port, name)
            R.check("all off: %s" % name, code == 250, line)
    finally:
        r.stop()
finally:
    dm.stop()

# Our own address as a literal, in either family's spelling, on an IPv4
# listener and on a dual-stack one (IPv4 clients as ::ffff:a.b.c.d).
for listen in ("127.0.0.1", "[::ffff:127.0.0.1]"):
    rr = gh.Relayd(body='plugins = [ "helo_checks", "scripted" ];\n'
                   'scripted = { sink_dir = "@SINK@"; };\n')
    with open(rr.conf) as f:
        text = f.read()
    with open(rr.conf, "w") as f:
        f.write(text.replace('"127.0.0.1:%d"' % rr.port,
                             '"%s:%d"' % (listen, rr.port)))
    with rr:
        for h in ("[127.0.0.1]", "[IPv6:::ffff:127.0.0.1]"):
            code, line = ehlo(rr.port, h, "127.0.0.9")
            R.check("listener %s: HELO %s is ours" % (listen, h),
                    line == "550 5.7.1 HELO %s is our name, not yours" % h,
                    line)
        c = gh.Client(rr.port, "127.0.0.9")
        c.reply()
        c.cmd("EHLO c.test")
        c.close()
        R.check("listener %s: the client logged as 127.0.0.9" % listen,
                "connect from 127.0.0.9 port" in rr.log_text(),
                rr.log_text()[-800:])

# A bad pattern stops start-up.
import subprocess  # noqa: E402
rr = gh.Relayd(body='plugins = [ "helo_checks" ];\n'
               'helo_checks = { dynamic_patterns = [ "(a" ]; };')
p = subprocess.run([gh.RELAYD, "-t", "-c", rr.conf], capture_output=True,
                   text=True)
R.check("bad dynamic pattern refused at start",
        p.returncode == 2 and "dynamic_patterns" in p.stderr, p.stderr)

sys.exit(R.done())
