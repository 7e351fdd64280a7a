#!/usr/bin/env python3
"""smtp_forward's STARTTLS to the next hop (RFC 3207), against real peers
on loopback: a second relayd with a STARTTLS listener and a test
certificate (its sink plugin keeps what arrives), Postfix's smtp-sink (no
STARTTLS), and a small Python next hop for what no real server does on
purpose (plaintext injected behind its 220 to STARTTLS, a broken
handshake, a refused STARTTLS).

Checked: opportunistic TLS by default, the hop's Received says ESMTPS
and both logs name the TLS version; the pooled connection keeps its TLS
session; required TLS with the certificate checked against tls_ca and a
name; required against a hop without STARTTLS, with a wrong CA or name,
or a refused STARTTLS: 451 4.7.x and nothing delivered; opportunistic
against smtp-sink: delivered in clear; plaintext behind the 220 is
discarded and EHLO is sent again under TLS with the new capabilities
used; a failed opportunistic handshake is retried in clear; per-route
tls=; QUIT inside TLS on the idle pooled connection when relayd stops;
start-up errors; the directives in `relayd -h smtp_forward`.
"""
import os
import smtplib
import socket
import ssl
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402
import postfix  # noqa: E402

R = gh.Results("forward_tls")
SMTP_SINK = "/usr/sbin/smtp-sink"
D = gh.tmpdir("gh-fwdtls-")
CERT = os.path.join(D, "cert.pem")      # the TLS hop's, CN and SAN mx.test
KEY = os.path.join(D, "key.pem")
OTHER = os.path.join(D, "other.pem")    # an unrelated self-signed one
OTHER_KEY = os.path.join(D, "other-key.pem")

MSG = (b"From: a@x.test\r\nTo: b@y.test\r\nSubject: tls forward\r\n\r\n"
       b"body line\r\n")


def make_cert(cert, key, cn):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=" + cn,
                    "-addext", "subjectAltName=DNS:" + cn, "-days", "2",
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)


make_cert(CERT, KEY, "mx.test")
make_cert(OTHER, OTHER_KEY, "other.test")


def tls_hop():
    """A relayd offering STARTTLS with CERT; it keeps messages in its
    sink folder."""
    r = gh.Relayd('tls_cert = "%s"; tls_key = "%s";' % (CERT, KEY),
                  'plugins = [ "scripted" ];\n'
                  'scripted = { sink_dir = "@SINK@"; };\n',
                  log_level="protocol")
    with open(r.conf) as f:
        text = f.read()
    text = text.replace('listen = [ "127.0.0.1:%d" ];' % r.port,
                        'listen = [ "127.0.0.1:%d tls=starttls" ];' % r.port)
    with open(r.conf, "w") as f:
        f.write(text)
    return r.start()


def front(port, extra=""):
    body = ('plugins = [ "scripted", "smtp_forward" ];\n'
            'smtp_forward = { host = "127.0.0.1"; port = %d; %s };\n'
            % (port, extra))
    return gh.Relayd(body=body).start()


