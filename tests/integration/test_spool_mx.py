#!/usr/bin/env python3
"""spool: MX routing of mail from relaying clients (outbound = "mx"),
the get_mx hook, the deferred/bounce/delivered hooks and the limit of
connections per destination, against dnsmasq and Python next hops on
127.0.0.3-6, all on one mx_port.

Checked: relayed mail goes to the lowest-preference MX; other mail to
the next hop; one queue file with recipients in several domains gets
per-domain deliveries and per-recipient outcomes; an MX host that
refuses connections, or greets with 421, is skipped for the next one; a
domain with no MX goes to its address; a null MX (RFC 7505) bounces at
once with 5.1.10; a domain that does not exist bounces with 5.1.2; our
own name among the MX hosts cuts the list there (RFC 5321 5.1), 5.4.6
when it was the best; the get_mx hook routes a domain DNS does not know
(to an address, or to names tried in order), DENY bounces it with 5.4.4,
DENYSOFT and a DNS failure defer with 4.4.3; AUTH grants relaying and so
MX routing; the MX route of a deferred message survives a restart; every
hook fires for the right recipient with the queue id, hop and reply;
max_per_destination holds while many messages wait, and connections are
reused.
"""
import base64
import email
import email.policy
import os
import subprocess
import sys
import threading

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import authkit  # noqa: E402
import dnsmasq  # noqa: E402
import gh  # noqa: E402
import smtpsink  # noqa: E402

R = gh.Results("spool_mx")
MSG = b"From: a@x.test\r\nSubject: mx test\r\n\r\nbody\r\n"


PORT = gh.common_port(["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"])
RECORDS = [
    ("MX", "example.test", "mx1.example.test", 10),
    ("MX", "example.test", "mx2.example.test", 20),
    ("HOST", "mx1.example.test", "127.0.0.3"),
    ("HOST", "mx2.example.test", "127.0.0.4"),
    # First MX: nothing listens on 127.0.0.5.
    ("MX", "down.test", "mx.down.test", 10),
    ("MX", "down.test", "mx2.example.test", 20),
    ("HOST", "mx.down.test", "127.0.0.5"),
    # First MX greets with 421.
    ("MX", "busy.test", "mx.busy.test", 5),
    ("MX", "busy.test", "mx2.example.test", 50),
    ("HOST", "mx.busy.test", "127.0.0.6"),
    # No MX: the domain's own address (RFC 5321 5.1).
    ("HOST", "amx.test", "127.0.0.3"),
    ("MX", "nullmx.test", ".", 0),
    # Our own name (gh.Relayd's hostname mx.test) among the MX hosts.
    ("MX", "loop.test", "mx.test", 10),
    ("MX", "loop.test", "mx2.example.test", 20),
    ("MX", "loopb.test", "mx1.example.test", 10),
    ("MX", "loopb.test", "mx.test", 20),
]


def relayd(dns, spool, hop_port, extra="", probe=""):
    body = ('dns = { servers = [ "%s" ]; timeout = 2; rdns = false; };\n'
            'plugins = [ "relay", "scripted", "probe", "spool" ];\n'
            'relay = { clients = [ "127.0.0.2" ]; };\n'
            'probe = { %s };\n'
            'spool = { dir = "%s"; port = %d; outbound = "mx"; '
            'mx_port = %d; retry = [ "60" ]; scan_interval = 1; '
            'connect_timeout = 2; %s };\n'
            % (dns, probe, spool, hop_port, PORT, extra))
    return gh.Relayd(body=body).start()


def send(port, rcpts, source="127.0.0.2", sender="s@x.test", msg=MSG):
    return gh.send_mail(port, rcpts, msg, sender, source)


def queue_files(spool):
    return gh.queue_files(spool)


def rcpts_at(sink):
    return [r for m in list(sink.messages) for r in m["rcpts"]]


def hook_lines(r, hook):
    return [l for l in r.log_text().splitlines()
            if "probe hook %s " % hook in l]


def dsn_field(data, field):
    """{recipient: that field} of a DSN's per-recipient blocks."""
    m = email.message_from_bytes(data, policy=email.policy.compat32)
    out = {}
    for p in m.get_payload() if m.is_multipart() else []:
        if p.get_content_type() != "message/delivery-status":
            continue
        for b in p.get_payload()[1:]:
            fr = b.get("Final-Recipient", "").split(";")[-1].strip()
            out[fr] = b.get(field, "")
    return out


