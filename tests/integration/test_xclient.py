#!/usr/bin/env python3
"""XCLIENT (Postfix's XCLIENT_README) from relayd.xclient_hosts.

Checked: EHLO offers XCLIENT only to xclient_hosts; from anyone else
XCLIENT gets 550 5.7.0 and a log line; a trusted XCLIENT answers with a
new 220 greeting after the connect hooks ran again with the new address
(the access plugin refuses 127.0.0.9 and 2001:db8::1, and the rDNS name
NAME gives), HELO and PROTO survive the reset, NAME/ADDR/PORT/LOGIN
reach the Received header, xtext is decoded; XCLIENT inside a
transaction gets 503 5.5.1, bad syntax 501 5.5.4 (and the session goes
on); a second XCLIENT is judged on the connection's own address; trust
and relaying granted to the harness's address do not outlive it.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("xclient")

# client_allow trusts the harness's own address (a note at connect):
# after XCLIENT that trust must be gone with it.
BODY = ('plugins = [ "access", "scripted" ];\n'
        'access = { client_allow = [ "127.0.0.1" ]; '
        'client_deny = [ "127.0.0.9", "2001:db8::/32" ]; '
        'rdns_deny = [ "spam.test" ]; };\n'
        'scripted = { sink_dir = "@SINK@"; };\n')
XC_ATTRS = "XCLIENT NAME ADDR PORT PROTO HELO LOGIN DESTADDR DESTPORT " \
    "REVERSE_NAME"

r = gh.Relayd(relayd_extra='xclient_hosts = [ "127.0.0.1", "::1" ];',
              body=BODY, log_level="debug").start()


def client(source="127.0.0.1"):
    c = gh.Client(r.port, source=source)
    code, lines = c.reply()
    assert code == 220, lines
    return c


def message(c, label):
    ok = c.cmd("MAIL FROM:<a@example.test>")[0] == 250
    ok = ok and c.cmd("RCPT TO:<b@example.test>")[0] == 250
    ok = ok and c.cmd("DATA")[0] == 354
    code, lines = c.cmd("Subject: %s\r\n\r\nbody\r\n." % label)
    return ok and code == 250


def received_of(label):
    for m in r.messages():
        if ("Subject: %s\r\n" % label).encode() in m:
            return m.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
    return ""


# EHLO offers it to xclient_hosts only.
c = client()
code, lines = c.cmd("EHLO harness.test")
R.check("EHLO from 127.0.0.1 offers XCLIENT", "250-" + XC_ATTRS in lines,
        repr(lines))
c.close()
c = client("127.0.0.2")
code, lines = c.cmd("EHLO other.test")
R.check("EHLO from 127.0.0.2 does not offer XCLIENT",
        code == 250 and not any("XCLIENT" in l for l in lines), repr(lines))
code, lines = c.cmd("XCLIENT ADDR=127.0.0.5")
R.check("XCLIENT from 127.0.0.2: 550 5.7.0",
        lines == ["550 5.7.0 Error: insufficient authorization"],
        repr(lines))
code, lines = c.cmd("NOOP")
R.check("... and the session goes on", code == 250, repr(lines))
c.close()
R.check("XCLIENT refusal logged",
        "XCLIENT refused: 127.0.0.2 is not in relayd.xclient_hosts" in
        r.log_text())

# The connect hooks run again with the new address.
c = client()
code, lines = c.cmd("XCLIENT ADDR=127.0.0.9")
R.check("XCLIENT ADDR=127.0.0.9: access refuses the new address",
        lines == ["554 5.7.1 Access denied: client 127.0.0.9"], repr(lines))
R.check("... and closes, as for a new connection", c.closed())
c.close()

c = client()
code, lines = c.cmd("XCLIENT ADDR=IPV6:2001:db8::1 PORT=1234")
R.check("XCLIENT ADDR=IPV6:2001:db8::1: refused by network",
        lines == ["554 5.7.1 Access denied: client 2001:db8::1"],
        repr(lines))
c.close()

c = client()
code, lines = c.cmd("XCLIENT ADDR=127.0.0.6 NAME=mx.spam.test")
R.check("XCLIENT NAME=mx.spam.test: rdns_deny refuses it",
        code == 554 and "mx.spam.test" in lines[0], repr(lines))
c.close()

# A full session as another client: HELO and PROTO survive the reset,
# the 220 is the greeting of a new connection.
c = client()
c.cmd("EHLO harness.test")
code, lines = c.cmd("XCLIENT NAME=host.example.test ADDR=127.0.0.7 "
                    "PORT=4242 HELO=helo.example.test PROTO=ESMTP")
R.check("XCLIENT accepted: a new 220 greeting",
        code == 220 and lines[0].startswith("220 mx.test"), repr(lines))
R.check("HELO from XCLIENT stands: MAIL without EHLO",
        message(c, "xclient one"), "")
c.cmd("QUIT")
c.close()
rec = received_of("xclient one")
R.check("Received: HELO, NAME and ADDR from XCLIENT, ESMTP",
        "from helo.example.test (host.example.test [127.0.0.7])" in rec and
        "with ESMTP id" in rec, rec)
log = r.log_text()
R.check("XCLIENT logged with its attributes",
        "XCLIENT from 127.0.0.1: NAME=host.example.test ADDR=127.0.0.7 "
        "PORT=4242 HELO=helo.example.test PROTO=ESMTP" in log, log[-1500:])

# Without HELO the session is back at the greeting stage.
c = client()
c.cmd("EHLO harness.test")
code, lines = c.cmd("XCLIENT ADDR=127.0.0.8")
R.check("XCLIENT ADDR only: 220", code == 220, repr(lines))
code, lines = c.cmd("MAIL FROM:<a@example.test>")
R.check("... then MAIL needs a new EHLO (503 5.5.1)",
        code == 503 and "5.5.1" in lines[0], repr(lines))
code, lines = c.cmd("EHLO again.test")
R.check("... and EHLO still offers XCLIENT (judged on 127.0.0.1)",
        "250-" + XC_ATTRS in lines, repr(lines))
# LOGIN counts as AUTH; xtext: +3D is "=".
code, lines = c.cmd("XCLIENT LOGIN=alice HELO=x+3Dy.test PROTO=ESMTP")
R.check("XCLIENT LOGIN and xtext HELO: 220", code == 220, repr(lines))
R.check("message after XCLIENT LOGIN", message(c, "xclient login"))
rec = received_of("xclient login")
R.check("Received: xtext decoded (no domain: in the comment), ESMTPA "
        "for LOGIN, ADDR kept",
        "from unknown (unknown [127.0.0.8] helo=x=y.test)" in rec and
        "with ESMTPA id" in rec, rec)
# An IPv6 client's literal in Received carries its tag (RFC 5321 4.1.3).
code, lines = c.cmd("XCLIENT ADDR=IPV6:fd00::25")
R.check("XCLIENT ADDR=IPV6 outside the denied net: 220", code == 220,
        repr(lines))
c.cmd("EHLO v6.test")
R.check("message from an IPv6 client", message(c, "xclient v6"))
rec = received_of("xclient v6")
R.check("Received: IPv6 literal tagged", "[IPv6:fd00::25]" in rec,
        rec)
R.check("XCLIENT LOGIN logged as AUTH logs its user",
        "HELO=x=y.test LOGIN=alice PROTO=ESMTP" in r.log_text())
# A second XCLIENT in the same session, to a refused address.
code, lines = c.cmd("XCLIENT ADDR=127.0.0.9")
R.check("a second XCLIENT: access refuses 127.0.0.9", code == 554,
        repr(lines))
c.close()

# Inside a transaction: 503 5.5.1.
c = client()
c.cmd("EHLO harness.test")
c.cmd("MAIL FROM:<a@example.test>")
code, lines = c.cmd("XCLIENT ADDR=127.0.0.7")
R.check("XCLIENT inside a transaction: 503 5.5.1",
        lines == ["503 5.5.1 Error: MAIL transaction in progress"],
        repr(lines))
code, lines = c.cmd("RCPT TO:<b@example.test>")
R.check("... and the transaction goes on", code == 250, repr(lines))
c.close()

# Syntax: 501 5.5.4, the session goes on.
c = client()
for arg, why in [
        ("", "XCLIENT needs attributes"),
        ("  ADDR=127.0.0.7", "Extra space in XCLIENT"),
        (" ADDR=127.0.0.7 ", "Extra space in XCLIENT"),
        (" FOO=bar", "Bad XCLIENT attribute name"),
        (" ADDR", "Missing = in XCLIENT attribute"),
        (" ADDR=127.0.0.300", "Bad XCLIENT address"),
        (" PORT=65536", "Bad XCLIENT port"),
        (" ADDR=127.0.0.7 ADDR=127.0.0.8", "Duplicate XCLIENT attribute"),
        (" HELO=a+0Db", "Control character in XCLIENT value"),
        (" HELO=a+zz", "Bad xtext escape in XCLIENT value"),
        (" PROTO=LMTP", "Bad XCLIENT protocol"),
        (" ADDR=[TEMPUNAVAIL]", "[TEMPUNAVAIL] is for NAME only"),
        (" ADDR=[UNAVAILABLE]", "Bad XCLIENT address: [UNAVAILABLE] is "
         "not supported")]:
    code, lines = c.cmd("XCLIENT" + arg)
    R.check("XCLIENT%s: 501 5.5.4 %s" % (arg, why),
            lines == ["501 5.5.4 " + why], repr(lines))
code, lines = c.cmd("EHLO still.test")
R.check("after the syntax errors the session goes on", code == 250,
        repr(lines))
code, lines = c.cmd("XCLIENT NAME=[TEMPUNAVAIL] REVERSE_NAME=[UNAVAILABLE]")
R.check("NAME=[TEMPUNAVAIL]: accepted", code == 220, repr(lines))
c.close()

r.stop()

# Relaying belongs to the address: granted to the harness by the relay
# plugin, gone with XCLIENT ADDR, back for an address in relay.clients
# or with LOGIN.
r = gh.Relayd(relayd_extra='xclient_hosts = [ "127.0.0.1" ];',
              body='plugins = [ "relay", "host_list" ];\n'
              'relay = { clients = [ "127.0.0.1" ]; };\n'
              'host_list = { domains = [ "example.test" ]; };\n').start()


def foreign_rcpt(c):
    c.cmd("EHLO harness.test")
    c.cmd("MAIL FROM:<a@example.test>")
    code, lines = c.cmd("RCPT TO:<x@foreign.test>")
    c.cmd("RSET")
    return code, lines


c = client()
code, lines = foreign_rcpt(c)
R.check("relay: the harness may relay", code == 250, repr(lines))
code, lines = c.cmd("XCLIENT ADDR=127.0.0.7")
R.check("relay: XCLIENT ADDR=127.0.0.7: 220", code == 220, repr(lines))
code, lines = foreign_rcpt(c)
R.check("relay: 127.0.0.7 may not (550 5.7.1)", code == 550 and
        "5.7.1" in lines[0], repr(lines))
c.cmd("XCLIENT ADDR=127.0.0.1")
code, lines = foreign_rcpt(c)
R.check("relay: XCLIENT back to 127.0.0.1 relays again", code == 250,
        repr(lines))
c.cmd("XCLIENT ADDR=127.0.0.7 LOGIN=bob")
code, lines = foreign_rcpt(c)
R.check("relay: XCLIENT LOGIN relays as AUTH does", code == 250,
        repr(lines))
c.cmd("XCLIENT LOGIN=[UNAVAILABLE]")
code, lines = foreign_rcpt(c)
R.check("relay: LOGIN=[UNAVAILABLE] takes it back", code == 550,
        repr(lines))
c.close()
r.stop()

# No xclient_hosts: nobody gets it.
r = gh.Relayd(body=BODY).start()
c = client()
code, lines = c.cmd("EHLO harness.test")
R.check("no xclient_hosts: not offered", not any("XCLIENT" in l
                                                 for l in lines))
code, lines = c.cmd("XCLIENT ADDR=127.0.0.7")
R.check("no xclient_hosts: 550 5.7.0", code == 550 and "5.7.0" in lines[0],
        repr(lines))
c.close()
r.stop()

sys.exit(R.done())
