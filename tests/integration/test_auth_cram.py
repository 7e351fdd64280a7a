#!/usr/bin/env python3
"""SMTP AUTH CRAM-MD5 (RFC 2195, SASL per RFC 4954) in relayd with the
auth_file plugin's {CRAM-MD5} secrets (Dovecot's scheme: the HMAC-MD5
inner and outer MD5 states, computed here by a tiny pure-Python MD5
compression function, never the password): the offer (only under TLS,
only when a user has such a secret), the exchange from a raw client
computing hmac.new(password, challenge, 'md5'), a {CRAM-MD5} secret
verifying PLAIN too, users without one, replayed and wrong digests, the
exchange's error replies, the per-address failure limit, swaks --tls
--auth CRAM-MD5, smtplib (which prefers CRAM-MD5), the users file
errors, and the log without passwords or digests.
"""
import base64
import hashlib
import hmac
import math
import os
import re
import shutil
import smtplib
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import authkit  # noqa: E402
import gh  # noqa: E402
from authkit import (b64, crypt, ctx, plain,  # noqa: E402
                     tls_client, write_users)

R = gh.Results("auth_cram")
D = gh.tmpdir("gh-authcram-")
CERT = os.path.join(D, "cert.pem")
KEY = os.path.join(D, "key.pem")
USERS = os.path.join(D, "users")
PW_ALICE = "alice-Cram-1"        # crypt hash and {CRAM-MD5}
PW_CAROL = "carol pass:word 3"   # {CRAM-MD5} only
PW_BOB = "bob-Crypt-2"           # crypt hash only
LONG_PW = "k" * 70               # over one HMAC block: hashed first

# RFC 1321 3.4, from the sines, and the shifts of each round.
MD5_T = [int(abs(math.sin(i + 1)) * 2 ** 32) & 0xffffffff
         for i in range(64)]
MD5_S = ([7, 12, 17, 22] * 4 + [5, 9, 14, 20] * 4 + [4, 11, 16, 23] * 4 +
         [6, 10, 15, 21] * 4)
MD5_IV = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476]


def md5_block(h, blk):
    """One MD5 compression (RFC 1321 3.4) of a 64-octet block."""
    x = struct.unpack("<16I", blk)
    a, b, c, d = h
    for i in range(64):
        if i < 16:
            f, g = (b & c) | (~b & d), i
        elif i < 32:
            f, g = (b & d) | (c & ~d), (5 * i + 1) % 16
        elif i < 48:
            f, g = b ^ c ^ d, (3 * i + 5) % 16
        else:
            f, g = c ^ (b | ~d), (7 * i) % 16
        t = (a + f + MD5_T[i] + x[g]) & 0xffffffff
        rot = ((t << MD5_S[i]) | (t >> (32 - MD5_S[i]))) & 0xffffffff
        a, b, c, d = d, (b + rot) & 0xffffffff, b, c
    return [(p + q) & 0xffffffff for p, q in zip(h, (a, b, c, d))]


def cram_secret(pw):
    """What `doveadm pw -s CRAM-MD5` prints: the outer then the inner
    MD5 state after the key block, words little-endian, in hex."""
    k = pw.encode()
    if len(k) > 64:
        k = hashlib.md5(k).digest()
    k = k.ljust(64, b"\0")
    inner = md5_block(MD5_IV, bytes(c ^ 0x36 for c in k))
    outer = md5_block(MD5_IV, bytes(c ^ 0x5c for c in k))
    return "{CRAM-MD5}" + struct.pack("<8I", *(outer + inner)).hex()


def cram_response(user, pw, challenge):
    return b64("%s %s" % (user, hmac.new(pw.encode(), challenge,
                                         "md5").hexdigest()))


TLS = ('tls_cert = "%s"; tls_key = "%s"; auth_max_failures = 3; '
       'auth_failure_delay = 1;' % (CERT, KEY))


def relayd(listen, extra, users=USERS):
    return authkit.relayd(listen, extra, users)


def challenge(c):
    """AUTH CRAM-MD5: (code, decoded challenge or the reply lines)."""
    code, lines = c.cmd("AUTH CRAM-MD5")
    if code != 334:
        return code, lines
    return code, base64.b64decode(lines[0][4:], validate=True)


