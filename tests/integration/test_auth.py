#!/usr/bin/env python3
"""SMTP AUTH (RFC 4954) in relayd with the auth_file plugin: PLAIN and
LOGIN, offered only under TLS unless a listener allows plain text, users
from a file of crypt(3) hashes (SHA-512 and yescrypt), the submission
role (530 before AUTH), failures limited per client address (delay, then
421), error replies of the exchange (a refused LOGIN ends it), MAIL's
AUTH= parameter, and passwords kept out of the log.  Clients: raw
sockets, Python's smtplib and swaks.
"""
import os
import shutil
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import authkit  # noqa: E402
import gh  # noqa: E402
from authkit import (b64, crypt, ctx, plain,  # noqa: E402
                     tls_client, write_users)

R = gh.Results("auth")
D = gh.tmpdir("gh-auth-")
CERT = os.path.join(D, "cert.pem")
KEY = os.path.join(D, "key.pem")
USERS = os.path.join(D, "users")
PW_ALICE = "alice-Secret-1"
PW_BOB = "bob:pass word 2"


TLS = ('tls_cert = "%s"; tls_key = "%s"; auth_max_failures = 3; '
       'auth_failure_delay = 1;' % (CERT, KEY))


# ---------------------------------------------------------------------

def relayd(listen, extra, users=USERS, log_level="protocol"):
    return authkit.relayd(listen, extra, users, log_level)


def test_users_file_errors():
    def check(label, lines, want):
        path = os.path.join(D, label.replace(" ", "_"))
        if lines is not None:
            write_users(path, lines)
        r = relayd([""], TLS, users=path)
        p = subprocess.run([gh.RELAYD, "-t", "-c", r.conf],
                           capture_output=True, text=True)
        R.check("users file %s: -t exit 2" % label, p.returncode == 2,
                "rc=%d %s" % (p.returncode, p.stderr))
        R.check("users file %s: says where and why" % label,
                want % path in p.stderr, p.stderr)

    good = "alice:" + crypt(PW_ALICE, "$6$")
    check("plain text", ["# users", good, "carol:secret"],
          "%s:3: not a strong crypt(3) hash")
    check("md5 crypt", [good, "dave:$1$abcdefgh$ABCDEFGHIJKLMNOPQRSTUV"],
          "%s:2: not a strong crypt(3) hash")
    check("des crypt", ["erin:abJnggxhB/yWI"],
          "%s:1: not a strong crypt(3) hash")
    check("no colon", [good, "", "frank"], "%s:3: expected user:hash")
    check("duplicate user", [good, good], '%s:2: user "alice" also on '
          'line 1')
    check("missing", None, "auth_file: %s: No such file or directory")


def test_offer(r):
    c = gh.Client(r.port)
    c.reply()
    code, lines = c.cmd("EHLO client.test")
    R.check("before TLS: AUTH not offered",
            not any("AUTH" in l for l in lines), lines)
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", PW_ALICE))
    R.check("before TLS: AUTH is 538 5.7.11",
            code == 538 and "5.7.11" in lines[0], lines)
    c.close()
    c, ext = tls_client(r.port)
    R.check("under TLS: AUTH PLAIN LOGIN offered", "AUTH PLAIN LOGIN" in ext,
            ext)
    code, lines = c.cmd("AUTH CRAM-MD5")
    R.check("CRAM-MD5: 504 5.5.4", code == 504 and "5.5.4" in lines[0],
            lines)
    code, lines = c.cmd("AUTH")
    R.check("AUTH without mechanism: 501 5.5.4",
            code == 501 and "5.5.4" in lines[0], lines)
    c.close()

    # A listener without TLS or auth_plaintext never offers it.
    c = gh.Client(r.ports[3])
    c.reply()
    code, lines = c.cmd("EHLO client.test")
    R.check("tls=none listener: AUTH not offered",
            not any("AUTH" in l for l in lines), lines)
    c.close()


