#!/usr/bin/env python3
"""TLS in relayd: STARTTLS (RFC 3207) and implicit TLS (RFC 8314)
listeners, against openssl s_client, swaks, Python's ssl and raw sockets.

Certificates are made for the test with openssl (EC P-256).  Checks: the
handshake (TLS 1.3, TLS 1.2 with ECDHE and AEAD only, TLS 1.1 and RSA key
exchange refused), STARTTLS advertised only when configured and not yet
in TLS, its error replies, the session reset after it (RFC 3207 4.2),
plaintext pipelined behind STARTTLS discarded (CVE-2011-0411), ESMTPS in
Received, implicit TLS with a listener role, and the start-up errors for
missing, unreadable or mismatched certificates and keys and bad listener
options.
"""
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("tls")
SINK = 'plugins = [ "scripted" ];\nscripted = { sink_dir = "@SINK@"; };\n'
D = gh.tmpdir("gh-tls-")
CERT = os.path.join(D, "cert.pem")
KEY = os.path.join(D, "key.pem")
CERT2 = os.path.join(D, "cert2.pem")
KEY2 = os.path.join(D, "key2.pem")


def make_cert(cert, key, cn="mx.test"):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj",
                    "/CN=" + cn, "-days", "2", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)


def relayd(listen, extra="", body=SINK):
    """A relayd whose listeners are `listen` (a list of option strings
    after the address; the first gets r.port), with the test's
    certificate as relayd.tls_cert unless extra says otherwise."""
    r = gh.Relayd(extra, body)
    ports = [r.port] + [gh.free_port() for _ in listen[1:]]
    specs = ", ".join('"127.0.0.1:%d%s"' % (p, (" " + o) if o else "")
                      for p, o in zip(ports, listen))
    with open(r.conf) as f:
        text = f.read()
    text = text.replace('listen = [ "127.0.0.1:%d" ];' % r.port,
                        "listen = [ %s ];" % specs)
    with open(r.conf, "w") as f:
        f.write(text)
    r.ports = ports
    return r


TLS_CONF = 'tls_cert = "%s"; tls_key = "%s";' % (CERT, KEY)


def client_ctx(**kw):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    for k, v in kw.items():
        setattr(ctx, k, v)
    return ctx


def ehlo_lines(c, name="client.test"):
    code, lines = c.cmd("EHLO " + name)
    return code, [l[4:] for l in lines]


def tls_wrap(c, ctx=None):
    """Wrap the raw client's socket after a 220 to STARTTLS."""
    assert c.buf == b"", c.buf
    c.sock = (ctx or client_ctx()).wrap_socket(c.sock)
    return c.sock


def gone(c):
    """The server closed (a reset counts: it had unread input)."""
    c.sock.settimeout(5.0)
    try:
        while True:
            chunk = c.sock.recv(65536)
            if not chunk:
                return True
            c.buf += chunk
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def s_client(port, args, stdin=b"QUIT\r\n"):
    p = subprocess.run(["openssl", "s_client", "-connect",
                        "127.0.0.1:%d" % port, "-servername", "mx.test"] +
                       args, input=stdin, capture_output=True, timeout=20)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace")


# ---------------------------------------------------------------------

