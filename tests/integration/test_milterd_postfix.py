#!/usr/bin/env python3
"""milterd inside a real Postfix (Debian package postfix).

A private Postfix instance lives in a temporary directory (its own config
directory, queue_directory and data_directory, no chroot, one smtpd on a
loopback port, logging to a file) with smtpd_milters pointing at milterd
on loopback TCP and smtp-sink as its relay host.  Checked over SMTP:

  - a recipient the access plugin denies is refused by Postfix with
    milterd's reply (code, enhanced code and text);
  - a message that passes reaches smtp-sink with the decision-trace
    header on top, and the probe plugin's report shows what Postfix's
    macros told the plugins (queue id, our name, client address);
  - a message a plugin refuses at data_post gets that plugin's reply,
    '%' included;
  - SIGHUP with a changed deny rule: the session in progress keeps the
    old rule, a new session gets the new one;
  - milterd killed mid-session, and milterd down: Postfix tempfails
    (451 4.7.1), it never accepts the mail unfiltered.

Needs root (Postfix's master), as the test machines run it.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402
from postfix import POSTFIX, Postfix  # noqa: E402

R = gh.Results("milterd_postfix")
MILTERD = os.path.join(gh.BUILDDIR, "milterd", "milterd")

MILTERD_CONF = """\
milterd = {
  socket = "inet:%(milter_port)d@127.0.0.1";
  trace_header = "X-Gatehouse-Trace";
  reply_timeout = 10;
};
log = { level = "debug"; };
dns = { rdns = false; };
plugin_dir = "%(plugin_dir)s";
plugins = [ "access", "scripted", "probe" ];
access = { rcpt_deny = [ "%(deny)s@example.net" ]; };
probe = {
  report = true;
  reject_subject = "reject me";
  reject_reply = "554:5.7.1:spam 100%% sure";
};
"""


class Milterd:
    def __init__(self, pf):
        self.conf = os.path.join(pf.dir, "milterd.conf")
        self.port = pf.milter_port
        self.write("denied")
        self.log = os.path.join(pf.dir, "milterd.log")
        self.proc = None

    def write(self, deny):
        with open(self.conf, "w") as f:
            f.write(MILTERD_CONF % {"milter_port": self.port,
                                    "plugin_dir": gh.PLUGIN_DIR,
                                    "deny": deny})

    def start(self):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen([MILTERD, "-c", self.conf],
                                     stdout=self.logf, stderr=self.logf)
        gh.wait_port("127.0.0.1", self.port, proc=self.proc)
        return self

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.logf.close()

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()


def session(pf, helo="client.example"):
    c = gh.Client(pf.port)
    code, lines = c.reply()
    R.check("postfix greets", code == 220, lines)
    code, lines = c.cmd("EHLO " + helo)
    return c


def detail(pf, m):
    return "\n--- maillog:\n%s\n--- milterd log:\n%s" % (
        pf.maillog()[-3000:], m.log_text()[-3000:])


def denied_recipient(pf, m):
    c = session(pf)
    code, lines = c.cmd("MAIL FROM:<a@example.org>")
    R.check("MAIL accepted", code == 250, lines)
    code, lines = c.cmd("RCPT TO:<denied@example.net>")
    R.check("denied recipient: Postfix refuses with milterd's 550 5.7.1",
            code == 550 and lines[-1].startswith("550 5.7.1 "),
            "%r%s" % (lines, detail(pf, m)))
    R.check("denied recipient: the access plugin's text",
            "denied@example.net" in lines[-1], lines)
    code, lines = c.cmd("RCPT TO:<ok@example.net>")
    R.check("the next recipient is accepted", code == 250,
            "%r%s" % (lines, detail(pf, m)))
    code, lines = c.cmd("QUIT")
    c.close()


def passing_message(pf, m):
    before = len(pf.messages())
    c = session(pf)
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<ok@example.net>")
    code, lines = c.cmd("DATA")
    R.check("DATA 354", code == 354, lines)
    c.send("From: A <a@example.org>\r\nTo: <ok@example.net>\r\n"
           "Subject: through postfix\r\nX-Spaced:  two spaces\r\n\r\n"
           "body\r\n.\r\n")
    code, lines = c.reply()
    R.check("message accepted by Postfix", code == 250,
            "%r%s" % (lines, detail(pf, m)))
    c.cmd("QUIT")
    c.close()
    msgs = pf.wait_messages(before + 1)
    R.check("message reached smtp-sink", len(msgs) == before + 1,
            detail(pf, m))
    if len(msgs) <= before:
        return
    text = msgs[before]
    hdr = text.split("\n\n", 1)[0]
    R.check("decision-trace header present, one space after the colon",
            re.search(r"^X-Gatehouse-Trace: \S.*probe=pass\(0 edits\)",
                      hdr, re.M) is not None, hdr)
    lines = [l for l in hdr.split("\n") if l and not l[0].isspace()]
    trace_at = [i for i, l in enumerate(lines)
                if l.startswith("X-Gatehouse-Trace:")]
    recv_at = [i for i, l in enumerate(lines) if l.startswith("Received:")]
    R.check("trace header above the original headers",
            trace_at and trace_at[0] < lines.index(
                [l for l in lines if l.startswith("From:")][0]), hdr)
    probe = [l for l in lines if l.startswith("X-Probe:")]
    R.check("probe report added", len(probe) == 1, hdr)
    p = probe[0] if probe else ""
    R.check("probe: client address from Postfix", "ip=127.0.0.1 " in p, p)
    R.check("probe: j macro (myhostname)", "host=mx.postfix.test " in p, p)
    R.check("probe: {daemon_addr}", "local=127.0.0.1 " in p, p)
    R.check("probe: queue id macro i", "qid=-" not in p and "qid=" in p, p)
    R.check("probe: envelope", "from=a@example.org " in p and
            "rcpts=ok@example.net " in p, p)
    R.check("probe: header block as sent (three header fields plus "
            "Postfix's own, exact spacing)", "subject=through postfix " in p,
            p)
    R.check("header spacing kept through Postfix",
            "\nX-Spaced:  two spaces\n" in text, hdr)
    R.check("Postfix's Received header still there", len(recv_at) >= 1,
            hdr)


def percent_reply(pf, m):
    c = session(pf)
    c.cmd("MAIL FROM:<a@example.org>")
    c.cmd("RCPT TO:<ok@example.net>")
    c.cmd("DATA")
    c.send("Subject: please reject me\r\n\r\nbody\r\n.\r\n")
    code, lines = c.reply()
    R.check("data_post DENY: Postfix answers 554 5.7.1 with '%' intact",
            code == 554 and lines[-1] == "554 5.7.1 spam 100% sure",
            "%r%s" % (lines, detail(pf, m)))
    c.cmd("QUIT")
    c.close()


def reloaded(pf, m):
    """SIGHUP with a changed deny rule: the session in progress keeps the
    old plugin chain, a new session gets the new one."""
    old = session(pf)
    code, lines = old.cmd("MAIL FROM:<a@example.org>")
    R.check("reload: MAIL in the session opened before", code == 250, lines)
    m.write("later")
    m.proc.send_signal(signal.SIGHUP)
    deadline = time.time() + 10
    while time.time() < deadline and \
            "configuration reloaded" not in m.log_text():
        time.sleep(0.05)
    R.check("reload: milterd reloaded on SIGHUP",
            "configuration reloaded: generation 2" in m.log_text(),
            detail(pf, m))
    code, lines = old.cmd("RCPT TO:<denied@example.net>")
    R.check("reload: the session in progress still has the old rule "
            "(denied@ refused)", code == 550, "%r%s" % (lines, detail(pf, m)))
    code, lines = old.cmd("RCPT TO:<later@example.net>")
    R.check("reload: the session in progress still has the old rule "
            "(later@ accepted)", code == 250, "%r%s" % (lines, detail(pf, m)))
    new = session(pf)
    new.cmd("MAIL FROM:<a@example.org>")
    code, lines = new.cmd("RCPT TO:<later@example.net>")
    R.check("reload: a new session has the new rule (later@ refused with "
            "milterd's 550 5.7.1)", code == 550 and
            lines[-1].startswith("550 5.7.1 "), "%r%s" % (lines,
                                                          detail(pf, m)))
    code, lines = new.cmd("RCPT TO:<denied@example.net>")
    R.check("reload: a new session has the new rule (denied@ accepted)",
            code == 250, "%r%s" % (lines, detail(pf, m)))
    for c in (old, new):
        c.cmd("QUIT")
        c.close()


def killed_mid_session(pf, m):
    before = len(pf.messages())
    c = session(pf)
    code, lines = c.cmd("MAIL FROM:<a@example.org>")
    R.check("mid-session: MAIL accepted while milterd runs", code == 250,
            lines)
    code, lines = c.cmd("RCPT TO:<ok@example.net>")
    R.check("mid-session: RCPT accepted while milterd runs", code == 250,
            lines)
    m.kill()
    code, lines = c.cmd("DATA")
    if code == 354:
        c.send("Subject: unfiltered?\r\n\r\nbody\r\n.\r\n")
        code, lines = c.reply()
    R.check("milterd killed mid-session: Postfix tempfails (4xx), never "
            "accepts", code is not None and 400 <= code < 500,
            "%r%s" % (lines, detail(pf, m)))
    c.cmd("QUIT")
    c.close()

    c = session(pf)
    code, lines = c.cmd("MAIL FROM:<a@example.org>")
    R.check("milterd down: Postfix answers 451 4.7.1",
            code == 451 and lines[-1].startswith("451 4.7.1"),
            "%r%s" % (lines, detail(pf, m)))
    c.cmd("QUIT")
    c.close()
    time.sleep(1.5)
    R.check("nothing unfiltered reached smtp-sink",
            len(pf.messages()) == before, pf.messages()[before:])


def main():
    if os.geteuid() != 0 or not os.path.exists(POSTFIX):
        R.check("runs as root with Postfix installed", False)
        return R.done()
    pf = Postfix()
    m = Milterd(pf)
    try:
        m.start()
        pf.start()
        denied_recipient(pf, m)
        passing_message(pf, m)
        percent_reply(pf, m)
        reloaded(pf, m)
        killed_mid_session(pf, m)
    except Exception as e:  # report, never hang
        R.check("postfix test ran", False, "%s%s" % (e, detail(pf, m)))
    finally:
        m.kill()
        pf.stop()
        shutil.rmtree(pf.dir, ignore_errors=True)
    return R.done()


sys.exit(main())
