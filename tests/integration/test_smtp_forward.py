#!/usr/bin/env python3
"""smtp_forward against real next hops on loopback: Postfix's smtp-sink
and smtp-source, swaks, and a scriptable Python sink (tests/lib/
smtpsink.py) where exact octets, connection counts or per-command
replies matter.

Checked: the message arrives byte for byte with only relayd's Received
header added; 250 carries the hop's queue id; hop 5xx -> 550, 4xx -> 451,
no hop -> 451 4.4.1, dropped or silent hop mid-DATA -> 451 4.4.2;
connections are reused (RSET between transactions) and bounded by
max_connections; PIPELINING when offered; HELO fallback; ESMTP
parameters; routes; both rcpt_modes with refused recipients; 1000
messages from smtp-source all arrive.
"""
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402
import smtpsink  # noqa: E402

R = gh.Results("smtp_forward")
SMTP_SINK = "/usr/sbin/smtp-sink"
SMTP_SOURCE = "/usr/sbin/smtp-source"

MSG = (b"From: a@x.test\r\nTo: b@y.test\r\nSubject: forward test\r\n"
       b"\r\nfirst line\r\n.leading dot\r\n..two dots\r\n.\r\n"
       b" . \r\nlast line\r\n")


def relayd(port, extra="", plugins='"scripted", "smtp_forward"', **kw):
    body = ('plugins = [ %s ];\nsmtp_forward = { host = "127.0.0.1"; '
            'port = %d; %s };\n' % (plugins, port, extra))
    return gh.Relayd(body=body, **kw).start()


def only_received_added(data, msg):
    """data == Received header (folded) + msg."""
    if not data.endswith(msg):
        return False
    head = data[:len(data) - len(msg)]
    lines = head.split(b"\r\n")
    return (lines[0].startswith(b"Received: ") and lines[-1] == b"" and
            all(l[:1] in (b" ", b"\t") for l in lines[1:-1]))


def stuff(msg):
    return b"\r\n".join(b"." + l if l.startswith(b".") else l
                         for l in msg.split(b"\r\n"))


def send_raw(port, mail, rcpts, msg, source="127.0.0.1"):
    """One transaction; returns (rcpt replies, final reply)."""
    c = gh.Client(port, source)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<%s>" % mail if "<" not in mail else "MAIL FROM:" +
          mail)
    rr = [c.cmd("RCPT TO:<%s>" % r) for r in rcpts]
    if not any(code == 250 for code, _ in rr):
        c.close()
        return rr, (None, [])
    c.cmd("DATA")
    c.send(stuff(msg) + b".\r\n")
    final = c.reply()
    c.cmd("QUIT")
    c.close()
    return rr, final


