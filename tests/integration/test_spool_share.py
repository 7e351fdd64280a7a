#!/usr/bin/env python3
"""spool: the master hands the queue to the workers.  With two workers
each delivers its share of the queue files (the ids whose FNV-1a hash is
its share modulo 2); when one is killed the master starts a replacement
with the same share, whose start-up scan takes the dead worker's files
at once, and only those; SIGHUP (a new generation) flushes every share.
"""
import os
import signal
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402
import smtpsink  # noqa: E402

R = gh.Results("spool_share")
MSG = b"From: a@x.test\r\nSubject: share\r\n\r\nbody\r\n"


def fnv(s):
    h = 2166136261
    for c in s.encode():
        h = ((h ^ c) * 16777619) & 0xffffffff
    return h


def send(port, rcpt):
    return gh.send_mail(port, [rcpt], MSG)


def queue(spool):
    return sorted(os.listdir(os.path.join(spool, "queue")))


def delivered(sink):
    return sorted(r for m in list(sink.messages) for r in m["rcpts"])


spool = gh.tmpdir("gh-spool-share-")
hop_port = gh.free_port()       # nothing listens there yet
r = gh.Relayd(workers=2, body='plugins = [ "scripted", "spool" ];\n'
              'spool = { dir = "%s"; port = %d; retry = [ "1h" ]; '
              'scan_interval = 1; connect_timeout = 2; };\n'
              % (spool, hop_port)).start()
sink = None
try:
    ids = {}
    for i in range(16):
        code, lines = send(r.port, "m%d@y.test" % i)
        if code == 250:
            ids[lines[-1].split()[-2]] = "m%d@y.test" % i
    R.check("16 messages accepted", len(ids) == 16, repr(ids))
    R.check("all deferred (next hop down)",
            gh.wait(lambda: r.log_text().count(" deferred for 1 ") >= 16),
            r.log_text()[-2000:])
    R.check("each worker took a share",
            gh.wait(lambda: r.log_text().count("delivers share ") >= 2))
    sink = smtpsink.Sink(port=hop_port)
    time.sleep(2.5)
    R.check("due in an hour: the scans leave them alone",
            sink.messages == [] and len(queue(spool)) == 16,
            repr(delivered(sink)))
    pids = gh.children(r.proc.pid)
    R.check("two workers", len(pids) == 2, repr(pids))
    victim = pids[0]
    log = r.log_text()
    share = None
    for line in log.splitlines():
        if ("relayd[%d]" % victim) in line and "delivers share " in line:
            share = int(line.split("delivers share ")[1].split()[0])
    R.check("the victim's share is in the log", share in (0, 1), log[-1500:])
    mine = sorted(ids[q] for q in ids if fnv(q) % 2 == share)
    others = sorted(q for q in ids if fnv(q) % 2 != share)
    os.kill(victim, signal.SIGKILL)
    R.check("master starts a replacement",
            gh.wait(lambda: len([p for p in gh.children(r.proc.pid)
                              if p != victim]) == 2))
    R.check("the replacement delivers the dead worker's share at once",
            gh.wait(lambda: delivered(sink) == mine) and len(mine) > 0,
            "%r vs %r" % (delivered(sink), mine))
    time.sleep(1.5)
    R.check("and only that share: the others wait for their owner",
            delivered(sink) == mine and queue(spool) == others,
            "%r %r" % (delivered(sink), queue(spool)))
    os.kill(r.proc.pid, signal.SIGHUP)
    R.check("SIGHUP: the new workers flush every share",
            gh.wait(lambda: delivered(sink) == sorted(ids.values()) and
                 queue(spool) == []),
            "%r %r" % (delivered(sink), queue(spool)))
finally:
    r.stop()
    if sink:
        sink.stop()
R.done()
