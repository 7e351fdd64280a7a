#!/usr/bin/env python3
"""spool: delivered queue files are kept in free/ and written over by the
next messages (filters/spool.c, file_reuse).

Checked: big messages delivered leave files in free/ (tmp/ and queue/
empty); a smaller message is then written over one of them (same
inode) and its queue file is exactly as long as its trailer says, with
the right CRC-32 (a reused file is truncated), while its delivery is
under way; relayd stopped then: free/ emptied; a new relayd's start-up
scan checks every queue file: nothing corrupt, the message delivered
byte for byte but for Received; a queue file whose envelope names
another message (a crash undid a reuse's renames) is set aside in
corrupt/, never delivered.
"""
import os
import re
import sys
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402
import smtpsink  # noqa: E402

R = gh.Results("spool_reuse")
BIG = (b"From: a@x.test\r\nSubject: big\r\n\r\n" +
       b"0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghij\r\n" * 300)
SMALL = b"From: a@x.test\r\nSubject: small\r\n\r\nsmall body\r\n"


def relayd(spool, hop):
    return gh.Relayd(body='plugins = [ "scripted", "spool" ];\n'
                     'spool = { dir = "%s"; port = %d; retry = [ "1" ]; '
                     'scan_interval = 1; };\n' % (spool, hop)).start()


def ls(spool, sub):
    return sorted(os.listdir(os.path.join(spool, sub)))


def wait(cond, secs=10):
    end = time.time() + secs
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def well_formed(path):
    """The queue file's trailer: GHEND CRC LENGTH, covering all before it,
    and nothing after it (spoolq.h)."""
    with open(path, "rb") as f:
        data = f.read()
    m = re.search(rb"GHEND ([0-9a-f]{8}) (\d+)\n\Z", data)
    if not m:
        return False
    n = int(m.group(2))
    return (n == m.start() and
            zlib.crc32(data[:n]) & 0xffffffff == int(m.group(1), 16))


spool = gh.tmpdir("gh-spool-reuse-")
sink = smtpsink.Sink()
r = relayd(spool, sink.port)
for i in range(3):
    code, _ = gh.send_mail(r.port, ["u@y.test"], BIG)
    R.check("big message %d: 250" % i, code == 250, str(code))
R.check("big messages delivered",
        wait(lambda: len(sink.messages) == 3 and not ls(spool, "queue")),
        "%d delivered, queue %r" % (len(sink.messages), ls(spool, "queue")))
free = ls(spool, "free")
# One after the other, each big message may be written over the file of
# the one before: at least one is left.
R.check("their files kept in free/, tmp/ empty",
        len(free) >= 1 and ls(spool, "tmp") == [],
        "free %r tmp %r" % (free, ls(spool, "tmp")))
inodes = {os.stat(os.path.join(spool, "free", n)).st_ino for n in free}
big_size = os.stat(os.path.join(spool, "free", free[0])).st_size

# The next hop answers the dot late: the small message stays in queue/
# while its delivery is under way.
sink.rules["dot_delay"] = 3
code, _ = gh.send_mail(r.port, ["u@y.test"], SMALL)
R.check("small message: 250", code == 250, str(code))
q = ls(spool, "queue")
R.check("small message queued", len(q) == 1, repr(q))
if q:
    path = os.path.join(spool, "queue", q[0])
    st = os.stat(path)
    R.check("written over a delivered file", st.st_ino in inodes and
            len(ls(spool, "free")) == len(free) - 1, "ino %d in %r, free %r"
            % (st.st_ino, inodes, ls(spool, "free")))
    R.check("truncated to its own length", st.st_size < big_size,
            "%d, was %d" % (st.st_size, big_size))
    R.check("length and CRC-32 as its trailer says", well_formed(path))
r.stop()
R.check("a stopped worker removes its free/ files", ls(spool, "free") == [],
        repr(ls(spool, "free")))

sink.rules["dot_delay"] = 0
r = relayd(spool, sink.port)
R.check("delivered after the restart",
        wait(lambda: not ls(spool, "queue") and
             any(m["data"].endswith(SMALL) for m in sink.messages)),
        "queue %r" % ls(spool, "queue"))
R.check("nothing corrupt", ls(spool, "corrupt") == [],
        repr(ls(spool, "corrupt")))
got = [m["data"] for m in sink.messages if m["data"].endswith(SMALL)]
R.check("byte for byte but for Received", len(got) >= 1 and
        got[-1].startswith(b"Received: "), repr(got[-1:])[:200])
r.stop()

# What a crash can leave of a reuse: the delivered message's name back in
# queue/ (the rename to free/ undone), over the new message's octets,
# whose own rename never happened.  That message was never acknowledged:
# it is set aside, not delivered.
r = relayd(spool, gh.free_port())       # no hop there: it stays queued
code, _ = gh.send_mail(r.port, ["v@y.test"], SMALL)
R.check("a message for the crash case: 250", code == 250, str(code))
r.stop()
q = ls(spool, "queue")
old_name = "25XCRASHOLDNAME0001"
if q:
    os.rename(os.path.join(spool, "queue", q[0]),
              os.path.join(spool, "queue", old_name))
n = len(sink.messages)
r = relayd(spool, sink.port)
R.check("a file named for another message: moved to corrupt/",
        wait(lambda: ls(spool, "corrupt") == [old_name]) and
        "holds message %s" % (q[0] if q else "?") in r.log_text(),
        "corrupt %r queue %r" % (ls(spool, "corrupt"), ls(spool, "queue")))
time.sleep(1.5)
R.check("... and never delivered", len(sink.messages) == n,
        repr([m["rcpts"] for m in sink.messages[n:]]))
r.stop()
sink.stop()
sys.exit(R.done())
