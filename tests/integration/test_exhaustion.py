#!/usr/bin/env python3
"""Resource exhaustion attack test: idle connections and clients that
trickle a byte a second do not stop a normal client from being served,
and the per-address limit holds.

1. relayd with max_connections = 2000 and no per-address limit: 1000
   connections that never say a word, and 20 clients that send
   "EHLO trickle.test\\r\\n" one octet a second, stay open while a normal
   client completes a whole transaction (greeting to QUIT) within a few
   seconds, twice.  All 1000 idle ones got their greeting: relayd served
   them too, it did not just leave them in the listen queue.
2. max_connections_per_ip = 5: five sessions from 127.0.0.1 are served,
   the sixth gets 421 4.7.0 and is closed; 127.0.0.2 is still served;
   when one of the five leaves, 127.0.0.1 is served again.
3. A worker at its open files limit pauses accepting (one warning a
   second), does not spin, and serves again once descriptors free.

The test raises its own RLIMIT_NOFILE (relayd inherits it).
"""
import os
import resource
import select
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("exhaustion")

BODY = ('plugins = [ "host_list", "scripted" ];\n'
        'host_list = { domains = [ "example.test" ]; };\n'
        'scripted = { sink_dir = "@SINK@"; };\n')
NIDLE = 1000
NTRICKLE = 20
PROMPT = 5.0  # seconds a normal transaction may take under attack