def test_plain_and_login(r):
    c, _ = tls_client(r.port)
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", PW_ALICE))
    R.check("PLAIN with initial response: 235 2.7.0",
            code == 235 and "2.7.0" in lines[0], lines)
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", PW_ALICE))
    R.check("AUTH after AUTH: 503 5.5.1",
            code == 503 and "5.5.1" in lines[0], lines)
    # RFC 4954 5: the AUTH parameter of MAIL belongs to the extension;
    # Exim and sendmail send it after authenticating.
    code, lines = c.cmd("MAIL FROM:<alice@example.test> AUTH=<>")
    R.check("MAIL with AUTH=<>: 250", code == 250, lines)
    c.cmd("RSET")
    code, lines = c.cmd("MAIL FROM:<alice@example.test> "
                        "AUTH=alice+40example.test")
    R.check("MAIL with AUTH=xtext mailbox: 250", code == 250, lines)
    c.cmd("RSET")
    code, lines = c.cmd("MAIL FROM:<alice@example.test> AUTH=a=b")
    R.check("MAIL with AUTH= not xtext: 501 5.5.4",
            code == 501 and "5.5.4" in lines[0], lines)
    c.cmd("QUIT")
    c.close()

    c, _ = tls_client(r.port)
    code, lines = c.cmd("AUTH PLAIN")
    R.check("PLAIN without initial response: 334 and empty challenge",
            code == 334 and lines[0] == "334 ", lines)
    code, lines = c.cmd(plain("bob", PW_BOB, authzid="bob"))
    R.check("PLAIN, yescrypt user, authzid = authcid: 235", code == 235,
            lines)
    c.close()

    c, _ = tls_client(r.port)
    code, lines = c.cmd("AUTH LOGIN")
    R.check("LOGIN: 334 Username:", lines == ["334 VXNlcm5hbWU6"], lines)
    code, lines = c.cmd(b64("alice"))
    R.check("LOGIN: 334 Password:", lines == ["334 UGFzc3dvcmQ6"], lines)
    code, lines = c.cmd(b64(PW_ALICE))
    R.check("LOGIN: 235", code == 235, lines)
    c.close()

    c, _ = tls_client(r.port)
    code, lines = c.cmd("AUTH LOGIN " + b64("bob"))
    R.check("LOGIN with the user as initial response: 334 Password:",
            lines == ["334 UGFzc3dvcmQ6"], lines)
    code, lines = c.cmd(b64(PW_BOB))
    R.check("LOGIN, yescrypt user: 235", code == 235, lines)
    c.close()


def test_exchange_errors(r):
    src = "127.0.0.3"
    c, _ = tls_client(r.port, src)
    code, lines = c.cmd("AUTH PLAIN !!notbase64")
    R.check("bad base64: 501 5.5.2", code == 501 and "5.5.2" in lines[0],
            lines)
    code, lines = c.cmd("AUTH PLAIN")
    code, lines = c.cmd("abc")
    R.check("base64 of the wrong length: 501 5.5.2",
            code == 501 and "5.5.2" in lines[0], lines)
    code, lines = c.cmd("AUTH PLAIN " + b64("alice" + PW_ALICE))
    R.check("PLAIN without NULs: 501 5.5.2",
            code == 501 and "5.5.2" in lines[0], lines)
    code, lines = c.cmd("AUTH LOGIN")
    code, lines = c.cmd("*")
    R.check("cancelled exchange: 501 5.7.0",
            code == 501 and "5.7.0" in lines[0], lines)
    code, lines = c.cmd("NOOP")
    R.check("after a cancel: commands again", code == 250, lines)
    code, lines = c.cmd("AUTH LOGIN")
    c.cmd(b64("alice"))
    code, lines = c.cmd("")
    R.check("LOGIN with an empty password: 535 5.7.8",
            code == 535 and "5.7.8" in lines[0], lines)
    code, lines = c.cmd("NOOP")
    R.check("after a refused LOGIN: commands again (RFC 4954 4)",
            code == 250, lines)
    code, _ = c.cmd("MAIL FROM:<a@example.test>")
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", PW_ALICE))
    R.check("AUTH in a transaction: 503 5.5.1",
            code == 503 and "5.5.1" in lines[0], lines)
    c.cmd("RSET")
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", PW_ALICE,
                                              authzid="bob"))
    R.check("PLAIN acting for another user: 535 5.7.8",
            code == 535 and "5.7.8" in lines[0], lines)
    c.close()


