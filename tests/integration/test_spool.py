#!/usr/bin/env python3
"""spool: the durable queue against a Python next hop on loopback.

Checked: a message is a complete queue file before the 250 and is then
delivered (byte for byte but for Received) and removed; next hop down,
then up: every queued message delivered, none lost; a 5xx recipient gets
an RFC 3464 bounce at the sender (parsed with the email module) while
the others are delivered; a 4xx recipient is retried; a message from
the null sender never bounces; a bounce that bounces goes to the
postmaster once; a torn queue file is moved to corrupt/ at start-up and
never delivered; expiry after max_lifetime bounces with 4.4.7; disk
full (a small tmpfs) answers 452 4.3.1, never 250; an attempt's
outcome that cannot be written is kept and written later, never
delivered again to the recipients that have it; a hop refusing the first
recipient of every transaction: each bounces with its own reply; the
bounce of an SMTPUTF8 8-bit message keeps SMTPUTF8 and BODY=8BITMIME;
messages ending without a line break or with a NUL near the end are
found whole after a restart;
relayd -q count,
list, hold, delete, flush DOMAIN, release; SIGHUP flushes.
"""
import email
import email.policy
import os
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402
import smtpsink  # noqa: E402

R = gh.Results("spool")
MSG = (b"From: a@x.test\r\nSubject: spool test\r\nMessage-ID: <m1@x.test>"
       b"\r\n\r\nbody\r\n.dot line\r\nlast\r\n")


def send(port, rcpts, msg=MSG, sender="a@x.test"):
    return gh.send_mail(port, rcpts, msg, sender)


def relayd(spooldir, hop_port, extra=""):
    return gh.Relayd(body='plugins = [ "scripted", "spool" ];\n'
                     'spool = { dir = "%s"; port = %d; retry = [ "1", "1", '
                     '"2" ]; scan_interval = 1; %s };\n'
                     % (spooldir, hop_port, extra)).start()


def only_received_added(data, msg):
    if not data.endswith(msg):
        return False
    lines = data[:len(data) - len(msg)].split(b"\r\n")
    return (lines[0].startswith(b"Received: ") and lines[-1] == b"" and
            all(l[:1] in (b" ", b"\t") for l in lines[1:-1]))


def dsn_fields(data):
    """(report, recipients' field dicts, headers part) of a DSN."""
    m = email.message_from_bytes(data, policy=email.policy.compat32)
    if m.get_content_type() != "multipart/report":
        return None
    parts = m.get_payload()
    report = [p for p in parts
              if p.get_content_type() == "message/delivery-status"]
    hdrs = [p for p in parts
            if p.get_content_type() == "text/rfc822-headers"]
    if not report or not hdrs:
        return None
    # compat32 parses message/delivery-status into a list of blocks.
    blocks = report[0].get_payload()
    return m, blocks, hdrs[0].get_payload()