def send(port, rcpt="b@y.test"):
    """One message; the reply to the final dot (code, last line)."""
    c = gh.Client(port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@x.test>")
    code, lines = c.cmd("RCPT TO:<%s>" % rcpt)
    if code != 250:
        c.close()
        return code, lines[-1] if lines else ""
    c.cmd("DATA")
    c.send(MSG + b".\r\n")
    code, lines = c.reply()
    c.cmd("QUIT")
    c.close()
    return code, lines[-1] if lines else ""


def start_smtp_sink(dump):
    port = gh.free_port()
    p = subprocess.Popen([SMTP_SINK, "-u", "nobody", "-d", dump + "/%M.",
                          "127.0.0.1:%d" % port, "10"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gh.wait_port("127.0.0.1", port, proc=p)
    return p, port


def stop(p):
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()


def relayd_t(body):
    conf = os.path.join(D, "t.conf")
    with open(conf, "w") as f:
        f.write('relayd = { listen = [ "127.0.0.1:1" ]; };\n'
                'plugins = [ "smtp_forward" ];\n' + body)
    p = subprocess.run([gh.RELAYD, "-t", "-c", conf], capture_output=True,
                       text=True)
    return p.returncode, p.stdout + p.stderr


class Hop:
    """A scripted next hop on a raw socket.  mode:
    inject    220 to STARTTLS with "250 injected" in the same write, then
              TLS; EHLO under TLS offers PIPELINING
    refuse    454 to STARTTLS, then plain SMTP
    badtls    220 to STARTTLS, then plaintext garbage and close; a
              connection without STARTTLS is served in clear
    Each connection's commands are recorded as (tls, line)."""

    def __init__(self, mode):
        self.mode = mode
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(CERT, KEY)
        self.conns = []         # per connection: [(tls, line)]
        self.pipelined = []
        self.delivered = 0
        self.errors = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(s,),
                             daemon=True).start()

    def _serve(self, s):
        log = []
        self.conns.append(log)
        s.settimeout(10)
        state = {"sock": s, "buf": b"", "tls": False}

        def send(data):
            state["sock"].sendall(data)

        def line(record=True):
            while b"\r\n" not in state["buf"]:
                chunk = state["sock"].recv(65536)
                if not chunk:
                    return None
                state["buf"] += chunk
            ln, state["buf"] = state["buf"].split(b"\r\n", 1)
            text = ln.decode(errors="replace")
            if record:
                log.append((state["tls"], text))
            return text

        try:
            send(b"220 hop.test ESMTP\r\n")
            while True:
                ln = line()
                if ln is None:
                    return
                verb = ln.split(" ")[0].upper()
                if verb == "EHLO":
                    caps = [b"hop.test"]
                    if state["tls"]:
                        caps += [b"PIPELINING", b"8BITMIME"]
                    else:
                        caps += [b"STARTTLS"]
                    send(b"".join(b"250-" + c + b"\r\n" for c in caps[:-1])
                         + b"250 " + caps[-1] + b"\r\n")
                elif verb == "STARTTLS":
                    if self.mode == "refuse":
                        send(b"454 4.7.0 TLS not available\r\n")
                        continue
                    if self.mode == "badtls":
                        send(b"220 2.0.0 go ahead\r\nthis is not TLS\r\n")
                        s.close()
                        return
                    # One write: the 220 and a forged reply behind it.
                    send(b"220 2.0.0 ready\r\n250 injected\r\n")
                    state["sock"] = self.ctx.wrap_socket(s, server_side=True)
                    state["tls"] = True
                    state["buf"] = b""
                elif verb == "MAIL":
                    # Under PIPELINING RCPT and DATA came in the same
                    # write: they are in the buffer already.
                    self.pipelined.append(b"DATA" in state["buf"])
                    send(b"250 2.1.0 ok\r\n")
                elif verb == "RCPT":
                    send(b"250 2.1.5 ok\r\n")
                elif verb == "DATA":
                    send(b"354 go\r\n")
                    while True:
                        ln = line(False)
                        if ln is None:
                            return
                        if ln == ".":
                            break
                    self.delivered += 1
                    send(b"250 2.0.0 Ok: queued as H%d\r\n" % self.delivered)
                elif verb == "RSET":
                    send(b"250 2.0.0 ok\r\n")
                elif verb == "QUIT":
                    send(b"221 2.0.0 bye\r\n")
                    return
                else:
                    send(b"502 5.5.2 what\r\n")
        except (OSError, ssl.SSLError) as e:
            self.errors.append(repr(e))
        finally:
            try:
                state["sock"].close()
            except OSError:
                pass

    def stop(self):
        self.sock.close()


# ---------------------------------------------------------------------
# (a) Opportunistic by default, to a relayd offering STARTTLS.

hop = tls_hop()
r = front(hop.port)
try:
    code, last = send(r.port)
    R.check("opportunistic: 250 through the TLS hop", code == 250, last)
    s = smtplib.SMTP("127.0.0.1", r.port)
    s.sendmail("a@x.test", ["c@y.test"], MSG)
    s.quit()
    msgs = hop.messages()
    R.check("opportunistic: both messages at the hop", len(msgs) == 2,
            str(len(msgs)))
    R.check("hop's Received says ESMTPS",
            all(b"with ESMTPS" in m.split(b"\r\n\r\n")[0] for m in msgs),
            repr([m[:400] for m in msgs]))
    log = r.log_text()
    R.check("our log names the TLS version and cipher",
            "TLS established: TLSv1.3 TLS_" in log and
            "certificate not checked" in log,
            [l for l in log.splitlines() if "smtpc" in l][:5])
    R.check("each forwarded message logged with its TLS",
            log.count("to 127.0.0.1:%d (TLS TLSv1.3 TLS_" % hop.port) == 2,
            [l for l in log.splitlines() if "forwarded" in l])
    R.check("pooled connection keeps TLS: one handshake for two messages",
            log.count("TLS established") == 1, str(log.count(
                "TLS established")))
    R.check("hop's log: TLS established",
            "TLS established: TLSv1.3" in hop.log_text())

    # A message larger than the streaming window (1 MiB) goes through
    # the TLS layer's output in several passes.
    big = b"Subject: big\r\n\r\n" + b"".join(
        b"%s line %07d ......................................................"
        b"\r\n" % (b"." if i % 5 == 0 else b"x", i) for i in range(40000))
    s = smtplib.SMTP("127.0.0.1", r.port)
    s.sendmail("a@x.test", ["big@y.test"], big)
    s.quit()
    msgs = hop.messages()
    R.check("large message over TLS arrives whole",
            len(msgs) == 3 and any(m.endswith(big) for m in msgs),
            str([len(m) for m in msgs]))
    R.check("no QUIT at the hop while the pooled connection is idle",
            "< QUIT" not in hop.log_text())
finally:
    r.stop()
# Stopping, relayd says QUIT on its idle pooled connection, here inside
# TLS (SSL_write), so the hop sees an orderly end.
R.check("stop: the idle pooled TLS connection got QUIT",
        gh.wait(lambda: "< QUIT" in hop.log_text(), 5),
        [l for l in hop.log_text().splitlines() if " < " in l][-5:])

# rcpt_mode "live": the hop session opens at MAIL, under TLS too.
r = front(hop.port, 'rcpt_mode = "live"; tls = "required";')
try:
    n = len(hop.messages())
    code, last = send(r.port)
    R.check("live mode over required TLS: 250", code == 250, last)
    R.check("live mode over TLS: delivered", len(hop.messages()) == n + 1)
finally:
    r.stop()

# Required, with the certificate checked against tls_ca and a name.
r = front(hop.port, 'tls = "required"; tls_verify = true; tls_ca = "%s"; '
          'tls_verify_name = "mx.test";' % CERT)
try:
    n = len(hop.messages())
    code, last = send(r.port)
    R.check("required + verified: 250", code == 250, last)
    R.check("required + verified: delivered", len(hop.messages()) == n + 1)
    R.check("required + verified: logged",
            "certificate verified for mx.test" in r.log_text())
finally:
    r.stop()

# The same against a real MTA: a private Postfix with a certificate.
pf = postfix.Postfix(milter=False)
with open(os.path.join(pf.etc, "main.cf")) as f:
    text = f.read().replace("smtpd_tls_security_level = none\n", "")
with open(os.path.join(pf.etc, "main.cf"), "w") as f:
    f.write(text + "smtpd_tls_security_level = may\n"
            "smtpd_tls_cert_file = %s\nsmtpd_tls_key_file = %s\n"
            "smtpd_tls_received_header = yes\nsmtpd_tls_loglevel = 1\n"
            % (CERT, KEY))
# smtpd's TLS needs the tlsmgr service (entropy, session cache).
with open(os.path.join(pf.etc, "master.cf"), "a") as f:
    f.write("tlsmgr    unix  -       -       n       1000?   1       "
            "tlsmgr\n")
try:
    pf.start()
    r = front(pf.port, 'tls = "required"; tls_verify = true; '
              'tls_ca = "%s"; tls_verify_name = "mx.test";' % CERT)
    try:
        code, last = send(r.port, "b@example.net")
        R.check("Postfix hop, required + verified: 250", code == 250, last)
        msgs = [m for m in pf.wait_messages(1)
                if "Subject: tls forward" in m]
        R.check("Postfix hop: Received says TLS",
                len(msgs) == 1 and "with ESMTPS" in msgs[0] and
                "(using TLSv1.3" in msgs[0], repr(pf.messages())[:600])
        R.check("Postfix hop: its log says TLS",
                "TLS connection established from" in pf.maillog())
    finally:
        r.stop()
finally:
    pf.stop()

# (e) A CA that did not sign the hop's certificate; a name it lacks.
for label, extra, want in [
        ("wrong CA", 'tls_ca = "%s"; tls_verify_name = "mx.test";' % OTHER,
         "self"),
        ("wrong name", 'tls_ca = "%s"; tls_verify_name = "other.test";'
         % CERT, "mismatch")]:
    r = front(hop.port, 'tls = "required"; tls_verify = true; ' + extra)
    try:
        n = len(hop.messages())
        code, last = send(r.port)
        R.check("%s: 451 4.7.5" % label, code == 451 and
                last.startswith("451 4.7.5"), last)
        R.check("%s: reply says why" % label,
                "certificate not accepted" in last and want in last, last)
        R.check("%s: nothing delivered" % label, len(hop.messages()) == n)
        R.check("%s: deferral logged" % label,
                "TLS handshake with next hop" in r.log_text())
    finally:
        r.stop()
hop.stop()

# ---------------------------------------------------------------------
# (b) (c) smtp-sink offers no STARTTLS.

dump = gh.tmpdir("gh-fwdtls-sink-")
os.chmod(dump, 0o777)      # smtp-sink writes as nobody
sink, sport = start_smtp_sink(dump)
try:
    r = front(sport, 'tls = "required";')
    try:
        code, last = send(r.port)
        R.check("required, no STARTTLS: 451 4.7.4", code == 451 and
                last.startswith("451 4.7.4") and
                "does not offer STARTTLS" in last, last)
        R.check("required, no STARTTLS: nothing delivered",
                os.listdir(dump) == [], repr(os.listdir(dump)))
        R.check("required, no STARTTLS: logged",
                "does not offer STARTTLS (tls = required)" in r.log_text())
    finally:
        r.stop()
    r = front(sport)
    try:
        code, last = send(r.port)
        R.check("opportunistic, no STARTTLS: 250 in clear", code == 250,
                last)
        R.check("opportunistic, no STARTTLS: delivered",
                len(os.listdir(dump)) == 1, repr(os.listdir(dump)))
        R.check("opportunistic, no STARTTLS: logged",
                "session in clear (tls = opportunistic)" in r.log_text() and
                "(no TLS): 250" in r.log_text())
    finally:
        r.stop()
    # tls = "off" never asks.
    r = front(sport, 'tls = "off";')
    try:
        code, last = send(r.port)
        R.check("tls off: 250", code == 250, last)
        R.check("tls off: no STARTTLS question logged",
                "STARTTLS" not in r.log_text())
    finally:
        r.stop()
    # Routes: per-route mode.
    hop = tls_hop()
    r = front(hop.port, 'tls = "required"; routes = [ '
              '"sink.test=127.0.0.1:%d tls=opportunistic", '
              '"strict.test=127.0.0.1:%d tls=required" ];' % (sport, sport))
    try:
        n = len(os.listdir(dump))
        code, last = send(r.port, "u@sink.test")
        R.check("route tls=opportunistic: 250 in clear", code == 250, last)
        code, last = send(r.port, "u@strict.test")
        R.check("route tls=required: 451 4.7.4", code == 451 and
                "4.7.4" in last, last)
        R.check("routes: one delivered to smtp-sink",
                len(os.listdir(dump)) == n + 1)
        code, last = send(r.port, "u@y.test")
        R.check("default hop required: 250 over TLS", code == 250 and
                b"with ESMTPS" in hop.messages()[-1], last)
    finally:
        r.stop()
        hop.stop()
finally:
    stop(sink)

# ---------------------------------------------------------------------
# (d) Plaintext injected behind the 220 to STARTTLS.

h = Hop("inject")
r = front(h.port)
try:
    code, last = send(r.port)
    R.check("inject: 250 with the hop's real queue id",
            code == 250 and "queued as H1" in last, last)
    cmds = h.conns[0] if h.conns else []
    tls_cmds = [l.split()[0] for t, l in cmds if t]
    R.check("inject: STARTTLS then a fresh EHLO under TLS",
            [l.split()[0] for t, l in cmds if not t] == ["EHLO", "STARTTLS"]
            and tls_cmds[:1] == ["EHLO"], repr(cmds))
    R.check("inject: transaction in order under TLS",
            tls_cmds == ["EHLO", "MAIL", "RCPT", "DATA"] and
            h.delivered == 1, repr(cmds))
    R.check("inject: capabilities of the new EHLO used (PIPELINING)",
            h.pipelined == [True], repr(h.pipelined))
    R.check("inject: discarded and logged",
            "STARTTLS: discarded 14 octets" in r.log_text())
finally:
    r.stop()
    h.stop()

# STARTTLS refused: opportunistic goes on in clear, required does not.
h = Hop("refuse")
r = front(h.port)
try:
    code, last = send(r.port)
    R.check("refused STARTTLS, opportunistic: 250 in clear",
            code == 250 and h.delivered == 1, last)
finally:
    r.stop()
r = front(h.port, 'tls = "required";')
try:
    code, last = send(r.port)
    R.check("refused STARTTLS, required: 451 4.7.4", code == 451 and
            last.startswith("451 4.7.4") and "refused STARTTLS" in last,
            last)
    R.check("refused STARTTLS, required: no MAIL sent",
            h.delivered == 1 and not any(l.startswith("MAIL") for l in
                                         [l for t, l in h.conns[-1]]))
finally:
    r.stop()
    h.stop()

# A broken handshake: opportunistic tries again in clear, required 4.7.5.
h = Hop("badtls")
r = front(h.port)
try:
    code, last = send(r.port)
    R.check("broken handshake, opportunistic: 250 in clear",
            code == 250 and h.delivered == 1, last)
    R.check("broken handshake: second connection without STARTTLS",
            len(h.conns) == 2 and not any("STARTTLS" in l for t, l in
                                          h.conns[1]), repr(h.conns))
    R.check("broken handshake: fallback logged",
            "trying again in clear" in r.log_text())
finally:
    r.stop()
r = front(h.port, 'tls = "required";')
try:
    code, last = send(r.port)
    R.check("broken handshake, required: 451 4.7.5", code == 451 and
            last.startswith("451 4.7.5"), last)
    R.check("broken handshake, required: nothing delivered",
            h.delivered == 1)
finally:
    r.stop()
    h.stop()

# ---------------------------------------------------------------------
# Start-up errors and the manual.

rc, out = relayd_t('smtp_forward = { tls_verify = true; };\n')
R.check("tls_verify with opportunistic refused",
        rc != 0 and "tls_verify needs tls = \"required\"" in out, out)
missing = os.path.join(D, "missing.pem")
rc, out = relayd_t('smtp_forward = { tls = "required"; tls_verify = true; '
                   'tls_ca = "%s"; };\n' % missing)
R.check("missing tls_ca refused, named",
        rc != 0 and "tls_ca %s: No such file" % missing in out, out)
rc, out = relayd_t('smtp_forward = { routes = [ "a.test=127.0.0.1:25 '
                   'tls=sometimes" ]; };\n')
R.check("bad route tls= refused", rc != 0 and "tls=off|" in out, out)
rc, out = relayd_t('smtp_forward = { tls = "maybe"; };\n')
R.check("bad tls mode refused", rc != 0, out)
p = subprocess.run([gh.RELAYD, "-h", "smtp_forward"], capture_output=True,
                   text=True)
R.check("manual describes the TLS directives",
        all(w in p.stdout for w in ("tls_ca", "tls_verify_name",
                                    "opportunistic", "CVE-2011-0411")),
        p.stdout[-600:])

sys.exit(R.done())
