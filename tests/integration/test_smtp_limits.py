#!/usr/bin/env python3
"""relayd's bounds where a transcript is not enough: several workers
sharing the connection counts, timeouts measured on the clock, data
timeouts per block, limits reached in the middle of a pipelined group,
input far larger than any buffer, and a body waiting in the input
behind a data hook.  tests/scenarios/limits.scn has
the reply and log line of each bound; this file checks how they hold
under load.
"""
import os
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("smtp_limits")
SINK = 'plugins = [ "scripted" ];\nscripted = { sink_dir = "@SINK@"; };\n'


def greeted(c):
    code, lines = c.reply()
    return code, lines


def envelope(c, rcpts=1):
    c.cmd("EHLO c.test")
    c.cmd("MAIL FROM:<a@example.test>")
    for i in range(rcpts):
        c.cmd("RCPT TO:<r%d@example.test>" % i)


def per_ip_across_workers():
    """The per-IP count is shared by the workers (a shared mapping), so
    the limit holds whichever worker accepts."""
    with gh.Relayd("max_connections_per_ip = 3;", SINK, workers=3) as r:
        held = []
        for i in range(3):
            c = gh.Client(r.port, "127.0.0.20")
            code, lines = greeted(c)
            R.check("per-ip: session %d greeted" % (i + 1), code == 220,
                    repr(lines))
            held.append(c)
        c = gh.Client(r.port, "127.0.0.20")
        code, lines = greeted(c)
        R.check("per-ip: fourth gets 421 4.7.0", code == 421 and
                lines[-1][4:].startswith("4.7.0"), repr(lines))
        R.check("per-ip: fourth is closed", c.closed())
        c.close()
        other = gh.Client(r.port, "127.0.0.21")
        code, lines = greeted(other)
        R.check("per-ip: another address gets in", code == 220,
                repr(lines))
        other.close()
        # A session that ends gives its place back.
        held[0].cmd("QUIT")
        held[0].closed()
        held[0].close()
        ok = False
        for _ in range(20):
            c = gh.Client(r.port, "127.0.0.20")
            code, _ = greeted(c)
            c.close()
            if code == 220:
                ok = True
                break
            time.sleep(0.05)
        R.check("per-ip: a place frees when a session ends", ok)
        for c in held[1:]:
            c.close()
        R.check("per-ip: log line", "refused 127.0.0.20: too many "
                "connections" in r.log_text())


def total_across_workers():
    with gh.Relayd("max_connections = 4;", SINK, workers=2) as r:
        time.sleep(0.3)     # the start-up probe's session has ended
        held = []
        for i in range(4):
            c = gh.Client(r.port, "127.0.0.%d" % (30 + i))
            code, lines = greeted(c)
            R.check("total: session %d greeted" % (i + 1), code == 220,
                    repr(lines))
            held.append(c)
        c = gh.Client(r.port, "127.0.0.40")
        code, lines = greeted(c)
        R.check("total: fifth gets 421 4.7.0", code == 421 and
                lines[-1][4:].startswith("4.7.0"), repr(lines))
        c.close()
        for c in held:
            c.close()


def timeouts():
    with gh.Relayd("timeout_command = 1;\n  timeout_data = 1;", SINK) as r:
        c = gh.Client(r.port)
        greeted(c)
        start = time.time()
        code, lines = c.reply()
        took = time.time() - start
        R.check("timeout_command: 421 4.4.2", code == 421 and
                lines[-1][4:].startswith("4.4.2"), repr(lines))
        R.check("timeout_command: not before a second", took >= 0.9,
                "%.2f s" % took)
        R.check("timeout_command: closed", c.closed())
        c.close()

        # timeout_data is per block (RFC 5321 4.5.3.2.6): a slow but
        # steady sender is never cut off.
        c = gh.Client(r.port)
        greeted(c)
        envelope(c)
        code, _ = c.cmd("DATA")
        R.check("slow data: 354", code == 354)
        c.send("Subject: slow\r\n\r\n")
        for i in range(5):
            time.sleep(0.5)
            c.send("line %d\r\n" % i)
        code, lines = c.cmd(".")
        R.check("slow data: a block every 0.5 s is never timed out",
                code == 250, repr(lines))
        # ... and after the message the command timeout is back.
        start = time.time()
        code, lines = c.reply()
        R.check("after data: the command timeout applies", code == 421 and
                time.time() - start >= 0.9, repr(lines))
        c.close()

        c = gh.Client(r.port)
        greeted(c)
        envelope(c)
        c.cmd("DATA")
        c.send("Subject: stalled\r\n")
        start = time.time()
        code, lines = c.reply()
        took = time.time() - start
        R.check("timeout_data: 421 4.4.2", code == 421 and
                lines[-1][4:].startswith("4.4.2"), repr(lines))
        R.check("timeout_data: not before a second", took >= 0.9,
                "%.2f s" % took)
        R.check("timeout_data: closed", c.closed())
        c.close()
        n = len(r.messages())
        R.check("timeouts: only the complete message is queued", n == 1,
                "%d queued" % n)


