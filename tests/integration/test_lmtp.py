#!/usr/bin/env python3
"""lmtp against LMTP servers on loopback: a scriptable Python server
(per-recipient replies after the final dot) over TCP and a Unix socket,
and Postfix's smtp-sink in LMTP mode (-L) over both.

Checked: LHLO; the message arrives byte for byte with only Received
added; every recipient 250 -> 250; a 4xx for one -> 451 naming it (the
others delivered, and will be again on retry); all 5xx -> 550; a refusal
at RCPT -> nothing sent; no server -> 451 4.4.1; connection reuse.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402
import smtpsink  # noqa: E402

R = gh.Results("lmtp")
MSG = (b"From: a@x.test\r\nSubject: lmtp test\r\n\r\nbody\r\n.dot line\r\n"
       b"last\r\n")


def relayd(group):
    return gh.Relayd(body='plugins = [ "scripted", "lmtp" ];\n'
                     'lmtp = { %s };\n' % group).start()


def stuff(msg):
    return b"\r\n".join(b"." + l if l.startswith(b".") else l
                        for l in msg.split(b"\r\n"))


def send(port, rcpts, msg=MSG):
    c = gh.Client(port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@x.test>")
    for r in rcpts:
        c.cmd("RCPT TO:<%s>" % r)
    c.cmd("DATA")
    c.send(stuff(msg) + b".\r\n")
    final = c.reply()
    c.cmd("QUIT")
    c.close()
    return final


def only_received_added(data, msg):
    if not data.endswith(msg):
        return False
    lines = data[:len(data) - len(msg)].split(b"\r\n")
    return (lines[0].startswith(b"Received: ") and lines[-1] == b"" and
            all(l[:1] in (b" ", b"\t") for l in lines[1:-1]))


tmp = tempfile.mkdtemp(prefix="gh-lmtp-")

for kind in ("tcp", "unix"):
    path = os.path.join(tmp, "lmtp.sock") if kind == "unix" else None
    sink = smtpsink.Sink(lmtp=True, unix_path=path)
    r = relayd('socket = "unix:%s";' % path if path else
               'port = %d;' % sink.port)
    try:
        code, lines = send(r.port, ["a@y.test", "b@y.test", "c@y.test"])
        R.check("%s: all delivered -> 250" % kind, code == 250 and
                "delivered to 3 recipients" in lines[-1], repr(lines))
        R.check("%s: message at the server" % kind, sink.wait_messages(1)
                and sink.messages[0]["rcpts"] == ["a@y.test", "b@y.test",
                                                  "c@y.test"])
        R.check("%s: octets identical but for Received" % kind,
                only_received_added(sink.messages[0]["data"], MSG),
                repr(sink.messages[0]["data"][:200]))
        cmds = [l for n, l in sink.commands]
        R.check("%s: LHLO with our name" % kind, "LHLO mx.test" in cmds,
                repr(cmds))
        R.check("%s: pipelined" % kind, sink.pipelined == [True])

        sink.rules["lmtp"] = {"b@y.test": "452 4.2.2 <b@y.test> Mailbox "
                              "full"}
        code, lines = send(r.port, ["a@y.test", "b@y.test", "c@y.test"])
        R.check("%s: one 4xx after the dot -> 451 4.2.2 naming it" % kind,
                code == 451 and lines[-1].startswith("451 4.2.2") and
                "<b@y.test>" in lines[-1] and "1 of 3" not in lines[-1] and
                "2 of 3" in lines[-1], repr(lines))
        R.check("%s: the others were delivered" % kind,
                sink.wait_messages(2) and sink.messages[1]["rcpts"] ==
                ["a@y.test", "c@y.test"], repr(sink.messages[1:]))
        R.check("%s: duplicate on retry is logged" % kind,
                "duplicates the message" in r.log_text())

        sink.rules["lmtp"] = {"a@y.test": "550 5.1.1 <a@y.test> unknown",
                              "b@y.test": "552 5.2.2 <b@y.test> over quota"}
        code, lines = send(r.port, ["a@y.test", "b@y.test"])
        R.check("%s: all 5xx after the dot -> 550, first reply" % kind,
                code == 550 and lines[-1].startswith("550 5.1.1") and
                "unknown" in lines[-1], repr(lines))
        code, lines = send(r.port, ["a@y.test", "c@y.test"])
        R.check("%s: 5xx and delivered mixed -> 451" % kind,
                code == 451 and "<a@y.test>" in lines[-1], repr(lines))
        del sink.rules["lmtp"]

        n = len(sink.messages)
        sink.rules["rcpt"] = {"bad@y.test": "550 5.1.1 no such user"}
        code, lines = send(r.port, ["a@y.test", "bad@y.test"])
        R.check("%s: refused at RCPT -> 550, nothing sent" % kind,
                code == 550 and "5.1.1" in lines[-1] and
                len(sink.messages) == n, repr(lines))
        del sink.rules["rcpt"]

        sink.rules["in_data"] = "drop"
        code, lines = send(r.port, ["a@y.test"])
        R.check("%s: server drops mid-DATA -> 451 4.4.2" % kind,
                code == 451 and lines[-1].startswith("451 4.4.2"),
                repr(lines))
        del sink.rules["in_data"]
        conns = sink.connections
        send(r.port, ["a@y.test"])
        send(r.port, ["b@y.test"])
        R.check("%s: connection reused" % kind,
                sink.connections == conns + 1, "%d %d" %
                (conns, sink.connections))
    finally:
        r.stop()
        sink.stop()

# No server at all.
r = relayd('socket = "unix:%s/none.sock";' % tmp)
try:
    code, lines = send(r.port, ["a@y.test"])
    R.check("no server -> 451 4.4.1", code == 451 and
            lines[-1].startswith("451 4.4.1"), repr(lines))
finally:
    r.stop()

p = subprocess.run([gh.RELAYD, "-t", "-c", "/dev/stdin"], input=(
    'relayd = { listen = [ "127.0.0.1:1" ]; };\nplugins = [ "lmtp" ];\n'
    'lmtp = { socket = "/no/prefix"; };\n'), capture_output=True, text=True)
R.check("bad socket refused at start-up", p.returncode != 0 and
        "unix:/path" in p.stderr + p.stdout, p.stderr + p.stdout)

# Postfix's smtp-sink in LMTP mode, over a Unix socket and TCP.
for kind in ("unix", "tcp"):
    dump = tempfile.mkdtemp(prefix="gh-lmtp-dump-")
    os.chmod(dump, 0o777)
    if kind == "unix":
        addr = os.path.join(tmp, "sink-lmtp.sock")
        group = 'socket = "unix:%s";' % addr
        listen = "unix:" + addr
    else:
        port = gh.free_port()
        group = "port = %d;" % port
        listen = "127.0.0.1:%d" % port
    p = subprocess.Popen(["/usr/sbin/smtp-sink", "-u", "nobody", "-L", "-d",
                          dump + "/%M.", listen, "100"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 5
    while kind == "unix" and not os.path.exists(addr) and time.time() < end:
        time.sleep(0.02)
    if kind == "tcp":
        gh.wait_port("127.0.0.1", port, proc=p)
    r = relayd(group)
    try:
        codes = [send(r.port, ["u%d@y.test" % i, "v%d@y.test" % i])[0]
                 for i in range(20)]
        R.check("smtp-sink -L %s: 20 messages 250" % kind,
                codes == [250] * 20, repr(codes))
        end = time.time() + 5
        while time.time() < end and len(os.listdir(dump)) < 20:
            time.sleep(0.05)
        R.check("smtp-sink -L %s: 20 messages dumped" % kind,
                len(os.listdir(dump)) == 20, str(len(os.listdir(dump))))
    finally:
        r.stop()
        p.terminate()
        p.wait(5)
        shutil.rmtree(dump, ignore_errors=True)

shutil.rmtree(tmp, ignore_errors=True)
sys.exit(R.done())