def test_failures(r):
    """Per address: 1st failure at once, 2nd after the delay, 3rd 421."""
    src = "127.0.0.9"
    c, _ = tls_client(r.port, src)
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", "wrong-one"))
    R.check("wrong password: 535 5.7.8",
            code == 535 and "5.7.8" in lines[0], lines)
    start = time.time()
    code, lines = c.cmd("AUTH PLAIN " + plain("nobody", "guess"))
    waited = time.time() - start
    R.check("unknown user: 535 5.7.8", code == 535, lines)
    R.check("second failure: the reply waits auth_failure_delay",
            waited >= 0.9, waited)
    c.close()
    # The count follows the address into a new connection.
    c, _ = tls_client(r.port, src)
    code, lines = c.cmd("AUTH LOGIN")
    c.cmd(b64("alice"))
    code, lines = c.cmd(b64("third-guess"))
    R.check("third failure: 421 4.7.0", code == 421 and "4.7.0" in lines[0],
            lines)
    R.check("third failure: closed", c.closed())
    c.close()
    c, _ = tls_client(r.port, src)
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", PW_ALICE))
    R.check("address over the limit: AUTH gets 421 at once", code == 421,
            lines)
    c.close()
    c, _ = tls_client(r.port, "127.0.0.10")
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", PW_ALICE))
    R.check("another address: not affected", code == 235, lines)
    c.close()
    log = r.log_text()
    R.check("log: failure names mechanism and user",
            "AUTH PLAIN failed for user alice from 127.0.0.9 (1 of 3)" in log,
            log[-2000:])
    R.check("log: LOGIN failure logged", "AUTH LOGIN failed for user "
            "alice from 127.0.0.9 (3 of 3)" in log)


def test_submission(r):
    port = r.ports[1]
    c, _ = tls_client(port, "127.0.0.4")
    code, lines = c.cmd("MAIL FROM:<alice@example.test>")
    R.check("submission: MAIL before AUTH is 530 5.7.0",
            code == 530 and "5.7.0" in lines[0], lines)
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", PW_ALICE))
    R.check("submission: AUTH 235", code == 235, lines)
    code, lines = c.cmd("MAIL FROM:<alice@example.test>")
    R.check("submission: MAIL after AUTH 250", code == 250, lines)
    c.close()
    R.check("log: the 530 is logged",
            "MAIL refused: submission without AUTH" in r.log_text())


def test_relaying(r):
    """A successful AUTH grants relaying: with the scripted plugin's rcpt
    verdict CONT, the core's answer depends on conn->relaying."""
    c, _ = tls_client(r.port, "127.0.0.5")
    c.cmd("XSCRIPT rcpt CONT")
    c.cmd("MAIL FROM:<a@example.test>")
    code, lines = c.cmd("RCPT TO:<x@elsewhere.test>")
    R.check("no AUTH: relaying refused", code == 550, lines)
    c.cmd("RSET")
    code, _ = c.cmd("AUTH PLAIN " + plain("alice", PW_ALICE))
    c.cmd("MAIL FROM:<alice@example.test>")
    code, lines = c.cmd("RCPT TO:<x@elsewhere.test>")
    R.check("after AUTH: relaying allowed", code == 250, lines)
    c.close()


def test_plaintext_listener(r):
    port = r.ports[2]
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test",
                     timeout=10, source_address=("127.0.0.6", 0))
    s.ehlo()
    R.check("auth_plaintext=yes: AUTH offered without TLS",
            s.has_extn("auth") and "PLAIN" in s.esmtp_features["auth"],
            s.esmtp_features)
    try:
        code, _ = s.login("alice", PW_ALICE)
        R.check("auth_plaintext=yes: smtplib login 235", code == 235)
    except smtplib.SMTPException as e:
        R.check("auth_plaintext=yes: smtplib login", False, repr(e))
    s.quit()