def start_smtp_sink(args, dump=None):
    port = gh.free_port()
    cmd = [SMTP_SINK, "-u", "nobody"]
    if dump:
        cmd += ["-d", dump + "/%M."]
    p = subprocess.Popen(cmd + args + ["127.0.0.1:%d" % port, "100"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gh.wait_port("127.0.0.1", port, proc=p)
    return p, port


def stop(p):
    p.terminate()
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()


# ------------------------------------------------------------------
# Delivery, octets, queue id, reuse, pipelining.

sink = smtpsink.Sink()
r = relayd(sink.port)
try:
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test", "c@y.test"], MSG)
    R.check("250 after the hop's 250", final[0] == 250, repr(final))
    R.check("reply carries the hop's queue id",
            "queued as Q1" in final[1][-1], repr(final))
    R.check("one message at the hop", sink.wait_messages(1))
    m = sink.messages[0]
    R.check("octets identical but for Received",
            only_received_added(m["data"], MSG), repr(m["data"][:300]))
    R.check("dot-stuffed on the wire",
            b"\r\n..leading dot\r\n...two dots\r\n..\r\n" in m["raw"],
            repr(m["raw"]))
    R.check("envelope passed", m["mail"] == "MAIL FROM:<a@x.test>" and
            m["rcpts"] == ["b@y.test", "c@y.test"], repr(m))
    R.check("pipelined MAIL+RCPT+DATA", sink.pipelined == [True],
            repr(sink.pipelined))
    ehlo = [l for n, l in sink.commands if l.startswith("EHLO")]
    R.check("EHLO with our hostname", ehlo == ["EHLO mx.test"], repr(ehlo))

    # A second session: same hop connection, RSET first.
    s = smtplib.SMTP("127.0.0.1", r.port)
    s.sendmail("a@x.test", ["d@y.test"], MSG)
    s.sendmail("a@x.test", ["e@y.test"], MSG)
    s.quit()
    R.check("three messages", sink.wait_messages(3))
    R.check("one hop connection for three messages",
            sink.connections == 1, str(sink.connections))
    cmds = [l.split()[0] for n, l in sink.commands]
    R.check("RSET before each reuse", cmds.count("RSET") == 2, repr(cmds))

    # A message without a final CRLF before the dot cannot come from
    # DATA, but a large one goes through the temporary file and the
    # streaming window several times.
    big = b"Subject: big\r\n\r\n" + b"".join(
        b"%s line %07d ....................................................."
        b"...........\r\n" % (b"." if i % 7 == 0 else b"x", i)
        for i in range(40000))
    s = smtplib.SMTP("127.0.0.1", r.port)
    s.sendmail("a@x.test", ["big@y.test"], big)
    s.quit()
    R.check("large message arrives", sink.wait_messages(4))
    R.check("large message identical", only_received_added(
        sink.messages[3]["data"], big), str(len(sink.messages[3]["data"])))

    # ESMTP parameters pass when the client gave them and the hop has them.
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<p@x.test> SIZE=1000 BODY=8BITMIME")
    c.cmd("RCPT TO:<q@y.test>")
    c.cmd("DATA")
    c.send(stuff(MSG) + b".\r\n")
    code, _ = c.reply()
    c.close()
    R.check("params message accepted", code == 250)
    R.check("SIZE and BODY passed", sink.wait_messages(5) and
            sink.messages[4]["mail"] ==
            "MAIL FROM:<p@x.test> SIZE=1000 BODY=8BITMIME",
            repr(sink.messages[-1]["mail"]))

    # UTF-8 address, hop without SMTPUTF8: refused, never mangled.
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<p@x.test> SMTPUTF8")
    c.send("RCPT TO:<j\u00f6rg@y.test>\r\n".encode())
    c.reply()
    c.cmd("DATA")
    c.send(stuff(MSG) + b".\r\n")
    code, lines = c.reply()
    c.close()
    R.check("SMTPUTF8 needed, hop lacks it: 550 5.6.7",
            code == 550 and "5.6.7" in lines[-1], repr(lines))

    # Hop refuses the message at the dot: 5xx -> 550, 4xx -> 451.
    sink.rules["dot"] = "554 5.7.1 Spam detected"
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("hop 554 5.7.1 -> 550 5.7.1", final[0] == 550 and
            final[1][-1].startswith("550 5.7.1") and "Spam detected" in
            final[1][-1], repr(final))
    sink.rules["dot"] = "452 4.3.1 Insufficient system storage"
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("hop 452 4.3.1 -> 451 4.3.1", final[0] == 451 and
            final[1][-1].startswith("451 4.3.1"), repr(final))
    del sink.rules["dot"]
    sink.rules["mail"] = "553 5.7.1 Sender refused"
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("hop refuses MAIL -> 550 5.7.1", final[0] == 550 and
            "5.7.1" in final[1][-1], repr(final))
    del sink.rules["mail"]

    # Partial recipients in transaction mode: nothing is sent.
    n = len(sink.messages)
    conns = sink.connections
    sink.rules["rcpt"] = {"bad@y.test": "550 5.1.1 <bad@y.test>: unknown"}
    rr, final = send_raw(r.port, "a@x.test", ["ok@y.test", "bad@y.test"],
                         MSG)
    R.check("all refusals 5xx -> 550 5.1.1", final[0] == 550 and
            "5.1.1" in final[1][-1] and "bad@y.test" in final[1][-1],
            repr(final))
    sink.rules["rcpt"] = {"bad@y.test": "550 5.1.1 unknown",
                          "busy@y.test": "450 4.2.1 try later"}
    rr, final = send_raw(r.port, "a@x.test",
                         ["ok@y.test", "bad@y.test", "busy@y.test"], MSG)
    R.check("a 4xx refusal -> 451 4.2.1", final[0] == 451 and
            "4.2.1" in final[1][-1], repr(final))
    time.sleep(0.2)
    R.check("nothing delivered to the accepted ones",
            len(sink.messages) == n, repr(sink.messages[n:]))
    R.check("connection that got 354 closed without the dot",
            sink.connections > conns)
    del sink.rules["rcpt"]

    # The hop closes its connection after each message: the next one
    # still goes through (dead idle connections are dropped).
    sink.rules["close_after_dot"] = True
    for i in range(2):
        rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
        R.check("hop closing after each message: %d" % i, final[0] == 250,
                repr(final))
    del sink.rules["close_after_dot"]
finally:
    r.stop()
    sink.stop()

# swaks, and a hop without PIPELINING that refuses EHLO.
sink = smtpsink.Sink(pipelining=False)
sink.rules["ehlo"] = "502 5.5.2 Error: command not recognized"
r = relayd(sink.port)
try:
    p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port",
                        str(r.port), "--from", "s@x.test", "--to",
                        "t@y.test", "--body", "swaks body"],
                       capture_output=True, text=True, timeout=30)
    R.check("swaks gets 250 with queue id", "queued as Q1" in p.stdout,
            p.stdout[-500:])
    R.check("swaks message arrives", sink.wait_messages(1))
    cmds = [l.split()[0] for n, l in sink.commands]
    R.check("HELO after refused EHLO", "HELO" in cmds, repr(cmds))
    R.check("no pipelining when not offered", sink.pipelined == [False])
    # Transaction mode without pipelining: refused recipient, no DATA,
    # the connection stays usable.
    sink.rules["rcpt"] = {"bad@y.test": "550 5.1.1 unknown"}
    rr, final = send_raw(r.port, "a@x.test", ["bad@y.test", "b@y.test"],
                         MSG)
    R.check("no pipelining: refusal -> 550", final[0] == 550, repr(final))
    R.check("no DATA sent after a refused RCPT",
            [l for n, l in sink.commands].count("DATA") == 1)
    del sink.rules["rcpt"]
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("connection reused after the refusal", final[0] == 250 and
            sink.connections == 1, "%r %d" % (final, sink.connections))