def dsn_status(data):
    """{recipient: Status} of a DSN."""
    return dsn_field(data, "Status")


dm = dnsmasq.Dnsmasq(RECORDS).start()
mx1 = smtpsink.Sink(host="127.0.0.3", port=PORT)
mx2 = smtpsink.Sink(host="127.0.0.4", port=PORT)
busy = smtpsink.Sink(host="127.0.0.6", port=PORT)
busy.rules["greeting"] = "421 4.3.2 too busy"
hop = smtpsink.Sink()
spool = gh.tmpdir("gh-spool-mx-")
PROBE = ('get_mx = [ "routed.test=127.0.0.4:%d", "refused.test=DENY", '
         '"named.test=nowhere.test:1, mx2.example.test:%d", '
         '"soft.test=DENYSOFT", '
         '"texted.test=DENY:5.7.1:texted.test takes no mail from here" ];'
         % (PORT, PORT))
r = relayd(dm.server, spool, hop.port, probe=PROBE)
try:
    # --- 1. relayed: lowest preference; not relayed: the next hop ----------
    code, lines = send(r.port, ["a@example.test", "b@EXAMPLE.test"])
    R.check("relayed message accepted", code == 250, repr(lines))
    R.check("relayed mail to the lowest-preference MX",
            mx1.wait_messages(1) and
            mx1.messages[0]["rcpts"] == ["a@example.test",
                                         "b@EXAMPLE.test"],
            repr(mx1.messages))
    code, lines = send(r.port, ["c@example.test"], source="127.0.0.1")
    R.check("non-relayed mail to the next hop", code == 250 and
            hop.wait_messages(1) and hop.messages[0]["rcpts"] ==
            ["c@example.test"], repr(hop.messages))
    R.check("nothing else at the MX hosts",
            len(mx1.messages) == 1 and mx2.messages == [],
            repr((mx1.messages, mx2.messages)))
    R.check("queue empty", gh.wait(lambda: queue_files(spool) == []),
            repr(queue_files(spool)))

    # --- 2. one file, several destinations ----------------------------------
    n1, n2, nh = len(mx1.messages), len(mx2.messages), len(hop.messages)
    code, lines = send(r.port, ["d@down.test", "e@amx.test", "f@nullmx.test",
                                "g@routed.test", "h@busy.test",
                                "i@nosuch.test", "j@refused.test",
                                "t@texted.test"],
                       sender="s2@x.test")
    R.check("multi-domain message accepted", code == 250, repr(lines))
    R.check("first MX refuses connections: the next MX",
            gh.wait(lambda: "d@down.test" in rcpts_at(mx2)), repr(mx2.messages))
    R.check("first MX greets 421: the next MX",
            gh.wait(lambda: "h@busy.test" in rcpts_at(mx2)) and
            busy.connections >= 1 and busy.messages == [],
            "busy connections %d" % busy.connections)
    R.check("no MX: the domain's address",
            gh.wait(lambda: "e@amx.test" in rcpts_at(mx1)), repr(mx1.messages))
    R.check("get_mx hook routes a domain unknown to DNS",
            gh.wait(lambda: "g@routed.test" in rcpts_at(mx2)),
            repr(mx2.messages))
    R.check("one transaction per destination",
            all(len(m["rcpts"]) == 1 for m in mx1.messages[n1:] +
                mx2.messages[n2:]), repr(mx1.messages[n1:]))
    R.check("bounce for the failed recipients at the next hop",
            hop.wait_messages(nh + 1) and
            hop.messages[nh]["mail"].startswith("MAIL FROM:<>") and
            hop.messages[nh]["rcpts"] == ["s2@x.test"],
            repr(hop.messages[nh:]))
    st = dsn_status(hop.messages[nh]["data"]) if len(hop.messages) > nh \
        else {}
    R.check("null MX bounces 5.1.10 (RFC 7505)",
            st.get("f@nullmx.test") == "5.1.10", repr(st))
    R.check("a domain that does not exist bounces 5.1.2",
            st.get("i@nosuch.test") == "5.1.2", repr(st))
    R.check("get_mx DENY bounces 5.4.4",
            st.get("j@refused.test") == "5.4.4", repr(st))
    R.check("get_mx DENY with a reply: its enhanced code in the bounce",
            st.get("t@texted.test") == "5.7.1", repr(st))
    diag = dsn_field(hop.messages[nh]["data"], "Diagnostic-Code") \
        if len(hop.messages) > nh else {}
    R.check("get_mx DENY with a reply: its text is the bounce's reason",
            "texted.test takes no mail from here" in
            diag.get("t@texted.test", ""), repr(diag))
    R.check("get_mx DENY without one: who refused it",
            "refused by probe" in diag.get("j@refused.test", ""),
            repr(diag))
    R.check("delivered recipients not in the bounce",
            set(st) == {"f@nullmx.test", "i@nosuch.test",
                        "j@refused.test", "t@texted.test"}, repr(st))
    R.check("nothing left to retry (no retry for a null MX)",
            gh.wait(lambda: queue_files(spool) == []),
            repr(queue_files(spool)))

    # --- 3. hooks ------------------------------------------------------------
    dl = hook_lines(r, "delivered")
    R.check("delivered hook: recipient, hop and reply",
            any("<d@down.test>" in l and "hop 127.0.0.4:%d: 250" % PORT in l
                for l in dl), "\n".join(dl))
    # 7 recipients and the bounce to s2@x.test.
    R.check("delivered hook fires once per delivered recipient",
            sum("<a@example.test>" in l for l in dl) == 1 and
            sum("<c@example.test>" in l for l in dl) == 1 and
            sum("<s2@x.test>" in l for l in dl) == 1 and
            len(dl) == 8, "\n".join(dl))
    bl = hook_lines(r, "bounce")
    R.check("bounce hook: the null MX recipient, 556 5.1.10",
            any("<f@nullmx.test>" in l and ": 556 5.1.10 " in l
                for l in bl), "\n".join(bl))
    R.check("bounce hook for every bounced recipient, none else",
            len(bl) == 4, "\n".join(bl))
    gl = [l for l in r.log_text().splitlines() if "probe hook get_mx" in l]
    R.check("get_mx hook saw the domain",
            any("routed.test" in l for l in gl), "\n".join(gl))

    # --- 4. 4xx: deferred hook, queue id ------------------------------------
    mx1.rules["rcpt"] = {"later@example.test": "450 4.2.0 try later"}
    code, lines = send(r.port, ["later@example.test", "now@example.test"])
    qid = lines[-1].split()[-2] if code == 250 else "?"
    R.check("deferred hook for the 4xx recipient with the queue id",
            gh.wait(lambda: any("<later@example.test> id %s " % qid in l and
                             ": 450 4.2.0 try later" in l
                             for l in hook_lines(r, "deferred"))),
            "\n".join(hook_lines(r, "deferred")) + " qid " + qid)
    R.check("the other recipient delivered (hook with the same id)",
            gh.wait(lambda: any("<now@example.test> id %s " % qid in l
                             for l in hook_lines(r, "delivered"))),
            "\n".join(hook_lines(r, "delivered")))
    code, lines = send(r.port, ["x@elsewhere.zone"])
    R.check("DNS failure (REFUSED) defers: 451 4.4.3 to the hook",
            code == 250 and
            gh.wait(lambda: any("<x@elsewhere.zone>" in l and ": 451 4.4.3 " in l
                             for l in hook_lines(r, "deferred"))),
            "\n".join(hook_lines(r, "deferred")))
    nh = len(hop.messages)
    code, lines = send(r.port, ["u@loop.test", "v@loopb.test"],
                       sender="s3@x.test")
    R.check("our name as a less preferred MX: the better one is used",
            code == 250 and gh.wait(lambda: "v@loopb.test" in rcpts_at(mx1)),
            repr(mx1.messages[-2:]))
    R.check("our name as the best MX: bounced 5.4.6, not sent to worse "
            "ones", hop.wait_messages(nh + 1) and
            dsn_status(hop.messages[nh]["data"]) == {"u@loop.test": "5.4.6"}
            and "u@loop.test" not in rcpts_at(mx2),
            repr(hop.messages[nh:]))
    code, lines = send(r.port, ["k@named.test", "l@soft.test"])
    R.check("get_mx route by name: the first has no address, the second "
            "takes it", code == 250 and
            gh.wait(lambda: "k@named.test" in rcpts_at(mx2)), repr(mx2.messages))
    R.check("get_mx DENYSOFT defers: 451 4.4.3 to the hook",
            gh.wait(lambda: any("<l@soft.test>" in l and ": 451 4.4.3 " in l
                             for l in hook_lines(r, "deferred"))),
            "\n".join(hook_lines(r, "deferred")))
    R.check("deferred recipients kept in the queue",
            gh.wait(lambda: len(queue_files(spool)) == 3), repr(queue_files(spool)))
    p = subprocess.run([gh.RELAYD, "-c", r.conf, "-q", "list"],
                       capture_output=True, text=True, timeout=10)
    R.check("relayd -q list shows the MX route",
            "route: MX" in p.stdout and "later@example.test" in p.stdout,
            p.stdout + p.stderr)
