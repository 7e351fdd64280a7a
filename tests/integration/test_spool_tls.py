#!/usr/bin/env python3
"""spool: STARTTLS (RFC 3207) to the next hop and to MX hosts, against a
second relayd with a STARTTLS listener and a test certificate (its
scripted sink keeps what arrives) and Python next hops without STARTTLS,
with dnsmasq for the MX records.  All on loopback.

Checked: opportunistic TLS to the next hop by default (the hop's Received
says ESMTPS); opportunistic to an MX host; mx_tls = "required" with
mx_tls_verify: the certificate checked against tls_ca and the MX name,
delivered; an MX host without STARTTLS is skipped for the next MX, one
whose certificate names another host too (451 4.7.5), and with no other
MX the recipient is deferred, nothing sent in clear; tls_verify without
required TLS stops start-up.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import dnsmasq  # noqa: E402
import gh  # noqa: E402
import smtpsink  # noqa: E402

R = gh.Results("spool_tls")
D = gh.tmpdir("gh-spooltls-")
CERT = os.path.join(D, "cert.pem")      # CN and SAN mx.tls.test
KEY = os.path.join(D, "key.pem")
MSG = b"From: a@x.test\r\nSubject: spool tls\r\n\r\nbody\r\n"

subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=mx.tls.test",
                "-addext", "subjectAltName=DNS:mx.tls.test", "-days", "2",
                "-keyout", KEY, "-out", CERT], check=True,
               capture_output=True)


PORT = gh.common_port(["127.0.0.1", "127.0.0.3", "127.0.0.4"])
RECORDS = [
    ("MX", "tls.test", "mx.tls.test", 10),
    ("HOST", "mx.tls.test", "127.0.0.3"),
    # Preferred MX without STARTTLS, then the TLS one.
    ("MX", "mixed.test", "plain.mixed.test", 5),
    ("MX", "mixed.test", "mx.tls.test", 10),
    ("HOST", "plain.mixed.test", "127.0.0.4"),
    # The TLS host under a name its certificate does not carry.
    ("MX", "wrong.test", "other.wrong.test", 10),
    ("HOST", "other.wrong.test", "127.0.0.3"),
    ("MX", "plain.test", "plain.mixed.test", 10),
]


def tls_relayd(listen):
    """A relayd offering STARTTLS with CERT on listen; keeps messages."""
    r = gh.Relayd('tls_cert = "%s"; tls_key = "%s";' % (CERT, KEY),
                  'plugins = [ "scripted" ];\n'
                  'scripted = { sink_dir = "@SINK@"; };\n')
    with open(r.conf) as f:
        text = f.read()
    text = text.replace('listen = [ "127.0.0.1:%d" ];' % r.port,
                        'listen = [ "%s tls=starttls" ];' % listen)
    with open(r.conf, "w") as f:
        f.write(text)
    r.proc = subprocess.Popen([gh.RELAYD, "-c", r.conf],
                              stdout=open(r.log, "w"),
                              stderr=subprocess.STDOUT)
    r.logf = open(os.devnull, "w")
    host, port = listen.rsplit(":", 1)
    gh.wait_port(host, int(port), proc=r.proc)
    return r


def spool_relayd(dns, spool, hop_port, extra=""):
    body = ('dns = { servers = [ "%s" ]; timeout = 2; rdns = false; };\n'
            'plugins = [ "relay", "scripted", "spool" ];\n'
            'relay = { clients = [ "127.0.0.2" ]; };\n'
            'spool = { dir = "%s"; port = %d; outbound = "mx"; '
            'mx_port = %d; retry = [ "60" ]; scan_interval = 1; '
            'connect_timeout = 2; %s };\n'
            % (dns, spool, hop_port, PORT, extra))
    return gh.Relayd(body=body).start()


def send(port, rcpts, source="127.0.0.2"):
    return gh.send_mail(port, rcpts, MSG, "s@x.test", source)


def received_by(hop, rcpt):
    """The header block (unfolded) of the message the TLS relayd kept
    for rcpt (its Received says "for <rcpt>"), or None."""
    for m in hop.messages():
        head = m.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
        if "<%s>" % rcpt in head:
            return " ".join(head.replace("\r\n", " ").split())
    return None


def rcpts_at(sink):
    return [r for m in list(sink.messages) for r in m["rcpts"]]


# The TLS relayd stores no envelope; each test recipient sends its own
# message and the Received "for <rcpt>" names it.
hop = tls_relayd("127.0.0.1:%d" % PORT)
mx = tls_relayd("127.0.0.3:%d" % PORT)
plain = smtpsink.Sink(host="127.0.0.4", port=PORT)
dm = dnsmasq.Dnsmasq(RECORDS).start()
spool = gh.tmpdir("gh-spooltls-q-")
r = spool_relayd(dm.server, spool, PORT)
try:
    code, lines = send(r.port, ["n@hop.test"], source="127.0.0.1")
    R.check("non-relayed message accepted", code == 250, repr(lines))
    R.check("next hop: opportunistic STARTTLS by default (ESMTPS)",
            gh.wait(lambda: len(hop.messages()) == 1) and
            "ESMTPS" in (received_by(hop, "n@hop.test") or ""),
            repr(received_by(hop, "n@hop.test")))
    code, lines = send(r.port, ["m@tls.test"])
    R.check("MX host: opportunistic STARTTLS (ESMTPS)",
            code == 250 and gh.wait(lambda: len(mx.messages()) == 1) and
            "ESMTPS" in (received_by(mx, "m@tls.test") or ""),
            repr(received_by(mx, "m@tls.test")))
    R.check("spool log names the TLS session",
            "TLS established" in r.log_text())
finally:
    r.stop()

spool = gh.tmpdir("gh-spooltls-q-")
r = spool_relayd(dm.server, spool, PORT, 'mx_tls = "required"; '
                 'mx_tls_verify = true; tls_ca = "%s";' % CERT)
try:
    n = len(mx.messages())
    code, lines = send(r.port, ["v@tls.test"])
    R.check("required + verified: delivered to the MX named in the "
            "certificate", code == 250 and
            gh.wait(lambda: len(mx.messages()) == n + 1), repr(lines))
    code, lines = send(r.port, ["w@mixed.test"])
    R.check("preferred MX without STARTTLS skipped for the TLS one",
            code == 250 and gh.wait(lambda: len(mx.messages()) == n + 2) and
            rcpts_at(plain) == [], repr(rcpts_at(plain)))
    code, lines = send(r.port, ["x@wrong.test", "y@plain.test"])
    log = ""

    def deferred():
        global log
        log = r.log_text()
        return ("<x@wrong.test> deferred" in log and
                "<y@plain.test> deferred" in log)
    R.check("certificate for another name, no STARTTLS: both deferred",
            code == 250 and gh.wait(deferred),
            "\n".join(l for l in log.splitlines() if "deferred" in l))
    R.check("the wrong name is 4.7.5",
            any("<x@wrong.test> deferred" in l and " 4.7.5 " in l
                for l in log.splitlines()),
            "\n".join(l for l in log.splitlines() if "x@wrong" in l))
    R.check("nothing sent in clear, nothing to the wrong name",
            plain.messages == [] and len(mx.messages()) == n + 2,
            repr(plain.messages))
finally:
    r.stop()

conf = os.path.join(D, "t.conf")
with open(conf, "w") as f:
    f.write('relayd = { listen = [ "127.0.0.1:1" ]; };\n'
            'plugins = [ "spool" ];\n'
            'spool = { dir = "%s"; mx_tls_verify = true; };\n' % D)
p = subprocess.run([gh.RELAYD, "-t", "-c", conf], capture_output=True,
                   text=True)
R.check("mx_tls_verify without required TLS stops start-up",
        p.returncode != 0 and "mx_tls_verify needs mx_tls" in p.stdout +
        p.stderr, p.stdout + p.stderr)
hop.stop()
mx.stop()
plain.stop()
dm.stop()
R.done()
