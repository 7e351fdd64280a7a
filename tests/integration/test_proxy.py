#!/usr/bin/env python3
"""PROXY protocol v1 and v2 on a proxy=yes listener, behind a real
HAProxy (send-proxy and send-proxy-v2) and with raw sockets.

Checked: through HAProxy a client on 127.0.0.2 is 127.0.0.2 for relayd
(log line, Received header of the queued message) and the access plugin
refuses 127.0.0.3 by its own address, both protocol versions; the
per-address connection limit counts the client, not the balancer; a
header from a host outside proxy_hosts, a malformed header, and no
header within proxy_timeout each close the connection with no greeting
and a log line saying why; v2 LOCAL and v1 UNKNOWN keep the balancer's
own address (HAProxy's own v2 health checks arrive as LOCAL); SMTP
octets sent in the same packet as the header stay for the session;
PROXY before an implicit TLS handshake; relayd -t refuses bad
proxy_hosts/xclient_hosts entries and proxy=yes without proxy_hosts.
"""
import os
import socket
import ssl
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("proxy")
HAPROXY = "/usr/sbin/haproxy"
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def check_conf(relayd_body):
    d = gh.tmpdir("gh-proxy-conf-")
    path = os.path.join(d, "t.conf")
    with open(path, "w") as f:
        f.write('relayd = { %s };\nplugins = [ ];\n' % relayd_body)
    p = subprocess.run([gh.RELAYD, "-t", "-c", path], capture_output=True,
                       text=True)
    return p.returncode, p.stdout + p.stderr


# ------------------------------------------------------------------
# Configuration errors.

port = gh.free_port()
for body, want in [
        ('listen = [ "127.0.0.1:%d proxy=yes" ];' % port,
         'proxy=yes needs relayd.proxy_hosts'),
        ('listen = [ "127.0.0.1:%d proxy=maybe" ];' % port,
         'proxy is yes or no'),
        ('listen = [ "127.0.0.1:%d" ]; proxy_hosts = [ "127.0.0.1/33" ];'
         % port, 'relayd.proxy_hosts: "127.0.0.1/33": not an address or '
         'network'),
        ('listen = [ "127.0.0.1:%d" ]; xclient_hosts = [ "lb.test" ];'
         % port, 'relayd.xclient_hosts: "lb.test": not an address or '
         'network'),
        ('listen = [ "127.0.0.1:%d" ]; proxy_timeout = 0;' % port,
         'proxy_timeout')]:
    rc, out = check_conf(body)
    R.check("relayd -t refuses: %s" % want, rc == 2 and want in out,
            "rc=%d %r" % (rc, out))
rc, out = check_conf('listen = [ "127.0.0.1:%d proxy=yes" ]; '
                     'proxy_hosts = [ "127.0.0.1", "::1", "10.0.0.0/8" ];'
                     % port)
R.check("relayd -t accepts proxy=yes with proxy_hosts", rc == 0, out)


# ------------------------------------------------------------------
# A relayd with a plain listener (r.port, where start() probes) and a
# proxy=yes listener; 127.0.0.1 is the balancer.

class ProxyRelayd(gh.Relayd):
    def __init__(self, extra_listen="", **kw):
        super().__init__(**kw)
        self.pport = gh.free_port()
        with open(self.conf) as f:
            text = f.read()
        text = text.replace(
            'listen = [ "127.0.0.1:%d" ];' % self.port,
            'listen = [ "127.0.0.1:%d", "127.0.0.1:%d proxy=yes"%s ];'
            % (self.port, self.pport, extra_listen), 1)
        with open(self.conf, "w") as f:
            f.write(text)


def wait_log(r, text, timeout=5.0):
    end = time.time() + timeout
    while time.time() < end:
        if text in r.log_text():
            return True
        time.sleep(0.05)
    return text in r.log_text()


def v2_header(src, dst, sport, dport, command=1, tlvs=b""):
    block = (socket.inet_aton(src) + socket.inet_aton(dst) +
             struct.pack("!HH", sport, dport) + tlvs)
    return (V2_SIG + bytes([0x20 | command, 0x11]) +
            struct.pack("!H", len(block)) + block)