def raise_nofile(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < want:
        want = hard
    if soft == resource.RLIM_INFINITY or soft >= want:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def transaction(port, source="127.0.0.1"):
    """A whole transaction; (seconds, final reply code or None)."""
    start = time.time()
    try:
        c = gh.Client(port, source, timeout=PROMPT * 2)
        if c.reply()[0] != 220:
            return (time.time() - start, None)
        c.cmd("EHLO normal.test")
        c.cmd("MAIL FROM:<a@sender.test>")
        c.cmd("RCPT TO:<u@example.test>")
        c.cmd("DATA")
        code = c.cmd("Subject: normal\r\n\r\nbody\r\n.")[0]
        c.cmd("QUIT")
        c.close()
    except OSError:
        code = None
    return (time.time() - start, code)


def greeted(socks, timeout):
    """How many of socks have received their 220 within timeout."""
    pending = {s.fileno(): s for s in socks}
    got = 0
    end = time.time() + timeout
    while pending and time.time() < end:
        p = select.poll()
        for fd in pending:
            p.register(fd, select.POLLIN)
        for fd, _ in p.poll(200):
            s = pending.pop(fd)
            try:
                if s.recv(512).startswith(b"220"):
                    got += 1
            except OSError:
                pass
    return got


class Trickler(threading.Thread):
    """NTRICKLE clients, each sending one octet a second."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.stop = threading.Event()
        self.sent = 0

    def run(self):
        line = b"EHLO trickle.test\r\n"
        socks = []
        for _ in range(NTRICKLE):
            s = socket.create_connection(("127.0.0.1", self.port), 5)
            socks.append(s)
        i = 0
        while not self.stop.is_set():
            for s in socks:
                try:
                    s.send(line[i % len(line):i % len(line) + 1])
                    self.sent += 1
                except OSError:
                    pass
            i += 1
            self.stop.wait(1.0)
        for s in socks:
            s.close()


def flood_test():
    limit = raise_nofile(NIDLE + NTRICKLE + 200)
    n = min(NIDLE, limit - NTRICKLE - 100)
    R.check("file descriptors for %d idle connections" % NIDLE, n == NIDLE,
            "RLIMIT_NOFILE %d" % limit)
    r = gh.Relayd(relayd_extra="  max_connections = 2000;\n"
                  "  max_connections_per_ip = 0;\n", body=BODY,
                  log_level="info").start()
    idle = []
    trickle = Trickler(r.port)
    try:
        for _ in range(n):
            s = socket.socket()
            s.settimeout(5)
            s.connect(("127.0.0.1", r.port))
            idle.append(s)
        trickle.start()
        got = greeted(idle, 10)
        # Let the tricklers hold their half-read commands for a while.
        end = time.time() + 5
        while trickle.sent < 3 * NTRICKLE and time.time() < end:
            time.sleep(0.1)
        R.check("every idle connection greeted", got == n,
                "%d of %d" % (got, n))
        for k in range(2):
            secs, code = transaction(r.port)
            R.check("normal client served under attack (%d)" % k,
                    code == 250, str(code))
            R.check("normal client served promptly (%d)" % k,
                    secs < PROMPT, "%.1fs" % secs)
        R.check("tricklers still sending", trickle.sent >= 3 * NTRICKLE,
                str(trickle.sent))
        # The idle ones are still connected: nothing was dropped to make
        # room.
        p = select.poll()
        for s in idle:
            p.register(s.fileno(), select.POLLIN | select.POLLHUP)
        closed = [fd for fd, ev in p.poll(0) if ev & select.POLLHUP]
        R.check("idle connections kept open", not closed,
                "%d closed" % len(closed))
        R.check("relayd still running", r.proc.poll() is None)
    finally:
        trickle.stop.set()
        for s in idle:
            s.close()
        trickle.join(5)
        r.stop()
    R.check("messages queued", len(r.messages()) == 2,
            str(len(r.messages())))


def per_ip_test():
    r = gh.Relayd(relayd_extra="  max_connections_per_ip = 5;\n",
                  body=BODY).start()
    held = []
    try:
        for i in range(5):
            c = gh.Client(r.port, "127.0.0.1")
            code, _ = c.reply()
            R.check("per-ip: session %d greeted" % i, code == 220, str(code))
            held.append(c)
        c = gh.Client(r.port, "127.0.0.1")
        code, lines = c.reply()
        R.check("per-ip: sixth from 127.0.0.1 gets 421 4.7.0",
                code == 421 and lines and lines[0].startswith("421 4.7.0"),
                repr(lines))
        R.check("per-ip: and is closed", c.closed(5))
        c.close()
        secs, code = transaction(r.port, "127.0.0.2")
        R.check("per-ip: 127.0.0.2 still served", code == 250, str(code))
        held.pop().close()
        # relayd notices the close on its next loop turn.
        code = None
        end = time.time() + 5
        while time.time() < end:
            c = gh.Client(r.port, "127.0.0.1")
            code, _ = c.reply()
            c.close()
            if code == 220:
                break
            time.sleep(0.1)
        R.check("per-ip: a freed slot serves 127.0.0.1 again", code == 220,
                str(code))
        R.check("per-ip: refusal logged", "refused 127.0.0.1: too many "
                "connections" in r.log_text())
    finally:
        for c in held:
            c.close()
        r.stop()


def out_of_descriptors_test():
    """At its open files limit a worker pauses accepting instead of
    spinning on accept(2) and logging every turn; it serves again when
    descriptors free."""
    def low():
        resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
    r = gh.Relayd("max_connections_per_ip = 0;", BODY, workers=1,
                  log_level="info")
    r.logf = open(r.log, "w")
    r.proc = subprocess.Popen([gh.RELAYD, "-c", r.conf], stdout=r.logf,
                              stderr=r.logf, preexec_fn=low)
    socks = []
    try:
        gh.wait_port("127.0.0.1", r.port, proc=r.proc)
        time.sleep(0.3)
        worker = gh.children(r.proc.pid)[0]
        for _ in range(60):
            socks.append(socket.create_connection(("127.0.0.1", r.port)))

        def cpu():
            with open("/proc/%d/stat" % worker) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])
        time.sleep(0.5)
        c0 = cpu()
        time.sleep(2)
        used = cpu() - c0
        text = r.log_text()
        R.check("out of descriptors: the worker does not spin",
                used < 50, "%d CPU ticks in 2 s" % used)
        R.check("out of descriptors: said once a pause, not every turn",
                0 < text.count("not accepting for 1 s") < 10 and
                text.count("accept: ") < 10, "%d accept lines" %
                text.count("accept: "))
        R.check("a low open files limit is warned about at start",
                "open files limit 40 is low" in text, text[-1500:])
        for s in socks:
            s.close()
        socks = []
        time.sleep(1.5)
        took, code = transaction(r.port)
        R.check("out of descriptors: served again once they free",
                code == 250, "reply %r" % code)
    finally:
        for s in socks:
            s.close()
        r.stop()


def main():
    flood_test()
    per_ip_test()
    out_of_descriptors_test()
    return R.done()


if __name__ == "__main__":
    sys.exit(main())