finally:
    r.stop()

# --- 5. the route survives a restart ----------------------------------------
mx1.rules = {}
n1 = len(mx1.messages)
r = relayd(dm.server, spool, hop.port, probe=PROBE)
try:
    R.check("after a restart the deferred recipient goes to its MX",
            gh.wait(lambda: "later@example.test" in rcpts_at(mx1)[n1:]),
            repr(mx1.messages[n1:]))
    R.check("and not to the next hop",
            all("later@example.test" not in m["rcpts"]
                for m in hop.messages), repr(hop.messages))
finally:
    r.stop()

# --- 6. AUTH grants relaying, so MX routing ---------------------------------
users = os.path.join(spool, "users")
with open(users, "w") as f:
    f.write("alice:%s\n" % authkit.crypt("alice-pw-1", "$6$"))
spool3 = gh.tmpdir("gh-spool-mx-")
r = gh.Relayd(body='dns = { servers = [ "%s" ]; timeout = 2; rdns = false; };\n'
              'plugins = [ "auth_file", "scripted", "spool" ];\n'
              'auth_file = { file = "%s"; };\n'
              'spool = { dir = "%s"; port = %d; outbound = "mx"; '
              'mx_port = %d; scan_interval = 1; };\n'
              % (dm.server, users, spool3, hop.port, PORT))