def test_config_errors():
    def check(label, extra, listen=("",), want=None):
        r = relayd(list(listen), extra)
        p = subprocess.run([gh.RELAYD, "-t", "-c", r.conf],
                           capture_output=True, text=True)
        R.check("-t %s: exit 2" % label, p.returncode == 2,
                "rc=%d %s" % (p.returncode, p.stderr))
        R.check("-t %s: says why" % label, want in p.stderr, p.stderr)
        # Start-up fails the same way, without a crash.
        p = subprocess.run([gh.RELAYD, "-c", r.conf], capture_output=True,
                           text=True, timeout=20)
        R.check("start %s: exit 2, no crash" % label, p.returncode == 2,
                "rc=%d %s" % (p.returncode, p.stderr))

    missing = os.path.join(D, "missing.pem")
    check("missing certificate", 'tls_cert = "%s"; tls_key = "%s";'
          % (missing, KEY), want="TLS certificate %s: No such file" % missing)
    check("missing key", 'tls_cert = "%s"; tls_key = "%s";' % (CERT, missing),
          want="TLS key %s: No such file" % missing)
    garbage = os.path.join(D, "garbage.pem")
    with open(garbage, "w") as f:
        f.write("not a PEM file\n")
    check("garbage certificate", 'tls_cert = "%s"; tls_key = "%s";'
          % (garbage, KEY), want="TLS certificate %s:" % garbage)
    check("garbage key", 'tls_cert = "%s"; tls_key = "%s";'
          % (CERT, garbage), want="TLS key %s:" % garbage)
    check("key is a directory", 'tls_cert = "%s"; tls_key = "%s";'
          % (CERT, D), want="TLS key %s" % D)
    check("key of another certificate", 'tls_cert = "%s"; tls_key = "%s";'
          % (CERT, KEY2), want="TLS key %s: " % KEY2)
    check("starttls without certificate", "", ["tls=starttls"],
          want="TLS needs a certificate")
    check("cert without key", 'tls_cert = "%s";' % CERT, [""],
          want="TLS needs a key")
    check("bad tls value", TLS_CONF, ["tls=yes"],
          want="tls is none, starttls or implicit")
    check("bad role", TLS_CONF, ["role=relay"], want="role is mx or "
          "submission")
    check("unknown option", TLS_CONF, ["bogus=1"], want="unknown option")
    check("option without value", TLS_CONF, ["starttls"],
          want="expected key=value")

    r = relayd(["", "tls=implicit role=submission", "tls=none",
                "cert=%s key=%s" % (CERT2, KEY2)], TLS_CONF)
    p = subprocess.run([gh.RELAYD, "-t", "-c", r.conf], capture_output=True,
                       text=True)
    R.check("-t: four listeners with options valid", p.returncode == 0,
            p.stderr)
    r = relayd([""], "")
    text = open(r.conf).read().replace(
        '"127.0.0.1:%d"' % r.port, '"127.0.0.1:%d", "127.0.0.1:%d tls=none"'
        % (r.port, r.port))
    open(r.conf, "w").write(text)
    p = subprocess.run([gh.RELAYD, "-t", "-c", r.conf], capture_output=True,
                       text=True)
    R.check("-t: an address twice refused",
            p.returncode == 2 and "address listed twice" in p.stderr,
            p.stderr)


def test_no_tls():
    with relayd([""], "", SINK) as r:
        c = gh.Client(r.port)
        c.reply()
        code, ext = ehlo_lines(c)
        R.check("no TLS: EHLO 250", code == 250)
        R.check("no TLS: STARTTLS not advertised", "STARTTLS" not in ext,
                ext)
        code, lines = c.cmd("STARTTLS")
        R.check("no TLS: STARTTLS 502 5.5.1",
                code == 502 and "5.5.1" in lines[0], lines)
        code, _ = c.cmd("NOOP")
        R.check("no TLS: session goes on", code == 250)
        c.close()


def test_starttls(r):
    c = gh.Client(r.port)
    c.reply()
    code, ext = ehlo_lines(c)
    R.check("EHLO advertises STARTTLS", "STARTTLS" in ext, ext)
    code, lines = c.cmd("STARTTLS now")
    R.check("STARTTLS with an argument: 501 5.5.4",
            code == 501 and "5.5.4" in lines[0], lines)
    code, _ = c.cmd("MAIL FROM:<a@example.test>")
    code, lines = c.cmd("STARTTLS")
    R.check("STARTTLS in a transaction: 503 5.5.1",
            code == 503 and "5.5.1" in lines[0], lines)
    c.cmd("RSET")
    code, lines = c.cmd("STARTTLS")
    R.check("STARTTLS: 220 2.0.0", code == 220 and "2.0.0" in lines[0],
            lines)
    s = tls_wrap(c)
    R.check("STARTTLS: TLS 1.3 negotiated", s.version() == "TLSv1.3",
            s.version())
    # RFC 3207 4.2: the EHLO before TLS is forgotten.
    code, lines = c.cmd("MAIL FROM:<a@example.test>")
    R.check("after STARTTLS: MAIL without EHLO is 503",
            code == 503 and "HELO/EHLO first" in lines[0], lines)
    code, ext = ehlo_lines(c)
    R.check("after STARTTLS: EHLO 250", code == 250)
    R.check("after STARTTLS: STARTTLS not advertised again",
            "STARTTLS" not in ext, ext)
    code, lines = c.cmd("STARTTLS")
    R.check("STARTTLS under TLS: 503 5.5.1",
            code == 503 and "5.5.1" in lines[0], lines)
    code, _ = c.cmd("QUIT")
    R.check("under TLS: QUIT 221", code == 221)
    c.close()
    log = r.log_text()
    R.check("log: TLS established with version and cipher",
            "TLS established: TLSv1.3 TLS_" in log, log[-500:])