# --- 1. stored before 250, then delivered and removed ---------------------
spool = gh.tmpdir("gh-spool-")
sink = smtpsink.Sink()
sink.rules["dot_delay"] = 0.5
r = relayd(spool, sink.port)
try:
    code, lines = send(r.port, ["b@y.test", "c@y.test"])
    R.check("250 for a stored message", code == 250 and
            "queued" in lines[-1], repr(lines))
    # The hop is slow (dot_delay): the file is in the queue right after
    # the 250, complete with its end marker.
    files = gh.queue_files(spool)
    ok = len(files) == 1
    if ok:
        with open(os.path.join(spool, "queue", files[0]), "rb") as f:
            raw = f.read()
        ok = (raw.startswith(b"GHSPOOL 1\n") and b"\nrcpt b@y.test\n" in raw
              and raw.rstrip(b"\n").rsplit(b"\n", 1)[-1].startswith(
                  b"GHEND "))
    R.check("queue file complete when 250 is sent", ok, repr(files))
    R.check("delivered to the next hop", sink.wait_messages(1) and
            sink.messages[0]["rcpts"] == ["b@y.test", "c@y.test"] and
            sink.messages[0]["mail"].startswith("MAIL FROM:<a@x.test>"),
            repr(sink.messages))
    R.check("octets identical but for Received",
            sink.messages and only_received_added(sink.messages[0]["data"],
                                                  MSG))
    R.check("queue file removed after delivery",
            gh.wait(lambda: gh.queue_files(spool) == []), repr(gh.queue_files(spool)))
    R.check("tmp empty", gh.queue_files(spool, "tmp") == [])

    # --- 2. one recipient 5xx, one 4xx, one fine ---------------------------
    sink.rules["dot_delay"] = 0
    sink.rules["rcpt"] = {"bad@y.test": "550 5.1.1 no such user",
                          "later@y.test": "450 4.2.0 try later"}
    n0 = len(sink.messages)
    code, lines = send(r.port, ["ok@y.test", "bad@y.test", "later@y.test"],
                       sender="s@x.test")
    R.check("mixed recipients: 250", code == 250, repr(lines))
    R.check("good recipient delivered despite the refusals",
            sink.wait_messages(n0 + 1) and
            sink.messages[n0]["rcpts"] == ["ok@y.test"],
            repr(sink.messages[n0:]))
    R.check("bounce delivered to the sender", sink.wait_messages(n0 + 2) and
            sink.messages[n0 + 1]["mail"].startswith("MAIL FROM:<>") and
            sink.messages[n0 + 1]["rcpts"] == ["s@x.test"],
            repr(sink.messages[n0 + 1:]))
    parsed = dsn_fields(sink.messages[n0 + 1]["data"]) \
        if len(sink.messages) > n0 + 1 else None
    R.check("bounce is multipart/report delivery-status", parsed is not None)
    if parsed:
        m, blocks, hdrs = parsed
        R.check("report-type", m.get_param("report-type") ==
                "delivery-status")
        R.check("Reporting-MTA", blocks[0].get("Reporting-MTA") ==
                "dns; mx.test", repr(blocks[0].items()))
        rc = [b for b in blocks[1:]]
        R.check("one recipient block", len(rc) == 1, repr(len(rc)))
        if rc:
            R.check("Final-Recipient", rc[0].get("Final-Recipient") ==
                    "rfc822; bad@y.test")
            R.check("Action failed", rc[0].get("Action") == "failed")
            R.check("Status 5.1.1", rc[0].get("Status") == "5.1.1")
            R.check("Diagnostic-Code", rc[0].get("Diagnostic-Code", "")
                    .startswith("smtp; 550 5.1.1 no such user"),
                    repr(rc[0].get("Diagnostic-Code")))
            # RFC 3464 2.3.5: a host, here an address literal, no port.
            R.check("Remote-MTA names the next hop as a host",
                    rc[0].get("Remote-MTA") == "dns; [127.0.0.1]",
                    repr(rc[0].get("Remote-MTA")))
        R.check("original headers attached", "Message-ID: <m1@x.test>" in
                str(hdrs) and "body" not in str(hdrs), repr(str(hdrs)))
        R.check("bounce from the null sender, auto-submitted",
                m.get("Auto-Submitted") == "auto-replied")
    # The 4xx recipient: retried 1 s later, accepted now.
    sink.rules["rcpt"] = {"bad@y.test": "550 5.1.1 no such user"}
    R.check("4xx recipient retried and delivered",
            sink.wait_messages(n0 + 3, 8) and
            sink.messages[n0 + 2]["rcpts"] == ["later@y.test"],
            repr(sink.messages[n0 + 2:]))
    R.check("queue empty after retry", gh.wait(lambda: gh.queue_files(spool) ==
                                            []), repr(gh.queue_files(spool)))
    log = r.log_text()
    R.check("deferred logged", "later@y.test> deferred" in log)

    # --- 3. null sender never bounces ---------------------------------------
    n0 = len(sink.messages)
    code, lines = send(r.port, ["bad@y.test"], sender="")
    R.check("null sender: 250", code == 250, repr(lines))
    R.check("null sender: dropped, no bounce",
            gh.wait(lambda: "no bounce for a message from the null sender" in
                 r.log_text()) and gh.queue_files(spool) == [] and
            len(sink.messages) == n0, repr(sink.messages[n0:]))
