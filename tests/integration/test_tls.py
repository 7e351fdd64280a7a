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
options.  relayd.tls_sni: the certificate served for each name the client
asks for (exact, wildcard of one label, case, none, no match) on STARTTLS
and implicit TLS, TLS 1.2 and 1.3, after a reload, and its start-up
errors.  Client certificates (client_cert=optional|require, relayd.tls_ca,
a CA made here): notes plugins read (through the scripted plugin's XNOTE),
the "tls" result in the trace header, the Received comment, refused
handshakes logged.
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
# SNI certificates, and a CA with a client certificate it signed.
SNI_A = (os.path.join(D, "a.pem"), os.path.join(D, "a.key"))
SNI_W = (os.path.join(D, "wild.pem"), os.path.join(D, "wild.key"))
CA = (os.path.join(D, "ca.pem"), os.path.join(D, "ca.key"))
CLIENT = (os.path.join(D, "client.pem"), os.path.join(D, "client.key"))
ROGUE = (os.path.join(D, "rogue.pem"), os.path.join(D, "rogue.key"))


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


def make_signed(cert, key, subj, ca):
    """A certificate for subj signed by the CA (cert, key)."""
    csr = cert + ".csr"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj", subj,
                    "-keyout", key, "-out", csr], check=True,
                   capture_output=True)
    subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0],
                    "-CAkey", ca[1], "-CAcreateserial", "-days", "2", "-out",
                    cert], check=True, capture_output=True)


TLS_CONF = 'tls_cert = "%s"; tls_key = "%s";' % (CERT, KEY)


def sni_conf(*entries):
    return "tls_sni = [ %s ];" % ", ".join('"%s"' % e for e in entries)


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

    # relayd.tls_sni: each entry's files and syntax, named.
    sni_a = "a.example.test %s %s" % SNI_A
    check("SNI certificate missing", TLS_CONF + sni_conf(
        "a.example.test %s %s" % (missing, SNI_A[1])),
        want='relayd.tls_sni "a.example.test %s %s": TLS certificate %s: '
        'No such file' % (missing, SNI_A[1], missing))
    check("SNI key missing", TLS_CONF + sni_conf(
        "a.example.test %s %s" % (SNI_A[0], missing)),
        want='relayd.tls_sni "a.example.test %s %s": TLS key %s: No such '
        'file' % (SNI_A[0], missing, missing))
    check("SNI key of another certificate", TLS_CONF + sni_conf(
        "a.example.test %s %s" % (SNI_A[0], KEY2)),
        want='relayd.tls_sni "a.example.test %s %s": TLS key %s' %
        (SNI_A[0], KEY2, KEY2))
    check("SNI garbage certificate", TLS_CONF + sni_conf(
        "a.example.test %s %s" % (garbage, SNI_A[1])),
        want="relayd.tls_sni \"a.example.test %s" % garbage)
    check("SNI entry of two words", TLS_CONF + sni_conf(
        "a.example.test %s" % SNI_A[0]),
        want='expected "NAME CERTFILE KEYFILE"')
    check("SNI entry of four words", TLS_CONF + sni_conf(sni_a + " x"),
          want='expected "NAME CERTFILE KEYFILE"')
    for bad in ("*.test", "a*.example.test", "*", "under_score.test",
                "-a.example.test", "a..example.test", "*.*.example.test"):
        check("SNI name %s" % bad, TLS_CONF + sni_conf(
            "%s %s %s" % ((bad,) + SNI_A)),
            want="NAME is a host name or *.domain")
    check("SNI name twice", TLS_CONF + sni_conf(
        sni_a, "A.example.test %s %s" % SNI_W), want="NAME listed twice")
    check("SNI syntax checked without TLS", sni_conf("bad_name x y"),
          ["tls=none"], want="NAME is a host name or *.domain")
    # Client certificates.
    check("client_cert without tls_ca", TLS_CONF, ["client_cert=require"],
          want="client_cert needs relayd.tls_ca")
    check("client_cert without TLS", 'tls_ca = "%s";' % CA[0],
          ["tls=none client_cert=optional"], want="client_cert needs TLS")
    check("bad client_cert", TLS_CONF, ["client_cert=yes"],
          want="client_cert is none, optional or require")
    check("tls_ca missing", TLS_CONF + 'tls_ca = "%s";' % missing,
          ["client_cert=optional"],
          want="relayd.tls_ca: TLS CA file %s: No such file" % missing)
    check("tls_ca garbage", TLS_CONF + 'tls_ca = "%s";' % garbage,
          ["client_cert=require"],
          want="relayd.tls_ca %s: no usable CA certificate" % garbage)

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