def test_injection(r):
    """CVE-2011-0411: commands in the same packet as STARTTLS get no
    reply, before or after the handshake."""
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    injected = "RSET\r\nMAIL FROM:<evil@example.test>\r\n"
    c.send("STARTTLS\r\n" + injected)
    code, lines = c.reply()
    R.check("injection: one 220 for STARTTLS", code == 220, lines)
    # Nothing else came before the handshake: the buffer is empty.
    c.sock.settimeout(0.5)
    try:
        extra = c.sock.recv(4096)
    except socket.timeout:
        extra = b""
    R.check("injection: nothing after the 220 in plain text",
            extra == b"" and c.buf == b"", repr(extra + c.buf))
    c.sock.settimeout(10)
    s = tls_wrap(c)
    s.settimeout(1.0)
    try:
        got = s.recv(4096)
    except socket.timeout:
        got = b""
    R.check("injection: no reply for RSET or MAIL under TLS", got == b"",
            repr(got))
    s.settimeout(10)
    code, ext = ehlo_lines(c)
    R.check("injection: EHLO answered first under TLS",
            code == 250 and ext[0] == "mx.test", ext)
    code, lines = c.cmd("RCPT TO:<a@example.test>")
    R.check("injection: the injected MAIL did not start a transaction",
            code == 503 and "need MAIL" in lines[0], lines)
    c.cmd("QUIT")
    c.close()
    R.check("injection: the discarded octets are logged",
            "discarded %d octets sent after the command" % len(injected)
            in r.log_text())

    # Plain text after STARTTLS in a later packet breaks the handshake
    # and is never taken as a command.
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    code, _ = c.cmd("STARTTLS")
    c.send("RSET\r\n")
    R.check("plain text for the handshake: closed without a reply",
            gone(c) and c.buf == b"", repr(c.buf))
    c.close()


def test_s_client(r):
    if shutil.which("openssl") is None:
        R.check("openssl installed", False)
        return
    # -nocommands: "QUIT" would otherwise be s_client's own Q command.
    rc, out = s_client(r.port, ["-starttls", "smtp", "-ign_eof",
                                "-nocommands"])
    R.check("s_client -starttls smtp: TLS 1.3",
            "Protocol  : TLSv1.3" in out or "New, TLSv1.3" in out, out[-800:])
    R.check("s_client: QUIT answered under TLS", "221 2.0.0" in out,
            out[-400:])
    rc, out = s_client(r.port, ["-starttls", "smtp", "-tls1_2"])
    R.check("s_client -tls1_2: ECDHE with AES-GCM or ChaCha20",
            "Protocol  : TLSv1.2" in out and
            ("Cipher    : ECDHE-ECDSA-AES" in out and "GCM" in out or
             "Cipher    : ECDHE-ECDSA-CHACHA20" in out), out[-800:])
    rc, out = s_client(r.port, ["-starttls", "smtp", "-tls1_1", "-cipher",
                                "DEFAULT@SECLEVEL=0"])
    R.check("s_client -tls1_1: refused",
            rc != 0 and "Cipher is (NONE)" in out, out[-400:])
    R.check("log: TLS 1.1 refused as unsupported",
            "unsupported protocol" in r.log_text())
    rc, out = s_client(r.port, ["-starttls", "smtp", "-tls1_2", "-cipher",
                                "AES128-SHA:AES256-GCM-SHA384"])
    R.check("s_client: RSA key exchange refused", rc != 0 and
            "Cipher is (NONE)" in out, out[-400:])
    rc, out = s_client(r.port, ["-starttls", "smtp", "-tls1_2", "-cipher",
                                "ECDHE-ECDSA-AES128-SHA"])
    R.check("s_client: CBC suite refused", rc != 0, out[-400:])
    log = r.log_text()
    R.check("log: failed handshake named", "TLS handshake failed:" in log)


def test_python_tls_versions(r):
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("STARTTLS")
    try:
        tls_wrap(c, client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2))
        R.check("Python: TLS 1.2 accepted", c.sock.version() == "TLSv1.2",
                c.sock.version())
        R.check("Python: TLS 1.2 cipher is AEAD",
                "GCM" in c.sock.cipher()[0] or
                "CHACHA20" in c.sock.cipher()[0], c.sock.cipher())
    except ssl.SSLError as e:
        R.check("Python: TLS 1.2 accepted", False, repr(e))
    c.close()