finally:
    r.stop()
    sink.stop()

# --- 4. next hop down, then up: everything delivered, oldest first --------
spool = gh.tmpdir("gh-spool-")
hop = gh.free_port()
r = relayd(spool, hop)
try:
    N = 30
    got = [send(r.port, ["r%d@y.test" % i], msg=MSG.replace(
        b"spool test", b"spool test %d" % i))[0] for i in range(N)]
    R.check("hop down: every message 250", got == [250] * N, repr(got))
    R.check("hop down: all queued", len(gh.queue_files(spool)) == N)
    R.check("hop down: deferred", gh.wait(lambda: "deferred for 1 recipients"
                                       in r.log_text()))
    sink = smtpsink.Sink(port=hop)
    R.check("hop up: all delivered", sink.wait_messages(N, 15),
            "%d of %d" % (len(sink.messages), N))
    rc = sorted(m["rcpts"][0] for m in sink.messages)
    R.check("hop up: none lost, no duplicates",
            rc == sorted("r%d@y.test" % i for i in range(N)), repr(rc))
    R.check("hop up: queue empty", gh.wait(lambda: gh.queue_files(spool) == []))
    sink.stop()
finally:
    r.stop()

# --- 5. bounce of a bounce: postmaster once, then dropped -----------------
spool = gh.tmpdir("gh-spool-")
sink = smtpsink.Sink()
sink.rules["rcpt"] = {"bad@y.test": "550 5.1.1 no", "s@x.test":
                      "550 5.1.1 sender gone"}
r = relayd(spool, sink.port, 'postmaster = "pm@y.test";')
try:
    code, lines = send(r.port, ["bad@y.test"], sender="s@x.test")
    R.check("double bounce: 250", code == 250)
    R.check("double bounce: to the postmaster", sink.wait_messages(1) and
            sink.messages[0]["rcpts"] == ["pm@y.test"] and
            sink.messages[0]["mail"].startswith("MAIL FROM:<>"),
            repr(sink.messages))
    R.check("double bounce: nothing left", gh.wait(lambda: gh.queue_files(spool)
                                               == []))
    sink.rules["rcpt"]["pm@y.test"] = "550 5.1.1 pm gone"
    code, lines = send(r.port, ["bad@y.test"], sender="s@x.test")
    R.check("triple failure: dropped with a log line",
            gh.wait(lambda: "undeliverable bounce dropped" in r.log_text()) and
            gh.wait(lambda: gh.queue_files(spool) == []))
finally:
    r.stop()
    sink.stop()