def served_cn(port, name, args=("-starttls", "smtp")):
    """The CN of the certificate served for SNI name (None: no SNI)."""
    sni = ["-servername", name] if name else ["-noservername"]
    p = subprocess.run(["openssl", "s_client", "-connect",
                        "127.0.0.1:%d" % port] + sni + list(args),
                       input=b"QUIT\r\n", capture_output=True, timeout=20)
    out = p.stdout.decode(errors="replace")
    for line in out.splitlines():
        if line.startswith("subject="):
            return line.split("CN", 1)[-1].lstrip(" =")
    return None


def test_sni():
    entries = ["*.example.test %s %s" % SNI_W,
               "a.example.test %s %s" % SNI_A]
    with relayd(["", "tls=implicit"], TLS_CONF + sni_conf(*entries)) as r:
        for name, want in (("a.example.test", "a.example.test"),
                           ("A.Example.TEST", "a.example.test"),
                           ("b.example.test", "wild.example.test"),
                           ("x.b.example.test", "mx.test"),
                           ("example.test", "mx.test"),
                           ("other.test", "mx.test"),
                           (None, "mx.test")):
            got = served_cn(r.port, name)
            R.check("SNI %s: %s served" % (name, want), got == want, got)
        got = served_cn(r.port, "b.example.test",
                        ("-starttls", "smtp", "-tls1_2"))
        R.check("SNI under TLS 1.2: wildcard served",
                got == "wild.example.test", got)
        got = served_cn(r.ports[1], "a.example.test", ())
        R.check("SNI on implicit TLS: exact name served",
                got == "a.example.test", got)
        # A session under an SNI certificate carries mail as usual.
        c = gh.Client(r.port)
        c.reply()
        c.cmd("EHLO client.test")
        c.cmd("STARTTLS")
        c.sock = client_ctx().wrap_socket(c.sock,
                                          server_hostname="a.example.test")
        R.check("SNI: Python sees the exact name's certificate",
                c.sock.getpeercert(binary_form=True) ==
                ssl.PEM_cert_to_DER_cert(open(SNI_A[0]).read()))
        code, _ = c.cmd("EHLO client.test")
        code, lines = c.cmd("QUIT")
        R.check("SNI: session goes on under TLS", code == 221, lines)
        c.close()
        # Reload: a new entry serves the next connections.
        text = open(r.conf).read().replace(
            '"a.example.test ', '"c.example.test %s %s", "a.example.test '
            % SNI_A)
        open(r.conf, "w").write(text)
        r.proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            if "generation 1" in r.log_text():
                break
            time.sleep(0.05)
        time.sleep(0.3)
        got = served_cn(r.port, "c.example.test")
        R.check("SNI after reload: the new entry is served",
                got == "a.example.test", got)
        # A reload with a broken entry is refused; the old one serves.
        text = open(r.conf).read().replace('"c.example.test %s' % SNI_A[0],
                                           '"c.example.test %s.gone'
                                           % SNI_A[0])
        open(r.conf, "w").write(text)
        r.proc.send_signal(signal.SIGHUP)
        for _ in range(100):
            if "relayd.tls_sni" in r.log_text():
                break
            time.sleep(0.05)
        R.check("SNI: a reload with a missing file is refused, named",
                'relayd.tls_sni "c.example.test %s.gone' % SNI_A[0]
                in r.log_text(), r.log_text()[-500:])
        got = served_cn(r.port, "c.example.test")
        R.check("SNI: the running configuration still serves",
                got == "a.example.test", got)


def client_session(port, cert=None, implicit=False):
    """EHLO under TLS with an optional client certificate; returns the
    Client, or None when the server ended the handshake."""
    ctx = client_ctx()
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    c = gh.Client(port)
    try:
        if implicit:
            c.sock = ctx.wrap_socket(c.sock)
            c.reply()
        else:
            c.reply()
            c.cmd("EHLO client.test")
            c.cmd("STARTTLS")
            c.sock = ctx.wrap_socket(c.sock)
        # TLS 1.3: a refused client certificate shows at the first read.
        code, _ = c.cmd("EHLO client.test")
        if code != 250:
            c.close()
            return None
    except (ssl.SSLError, OSError):
        c.close()
        return None
    return c


