#!/usr/bin/env python3
"""dnsbl against a real DNS server (dnsmasq on a loopback port), with
clients on 127.0.0.2 ... and ::1 playing listed and clean hosts: refusal
at connect and at RCPT with the zone named, return-code filters, IPv6
nibbles, allowlists, the zone health check, answers cached, and DNS that
fails or never answers giving 4xx or a skip, never a 5xx or a hang."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import dnsmasq  # noqa: E402
import gh  # noqa: E402

R = gh.Results("dnsbl")

V6_NIBBLES = ".".join(["1"] + ["0"] * 31)  # ::1 reversed

RECORDS = [
    ("A", "2.0.0.127.bl.test", "127.0.0.2"),
    ("A", "6.0.0.127.bl.test", "127.0.0.2"),
    ("A", V6_NIBBLES + ".bl.test", "127.0.0.2"),
    ("A", "3.0.0.127.codes.test", "127.0.0.20"),
    ("A", "4.0.0.127.codes.test", "127.0.0.10"),
    # A zone that lists 127.0.0.1 is broken (RFC 5782 5).
    ("A", "1.0.0.127.broken.test", "127.0.0.2"),
    ("A", "5.0.0.127.broken.test", "127.0.0.2"),
    ("A", "6.0.0.127.wl.test", "127.0.10.1"),
    ("A", "7.0.0.127.err.test", "127.255.255.254"),
]

ZONES = ('zones = [ "bl.test", "codes.test=127.0.0.2-127.0.0.11", '
         '"broken.test", "err.test" ]; allow_zones = [ "wl.test" ];')


def relayd(dns, dnsbl, extra_dns="timeout = 2;", v6=False):
    body = ('dns = { servers = [ "%s" ]; %s };\n'
            'plugins = [ "dnsbl", "scripted" ];\n'
            'dnsbl = { %s };\n'
            'scripted = { sink_dir = "@SINK@"; };\n'
            % (dns, extra_dns, dnsbl))
    r = gh.Relayd(body=body)
    if v6:
        s = socket.socket(socket.AF_INET6)
        s.bind(("::1", 0))
        r.v6port = s.getsockname()[1]
        s.close()
        with open(r.conf) as f:
            conf = f.read()
        conf = conf.replace('listen = [ "127.0.0.1:%d" ];' % r.port,
                            'listen = [ "127.0.0.1:%d", "[::1]:%d" ];'
                            % (r.port, r.v6port))
        with open(r.conf, "w") as f:
            f.write(conf)
    return r.start()


def greet(port, source):
    c = gh.Client(port, source)
    return c, c.reply()


def v6_client(port):
    c = gh.Client.__new__(gh.Client)
    c.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    c.sock.settimeout(10)
    c.sock.connect(("::1", port))
    c.buf = b""
    return c


def transaction(c, rcpt="user@example.test"):
    """EHLO, MAIL, RCPT; the RCPT reply."""
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@sender.test>")
    return c.cmd("RCPT TO:<%s>" % rcpt)


dm = dnsmasq.Dnsmasq(RECORDS).start()
try:
    # --- Refusal at connect. ------------------------------------------
    r = relayd(dm.server, 'reject = "connect"; ' + ZONES, v6=True)
    try:
        c, (code, lines) = greet(r.port, "127.0.0.2")
        R.check("listed client refused at connect",
                code == 554 and "5.7.1 Your address 127.0.0.2 is listed in "
                "bl.test" in lines[-1], repr(lines))
        code, lines = c.cmd("EHLO client.test")
        R.check("then every command is refused", code == 554, repr(lines))
        code, lines = c.cmd("QUIT")
        R.check("but QUIT works", code == 221, repr(lines))
        c.close()
        c, (code, lines) = greet(r.port, "127.0.0.2")
        R.check("second connection refused too", code == 554, repr(lines))
        c.close()
        asked = [q for q in dm.queries() if " 2.0.0.127.bl.test " in q]
        R.check("the second answer came from the cache", len(asked) == 1,
                repr(asked))

        c, (code, lines) = greet(r.port, "127.0.0.3")
        R.check("code outside the zone's filter does not list",
                code == 220, repr(lines))
        c.close()
        c, (code, lines) = greet(r.port, "127.0.0.4")
        R.check("code inside the filter lists, zone named",
                code == 554 and "is listed in codes.test" in lines[-1],
                repr(lines))
        c.close()
        c, (code, lines) = greet(r.port, "127.0.0.5")
        R.check("a broken zone's listing is ignored", code == 220,
                repr(lines))
        c.close()
        c, (code, lines) = greet(r.port, "127.0.0.6")
        R.check("an allowlist wins over a blocklist", code == 220,
                repr(lines))
        c.close()
        c, (code, lines) = greet(r.port, "127.0.0.7")
        R.check("127.255.255.x is not a listing", code == 220, repr(lines))
        c.close()

        c, (code, lines) = greet(r.port, "127.0.0.8")
        R.check("clean client greeted", code == 220, repr(lines))
        code, lines = transaction(c)
        R.check("clean client's recipient accepted", code == 250,
                repr(lines))
        code, _ = c.cmd("DATA")
        code, lines = c.cmd("Subject: t\r\n\r\nhello\r\n.")
        R.check("clean client's message queued", code == 250, repr(lines))
        c.cmd("QUIT")
        c.close()

        c = v6_client(r.v6port)
        code, lines = c.reply()
        R.check("IPv6 client listed by nibbles",
                code == 554 and "Your address ::1 is listed in bl.test"
                in lines[-1], repr(lines))
        c.close()

        health = [q for q in dm.queries() if " 1.0.0.127.bl.test " in q]
        R.check("zone health asked once per worker", len(health) == 1,
                repr(health))
    finally:
        r.stop()
    log = r.log_text()
    R.check("broken zone disabled with a warning",
            "warning: dnsbl: zone broken.test lists 127.0.0.1" in log, log)
    R.check("refusal logged with the zone",
            "127.0.0.2 is listed in bl.test (127.0.0.2): refused" in log)
    R.check("allowlisting logged", "127.0.0.6 is on allowlist wl.test" in log)
    R.check("results in the trace", "dnsbl=pass(not listed" in log, log)

    # --- Refusal delayed to RCPT. ---------------------------------------
    r = relayd(dm.server, 'zones = [ "bl.test" ];')
    try:
        c, (code, lines) = greet(r.port, "127.0.0.2")
        R.check("rcpt mode: listed client greeted", code == 220, repr(lines))
        code, lines = transaction(c)
        R.check("rcpt mode: recipient refused with the zone",
                code == 550 and lines[-1] == "550 5.7.1 Your address "
                "127.0.0.2 is listed in bl.test", repr(lines))
        code, lines = c.cmd("RCPT TO:<postmaster@example.test>")
        R.check("rcpt mode: postmaster still reachable", code == 250,
                repr(lines))
        code, lines = c.cmd("RCPT TO:<Postmaster>")
        R.check("rcpt mode: bare <Postmaster> too", code == 250, repr(lines))
        c.cmd("QUIT")
        c.close()
        c, _ = greet(r.port, "127.0.0.3")
        code, lines = transaction(c)
        R.check("rcpt mode: clean client's recipient accepted", code == 250,
                repr(lines))
        c.close()
    finally:
        r.stop()

    # --- A zone that cannot be asked (dnsmasq REFUSES it). ----------------
    r = relayd(dm.server, 'reject = "connect"; tempfail = "denysoft"; '
               'zones = [ "bl.test", "other.zone" ];')
    try:
        c, (code, lines) = greet(r.port, "127.0.0.8")
        R.check("tempfail=denysoft: 421 naming the zone",
                code == 421 and "4.7.1" in lines[-1] and "other.zone"
                in lines[-1], repr(lines))
        c.close()
        c, (code, lines) = greet(r.port, "127.0.0.2")
        R.check("a listing still wins over another zone's failure",
                code == 554, repr(lines))
        c.close()
    finally:
        r.stop()
    r = relayd(dm.server, 'reject = "connect"; '
               'zones = [ "bl.test", "other.zone" ];')
    try:
        c, (code, lines) = greet(r.port, "127.0.0.8")
        R.check("tempfail=skip: greeted", code == 220, repr(lines))
        c.close()
    finally:
        r.stop()
    R.check("skip logged", "zone other.zone not asked about 127.0.0.8 "
            "(servers refused or unreachable): skipped" in r.log_text(), r.log_text())
    r = relayd(dm.server, 'tempfail = "denysoft"; '
               'zones = [ "other.zone" ];')
    try:
        c, _ = greet(r.port, "127.0.0.8")
        code, lines = transaction(c)
        R.check("rcpt mode, denysoft: 450 4.7.1 at RCPT",
                code == 450 and "4.7.1" in lines[-1], repr(lines))
        c.close()
    finally:
        r.stop()
finally:
    dm.stop()

# --- DNS that never answers: 4xx or skip after the timeout, no hang. ----
with dnsmasq.Silent() as dead:
    for tf, want in (("denysoft", 421), ("skip", 220)):
        r = relayd(dead.server, 'reject = "connect"; tempfail = "%s"; '
                   'zones = [ "bl.test" ];' % tf, "timeout = 1; tries = 1;")
        try:
            t0 = time.time()
            c, (code, lines) = greet(r.port, "127.0.0.2")
            took = time.time() - t0
            R.check("dead DNS, tempfail=%s: %d" % (tf, want), code == want,
                    repr(lines))
            R.check("dead DNS answered within the deadlines (%.1fs)" % took,
                    took < 8, "%.1f" % took)
            c.close()
        finally:
            r.stop()
    R.check("the dead server was asked", dead.received > 0)

# Nothing listens: the resolver's socket is refused at once.
port = dnsmasq.free_udp_port()
r = relayd("127.0.0.1:%d" % port, 'reject = "connect"; '
           'tempfail = "denysoft"; zones = [ "bl.test" ];',
           "timeout = 1; tries = 1;")
try:
    c, (code, lines) = greet(r.port, "127.0.0.2")
    R.check("no DNS server: 421, not 5xx", code == 421, repr(lines))
    c.close()
finally:
    r.stop()

# Configuration errors stop start-up.
for bad, why in (('zones = [ "bl.test=127.0.0.x" ];', "bad return code"),
                 ('zones = [ "bl.test=127.0.0.9-127.0.0.2" ];',
                  "bad return code"),
                 ('zones = [ "bad zone" ];', "bad zone name")):
    rr = gh.Relayd(body='plugins = [ "dnsbl" ];\ndnsbl = { %s };' % bad)
    import subprocess
    p = subprocess.run([gh.RELAYD, "-t", "-c", rr.conf], capture_output=True,
                       text=True)
    R.check("config error: %s" % bad, p.returncode == 2 and why in
            p.stdout + p.stderr, p.stdout + p.stderr)

sys.exit(R.done())