SEEN = []      # every digest sent: none may reach the log


def cram(c, user, pw):
    code, chal = challenge(c)
    if code != 334:
        return code, chal, None
    resp = cram_response(user, pw, chal)
    SEEN.append(resp)
    SEEN.append(hmac.new(pw.encode(), chal, "md5").hexdigest())
    code, lines = c.cmd(resp)
    return code, lines, chal


# ---------------------------------------------------------------------

def test_secret_helper():
    # The helper agrees with the C code's unit test vector (RFC 2195's
    # example password) and, through the server, with hmac itself.
    R.check("helper: RFC 2195 password's secret",
            cram_secret("tanstaaftanstaaf") ==
            "{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a3"
            "54b21152711fb604ca3e035e7015116b")
    doveadm = shutil.which("doveadm")
    if doveadm:
        p = subprocess.run([doveadm, "pw", "-s", "CRAM-MD5", "-p",
                            PW_ALICE], capture_output=True, text=True)
        R.check("helper: same as doveadm pw -s CRAM-MD5",
                p.stdout.strip() == cram_secret(PW_ALICE), p.stdout)


def test_users_file_errors():
    good = "alice:" + crypt(PW_ALICE, "$6$")
    sec = cram_secret(PW_ALICE)

    def check(label, lines, want):
        path = os.path.join(D, label.replace(" ", "_"))
        write_users(path, lines)
        r = relayd([""], TLS, users=path)
        p = subprocess.run([gh.RELAYD, "-t", "-c", r.conf],
                           capture_output=True, text=True)
        R.check("users file %s: -t exit 2" % label, p.returncode == 2,
                "rc=%d %s" % (p.returncode, p.stderr))
        R.check("users file %s: says where and why" % label,
                want % path in p.stderr, p.stderr)

    check("plain text", [good, "carol:secret"],
          "%s:2: not a strong crypt(3) hash")
    check("dovecot PLAIN", ["carol:{PLAIN}secret"],
          "%s:1: only the {CRAM-MD5} scheme is taken")
    check("short cram", [good, "carol:" + sec[:-1]],
          "%s:2: only the {CRAM-MD5} scheme is taken")
    check("cram not hex", ["carol:" + sec[:-1] + "g"],
          "%s:1: only the {CRAM-MD5} scheme is taken")
    check("two crams", ["carol:%s:%s" % (sec, sec)],
          "%s:1: two {CRAM-MD5} secrets")
    check("two hashes", [good + ":" + crypt(PW_ALICE, "$y$")],
          "%s:1: two crypt(3) hashes")
    check("three secrets", [good + ":" + sec + ":" + sec],
          "%s:1: expected user:hash, user:{CRAM-MD5}hex")
    check("empty second", [good + ":"], "%s:1: an empty secret")
    check("empty only", ["carol:"], "%s:1: an empty secret")
    check("duplicate cram user", ["carol:" + sec, "carol:" + sec],
          '%s:2: user "carol" also on line 1')
    # Both orders of a good two-secret line pass -t.
    path = os.path.join(D, "both_orders")
    write_users(path, ["a:%s:%s" % (crypt("x", "$6$"), sec),
                       "b:%s:%s" % (sec, crypt("y", "$y$"))])
    r = relayd([""], TLS, users=path)
    p = subprocess.run([gh.RELAYD, "-t", "-c", r.conf],
                       capture_output=True, text=True)
    R.check("users file with hash:cram and cram:hash: -t ok",
            p.returncode == 0, p.stderr)


def test_manual_and_sample():
    p = subprocess.run([gh.RELAYD, "-h", "auth_file"], capture_output=True,
                       text=True)
    R.check("relayd -h auth_file documents {CRAM-MD5} and its warning",
            p.returncode == 0 and "{CRAM-MD5}" in p.stdout and
            "password" in p.stdout and "WARNING" in p.stdout,
            p.stdout[:300])
    sample = os.path.join(gh.SRCDIR, "conf", "auth_file.conf")
    r = gh.Relayd("", 'plugins = [ "auth_file" ];\n' + open(sample).read())
    p = subprocess.run([gh.RELAYD, "-t", "-c", r.conf],
                       capture_output=True, text=True)
    R.check("conf/auth_file.conf is valid", p.returncode == 0, p.stderr)