def test_swaks(r, nmsgs):
    if shutil.which("swaks") is None:
        R.check("swaks installed", False)
        return
    p = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % r.port,
                        "--to", "a@example.test", "--from", "b@example.test",
                        "--helo", "swaks.test", "--tls", "--timeout", "10"],
                       capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    R.check("swaks --tls: exit 0", p.returncode == 0, out)
    R.check("swaks --tls: TLS started", "TLS started" in out, out)
    for _ in range(50):
        if len(r.messages()) >= nmsgs:
            break
        time.sleep(0.05)
    msgs = r.messages()
    R.check("swaks --tls: message queued", len(msgs) == nmsgs, len(msgs))
    m = msgs[-1] if msgs else b""
    R.check("swaks --tls: Received says ESMTPS", b"with ESMTPS id" in m,
            repr(m[:300]))


def test_implicit(r):
    port = r.ports[1]
    raw = socket.create_connection(("127.0.0.1", port), 10)
    c = gh.Client.__new__(gh.Client)
    c.buf = b""
    c.sock = client_ctx().wrap_socket(raw)
    code, lines = c.reply()
    R.check("implicit TLS: greeting under TLS", code == 220 and
            c.sock.version() == "TLSv1.3", (lines, c.sock.version()))
    code, ext = ehlo_lines(c)
    R.check("implicit TLS: no STARTTLS offered", code == 250 and
            "STARTTLS" not in ext, ext)
    code, lines = c.cmd("STARTTLS")
    R.check("implicit TLS: STARTTLS 503 5.5.1",
            code == 503 and "5.5.1" in lines[0], lines)
    c.cmd("MAIL FROM:<b@example.test>")
    c.cmd("RCPT TO:<a@example.test>")
    c.cmd("DATA")
    code, lines = c.cmd("Subject: implicit\r\n\r\nhello\r\n.")
    R.check("implicit TLS: message accepted", code == 250, lines)
    c.cmd("QUIT")
    c.close()
    for _ in range(50):
        if any(b"Subject: implicit" in m for m in r.messages()):
            break
        time.sleep(0.05)
    m = [m for m in r.messages() if b"Subject: implicit" in m]
    R.check("implicit TLS: Received says ESMTPS",
            m and b"with ESMTPS id" in m[0], m)

    # A plain-text client on the implicit port gets nothing.
    c = gh.Client(port)
    c.send("EHLO client.test\r\n")
    R.check("implicit TLS: plain text closed without a reply",
            gone(c) and b"220" not in c.buf and b"250" not in c.buf,
            repr(c.buf))
    c.close()

    # role=submission: no MAIL before AUTH, TLS or not.
    raw = socket.create_connection(("127.0.0.1", r.ports[3]), 10)
    c = gh.Client.__new__(gh.Client)
    c.buf = b""
    c.sock = client_ctx().wrap_socket(raw)
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("MAIL FROM:<b@example.test>")
    R.check("implicit TLS submission: MAIL before AUTH 530 5.7.0",
            code == 530 and "5.7.0" in lines[0], lines)
    c.close()

    # The plain listener beside it offers no TLS at all.
    c = gh.Client(r.ports[2])
    c.reply()
    code, ext = ehlo_lines(c)
    R.check("tls=none listener: no STARTTLS", "STARTTLS" not in ext, ext)
    c.close()


def test_reload(r):
    """SIGHUP re-reads the certificates: a new key and certificate
    serve the next connections."""
    shutil.copy(CERT2, CERT + ".new")
    os.rename(CERT + ".new", CERT)
    shutil.copy(KEY2, KEY + ".new")
    os.rename(KEY + ".new", KEY)
    r.proc.send_signal(signal.SIGHUP)
    for _ in range(100):
        if "generation 1" in r.log_text():
            break
        time.sleep(0.05)
    time.sleep(0.3)
    rc, out = s_client(r.port, ["-starttls", "smtp"])
    R.check("reload: the new certificate is served",
            "CN = other.test" in out or "CN=other.test" in out, out[:800])


def main():
    make_cert(CERT, KEY)
    make_cert(CERT2, KEY2, "other.test")
    test_config_errors()
    test_no_tls()
    with relayd(["", "tls=implicit", "tls=none",
                 "tls=implicit role=submission"], TLS_CONF) as r:
        test_starttls(r)
        test_injection(r)
        test_s_client(r)
        test_python_tls_versions(r)
        test_swaks(r, 1)
        test_implicit(r)
        test_reload(r)
    return R.done()


if __name__ == "__main__":
    sys.exit(main())
