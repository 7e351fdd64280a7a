#!/usr/bin/env python3
"""spool crash test: relayd (master and workers) killed with SIGKILL at a
random moment while clients send messages, then restarted: every message
that got 250 is delivered to the next hop; duplicates only for messages
whose delivery was in flight at the kill.

GH_SPOOL_KILLS sets the number of kill rounds (default 20, the issue's
acceptance run, about 20 s), GH_SPOOL_MESSAGES the messages offered per round
(default 500).
"""
import os
import random
import re
import signal
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402
import smtpsink  # noqa: E402

R = gh.Results("spool_crash")
KILLS = int(os.environ.get("GH_SPOOL_KILLS", "20"))
MESSAGES = int(os.environ.get("GH_SPOOL_MESSAGES", "500"))
SENDERS = 8
MAX_DELIVERIES = 50


def relayd(spool, hop):
    return gh.Relayd(log_level="info", body='plugins = [ "scripted", "spool" ];\n'
                     'spool = { dir = "%s"; port = %d; retry = [ "1" ]; '
                     'scan_interval = 1; max_deliveries = %d; };\n'
                     % (spool, hop, MAX_DELIVERIES)).start()


def gone(pid):
    """Exited (a zombie has released everything too)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def kill_all(r):
    """SIGKILL the workers and the master, no chance to clean up."""
    # A stopped master cannot replace the workers killed below: a
    # replacement it forked in between would outlive the round.
    os.kill(r.proc.pid, signal.SIGSTOP)
    pids = gh.children(r.proc.pid)
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    r.proc.kill()
    r.proc.wait()
    r.logf.close()
    for p in pids:
        # Until it is gone: a worker killed inside fdatasync() keeps its
        # files (and their locks) until the sync returns, and the next
        # relayd's start-up scan must find tmp/ unlocked.
        for _ in range(1000):
            if gone(p):
                break
            time.sleep(0.01)


def reply(f):
    lines = []
    while True:
        line = f.readline()
        if not line:
            raise ConnectionError("closed")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return int(line[:3])


def sender(port, numbers, acked, stop):
    """Send the numbered messages over one connection until stopped."""
    try:
        s = socket.create_connection(("127.0.0.1", port), 5)
        s.settimeout(10)
        f = s.makefile("rb")
        reply(f)
        s.sendall(b"EHLO crash.test\r\n")
        reply(f)
        for n in numbers:
            if stop.is_set():
                break
            s.sendall(b"MAIL FROM:<s@x.test>\r\n")
            if reply(f) != 250:
                break
            s.sendall(b"RCPT TO:<r@y.test>\r\n")
            if reply(f) != 250:
                break
            s.sendall(b"DATA\r\n")
            if reply(f) != 354:
                break
            s.sendall(b"Subject: crash %d\r\n\r\nmessage %d\r\n.\r\n"
                      % (n, n))
            if reply(f) == 250:
                acked.add(n)
        s.close()
    except (OSError, ConnectionError, ValueError):
        pass


def delivered_numbers(sink):
    out = []
    with sink.lock:
        for m in sink.messages:
            g = re.search(rb"Subject: crash (\d+)", m["data"])
            if g:
                out.append(int(g.group(1)))
    return out


spool = gh.tmpdir("gh-spool-crash-")
hop = gh.free_port()
sink = smtpsink.Sink(port=hop)
acked = set()
base = 0
total_dups = 0
rng = random.Random(os.environ.get("GH_SPOOL_SEED"))
for k in range(KILLS):
    r = relayd(spool, hop)
    stop = threading.Event()
    nums = list(range(base, base + MESSAGES))
    base += MESSAGES
    threads = [threading.Thread(target=sender, args=(
        r.port, nums[i::SENDERS], acked, stop)) for i in range(SENDERS)]
    for t in threads:
        t.start()
    time.sleep(rng.uniform(0.2, 1.2))
    kill_all(r)
    stop.set()
    for t in threads:
        t.join(15)
    # Restart: the new relayd finds the queue and delivers it.
    r = relayd(spool, hop)
    drained = False
    end = time.time() + 30
    while time.time() < end:
        if (not os.listdir(os.path.join(spool, "queue")) and
                acked <= set(delivered_numbers(sink))):
            drained = True
            break
        time.sleep(0.1)
    got = delivered_numbers(sink)
    lost = sorted(acked - set(got))
    R.check("round %d: every acknowledged message delivered" % k,
            drained and not lost, "%d lost of %d: %r" % (
                len(lost), len(acked), lost[:20]))
    R.check("round %d: nothing damaged" % k,
            os.listdir(os.path.join(spool, "corrupt")) == [],
            repr(os.listdir(os.path.join(spool, "corrupt"))))
    r.stop()
    R.check("round %d: tmp/ empty after the restart" % k,
            os.listdir(os.path.join(spool, "tmp")) == [],
            repr(os.listdir(os.path.join(spool, "tmp"))))
    # got accumulates over the rounds, so this is the running total.
    total_dups = len(got) - len(set(got))
    print("round %d: %d acknowledged so far, %d delivered, %d duplicates"
          % (k, len(acked), len(got), total_dups))
R.check("some messages acknowledged", len(acked) > 0)
# A duplicate is a delivery in flight when the worker died (delivered,
# file not yet removed): at most max_deliveries per kill.
R.check("duplicates bounded by deliveries in flight",
        total_dups <= MAX_DELIVERIES * KILLS, "%d" % total_dups)
sink.stop()
sys.exit(R.done())