# --- 6. torn file at start-up; expiry bounces ------------------------------
spool = gh.tmpdir("gh-spool-")
hop = gh.free_port()
r = relayd(spool, hop, "max_lifetime = 2;")
try:
    code, _ = send(r.port, ["late@y.test"], sender="s@x.test")
    R.check("expiry: 250 with the hop down", code == 250)
    R.check("expiry: still queued", len(gh.queue_files(spool)) == 1)
    r.stop()
    # A torn copy (crash halfway through a write that reached the disk).
    name = gh.queue_files(spool)[0]
    with open(os.path.join(spool, "queue", name), "rb") as f:
        raw = f.read()
    with open(os.path.join(spool, "queue", "Z" + name[1:]), "wb") as f:
        f.write(raw[:len(raw) // 2])
    sink = smtpsink.Sink(port=hop)
    sink.rules["rcpt"] = {"late@y.test": "451 4.3.2 not now"}
    time.sleep(2)
    r = relayd(spool, hop, "max_lifetime = 2;")
    R.check("torn file moved to corrupt/",
            gh.wait(lambda: gh.queue_files(spool, "corrupt") == ["Z" + name[1:]]),
            repr(gh.queue_files(spool, "corrupt")))
    R.check("torn file logged", gh.wait(lambda: "is damaged" in r.log_text()))
    # The hop is up but refuses it for now: past max_lifetime it bounces.
    R.check("expired: bounce at the sender", sink.wait_messages(1, 8) and
            sink.messages[0]["rcpts"] == ["s@x.test"] and
            b"Status: 4.4.7" in sink.messages[0]["data"],
            repr(sink.messages))
    R.check("expired: torn copy never delivered",
            all(m["rcpts"] != ["late@y.test"] for m in sink.messages))
    sink.stop()
finally:
    r.stop()

# --- 7. disk full: 452 4.3.1, never 250 ------------------------------------
if os.geteuid() == 0:
    spool = gh.tmpdir("gh-spool-")
    mounted = subprocess.call(["mount", "-t", "tmpfs", "-o", "size=256k",
                               "tmpfs", spool]) == 0
    if mounted:
        hop = gh.free_port()
        r = relayd(spool, hop)
        try:
            big = MSG + b"x" * 998 + b"\r\n"
            big = big * 100   # about 100 KB each
            codes = [send(r.port, ["f@y.test"], msg=big)
                     for _ in range(4)]
            full = [c for c in codes if c[0] != 250]
            R.check("disk full: refused", len(full) >= 1, repr(codes))
            R.check("disk full: 452 4.3.1", all(
                c[0] == 452 and "4.3.1" in c[1][-1] for c in full),
                repr(full))
            stored = len(gh.queue_files(spool))
            R.check("disk full: a 250 for each stored message only",
                    stored == len(codes) - len(full),
                    "%d stored, %r" % (stored, codes))
            R.check("disk full: no tmp left", gh.queue_files(spool, "tmp")
                    == [])
        finally:
            r.stop()
            subprocess.call(["umount", spool])
    else:
        R.check("tmpfs mounted (root)", False)

# --- 7b. the outcome of a partial delivery cannot be written ----------------
# One recipient delivered, one deferred, and the file cannot be rewritten
# (its tmp folder is gone): the delivered one must not get the message
# again at each scan from the old file; the outcome is written once the
# folder is back, and only the deferred recipient is tried again.
spool = gh.tmpdir("gh-spool-")
sink = smtpsink.Sink()
sink.rules["rcpt"] = {"later@y.test": "450 4.2.0 not now"}
sink.rules["dot_delay"] = 1.0
r = relayd(spool, sink.port)
tdir = os.path.join(spool, "tmp")
try:
    code, lines = send(r.port, ["ok@y.test", "later@y.test"])
    R.check("unsaved outcome: accepted", code == 250, repr(lines))
    # The hop holds its reply to the dot for a second: the folder goes
    # away while the delivery is under way.
    os.rename(tdir, tdir + ".away")
    with open(tdir, "w") as f:
        f.write("not a folder\n")
    R.check("unsaved outcome: logged, kept in memory",
            gh.wait(lambda: "cannot save the recipients left" in
                    r.log_text() and "kept in memory" in r.log_text(), 8),
            r.log_text()[-1500:])
    time.sleep(3.5)     # three scans, and more than the first retry
    R.check("unsaved outcome: the delivered recipient gets it once",
            sum("ok@y.test" in m["rcpts"] for m in sink.messages) == 1,
            repr([m["rcpts"] for m in sink.messages]))
    os.unlink(tdir)
    os.rename(tdir + ".away", tdir)
    sink.rules["rcpt"] = {}
    R.check("unsaved outcome: saved once the folder is back",
            gh.wait(lambda: "deferred for 1 recipients" in r.log_text(), 8),
            r.log_text()[-1500:])
    R.check("unsaved outcome: then only the deferred recipient is tried",
            gh.wait(lambda: any(m["rcpts"] == ["later@y.test"]
                                for m in sink.messages), 8) and
            sum("ok@y.test" in m["rcpts"] for m in sink.messages) == 1,
            repr([m["rcpts"] for m in sink.messages]))
    R.check("unsaved outcome: queue empty at the end",
            gh.wait(lambda: gh.queue_files(spool) == []),
            repr(gh.queue_files(spool)))
finally:
    r.stop()
    sink.stop()

# --- 7c. a hop that refuses the first recipient of every transaction ------
# smtpc sends nothing when the hop refuses a recipient (all or nothing),
# so the spool sends again to those it took: each refused recipient
# bounces with its own reply, never with another's.
spool = gh.tmpdir("gh-spool-")
sink = smtpsink.Sink()
sink.rules["rcpt_first"] = "550 5.1.1 <%s> refused"
r = relayd(spool, sink.port)
rcpts = ["r%d@y.test" % i for i in range(1, 6)]
try:
    code, lines = send(r.port, rcpts)
    R.check("first refused each time: accepted", code == 250, repr(lines))
    R.check("first refused each time: the bounce arrives",
            sink.wait_messages(1, 10) and
            sink.messages[0]["mail"].startswith("MAIL FROM:<>"),
            repr([m["mail"] for m in sink.messages]))
    f = dsn_fields(sink.messages[0]["data"]) if sink.messages else None
    diag = {b.get("Final-Recipient", "").split(";")[-1].strip():
            b.get("Diagnostic-Code", "") for b in (f[1] if f else [])
            if b.get("Final-Recipient")}
    R.check("first refused each time: every recipient bounced with its "
            "own refusal", sorted(diag) == rcpts and
            all("<%s> refused" % a in diag[a] for a in rcpts), repr(diag))
finally:
    r.stop()
    sink.stop()

# --- 7d. the bounce of an SMTPUTF8, 8-bit message -------------------------
spool = gh.tmpdir("gh-spool-")
sink = smtpsink.Sink(smtputf8=True)
sink.rules["rcpt"] = {"bad@y.test": "550 5.1.1 no such user"}
r = relayd(spool, sink.port)
try:
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO c.test")
    c.send("MAIL FROM:<j\u00f6rg@x.test> SMTPUTF8 BODY=8BITMIME\r\n"
           .encode())
    code, lines = c.reply()
    c.cmd("RCPT TO:<bad@y.test>")
    c.cmd("DATA")
    c.send("From: j\u00f6rg@x.test\r\nSubject: gr\u00fc\u00dfe\r\n\r\n"
           "body\r\n.\r\n".encode())
    code, lines = c.reply()
    c.cmd("QUIT")
    c.close()
    R.check("SMTPUTF8 message accepted", code == 250, repr(lines))
    R.check("its bounce goes out with SMTPUTF8 and BODY=8BITMIME",
            sink.wait_messages(1, 10) and
            sink.messages[0]["mail"].startswith("MAIL FROM:<>") and
            "SMTPUTF8" in sink.messages[0]["mail"] and
            "BODY=8BITMIME" in sink.messages[0]["mail"],
            repr([m["mail"] for m in sink.messages]))
finally:
    r.stop()
    sink.stop()

# --- 7e. messages whose last octets are no line: found again after a restart
# A BDAT message without a final line break, and one with a NUL near its
# end, wait for a retry; the restarted relayd must find their trailers
# (a string search stopped at the NUL or wanted a line break) and
# deliver them, not call them damaged.
spool = gh.tmpdir("gh-spool-")
r = relayd(spool, gh.free_port())       # no hop: they wait
try:
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@x.test>")
    c.cmd("RCPT TO:<bdat@y.test>")
    body = b"Subject: bdat\r\n\r\nno final line end"
    c.send(b"BDAT %d LAST\r\n" % len(body) + body)
    code1, _ = c.reply()
    c.cmd("MAIL FROM:<a@x.test>")
    c.cmd("RCPT TO:<nul@y.test>")
    c.cmd("DATA")
    c.send(b"Subject: nul\r\n\r\na NUL \x00 near the end\r\n.\r\n")
    code2, _ = c.reply()
    c.close()
    R.check("odd endings: both accepted", (code1, code2) == (250, 250),
            repr((code1, code2)))
    R.check("odd endings: both wait in the queue",
            gh.wait(lambda: len(gh.queue_files(spool)) == 2 and
                    r.log_text().count("deferred for 1 recipients") >= 2),
            repr(gh.queue_files(spool)))
finally:
    r.stop()
sink = smtpsink.Sink()
r = relayd(spool, sink.port)
try:
    R.check("odd endings: delivered after a restart",
            sink.wait_messages(2, 10) and
            sorted(m["rcpts"][0] for m in sink.messages) ==
            ["bdat@y.test", "nul@y.test"],
            repr([m["rcpts"] for m in sink.messages]))
    R.check("odd endings: nothing called damaged",
            gh.queue_files(spool, "corrupt") == [] and
            "damaged" not in r.log_text(), r.log_text()[-1000:])
finally:
    r.stop()
    sink.stop()

# --- 8. relayd -q: count, list, hold, delete, flush DOMAIN, release; SIGHUP
spool = gh.tmpdir("gh-spool-")
hop = gh.free_port()
r = gh.Relayd(body='plugins = [ "scripted", "spool" ];\n'
              'spool = { dir = "%s"; port = %d; retry = [ "3600" ]; '
              'scan_interval = 1; };\n' % (spool, hop)).start()


def q(*args):
    p = subprocess.run([gh.RELAYD, "-c", r.conf, "-q"] + list(args),
                       capture_output=True, text=True, timeout=10)
    return p.returncode, p.stdout + p.stderr


try:
    ids = []
    for rc in ("a@y.test", "b@z.test", "c@y.test"):
        code, lines = send(r.port, [rc])
        ids.append(lines[-1].split("Message accepted: ")[-1].split()[0])
    R.check("-q: all deferred", gh.wait(lambda: r.log_text().count(
        "deferred for 1 recipients") == 3))
    rc, out = q("count")
    R.check("-q count", rc == 0 and out.startswith(
        "3 messages, 3 recipients, 3 deferred, 0 held"), out)
    rc, out = q("hold", ids[0])
    R.check("-q hold", rc == 0 and "held" in out, out)
    rc, out = q("list")
    R.check("-q list", rc == 0 and all(i in out for i in ids) and
            "HOLD" in out and "to <b@z.test>" in out and
            "last error: 451 4.4.1" in out, out)
    rc, out = q("delete", ids[2])
    R.check("-q delete", rc == 0 and "deleted" in out and
            ids[2] not in q("list")[1], out)
    rc, out = q("hold", "nosuchid")
    R.check("-q unknown id: error", rc != 0 and "no such message" in out)
    sink = smtpsink.Sink(port=hop)
    rc, out = q("flush", "z.test")
    R.check("-q flush domain", rc == 0 and out.startswith("1 messages"),
            out)
    R.check("flushed message delivered", sink.wait_messages(1, 5) and
            sink.messages[0]["rcpts"] == ["b@z.test"], repr(sink.messages))
    time.sleep(1.5)
    R.check("held message not delivered", len(sink.messages) == 1)
    rc, out = q("release", ids[0])
    R.check("-q release", rc == 0 and "released" in out, out)
    R.check("released message delivered", sink.wait_messages(2, 5) and
            sink.messages[1]["rcpts"] == ["a@y.test"], repr(sink.messages))
    R.check("deleted message never delivered", len(sink.messages) == 2)
    sink.rules["rcpt"] = {"d@y.test": "451 4.3.2 not now"}
    send(r.port, ["d@y.test"])
    R.check("deferred for an hour", gh.wait(lambda: r.log_text().count(
        "deferred for 1 recipients") >= 4))
    sink.rules["rcpt"] = {}
    r.proc.send_signal(signal.SIGHUP)
    R.check("SIGHUP flushes", sink.wait_messages(3, 8) and
            sink.messages[2]["rcpts"] == ["d@y.test"], repr(sink.messages))
    sink.stop()
finally:
    r.stop()

sys.exit(R.done())