finally:
    r.stop()
    sink.stop()

# ------------------------------------------------------------------
# Faults: smtp-sink's injected errors, a stopped hop, a silent hop.

FAULTS = [
    (["-r", "MAIL"], 451, "4.3.0", "smtp-sink -r MAIL (450) -> 451"),
    (["-f", "RCPT"], 550, "5.3.0", "smtp-sink -f RCPT (500) -> 550"),
    (["-f", "."], 550, "5.3.0", "smtp-sink -f . (500) -> 550"),
    (["-B", "554 5.7.1 Rejected by policy", "-f", "."], 550, "5.7.1",
     "smtp-sink -B 554 5.7.1 -f . -> 550 5.7.1"),
    (["-r", "."], 451, "4.3.0", "smtp-sink -r . (450) -> 451"),
    (["-Q", "DATA"], 451, "4.", "smtp-sink -Q DATA (421) -> 451"),
    (["-q", "."], 451, "4.4.2", "smtp-sink -q . (drop) -> 451 4.4.2"),
]
for args, want, enh, label in FAULTS:
    p, port = start_smtp_sink(args)
    r = relayd(port)
    try:
        rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
        R.check(label, final[0] == want and final[1] and
                final[1][-1][4:].startswith(enh), repr(final))
    finally:
        r.stop()
        stop(p)

# Nothing listens: 451 4.4.1.
r = relayd(gh.free_port())
try:
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("hop stopped -> 451 4.4.1", final[0] == 451 and
            final[1][-1].startswith("451 4.4.1"), repr(final))
    R.check("refusal logged", "cannot connect to next hop" in r.log_text())
finally:
    r.stop()