def test_offer(r):
    c = gh.Client(r.port)
    c.reply()
    code, lines = c.cmd("EHLO client.test")
    R.check("before TLS: no AUTH", not any("AUTH" in l for l in lines),
            lines)
    code, lines = c.cmd("AUTH CRAM-MD5")
    R.check("before TLS: AUTH CRAM-MD5 is 538 5.7.11",
            code == 538 and "5.7.11" in lines[0], lines)
    c.close()
    c, ext = tls_client(r.port)
    R.check("under TLS: AUTH PLAIN LOGIN CRAM-MD5 offered",
            "AUTH PLAIN LOGIN CRAM-MD5" in ext, ext)
    c.close()
    c = gh.Client(r.ports[2])
    c.reply()
    code, lines = c.cmd("EHLO client.test")
    R.check("tls=none listener: no AUTH",
            not any("AUTH" in l for l in lines), lines)
    c.close()
    c = gh.Client(r.ports[3], "127.0.0.20")
    c.reply()
    code, lines = c.cmd("EHLO client.test")
    R.check("auth_plaintext=yes: CRAM-MD5 offered without TLS",
            any(l[4:] == "AUTH PLAIN LOGIN CRAM-MD5" for l in lines), lines)
    code, lines, _ = cram(c, "carol", PW_CAROL)
    R.check("auth_plaintext=yes: CRAM-MD5 235", code == 235, lines)
    c.close()


def test_exchange(r):
    c, _ = tls_client(r.port, "127.0.0.21")
    code, chal = challenge(c)
    R.check("AUTH CRAM-MD5: 334 and a base64 challenge", code == 334, chal)
    m = re.fullmatch(rb"<(\d+)\.(\d+)@mx\.test>", chal or b"")
    R.check("challenge is <random.unixtime@hostname> (RFC 2195)",
            m is not None, chal)
    R.check("challenge time is now",
            m is not None and abs(int(m.group(2)) - time.time()) < 60,
            chal)
    resp = cram_response("alice", PW_ALICE, chal)
    SEEN.append(resp)
    code, lines = c.cmd(resp)
    R.check("CRAM-MD5 right digest: 235 2.7.0",
            code == 235 and "2.7.0" in lines[0], lines)
    code, lines = c.cmd("AUTH CRAM-MD5")
    R.check("AUTH after CRAM-MD5 success: 503 5.5.1",
            code == 503 and "5.5.1" in lines[0], lines)
    c.cmd("XSCRIPT rcpt CONT")
    c.cmd("MAIL FROM:<alice@example.test>")
    code, lines = c.cmd("RCPT TO:<x@elsewhere.test>")
    R.check("after CRAM-MD5: relaying allowed", code == 250, lines)
    c.close()

    c, _ = tls_client(r.port, "127.0.0.21")
    code, chal2 = challenge(c)
    R.check("each exchange has its own challenge", chal2 != chal,
            (chal, chal2))
    code, lines = c.cmd(resp)
    R.check("replayed response to a new challenge: 535 5.7.8",
            code == 535 and "5.7.8" in lines[0], lines)
    c.close()

    # A {CRAM-MD5}-only user: CRAM-MD5, PLAIN and LOGIN all verify.
    c, _ = tls_client(r.port, "127.0.0.22")
    code, lines, _ = cram(c, "carol", PW_CAROL)
    R.check("cram-only user: CRAM-MD5 235", code == 235, lines)
    c.close()
    c, _ = tls_client(r.port, "127.0.0.22")
    code, lines = c.cmd("AUTH PLAIN " + plain("carol", PW_CAROL))
    R.check("cram-only user: PLAIN verified by the secret, 235",
            code == 235, lines)
    c.close()
    c, _ = tls_client(r.port, "127.0.0.22")
    c.cmd("AUTH LOGIN")
    c.cmd(b64("dave"))
    code, lines = c.cmd(b64(LONG_PW))
    R.check("70-octet password (key hashed first): LOGIN 235",
            code == 235, lines)
    c.close()
    c, _ = tls_client(r.port, "127.0.0.22")
    code, lines, _ = cram(c, "dave", LONG_PW)
    R.check("70-octet password: CRAM-MD5 235", code == 235, lines)
    c.close()

    # Upper-case hex is the same digest.
    c, _ = tls_client(r.port, "127.0.0.22")
    code, chal = challenge(c)
    digest = hmac.new(PW_ALICE.encode(), chal, "md5").hexdigest()
    SEEN.append(digest.upper())
    code, lines = c.cmd(b64("alice " + digest.upper()))
    R.check("upper-case digest: 235", code == 235, lines)
    c.close()
    # The crypt hash still verifies PLAIN for a user with both.
    c, _ = tls_client(r.port, "127.0.0.22")
    code, lines = c.cmd("AUTH PLAIN " + plain("alice", PW_ALICE))
    R.check("user with both: PLAIN 235", code == 235, lines)
    c.close()