def note(c, key):
    code, lines = c.cmd("XNOTE " + key)
    return lines[0].split("=", 1)[1] if code == 250 else None


def send_mail(c, subject):
    c.cmd("MAIL FROM:<b@example.test>")
    c.cmd("RCPT TO:<a@example.test>")
    c.cmd("DATA")
    code, lines = c.cmd("Subject: %s\r\n\r\nhello\r\n." % subject)
    c.cmd("QUIT")
    c.close()
    return code


def wait_message(r, subject):
    for _ in range(100):
        m = [m for m in r.messages() if subject.encode() in m]
        if m:
            return m[0]
        time.sleep(0.05)
    return b""


def test_client_cert():
    conf = TLS_CONF + 'tls_ca = "%s"; trace_header = "X-Trace";' % CA[0]
    conf += sni_conf("a.example.test %s %s" % SNI_A)
    with relayd(["client_cert=optional", "client_cert=require",
                 "tls=implicit client_cert=require", ""], conf) as r:
        fp = subprocess.run(["openssl", "x509", "-in", CLIENT[0], "-noout",
                             "-fingerprint", "-sha256"], capture_output=True,
                            text=True).stdout.split("=", 1)[1].strip()
        fp = fp.replace(":", "").lower()

        # optional, a certificate from the CA: verified.
        c = client_session(r.port, CLIENT)
        R.check("optional + CA's certificate: session", c is not None)
        if c is not None:
            R.check("note tls.client_subject",
                    note(c, "tls.client_subject") ==
                    "CN=client.test,O=Example")
            R.check("note tls.client_issuer",
                    note(c, "tls.client_issuer") == "CN=gatehouse test CA")
            R.check("note tls.client_fingerprint (SHA-256)",
                    note(c, "tls.client_fingerprint") == fp)
            R.check("note tls.client_verified yes",
                    note(c, "tls.client_verified") == "yes")
            R.check("optional + CA's: message accepted",
                    send_mail(c, "ccert-ok") == 250)
            m = wait_message(r, "ccert-ok")
            R.check("Received: TLS comment", b"(using TLSv1.3 with cipher "
                    b"TLS_" in m, m[:600])
            R.check("Received: client certificate verified",
                    b'(client certificate "CN=client.test,O=Example" '
                    b'verified)' in m, m[:600])
            R.check("trace: tls result pass",
                    b"tls=pass(client certificate CN=client.test,O=Example"
                    b": ok)" in m, m[:800])

        # optional, a self-signed one: TLS goes on, not verified.
        c = client_session(r.port, ROGUE)
        R.check("optional + unknown certificate: session", c is not None)
        if c is not None:
            R.check("note tls.client_verified no",
                    note(c, "tls.client_verified") == "no")
            R.check("note tls.client_subject of the unknown certificate",
                    note(c, "tls.client_subject") == "CN=rogue.test")
            send_mail(c, "ccert-rogue")
            m = wait_message(r, "ccert-rogue")
            R.check("Received: client certificate not verified",
                    b'(client certificate "CN=rogue.test" not verified)' in
                    m, m[:600])
            R.check("trace: tls result fail with the reason",
                    b"tls=fail(client certificate CN=rogue.test: self-signed"
                    in m, m[:800])

        # optional, none: no notes, Received without the comment.
        c = client_session(r.port)
        R.check("optional + no certificate: session", c is not None)
        if c is not None:
            R.check("no certificate: no tls.client_subject",
                    note(c, "tls.client_subject") == "(unset)")
            R.check("no certificate: tls.version still noted",
                    note(c, "tls.version") == "TLSv1.3")
            send_mail(c, "ccert-none")
            m = wait_message(r, "ccert-none")
            R.check("Received: TLS comment, no certificate comment",
                    b"(using TLSv1.3" in m and b"client certificate" not in
                    m, m[:600])

        # require.
        c = client_session(r.ports[1], CLIENT)
        R.check("require + CA's certificate: session", c is not None and
                note(c, "tls.client_verified") == "yes")
        if c is not None:
            c.close()
        R.check("require + no certificate: refused",
                client_session(r.ports[1]) is None)
        R.check("require + unknown certificate: refused",
                client_session(r.ports[1], ROGUE) is None)
        c = client_session(r.ports[2], CLIENT, implicit=True)
        R.check("implicit require + CA's certificate: session",
                c is not None and
                note(c, "tls.client_verified") == "yes")
        if c is not None:
            c.close()
        R.check("implicit require + unknown certificate: refused",
                client_session(r.ports[2], ROGUE, implicit=True) is None)
        # TLS 1.2 asks in the handshake as well.
        ctx12 = client_ctx(maximum_version=ssl.TLSVersion.TLSv1_2)
        ctx12.load_cert_chain(*ROGUE)
        c = gh.Client(r.ports[1])
        c.reply()
        c.cmd("EHLO client.test")
        c.cmd("STARTTLS")
        try:
            c.sock = ctx12.wrap_socket(c.sock)
            refused = c.cmd("EHLO client.test")[0] != 250
        except (ssl.SSLError, OSError):
            refused = True
        c.close()
        R.check("require under TLS 1.2 + unknown certificate: refused",
                refused)
        # SNI contexts ask and verify the same way.
        got = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % r.ports[1],
             "-starttls", "smtp", "-servername", "a.example.test",
             "-cert", CLIENT[0], "-key", CLIENT[1], "-ign_eof",
             "-nocommands"], input=b"EHLO x\r\nQUIT\r\n",
            capture_output=True, timeout=20).stdout.decode(errors="replace")
        R.check("require + SNI name + CA's certificate: s_client served",
                "CN = a.example.test" in got and "221 2.0.0" in got,
                got[-600:])
        got = subprocess.run(
            ["openssl", "s_client", "-connect", "127.0.0.1:%d" % r.ports[1],
             "-starttls", "smtp", "-servername", "a.example.test",
             "-ign_eof", "-nocommands"], input=b"EHLO x\r\nQUIT\r\n",
            capture_output=True, timeout=20).stdout.decode(errors="replace")
        R.check("require + SNI name + no certificate: refused",
                "221 2.0.0" not in got, got[-600:])
        # The listener without client_cert asks for nothing.
        c = client_session(r.ports[3], CLIENT)
        R.check("no client_cert: certificate not asked for", c is not None
                and note(c, "tls.client_subject") == "(unset)")
        if c is not None:
            c.close()
        log = r.log_text()
        R.check("log: verified client certificate with fingerprint",
                'TLS client certificate "CN=client.test,O=Example" issuer '
                '"CN=gatehouse test CA" sha256 %s: verified' % fp in log,
                log[-800:])
        R.check("log: refused handshakes say why",
                "peer did not return a certificate" in log and
                "certificate verify failed: client certificate: "
                "self-signed certificate" in log, log[-800:])