def deliver(c, label):
    """One message over an open, greeted connection."""
    ok = c.cmd("EHLO client.test")[0] == 250
    ok = ok and c.cmd("MAIL FROM:<a@example.test>")[0] == 250
    ok = ok and c.cmd("RCPT TO:<b@example.test>")[0] == 250
    ok = ok and c.cmd("DATA")[0] == 354
    code, lines = c.cmd("Subject: %s\r\n\r\nbody\r\n." % label)
    c.cmd("QUIT")
    return ok and code == 250


def received_of(r, label):
    for m in r.messages():
        if ("Subject: %s\r\n" % label).encode() in m:
            return m.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    return ""


BODY = ('plugins = [ "access", "scripted" ];\n'
        'access = { client_deny = [ "127.0.0.3" ]; };\n'
        'scripted = { sink_dir = "@SINK@"; };\n')
EXTRA = ('proxy_hosts = [ "127.0.0.1" ];\n  proxy_timeout = 1;\n'
         '  max_connections_per_ip = 1;')

r = ProxyRelayd(relayd_extra=EXTRA, body=BODY).start()

# ------------------------------------------------------------------
# HAProxy in front: send-proxy (v1) on one frontend, send-proxy-v2 on
# the other.

hdir = gh.tmpdir("gh-haproxy-")
f1, f2 = gh.free_port(), gh.free_port()
hcfg = os.path.join(hdir, "haproxy.cfg")
with open(hcfg, "w") as f:
    f.write("""global
    maxconn 100
defaults
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend v1
    bind 127.0.0.1:%d
    default_backend relayd_v1
frontend v2
    bind 127.0.0.1:%d
    default_backend relayd_v2
backend relayd_v1
    server r1 127.0.0.1:%d send-proxy
backend relayd_v2
    option smtpchk EHLO lb.test
    server r2 127.0.0.1:%d send-proxy-v2 check inter 300ms
""" % (f1, f2, r.pport, r.pport))
hlog = open(os.path.join(hdir, "haproxy.log"), "w")
hap = subprocess.Popen([HAPROXY, "-db", "-f", hcfg], stdout=hlog,
                       stderr=hlog)
try:
    gh.wait_port("127.0.0.1", f1, proc=hap)
    gh.wait_port("127.0.0.1", f2, proc=hap)
    # The probes of wait_port reach relayd as empty connections; let
    # them go before counting log lines.
    time.sleep(0.3)
    for version, fport in (("v1", f1), ("v2", f2)):
        c = gh.Client(fport, source="127.0.0.2")
        code, lines = c.reply()
        R.check("haproxy %s: greeted" % version, code == 220, repr(lines))
        label = "through haproxy %s" % version
        R.check("haproxy %s: message accepted" % version,
                deliver(c, label))
        c.close()
        rec = received_of(r, label)
        R.check("haproxy %s: Received names 127.0.0.2" % version,
                "[127.0.0.2]" in rec and "127.0.0.1" not in rec, rec)
        R.check("haproxy %s: log says connect from 127.0.0.2 via PROXY %s"
                % (version, version),
                any("connect from 127.0.0.2 port" in l and
                    "via PROXY %s from 127.0.0.1" % version in l
                    for l in r.log_text().splitlines()),
                r.log_text()[-2000:])

        c = gh.Client(fport, source="127.0.0.3")
        code, lines = c.reply()
        R.check("haproxy %s: access refuses 127.0.0.3 by its own address"
                % version, lines == ["554 5.7.1 Access denied: client "
                                     "127.0.0.3"], repr(lines))
        c.close()

    # HAProxy's health checks (option smtpchk) on the send-proxy-v2
    # server say LOCAL: relayd greets the balancer as itself.
    R.check("haproxy health check arrives as PROXY v2 LOCAL",
            wait_log(r, "via PROXY v2 LOCAL from 127.0.0.1"),
            r.log_text()[-1500:])

    # max_connections_per_ip = 1 holds per client, not per balancer.
    a = gh.Client(f2, source="127.0.0.4")
    ra = a.reply()
    b = gh.Client(f2, source="127.0.0.5")
    rb = b.reply()
    R.check("per-IP limit: two clients through one balancer both greeted",
            ra[0] == 220 and rb[0] == 220, repr((ra, rb)))
    c = gh.Client(f2, source="127.0.0.4")
    code, lines = c.reply()
    R.check("per-IP limit: a second connection from 127.0.0.4 gets 421",
            code == 421 and "4.7.0" in lines[0], repr(lines))
    for x in (a, b, c):
        x.close()