# A hop that goes silent after 354, and one that drops the connection.
sink = smtpsink.Sink()
r = relayd(sink.port, "data_timeout = 2;")
try:
    sink.rules["in_data"] = "hang"
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("silent hop mid-DATA -> 451 4.4.2", final[0] == 451 and
            final[1][-1].startswith("451 4.4.2"), repr(final))
    sink.rules["in_data"] = "drop"
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("hop drops mid-DATA -> 451 4.4.2", final[0] == 451 and
            final[1][-1].startswith("451 4.4.2"), repr(final))
    R.check("nothing acknowledged", not sink.messages)
    # An unasked 250 in the middle of the message accepts nothing: the
    # final dot was never sent.
    sink.rules["in_data"] = "reply:250 2.0.0 ok, early"
    # Larger than the socket buffers can hold: the 250 comes while the
    # message is still going out, never after its dot.
    big = b"Subject: big\r\n\r\n" + (b"x" * 76 + b"\r\n") * 200000
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], big)
    R.check("unasked 250 mid-DATA -> 451 4.5.0, never 250",
            final[0] == 451 and final[1][-1].startswith("451 4.5.0"),
            repr(final))
    del sink.rules["in_data"]
    # A pipelined MAIL refused, then the connection dropped (Exim's
    # "drop" ACL): the hop's 550 is the verdict, not the closing.
    sink.rules["mail"] = "550 5.7.1 sender blocked"
    sink.rules["close_after"] = "MAIL"
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("MAIL refused then closed -> the hop's 550",
            final[0] == 550 and "sender blocked" in final[1][-1],
            repr(final))
    del sink.rules["mail"]
    del sink.rules["close_after"]
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("recovers after faults", final[0] == 250, repr(final))
finally:
    r.stop()
    sink.stop()

# ------------------------------------------------------------------
# max_connections: three clients at once share one hop connection.

