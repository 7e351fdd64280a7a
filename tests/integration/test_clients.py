#!/usr/bin/env python3
"""Real SMTP clients against relayd: Python's smtplib, swaks (plain and
with PIPELINING) and Postfix's smtp-source (many sessions at once).
Each must see only 2xx/3xx replies and get its messages queued intact.
"""
import os
import shutil
import smtplib
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("clients")
SINK = 'plugins = [ "scripted" ];\nscripted = { sink_dir = "@SINK@"; };\n'


def wait_messages(r, n):
    for _ in range(50):
        if len(r.messages()) >= n:
            break
        time.sleep(0.05)
    return r.messages()


def crlf_clean(msg):
    return msg.replace(b"\r\n", b"").find(b"\n") < 0 and \
        msg.replace(b"\r\n", b"").find(b"\r") < 0


def with_smtplib(r):
    s = smtplib.SMTP("127.0.0.1", r.port, local_hostname="client.test",
                     timeout=10)
    code, text = s.ehlo()
    R.check("smtplib: EHLO 250", code == 250, text)
    for ext in ("pipelining", "size", "8bitmime", "smtputf8", "chunking",
                "enhancedstatuscodes"):
        R.check("smtplib: advertises %s" % ext, s.has_extn(ext))
    R.check("smtplib: SIZE is the limit",
            s.esmtp_features.get("size") == "26214400",
            repr(s.esmtp_features.get("size")))
    msg = ("From: b@example.test\r\nTo: a@example.test, c@example.test\r\n"
           "Subject: smtplib\r\n\r\nfirst line\r\n.leading dot\r\n"
           "..two dots\r\n.\r\nlast line\r\n")
    refused = s.sendmail("b@example.test",
                         ["a@example.test", "c@example.test"], msg)
    R.check("smtplib: sendmail to two recipients", refused == {},
            repr(refused))
    msgs = wait_messages(r, 1)
    R.check("smtplib: one message queued", len(msgs) == 1, len(msgs))
    m = msgs[-1] if msgs else b""
    R.check("smtplib: dots survive stuffing both ways",
            b"\r\n\r\nfirst line\r\n.leading dot\r\n..two dots\r\n.\r\n"
            b"last line\r\n" in m, repr(m[-120:]))
    R.check("smtplib: Received header first",
            m.startswith(b"Received: from client.test"), repr(m[:60]))
    R.check("smtplib: CRLF clean", crlf_clean(m))

    # SMTPUTF8 (RFC 6531): the parameter on MAIL lets UTF-8 addresses in.
    utf8 = ("From: jöran@example.test\r\nTo: пользователь@пример.test\r\n"
            "Subject: utf8\r\n\r\nПривет\r\n").encode("utf-8")
    refused = s.sendmail("jöran@example.test", ["пользователь@пример.test"],
                         utf8, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    R.check("smtplib: SMTPUTF8 message accepted", refused == {},
            repr(refused))
    msgs = wait_messages(r, 2)
    R.check("smtplib: UTF-8 content byte-exact",
            len(msgs) == 2 and "Привет\r\n".encode() in msgs[-1])

    # A message with bare LFs: smtplib turns them into CRLFs itself.
    s.sendmail("b@example.test", ["a@example.test"],
               "Subject: lf\n\nline one\nline two\n")
    msgs = wait_messages(r, 3)
    R.check("smtplib: LF-only message queued CRLF-clean",
            len(msgs) == 3 and crlf_clean(msgs[-1]) and
            b"line one\r\nline two\r\n" in msgs[-1])

    # A refused recipient among good ones.
    try:
        refused = s.sendmail("b@example.test",
                             ["a@example.test", "bad@@x"], "Subject: x\r\n\r\n")
        R.check("smtplib: one bad recipient refused, the rest sent",
                list(refused) == ["bad@@x"] and refused["bad@@x"][0] == 501,
                repr(refused))
    except smtplib.SMTPException as e:
        R.check("smtplib: one bad recipient refused", False, repr(e))
    code, _ = s.noop()
    R.check("smtplib: NOOP", code == 250)
    code, _ = s.quit()
    R.check("smtplib: QUIT 221", code == 221)


def swaks(r, extra, label, nmsgs):
    if shutil.which("swaks") is None:
        R.check("swaks installed", False)
        return
    cmd = ["swaks", "--server", "127.0.0.1:%d" % r.port,
           "--to", "a@example.test", "--from", "b@example.test",
           "--helo", "swaks.test", "--timeout", "10"] + extra
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    R.check("swaks %s: exit 0" % label, p.returncode == 0,
            "rc=%d\n%s" % (p.returncode, out))
    # Server lines are "<-  " (or "<~  " over TLS); errors "<** ".
    server = [l for l in out.splitlines() if l.startswith("<-")]
    R.check("swaks %s: no error reply" % label, "<**" not in out, out)
    R.check("swaks %s: only 2xx/3xx replies" % label,
            server and all(l[4] in "23" for l in server), "\n".join(server))
    R.check("swaks %s: message accepted" % label,
            any(l.startswith("<-  250 2.0.0 Message accepted")
                for l in server), out)
    msgs = wait_messages(r, nmsgs)
    R.check("swaks %s: queued" % label, len(msgs) == nmsgs, len(msgs))
    m = msgs[-1] if msgs else b""
    R.check("swaks %s: content intact" % label,
            b"X-Mailer: swaks" in m and b"This is a test mailing" in m and
            crlf_clean(m), repr(m[:300]))
    return out


def with_swaks(r, n0):
    swaks(r, [], "plain", n0 + 1)
    out = swaks(r, ["--pipeline"], "pipeline", n0 + 2)
    if out is not None:
        # With PIPELINING swaks sends MAIL, RCPT and DATA in one group.
        R.check("swaks pipeline: used PIPELINING",
                " -> MAIL FROM:<b@example.test>" in out and
                " -> DATA" in out and
                out.index(" -> DATA") < out.index("<-  250 2.1.0"), out)
    swaks(r, ["--to", "a@example.test,c@example.test", "--pipeline"],
          "two recipients", n0 + 3)


def with_smtp_source(r, n0):
    src = "/usr/sbin/smtp-source"
    if not os.access(src, os.X_OK):
        R.check("smtp-source installed", False)
        return
    p = subprocess.run([src, "-s", "4", "-m", "20", "-l", "2000",
                        "-f", "b@example.test", "-t", "a@example.test",
                        "-M", "source.test", "127.0.0.1:%d" % r.port],
                       capture_output=True, text=True, timeout=60)
    R.check("smtp-source: exit 0 and silent", p.returncode == 0 and
            not p.stdout.strip() and not p.stderr.strip(),
            "rc=%d %s %s" % (p.returncode, p.stdout, p.stderr))
    msgs = wait_messages(r, n0 + 20)
    R.check("smtp-source: 20 messages from 4 sessions at once",
            len(msgs) == n0 + 20, len(msgs))
    R.check("smtp-source: every message CRLF clean",
            all(crlf_clean(m) for m in msgs[n0:]))


with gh.Relayd("", SINK) as r:
    with_smtplib(r)
    n = len(r.messages())
    with_swaks(r, n)
    with_smtp_source(r, len(r.messages()))
    log = r.log_text()
    R.check("no session ended in a connection error",
            "connection error" not in log)
sys.exit(R.done())