finally:
    hap.terminate()
    try:
        hap.wait(10)
    except subprocess.TimeoutExpired:
        hap.kill()
        hap.wait()
    hlog.close()


# ------------------------------------------------------------------
# Raw sockets on the proxy listener.

def raw(source="127.0.0.1", port=None):
    return gh.Client(port or r.pport, source=source)


def silent_close(c):
    """The server closed without a word (a reset counts: relayd closes
    with the refused octets unread)."""
    try:
        code, lines = c.reply()
    except ConnectionResetError:
        return True, "reset"
    return code is None and lines == [], repr(lines)


# A v1 header the way HAProxy writes it, then SMTP.
c = raw()
c.send("PROXY TCP4 127.0.0.6 127.0.0.1 40001 25\r\n")
code, lines = c.reply()
R.check("raw v1: greeted", code == 220, repr(lines))
R.check("raw v1: client 127.0.0.6 port 40001 in the log",
        wait_log(r, "connect from 127.0.0.6 port 40001 via PROXY v1 from "
                 "127.0.0.1"))
c.cmd("QUIT")
c.close()

# The header and the first command in one packet: not one octet of
# the command is taken as header, and it is answered after the 220.
c = raw()
c.send(v2_header("127.0.0.7", "127.0.0.1", 40002, 25,
                 tlvs=b"\x04\x00\x02ab") + b"EHLO pipelined.test\r\n")
code, lines = c.reply()
R.check("raw v2 + command in one packet: 220 first", code == 220,
        repr(lines))
code, lines = c.reply()
R.check("raw v2 + command in one packet: the EHLO answered", code == 250
        and lines[0].startswith("250-mx.test"), repr(lines))
c.cmd("QUIT")
c.close()
R.check("raw v2: client 127.0.0.7 port 40002 in the log",
        wait_log(r, "connect from 127.0.0.7 port 40002 via PROXY v2 from "
                 "127.0.0.1"))

# A header split over several writes.
c = raw()
hdr = b"PROXY TCP6 ::1 ::1 40003 25\r\n"
for i in range(0, len(hdr), 5):
    c.send(hdr[i:i + 5])
    time.sleep(0.02)
code, lines = c.reply()
R.check("raw v1 TCP6 in pieces: greeted", code == 220, repr(lines))
c.close()
R.check("raw v1 TCP6: client ::1 port 40003 in the log",
        wait_log(r, "connect from ::1 port 40003 via PROXY v1"))

# v2 LOCAL (a health check): the connection's own address.
c = raw()
c.send(V2_SIG + b"\x20\x00\x00\x00")
code, lines = c.reply()
R.check("v2 LOCAL: greeted", code == 220, repr(lines))
lport = c.sock.getsockname()[1]
c.cmd("QUIT")
c.close()
R.check("v2 LOCAL: the balancer's own address is kept",
        wait_log(r, "connect from 127.0.0.1 port %d via PROXY v2 LOCAL"
                 % lport), r.log_text()[-1500:])

# v1 UNKNOWN likewise.
c = raw()
c.send("PROXY UNKNOWN\r\n")
code, lines = c.reply()
R.check("v1 UNKNOWN: greeted", code == 220, repr(lines))
lport = c.sock.getsockname()[1]
c.close()
R.check("v1 UNKNOWN: the balancer's own address is kept",
        wait_log(r, "connect from 127.0.0.1 port %d via PROXY v1 UNKNOWN"
                 % lport))

# From a host outside proxy_hosts: closed, unread, no greeting.
c = raw(source="127.0.0.9")
c.send("PROXY TCP4 127.0.0.6 127.0.0.1 40004 25\r\n")
R.check("untrusted sender of PROXY: closed without a greeting",
        *silent_close(c))
c.close()
R.check("untrusted sender of PROXY: logged",
        wait_log(r, "connection from 127.0.0.9 port") and
        "not in relayd.proxy_hosts; closed" in r.log_text())
R.check("untrusted sender of PROXY: its claimed client never connected",
        "connect from 127.0.0.6 port 40004" not in r.log_text())