def test_implicit_over_limit():
    """Over max_connections_per_ip on an implicit TLS port: closed at
    once, unread (a 421 there would wait for a handshake)."""
    with relayd(["", "tls=implicit"], TLS_CONF +
                "max_connections_per_ip = 1;") as r:
        # The start-up probe's connection must be gone first.
        gh.wait(lambda: r.log_text().count(" closed: ") >= 1, 3)
        time.sleep(0.3)
        held = socket.create_connection(("127.0.0.1", r.ports[1]))
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", r.ports[1]))
        extra.settimeout(5)
        t = time.time()
        try:
            got = extra.recv(100)
        except OSError:
            got = b"?"
        R.check("implicit TLS over the limit: closed at once, no reply",
                got == b"" and time.time() - t < 3,
                "%r after %.1f s" % (got, time.time() - t))
        R.check("implicit TLS over the limit: logged",
                "closed without a reply" in r.log_text(),
                r.log_text()[-800:])
        extra.close()
        held.close()


def main():
    make_cert(CERT, KEY)
    make_cert(CERT2, KEY2, "other.test")
    make_cert(SNI_A[0], SNI_A[1], "a.example.test")
    make_cert(SNI_W[0], SNI_W[1], "wild.example.test")
    make_cert(CA[0], CA[1], "gatehouse test CA")
    make_signed(CLIENT[0], CLIENT[1], "/O=Example/CN=client.test", CA)
    make_cert(ROGUE[0], ROGUE[1], "rogue.test")
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
    make_cert(CERT, KEY)	# test_reload left other.test there
    test_sni()
    test_client_cert()
    test_implicit_over_limit()
    return R.done()


if __name__ == "__main__":
    sys.exit(main())