def pipelined_limits():
    with gh.Relayd("max_unrecognized = 3;\n  max_recipients = 3;",
                   SINK) as r:
        # Ten bad commands in one write: two 500s, a 421, and nothing
        # more is read.
        c = gh.Client(r.port)
        greeted(c)
        c.send("".join("BAD%d\r\n" % i for i in range(10)))
        replies = []
        while True:
            code, lines = c.reply()
            if code is None:
                break
            replies.append(code)
        R.check("pipelined unrecognized: 500 500 421 then close",
                replies == [500, 500, 421], repr(replies))
        c.close()

        # Six recipients in one group: three 250, three 452.
        c = gh.Client(r.port)
        greeted(c)
        c.cmd("EHLO c.test")
        c.send("MAIL FROM:<a@example.test>\r\n" +
               "".join("RCPT TO:<r%d@example.test>\r\n" % i
                       for i in range(6)) + "DATA\r\n")
        codes = [c.reply()[0] for _ in range(8)]
        R.check("pipelined recipients: 250 x4, 452 x3, 354",
                codes == [250, 250, 250, 250, 452, 452, 452, 354],
                repr(codes))
        code, lines = c.cmd("Subject: x\r\n\r\nbody\r\n.")
        R.check("pipelined recipients: queued", code == 250, repr(lines))
        c.close()
        time.sleep(0.1)
        msgs = r.messages()
        R.check("pipelined recipients: one message", len(msgs) == 1)
        R.check("trace: rcpts=3", "rcpts=3 " in r.log_text())


def large_inputs():
    with gh.Relayd("max_message_size = 65536;", SINK) as r:
        # A 4 MB command line without a line end: one 500, the rest
        # skipped, the session goes on.
        c = gh.Client(r.port)
        greeted(c)
        c.send(b"NOOP " + b"x" * (4 * 1024 * 1024) + b"\r\nNOOP\r\n")
        code1, l1 = c.reply()
        code2, l2 = c.reply()
        R.check("4 MB line: one 500 5.5.2", code1 == 500 and
                l1[-1][4:].startswith("5.5.2"), repr(l1))
        R.check("4 MB line: the next command is answered", code2 == 250,
                repr(l2))
        c.close()

        # A 5 MB message over a 64 KB limit: streamed, counted, refused
        # at its end, nothing queued.
        c = gh.Client(r.port)
        greeted(c)
        envelope(c)
        c.cmd("DATA")
        c.send(b"Subject: big\r\n\r\n")
        line = b"y" * 998 + b"\r\n"
        for _ in range(5 * 1024):
            c.send(line)
        code, lines = c.cmd(".")
        R.check("5 MB message: 552 5.3.4", code == 552 and
                lines[-1][4:].startswith("5.3.4"), repr(lines))
        code, _ = c.cmd("NOOP")
        R.check("5 MB message: the session goes on", code == 250)
        c.close()
        R.check("5 MB message: nothing queued", len(r.messages()) == 0)
        R.check("5 MB message: size counted to the end",
                "message of %d octets over the limit 65536"
                % (16 + 5 * 1024 * 1000) in r.log_text())

        # The size limit does not cut SIZE-declared messages short of it.
        c = gh.Client(r.port)
        greeted(c)
        c.cmd("EHLO c.test")
        code, lines = c.cmd("MAIL FROM:<a@example.test> SIZE=65537")
        R.check("SIZE over the limit: 552 5.3.4", code == 552, repr(lines))
        code, lines = c.cmd("MAIL FROM:<a@example.test> SIZE=65536")
        R.check("SIZE at the limit: 250", code == 250, repr(lines))
        c.close()


def early_talker_flood():
    body = ('plugins = [ "scripted" ];\n'
            'scripted = { sink_dir = "@SINK@"; '
            'connect = "AGAIN:CONT:300"; };\n')
    with gh.Relayd("", body) as r:
        # 360 KB of commands before the greeting, past the 256 KB read
        # watermark: reading pauses, nothing is lost, every command is
        # answered in order after the greeting.
        n = 60000
        c = gh.Client(r.port)
        c.send("NOOP\r\n" * n + "QUIT\r\n")
        code, _ = c.reply()
        R.check("early flood: greeted first", code == 220)
        codes = [c.reply()[0] for _ in range(n)]
        R.check("early flood: every NOOP answered",
                codes == [250] * n, "%d of %d" % (codes.count(250), n))
        code, _ = c.reply()
        R.check("early flood: QUIT last", code == 221)
        R.check("early flood: closed", c.closed())
        c.close()
        R.check("early flood: logged once",
                r.log_text().count("early talker") == 1)


def send_until_stuck(sock, chunk, limit, stuck=1.0):
    """Send chunk after chunk without reading until the peer has taken
    nothing for `stuck` seconds, or limit octets; returns octets sent."""
    sock.setblocking(False)
    sent = 0
    try:
        while sent < limit:
            _, w, _ = select.select([], [sock], [], stuck)
            if not w:
                break
            off = sent % len(chunk)
            try:
                sent += sock.send(chunk[off:])
            except BlockingIOError:
                continue
    finally:
        sock.setblocking(True)
    return sent