# Malformed headers.
for label, data, why in [
        ("SMTP instead of a header", b"EHLO x.test\r\n",
         "not a PROXY header"),
        ("bad v1 address", b"PROXY TCP4 127.0.0.300 127.0.0.1 1 25\r\n",
         "v1: bad address for the protocol"),
        ("v1 port with a leading zero",
         b"PROXY TCP4 127.0.0.6 127.0.0.1 040 25\r\n", "v1: bad port"),
        ("v1 without LF", b"PROXY TCP4 127.0.0.6 127.0.0.1 1 25\rX",
         "v1: CR not followed by LF"),
        ("v1 over 107 octets", b"PROXY UNKNOWN " + b"x" * 120,
         "v1: longer than 107 octets"),
        ("v2 version 3", V2_SIG + b"\x31\x11\x00\x0c" + b"\x00" * 12,
         "v2: version is not 2"),
        ("v2 UDP", V2_SIG + b"\x21\x12\x00\x0c" + b"\x00" * 12,
         "v2: not TCP over IPv4 or IPv6"),
        ("v2 bad TLV", v2_header("127.0.0.6", "127.0.0.1", 1, 25,
                                 tlvs=b"\x04\x00\x09ab"),
         "v2: malformed TLV")]:
    c = raw()
    c.send(data)
    R.check("malformed (%s): closed without a greeting" % label,
            *silent_close(c))
    c.close()
    R.check("malformed (%s): logged: %s" % (label, why),
            wait_log(r, "refused: %s; closed" % why), why)

# No header at all: closed once proxy_timeout (1 s) has passed.
c = raw()
start = time.time()
R.check("no header: closed without a greeting", *silent_close(c))
R.check("no header: closed after the timeout, not before",
        time.time() - start >= 0.9, "%.2f s" % (time.time() - start))
c.close()
R.check("no header: logged", wait_log(r, "not complete within 1 seconds "
                                         "(0 octets); closed"))

# A partial header, then silence: the deadline holds from the accept.
c = raw()
c.send("PROXY TCP4 127.0.0.6")
R.check("partial header: closed without a greeting", *silent_close(c))
c.close()
R.check("partial header: logged",
        wait_log(r, "not complete within 1 seconds (20 octets); closed"))

# The plain listener knows nothing of PROXY: a header there is a
# command like any other.
c = gh.Client(r.port)
c.reply()
code, lines = c.cmd("PROXY TCP4 127.0.0.6 127.0.0.1 40005 25")
R.check("plain listener: PROXY is an unknown command", code == 500,
        repr(lines))
c.close()
r.stop()

# ------------------------------------------------------------------
# PROXY before an implicit TLS handshake (HAProxy in TCP mode passes
# TLS through after its header).

tdir = gh.tmpdir("gh-proxy-tls-")
cert, key = os.path.join(tdir, "c.pem"), os.path.join(tdir, "k.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                "-subj", "/CN=mx.test", "-days", "1", "-keyout", key,
                "-out", cert], capture_output=True, check=True)
r = ProxyRelayd(relayd_extra=EXTRA + '\n  tls_cert = "%s";\n  tls_key = '
                '"%s";' % (cert, key), body=BODY)
with open(r.conf) as f:
    text = f.read()
tport = gh.free_port()
text = text.replace('proxy=yes" ]', 'proxy=yes", "127.0.0.1:%d tls=implicit '
                    'proxy=yes" ]' % tport, 1)
with open(r.conf, "w") as f:
    f.write(text)
r.start()
s = socket.create_connection(("127.0.0.1", tport), 5)
s.sendall(b"PROXY TCP4 127.0.0.8 127.0.0.1 40006 465\r\n")
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
try:
    t = ctx.wrap_socket(s, server_hostname="mx.test")
    greeting = t.recv(4096).decode(errors="replace")
    t.close()
except (ssl.SSLError, OSError) as e:
    greeting = "TLS failed: %s" % e
R.check("implicit TLS after PROXY: greeted under TLS",
        greeting.startswith("220 "), greeting)
R.check("implicit TLS after PROXY: client 127.0.0.8",
        wait_log(r, "connect from 127.0.0.8 port 40006 via PROXY v1"))
r.stop()

sys.exit(R.done())