sink = smtpsink.Sink()
sink.rules["dot_delay"] = 0.2
r = relayd(sink.port, "max_connections = 1;", workers=1)
try:
    results = []

    def one(i):
        rr, final = send_raw(r.port, "a@x.test", ["m%d@y.test" % i], MSG)
        results.append(final[0])

    ts = [threading.Thread(target=one, args=(i,)) for i in range(3)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    R.check("max_connections 1: all three accepted",
            sorted(results) == [250, 250, 250], repr(results))
    R.check("max_connections 1: one hop connection",
            sink.connections == 1, str(sink.connections))
finally:
    r.stop()
    sink.stop()

# ------------------------------------------------------------------
# Routes: per recipient domain; one next hop per transaction.

a, b = smtpsink.Sink(), smtpsink.Sink()
r = relayd(a.port, 'routes = [ "example.org=127.0.0.1:%d" ];' % b.port)
try:
    send_raw(r.port, "a@x.test", ["u@example.org"], MSG)
    send_raw(r.port, "a@x.test", ["u@other.test"], MSG)
    R.check("route taken", b.wait_messages(1) and
            b.messages[0]["rcpts"] == ["u@example.org"])
    R.check("default taken", a.wait_messages(1) and
            a.messages[0]["rcpts"] == ["u@other.test"])
    rr, final = send_raw(r.port, "a@x.test",
                         ["v@example.org", "v@other.test"], MSG)
    R.check("other next hop -> 452 4.5.3 at RCPT", rr[1][0] == 452 and
            "4.5.3" in rr[1][1][-1], repr(rr))
    R.check("first hop's recipient still delivered", final[0] == 250 and
            b.wait_messages(2) and b.messages[1]["rcpts"] ==
            ["v@example.org"], repr(final))
finally:
    r.stop()
    a.stop()
    b.stop()

p = subprocess.run([gh.RELAYD, "-t", "-c", "/dev/stdin"], input=(
    'relayd = { listen = [ "127.0.0.1:1" ]; };\nplugins = [ "smtp_forward" ];'
    '\nsmtp_forward = { routes = [ "bad route" ]; };\n'), capture_output=True,
    text=True)
R.check("bad route refused at start-up", p.returncode != 0 and
        "domain=host:port" in p.stderr + p.stdout, p.stderr + p.stdout)

# ------------------------------------------------------------------
# rcpt_mode = "live": the hop's verdict per recipient, at RCPT time.

sink = smtpsink.Sink()
r = relayd(sink.port, 'rcpt_mode = "live";')
try:
    sink.rules["rcpt"] = {"bad@y.test": "550 5.1.1 <bad@y.test>: no such "
                          "user", "busy@y.test": "452 4.2.2 mailbox full"}
    rr, final = send_raw(r.port, "a@x.test",
                         ["ok@y.test", "bad@y.test", "busy@y.test",
                          "ok2@y.test"], MSG)
    R.check("live: hop's 550 5.1.1 at RCPT", rr[1][0] == 550 and
            "5.1.1" in rr[1][1][-1] and "no such user" in rr[1][1][-1],
            repr(rr))
    R.check("live: hop's 452 4.2.2 at RCPT", rr[2][0] == 452 and
            "4.2.2" in rr[2][1][-1], repr(rr))
    R.check("live: accepted ones 250", rr[0][0] == 250 and rr[3][0] == 250)
    R.check("live: message to the accepted ones only", final[0] == 250 and
            sink.wait_messages(1) and sink.messages[0]["rcpts"] ==
            ["ok@y.test", "ok2@y.test"], repr(sink.messages))
    R.check("live: octets identical",
            only_received_added(sink.messages[0]["data"], MSG))
    R.check("live: queue id in reply", "queued as" in final[1][-1])
    sink.rules["mail"] = "553 5.7.1 <a@x.test>: sender refused"
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("MAIL FROM:<a@x.test>")
    R.check("live: hop's MAIL refusal to the client", code == 553 and
            "5.7.1" in lines[-1], repr(lines))
    del sink.rules["mail"]
    code, lines = c.cmd("MAIL FROM:<a@x.test>")
    R.check("live: next MAIL accepted", code == 250, repr(lines))
    c.cmd("RCPT TO:<z@y.test>")
    c.cmd("RSET")
    c.cmd("MAIL FROM:<a@x.test>")
    c.cmd("RCPT TO:<w@y.test>")
    c.cmd("DATA")
    c.send(stuff(MSG) + b".\r\n")
    code, lines = c.reply()
    c.close()
    R.check("live: after RSET the new envelope only", code == 250 and
            sink.wait_messages(2) and sink.messages[1]["rcpts"] ==
            ["w@y.test"], repr(sink.messages[1:]))
    R.check("live: one hop connection throughout", sink.connections == 1,
            str(sink.connections))
    # SMTPUTF8 asked for by the client, not offered by the hop: what
    # needs it is refused (RFC 6531 3.2), a recipient at RCPT, headers
    # at the end of the message.
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("MAIL FROM:<a@x.test> SMTPUTF8")
    c.send("RCPT TO:<j\u00f6rg@y.test>\r\n".encode())
    code, lines = c.reply()
    R.check("live: UTF-8 recipient, hop without SMTPUTF8 -> 5.6.7",
            code // 100 == 5 and "5.6.7" in lines[-1], repr(lines))
    code, lines = c.cmd("RCPT TO:<ascii@y.test>")
    R.check("live: an ASCII recipient still 250", code == 250, repr(lines))
    c.cmd("DATA")
    c.send("Subject: h\u00e9llo\r\n\r\nbody\r\n.\r\n".encode())
    code, lines = c.reply()
    R.check("live: UTF-8 header, hop without SMTPUTF8 -> 550 5.6.7",
            code == 550 and "5.6.7" in lines[-1], repr(lines))
    R.check("live: nothing with UTF-8 reached the hop",
            not any("\u00f6" in l for _, l in sink.commands) and
            not any(b"h\xc3\xa9llo" in m["data"] for m in sink.messages),
            repr(sink.commands[-5:]))
    c.close()
    # The hop's 421 closes the hop's session, not the client's: the
    # client hears 451 and goes on (RFC 5321 3.8).
    sink.rules["rcpt"] = {"down@y.test": "421 4.3.0 hop shutting down"}
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@x.test>")
    code, lines = c.cmd("RCPT TO:<down@y.test>")
    R.check("live: hop's 421 at RCPT -> 451 to the client", code == 451 and
            "421 4.3.0" in lines[-1], repr(lines))
    code, lines = c.cmd("NOOP")
    R.check("live: the client's session goes on", code == 250, repr(lines))
    c.close()
    sink.rules["mail"] = "421 4.3.0 hop shutting down"
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("MAIL FROM:<a@x.test>")
    R.check("live: hop's 421 at MAIL -> 451 to the client", code == 451,
            repr(lines))
    c.close()
    del sink.rules["mail"]
    sink.rules["rcpt"] = {}
finally:
    r.stop()
    sink.stop()

r = relayd(gh.free_port(), 'rcpt_mode = "live";')
try:
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    code, lines = c.cmd("MAIL FROM:<a@x.test>")
    R.check("live: hop down -> 451 4.4.1 at MAIL", code == 451 and
            "4.4.1" in lines[-1], repr(lines))
    c.close()
finally:
    r.stop()

# A later plugin refuses a recipient the hop already took (live mode):
# the queue hook starts over with the client's envelope only.
sink = smtpsink.Sink()
r = relayd(sink.port, 'rcpt_mode = "live";',
           plugins='"smtp_forward", "scripted"')
try:
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@x.test>")
    c.cmd("RCPT TO:<kept@y.test>")
    c.cmd("XSCRIPT rcpt_ok DENY")
    code, lines = c.cmd("RCPT TO:<dropped@y.test>")
    R.check("live: later plugin refuses a recipient", code == 550,
            repr(lines))
    c.cmd("XSCRIPT rcpt_ok CONT")
    c.cmd("DATA")
    c.send(stuff(MSG) + b".\r\n")
    code, lines = c.reply()
    c.close()
    R.check("live: envelope changed -> resent whole, client's recipients",
            code == 250 and sink.wait_messages(1) and
            sink.messages[0]["rcpts"] == ["kept@y.test"],
            repr(sink.messages))
    R.check("live: RSET before the fresh transaction",
            "RSET" in [l for n, l in sink.commands])
finally:
    r.stop()
    sink.stop()

# Replies: multi-line joined, over-long refused; SMTPUTF8 passed on.
sink = smtpsink.Sink(smtputf8=True)
r = relayd(sink.port)
try:
    sink.rules["dot"] = ("250-2.0.0 first line\r\n250-2.0.0 second\r\n"
                         "250 2.0.0 queued as MULTI")
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("multi-line reply joined", final[0] == 250 and
            "first line second queued as MULTI" in final[1][-1],
            repr(final))
    sink.rules["dot"] = "250 2.0.0 " + "x" * 600
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("over-long reply line -> 451 4.5.0", final[0] == 451 and
            final[1][-1].startswith("451 4.5.0"), repr(final))
    sink.rules["dot"] = "\r\n".join(["250-2.0.0 l"] * 70 + ["250 2.0.0 x"])
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("too many reply lines -> 451 4.5.0", final[0] == 451 and
            final[1][-1].startswith("451 4.5.0"), repr(final))
    del sink.rules["dot"]
    n = len(sink.messages)
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<p@x.test> SMTPUTF8")
    c.send("RCPT TO:<j\u00f6rg@y.test>\r\n".encode())
    c.reply()
    c.cmd("DATA")
    c.send(stuff(MSG) + b".\r\n")
    code, lines = c.reply()
    c.close()
    R.check("SMTPUTF8 passed to a hop that has it", code == 250 and
            sink.wait_messages(n + 1) and
            sink.messages[-1]["mail"] == "MAIL FROM:<p@x.test> SMTPUTF8" and
            sink.messages[-1]["rcpts"] == ["j\u00f6rg@y.test"],
            repr(sink.messages[-1:]))
finally:
    r.stop()
    sink.stop()

# ------------------------------------------------------------------
# smtp-source: 1000 messages in 10 sessions all arrive at smtp-sink.

dump = tempfile.mkdtemp(prefix="gh-sink-")
os.chmod(dump, 0o777)
p, port = start_smtp_sink([], dump=dump)
r = relayd(port, log_level="info")
try:
    src = subprocess.run([SMTP_SOURCE, "-s", "10", "-m", "1000", "-f",
                          "from@x.test", "-t", "to@y.test",
                          "127.0.0.1:%d" % r.port], capture_output=True,
                         text=True, timeout=120)
    R.check("smtp-source finished", src.returncode == 0, src.stderr[-300:])
    end = time.time() + 10
    while time.time() < end and len(os.listdir(dump)) < 1000:
        time.sleep(0.1)
    R.check("1000 messages at smtp-sink", len(os.listdir(dump)) == 1000,
            str(len(os.listdir(dump))))
    R.check("no refusals logged", "deferred" not in r.log_text() and
            "refused" not in r.log_text())
finally:
    r.stop()
    stop(p)
    shutil.rmtree(dump, ignore_errors=True)

# One connection, a hop slow to answer the final dot, two clients at
# once: the second waits for the connection longer than the plugin's
# `timeout`, which must not cut it short once its dot is out (the hop
# would keep a message the client is told to send again).
sink = smtpsink.Sink()
sink.rules["dot_delay"] = 4
r = relayd(sink.port, "max_connections = 1; connect_timeout = 1; "
           "command_timeout = 1; data_timeout = 5; timeout = 3;")
replies = {}


def send_one(name):
    replies[name] = gh.send_mail(r.port, ["b@y.test"], MSG)[0]


try:
    ts = [threading.Thread(target=send_one, args=(n,)) for n in "AB"]
    for t in ts:
        t.start()
        time.sleep(0.05)
    for t in ts:
        t.join()
    R.check("slow hop, one connection: both clients get 250",
            replies == {"A": 250, "B": 250}, repr(replies))
    R.check("slow hop, one connection: as many messages at the hop as "
            "250s", sink.wait_messages(2) and len(sink.messages) == 2,
            "%d at the hop, replies %r" % (len(sink.messages), replies))
finally:
    r.stop()
    sink.stop()

# No free connection within data_timeout: 451 4.4.1 for the one that
# waits (the hop holds the only one, slow to answer MAIL).
sink = smtpsink.Sink()
sink.rules["mail_delay"] = 2.5
r = relayd(sink.port, "max_connections = 1; command_timeout = 5; "
           "data_timeout = 1;")
try:
    ts = [threading.Thread(target=send_one, args=(n,)) for n in "CD"]
    for t in ts:
        t.start()
        time.sleep(0.3)
    for t in ts:
        t.join()
    R.check("no free connection within data_timeout: the first 250, "
            "the waiting one 451", replies["C"] == 250 and
            replies["D"] == 451, repr(replies))
    R.check("... and the log says why",
            "no free connection to next hop" in r.log_text(),
            r.log_text()[-1500:])
finally:
    r.stop()
    sink.stop()

# idle_timeout = 0 (no reuse): each hop session still ends with QUIT.
sink = smtpsink.Sink()
r = relayd(sink.port, "idle_timeout = 0;")
try:
    for i in range(2):
        rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("no reuse: delivered over two connections", final[0] == 250 and
            sink.wait_messages(2) and sink.connections == 2,
            "%d connections" % sink.connections)
    R.check("no reuse: each connection ended with QUIT",
            gh.wait(lambda: sorted(n for n, l in sink.commands
                                   if l.upper() == "QUIT") == [1, 2], 5),
            repr(sink.commands))
finally:
    r.stop()
    sink.stop()

# relayd stopping with a connection idle in the pool says QUIT on it
# before it closes (the hop logs an orderly end, not a lost connection).
sink = smtpsink.Sink()
r = relayd(sink.port)
try:
    rr, final = send_raw(r.port, "a@x.test", ["b@y.test"], MSG)
    R.check("stop: a message through the pool", final[0] == 250,
            repr(final))
    R.check("stop: no QUIT while relayd runs",
            not any(l.upper() == "QUIT" for _, l in sink.commands))
finally:
    r.stop()
gh.wait(lambda: any(l.upper() == "QUIT" for _, l in sink.commands), 5)
R.check("stop: the idle pooled connection got QUIT",
        [n for n, l in sink.commands if l.upper() == "QUIT"] == [1],
        repr(sink.commands[-3:]))
sink.stop()

sys.exit(R.done())
