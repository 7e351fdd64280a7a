#!/usr/bin/env python3
"""Open relay attack test: the classic relay tricks from a client that
may not relay, against relayd with the real relay and host_list plugins.

relayd receives for example.test (host_list) and lets 127.0.0.9 relay
(relay).  The scripted plugin is there only to queue what is accepted
into the sink; each session sets its rcpt verdict to CONT (it would
otherwise accept every recipient itself), so host_list and relay alone
decide.  From 127.0.0.1 every recipient whose final domain is not
example.test must be refused (550, or 501/553 when it is not even an
address); the count of foreign recipients accepted must be 0.

What counts as "our domain" is the domain after the last "@" of the
mailbox, as RFC 5321 section 4.1.2 reads it:
- "user%other.test@example.test" and "other.test!user@example.test" are
  addressed to example.test, so they are accepted, and queued with the
  recipient exactly as written: relayd hands them to the local MTA
  behind it, which must not apply the percent hack or bang paths
  (Postfix: allow_percent_hack = no, swap_bangpath = no, or
  resolve_dequoted_address = no for the quoted form) if it is not to
  relay them on.  The test checks relayd never rewrites them.
- a quoted local part holding "@" ("\\"user@other.test\\"@example.test")
  is a local part of example.test.
- a source route (RFC 5321 appendix C: "@relay:mailbox") is ignored; only
  the mailbox counts, so "@example.test:user@other.test" is foreign.
- "user@other.test@example.test" and a trailing dot are syntax errors.
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("open_relay")

BODY = ('plugins = [ "relay", "host_list", "scripted" ];\n'
        'relay = { clients = [ "127.0.0.9/32" ]; };\n'
        'host_list = { domains = [ "example.test" ]; };\n'
        'scripted = { sink_dir = "@SINK@"; };\n')

REFUSED = (550, 501, 553)

# (recipient as written in RCPT TO:<...>, sender, its final domain is ours)
TRICKS = [
    ("user@other.test", "a@sender.test", False),
    ("USER@OTHER.TEST", "a@sender.test", False),
    ("user@Other.Test", "a@sender.test", False),
    ("user@other.test.", "a@sender.test", False),
    ("user@other.test@example.test", "a@sender.test", False),
    ("user@example.test@other.test", "a@sender.test", False),
    ("user@example.test.other.test", "a@sender.test", False),
    ("user@other.test%example.test", "a@sender.test", False),
    ("user%example.test@other.test", "a@sender.test", False),
    ("example.test!user@other.test", "a@sender.test", False),
    ("@example.test:user@other.test", "a@sender.test", False),
    ("@example.test,@example.test:user@other.test", "a@sender.test",
     False),
    ("user@[192.0.2.1]", "a@sender.test", False),
    ("user@[127.0.0.1]", "a@sender.test", False),
    ("user@[IPv6:2001:db8::1]", "a@sender.test", False),
    ("\"user@other.test\"@other.test", "a@sender.test", False),
    ("user@other.test", "", False),  # null sender
    ("USER@OTHER.TEST", "", False),
    ("user@other.test", "user@example.test", False),  # our own sender
    ("postmaster@other.test", "a@sender.test", False),
    ("user@localhost", "a@sender.test", False),
    ("user@mx.test", "a@sender.test", False),  # relayd's own hostname
    ("user@ex\xe4mple.test", "a@sender.test", False),
    ("user@example.tes", "a@sender.test", False),
    ("user@xexample.test", "a@sender.test", False),
    ("user@sub.example.test", "a@sender.test", False),
    # Addressed to example.test: accepted, never rewritten.
    ("user%other.test@example.test", "a@sender.test", True),
    ("other.test!user@example.test", "a@sender.test", True),
    ("\"user@other.test\"@example.test", "a@sender.test", True),
    ("@other.test:user@example.test", "a@sender.test", True),
    ("USER@EXAMPLE.TEST", "", True),
]


def session(port, source):
    c = gh.Client(port, source)
    code, _ = c.reply()
    assert code == 220
    c.cmd("EHLO client.test")
    c.cmd("XSCRIPT rcpt CONT")
    return c


def rcpt(c, sender, addr, data=False):
    """MAIL, RCPT (and the message when data): the RCPT reply code, and
    the final reply when a message was sent."""
    mail = c.cmd("MAIL FROM:<%s>%s" % (sender, " SMTPUTF8" if any(
        ord(ch) > 127 for ch in addr) else ""))
    if mail[0] != 250:
        return (mail[0], None)
    code = c.cmd("RCPT TO:<%s>" % addr)[0]
    final = None
    if data and code == 250:
        c.cmd("DATA")
        final = c.cmd("Subject: relay test\r\n\r\nbody\r\n.")[0]
    else:
        c.cmd("RSET")
    return (code, final)


def main():
    r = gh.Relayd(body=BODY).start()
    try:
        c = session(r.port, "127.0.0.1")
        foreign_accepted = 0
        for addr, sender, ours in TRICKS:
            code, final = rcpt(c, sender, addr, data=ours)
            label = "%s from <%s>" % (addr, sender)
            if ours:
                R.check("accepted (our domain): " + label, code == 250,
                        str(code))
                R.check("queued: " + label, final == 250, str(final))
            else:
                if code == 250:
                    foreign_accepted += 1
                R.check("refused: " + label, code in REFUSED, str(code))
        R.check("foreign recipients accepted == 0", foreign_accepted == 0,
                str(foreign_accepted))
        # A refused recipient leaves no message behind, even when DATA
        # follows (503: no valid recipients).
        c.cmd("MAIL FROM:<a@sender.test>")
        c.cmd("RCPT TO:<user@other.test>")
        code, _ = c.cmd("DATA")
        R.check("DATA after refused rcpt: 503/554", code in (503, 554),
                str(code))
        if code == 354:
            c.cmd("x\r\n.")
        c.cmd("QUIT")
        c.close()

        time.sleep(0.2)
        msgs = r.messages()
        R.check("only our-domain messages queued",
                len(msgs) == sum(1 for t in TRICKS if t[2]), str(len(msgs)))
        blob = b"".join(msgs)
        R.check("no foreign recipient in any queued message",
                b"<user@other.test>" not in blob and
                b"for <USER@OTHER.TEST>" not in blob)
        # Percent and bang forms go to the local MTA as written (a
        # source route is dropped: the mailbox is what follows it).
        for addr, _, ours in TRICKS:
            if ours:
                mailbox = addr.split(":", 1)[1] if addr[0] == "@" else addr
                R.check("recipient kept as written: " + addr,
                        ("for <%s>" % mailbox).encode() in blob)

        # 127.0.0.9 may relay: the same foreign recipient is accepted and
        # queued.
        before = len(r.messages())
        c = session(r.port, "127.0.0.9")
        code, final = rcpt(c, "a@sender.test", "user@other.test", data=True)
        R.check("relay client: foreign rcpt accepted", code == 250, str(code))
        R.check("relay client: message queued", final == 250, str(final))
        code, _ = rcpt(c, "", "USER@OTHER.TEST")
        R.check("relay client: null sender, foreign rcpt", code == 250,
                str(code))
        code, _ = rcpt(c, "a@sender.test", "user@other.test@example.test")
        R.check("relay client: syntax errors stay errors", code == 501,
                str(code))
        c.cmd("QUIT")
        c.close()
        time.sleep(0.2)
        R.check("relay client: one more message", len(r.messages()) ==
                before + 1, str(len(r.messages())))

        log = r.log_text()
        R.check("refusals logged", "user@other.test" in log)
    finally:
        r.stop()
    return R.done()


if __name__ == "__main__":
    sys.exit(main())