def test_exchange_errors(r):
    c, _ = tls_client(r.port, "127.0.0.23")
    code, lines = c.cmd("AUTH CRAM-MD5 " + b64("alice 00"))
    R.check("CRAM-MD5 with an initial response: 501 5.5.4",
            code == 501 and "5.5.4" in lines[0], lines)
    challenge(c)
    code, lines = c.cmd("*")
    R.check("'*' cancels: 501 5.7.0", code == 501 and "5.7.0" in lines[0],
            lines)
    challenge(c)
    code, lines = c.cmd("!!not-base64")
    R.check("malformed base64: 501 5.5.2",
            code == 501 and "5.5.2" in lines[0], lines)
    challenge(c)
    code, lines = c.cmd(b64("alice" + "0" * 32))
    R.check("no space before the digest: 501 5.5.2",
            code == 501 and "5.5.2" in lines[0] and "CRAM-MD5" in lines[0],
            lines)
    challenge(c)
    code, lines = c.cmd(b64("alice " + "0" * 31))
    R.check("31-digit digest: 501 5.5.2",
            code == 501 and "5.5.2" in lines[0], lines)
    code, lines = c.cmd("NOOP")
    R.check("after the errors: commands again", code == 250, lines)
    c.close()
    log = r.log_text()
    R.check("log: cancel logged", "AUTH CRAM-MD5 cancelled by the client"
            in log)
    R.check("protocol errors are not counted failures",
            "failed for user alice from 127.0.0.23" not in log)


def test_failures(r):
    src = "127.0.0.24"
    c, _ = tls_client(r.port, src)
    code, lines, _ = cram(c, "alice", "wrong-one")
    R.check("wrong password: 535 5.7.8",
            code == 535 and "5.7.8" in lines[0], lines)
    start = time.time()
    code, lines, _ = cram(c, "bob", PW_BOB)
    waited = time.time() - start
    R.check("user without a {CRAM-MD5} secret: 535 5.7.8",
            code == 535 and "5.7.8" in lines[0], lines)
    R.check("second failure: the reply waits auth_failure_delay",
            waited >= 0.9, waited)
    c.close()
    c, _ = tls_client(r.port, src)
    code, lines, _ = cram(c, "nobody", "guess")
    R.check("third failure (unknown user): 421 4.7.0",
            code == 421 and "4.7.0" in lines[0], lines)
    R.check("third failure: closed", c.closed())
    c.close()
    c, _ = tls_client(r.port, src)
    code, lines = c.cmd("AUTH CRAM-MD5")
    R.check("address over the limit: AUTH CRAM-MD5 gets 421", code == 421,
            lines)
    c.close()
    c, _ = tls_client(r.port, "127.0.0.25")
    code, lines = c.cmd("AUTH PLAIN " + plain("bob", PW_BOB))
    R.check("bob: PLAIN with his crypt hash 235", code == 235, lines)
    c.close()
    log = r.log_text()
    R.check("log: CRAM-MD5 failure names mechanism and user",
            "AUTH CRAM-MD5 failed for user alice from %s (1 of 3)" % src
            in log, log[-2000:])
    R.check("log: success logged",
            "AUTH CRAM-MD5 succeeded for user carol" in log)