with open(r.conf) as f:
    text = f.read()
with open(r.conf, "w") as f:
    f.write(text.replace('listen = [ "127.0.0.1:%d" ];' % r.port,
                         'listen = [ "127.0.0.1:%d auth_plaintext=yes" ];'
                         % r.port))
r.start()
try:
    n1, nh = len(mx1.messages), len(hop.messages)
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    code, _ = c.cmd("AUTH PLAIN " + base64.b64encode(
        b"\0alice\0alice-pw-1").decode())
    c.cmd("MAIL FROM:<alice@x.test>")
    c.cmd("RCPT TO:<au@example.test>")
    c.cmd("DATA")
    c.send(MSG + b".\r\n")
    final, lines = c.reply()
    c.cmd("QUIT")
    c.close()
    R.check("authenticated client: 235 and 250", code == 235 and
            final == 250, repr(lines))
    R.check("authenticated mail goes to the MX",
            gh.wait(lambda: "au@example.test" in rcpts_at(mx1)[n1:]),
            repr(mx1.messages[n1:]))
    R.check("not to the next hop", all("au@example.test" not in m["rcpts"]
                                        for m in hop.messages[nh:]))
finally:
    r.stop()

# --- 7. max_per_destination ------------------------------------------------
mx1.rules = {"dot_delay": 0.3}
c0, a0 = mx1.connections, mx1.max_active
mx1.max_active = 0
spool2 = gh.tmpdir("gh-spool-mx-")
r = relayd(dm.server, spool2, hop.port, extra="max_per_destination = 2;")
try:
    n1 = len(mx1.messages)
    codes = []

    def one(i):
        codes.append(send(r.port, ["p%d@example.test" % i])[0])

    ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    R.check("8 relayed messages accepted", codes == [250] * 8, repr(codes))
    R.check("all 8 delivered to the MX",
            mx1.wait_messages(n1 + 8, timeout=20), len(mx1.messages) - n1)
    R.check("at most 2 connections at once to the MX host",
            1 <= mx1.max_active <= 2, "max_active %d" % mx1.max_active)
    R.check("connections reused (2 or fewer for 8 messages)",
            mx1.connections - c0 <= 2, "%d" % (mx1.connections - c0))
finally:
    r.stop()
    for s in (mx1, mx2, busy, hop):
        s.stop()
    dm.stop()
R.done()