def read_replies(c, out):
    """Read raw replies up to QUIT's; out gets (number of 250 lines,
    the last line)."""
    data = b""
    while not data.endswith(b"\r\n") or b"221 " not in data[-200:]:
        chunk = c.sock.recv(1 << 20)
        if not chunk:
            break
        data += chunk
    lines = data.split(b"\r\n")[:-1]
    out.append((sum(1 for l in lines if l.startswith(b"250 ")),
                lines[-1] if lines else b""))


def non_reading_client():
    """A client that pipelines without reading (RFC 2920 3.1 forbids
    it) makes relayd pause its input, not buffer replies without bound;
    one that never reads is dropped by the write timeout."""
    noop = b"NOOP\r\n"
    chunk = noop * 10000
    # At "info", not "debug": no log line per command.
    with gh.Relayd("", SINK, log_level="info") as r:
        c = gh.Client(r.port)
        greeted(c)
        limit = 40 * 1000 * 1000
        sent = send_until_stuck(c.sock, chunk, limit)
        # 40 MB of NOOPs would queue 93 MB of replies.
        R.check("non-reading: relayd stops reading", sent < limit,
                "%d octets taken" % sent)
        # Reading the replies lets it go on, in order, to the end.
        codes = []
        t = threading.Thread(target=read_replies, args=(c, codes))
        t.start()
        rest = noop[sent % len(noop):] if sent % len(noop) else b""
        c.sock.settimeout(20)
        c.send(rest + b"QUIT\r\n")
        t.join(30)
        n = (sent + len(rest)) // len(noop)
        got, last = codes[0] if codes else (0, b"")
        R.check("non-reading: every command answered once read",
                got == n and last.startswith(b"221 "),
                "%d 250s of %d, then %r" % (got, n, last))
        c.close()

    with gh.Relayd("timeout_command = 1;", SINK, log_level="info") as r:
        c = gh.Client(r.port)
        greeted(c)
        # Stuck: relayd's replies are not taken, and after a second
        # without progress it drops the session.
        dropped = False
        try:
            send_until_stuck(c.sock, chunk, 1 << 40)
            time.sleep(1.5)
            c.sock.settimeout(5)
            c.sock.sendall(chunk * 20)
        except OSError:
            dropped = True
        R.check("never-reading: dropped after the write timeout", dropped)
        c.close()
        time.sleep(0.1)
        R.check("never-reading: log line",
                "timeout writing to the client" in r.log_text())


def per_ip_across_families():
    """An IPv4 client of a dual-stack listener (::ffff:a.b.c.d) is the
    same address as on an IPv4 listener: one count for both."""
    r = gh.Relayd("max_connections_per_ip = 1;", SINK)
    p2 = gh.free_port()
    with open(r.conf) as f:
        text = f.read()
    with open(r.conf, "w") as f:
        f.write(text.replace('listen = [ "127.0.0.1:%d" ];' % r.port,
                             'listen = [ "127.0.0.1:%d", '
                             '"[::ffff:127.0.0.1]:%d" ];' % (r.port, p2)))
    with r:
        held = gh.Client(r.port, "127.0.0.22")
        code, lines = greeted(held)
        R.check("per-ip, both families: first greeted", code == 220,
                repr(lines))
        c = gh.Client(p2, "127.0.0.22")
        code, lines = greeted(c)
        R.check("per-ip, both families: the same client on the "
                "dual-stack port is over the limit", code == 421,
                repr(lines))
        c.close()
        held.close()


def data_queued_behind_a_hook():
    """The whole body, in many small segments, waits in the input while
    an asynchronous data hook is still running: once the hook answers,
    all of it is read, though no read event will come for it."""
    with gh.Relayd("timeout_data = 8;", SINK) as r:
        c = gh.Client(r.port)
        greeted(c)
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.cmd("EHLO c.test")
        c.cmd("XSCRIPT data AGAIN:CONT:1000")
        c.cmd("MAIL FROM:<a@example.test>")
        c.cmd("RCPT TO:<b@example.test>")
        c.send(b"DATA\r\nSubject: t\r\n\r\n")
        for _ in range(60):
            c.send(b"x" * 1500 + b"\r\n")
            time.sleep(0.003)
        c.send(b".\r\n")
        code, lines = c.reply()
        R.check("body behind a pending data hook: 354", code == 354,
                repr(lines))
        t = time.time()
        code, lines = c.reply()
        R.check("body behind a pending data hook: read whole, 250",
                code == 250, repr(lines))
        R.check("body behind a pending data hook: not at the data "
                "timeout", time.time() - t < 5, "%.1f s" % (time.time() - t))
        c.close()


per_ip_across_workers()
per_ip_across_families()
total_across_workers()
timeouts()
pipelined_limits()
large_inputs()
early_talker_flood()
non_reading_client()
data_queued_behind_a_hook()
sys.exit(R.done())