def test_smtplib(r, n0):
    s = smtplib.SMTP("127.0.0.1", r.ports[1], local_hostname="client.test",
                     timeout=10, source_address=("127.0.0.7", 0))
    s.starttls(context=ctx())
    s.ehlo()
    try:
        s.login("bob", PW_BOB)
        ok = True
    except smtplib.SMTPException as e:
        ok = repr(e)
    R.check("smtplib: STARTTLS and login on submission", ok is True, ok)
    refused = s.sendmail("bob@example.test", ["x@elsewhere.test"],
                         "Subject: smtplib auth\r\n\r\nhello\r\n")
    R.check("smtplib: message sent", refused == {}, refused)
    s.quit()
    # Force LOGIN.
    s = smtplib.SMTP("127.0.0.1", r.port, local_hostname="client.test",
                     timeout=10, source_address=("127.0.0.7", 0))
    s.starttls(context=ctx())
    s.ehlo()
    s.user, s.password = "alice", PW_ALICE
    code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
    R.check("smtplib: AUTH LOGIN 235", code == 235)
    # smtplib takes the 503 of a second AUTH as "already logged in".
    code, text = s.login("alice", PW_ALICE)
    R.check("smtplib: second login answered 503", code == 503, text)
    s.quit()
    for _ in range(50):
        if len(r.messages()) > n0:
            break
        time.sleep(0.05)
    m = [m for m in r.messages() if b"Subject: smtplib auth" in m]
    R.check("smtplib: Received says ESMTPSA",
            m and b"with ESMTPSA id" in m[0], m[:1])


def test_swaks(r):
    if shutil.which("swaks") is None:
        R.check("swaks installed", False)
        return
    for mech, user, pw in (("PLAIN", "alice", PW_ALICE),
                           ("LOGIN", "bob", PW_BOB)):
        p = subprocess.run(
            ["swaks", "--server", "127.0.0.1:%d" % r.ports[1],
             "--local-interface", "127.0.0.8", "--tls", "--auth", mech,
             "--auth-user", user, "--auth-password", pw,
             "--to", "x@elsewhere.test", "--from", "%s@example.test" % user,
             "--helo", "swaks.test", "--timeout", "10"],
            capture_output=True, text=True, timeout=30)
        out = p.stdout + p.stderr
        R.check("swaks --tls --auth %s: exit 0" % mech, p.returncode == 0,
                out)
        R.check("swaks --auth %s: 235" % mech,
                "<~  235 2.7.0" in out, out)
    p = subprocess.run(
        ["swaks", "--server", "127.0.0.1:%d" % r.ports[1],
         "--local-interface", "127.0.0.11", "--tls", "--auth", "PLAIN",
         "--auth-user", "alice", "--auth-password", "not-it",
         "--to", "x@elsewhere.test", "--from", "alice@example.test",
         "--helo", "swaks.test", "--timeout", "10"],
        capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    R.check("swaks wrong password: 535 and a failure exit",
            p.returncode != 0 and "535 5.7.8" in out, out)


def test_log_hygiene(r):
    c, _ = tls_client(r.port, "127.0.0.12")
    # A user with CR LF: refused, and never raw in the log.
    code, lines = c.cmd("AUTH PLAIN " + plain("evil\r\nforged: line",
                                              "x"))
    R.check("CR LF in the user: 535", code == 535, lines)
    c.close()
    log = r.log_text()
    for pw in (PW_ALICE, PW_BOB, "wrong-one", "third-guess", "not-it"):
        R.check("log: password %r absent" % pw, pw not in log)
        R.check("log: base64 password %r absent" % pw,
                b64(pw) not in log and plain("alice", pw) not in log and
                plain("bob", pw) not in log)
    R.check("log: the exchange is hidden", "(AUTH response)" in log and
            "AUTH PLAIN (initial response)" in log)
    R.check("log: no forged line", "\nforged: line" not in log)


def main():
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj",
                    "/CN=mx.test", "-days", "2", "-keyout", KEY, "-out",
                    CERT], check=True, capture_output=True)
    write_users(USERS, ["# test users", "alice:" + crypt(PW_ALICE, "$6$"),
                        "", "bob:" + crypt(PW_BOB, "$y$")])
    test_users_file_errors()
    with relayd(["", "role=submission", "tls=none auth_plaintext=yes",
                 "tls=none"], TLS) as r:
        test_offer(r)
        test_plain_and_login(r)
        test_exchange_errors(r)
        test_failures(r)
        test_submission(r)
        test_relaying(r)
        test_plaintext_listener(r)
        test_smtplib(r, len(r.messages()))
        test_swaks(r)
        test_log_hygiene(r)
    return R.done()


if __name__ == "__main__":
    sys.exit(main())