def test_swaks(r):
    if shutil.which("swaks") is None:
        R.check("swaks installed", False)
        return
    # swaks computes CRAM-MD5 with this Perl module.
    p = subprocess.run(["perl", "-MDigest::HMAC_MD5", "-e1"],
                       capture_output=True)
    if p.returncode != 0:
        R.check("Digest::HMAC_MD5 installed (Debian libdigest-hmac-perl)",
                False)
        return
    base = ["swaks", "--server", "127.0.0.1:%d" % r.ports[1], "--tls",
            "--auth", "CRAM-MD5", "--to", "x@elsewhere.test",
            "--helo", "swaks.test", "--timeout", "10"]
    for user, pw, src in (("alice", PW_ALICE, "127.0.0.26"),
                          ("carol", PW_CAROL, "127.0.0.26")):
        p = subprocess.run(base + ["--local-interface", src,
                                   "--auth-user", user, "--auth-password",
                                   pw, "--from", "%s@example.test" % user],
                           capture_output=True, text=True, timeout=30)
        out = p.stdout + p.stderr
        R.check("swaks --tls --auth CRAM-MD5 %s: exit 0" % user,
                p.returncode == 0, out)
        R.check("swaks --auth CRAM-MD5 %s: 235" % user,
                "<~  235 2.7.0" in out, out)
        m = re.search(r"~>  (\S+)\n", out[out.find("AUTH CRAM-MD5"):])
        if m:
            SEEN.append(m.group(1))
    p = subprocess.run(base + ["--local-interface", "127.0.0.27",
                               "--auth-user", "alice", "--auth-password",
                               "not-it", "--from", "alice@example.test"],
                       capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    R.check("swaks CRAM-MD5 wrong password: 535 and a failure exit",
            p.returncode != 0 and "535 5.7.8" in out, out)


def test_smtplib(r):
    s = smtplib.SMTP("127.0.0.1", r.ports[1], local_hostname="client.test",
                     timeout=10, source_address=("127.0.0.28", 0))
    s.starttls(context=ctx())
    s.ehlo()
    try:
        code, _ = s.login("carol", PW_CAROL)
        ok = code == 235
    except smtplib.SMTPException as e:
        ok = repr(e)
    R.check("smtplib login (prefers CRAM-MD5): 235", ok is True, ok)
    s.quit()
    R.check("smtplib chose CRAM-MD5",
            "AUTH CRAM-MD5 succeeded for user carol" in r.log_text())


def test_log_hygiene(r):
    log = r.log_text()
    for pw in (PW_ALICE, PW_CAROL, PW_BOB, LONG_PW, "wrong-one", "not-it"):
        R.check("log: password %r absent" % pw, pw not in log)
    leaked = [x for x in SEEN if x in log]
    R.check("log: no CRAM-MD5 response or digest (%d checked)" % len(SEEN),
            not leaked and len(SEEN) > 10, leaked[:3])
    R.check("log: no {CRAM-MD5} secret",
            cram_secret(PW_ALICE)[10:] not in log and
            cram_secret(PW_CAROL)[10:] not in log)
    R.check("log: the exchange is hidden", "(AUTH response)" in log)
    R.check("log: auth_file says CRAM-MD5 is offered",
            "with a {CRAM-MD5} secret: CRAM-MD5 offered" in log)


def main():
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-subj",
                    "/CN=mx.test", "-days", "2", "-keyout", KEY, "-out",
                    CERT], check=True, capture_output=True)
    write_users(USERS, [
        "# test users",
        "alice:%s:%s" % (crypt(PW_ALICE, "$6$"), cram_secret(PW_ALICE)),
        "bob:" + crypt(PW_BOB, "$y$"),
        "carol:" + cram_secret(PW_CAROL),
        "dave:" + cram_secret(LONG_PW).upper().replace("{CRAM-MD5}".upper(),
                                                       "{cram-md5}"),
    ])
    test_secret_helper()
    test_users_file_errors()
    test_manual_and_sample()
    with relayd(["", "role=submission", "tls=none",
                 "tls=none auth_plaintext=yes"], TLS) as r:
        test_offer(r)
        test_exchange(r)
        test_exchange_errors(r)
        test_failures(r)
        test_swaks(r)
        test_smtplib(r)
        test_log_hygiene(r)
    return R.done()


if __name__ == "__main__":
    sys.exit(main())
