#!/usr/bin/env python3
"""The shipped conf/relayd.conf, as the README's run command uses it.

Only what cannot be shared on a test machine is changed: the listening
port, the spool directory, the next hop's port and the DNS servers.
Checked: the default chain queues into the spool; with no MTA behind it
mail for example.test still gets 250 (Postfix's smtp-source) and waits,
durably, in the queue; other domains get 550 5.7.1; when an MTA
(Postfix's smtp-sink) appears, `relayd -q flush` delivers everything at once and
the queue empties.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("default_conf")
SINK = "/usr/sbin/smtp-sink"
SOURCE = "/usr/sbin/smtp-source"


def rewrite(text, pattern, repl, label):
    out, n = re.subn(pattern, repl, text, count=1, flags=re.M | re.S)
    R.check("shipped conf has %s" % label, n == 1, pattern)
    return out


tmp = gh.tmpdir("gh-default-")
spooldir = os.path.join(tmp, "spool")
# smtp-sink writes as nobody: its directory must be reachable.
os.chmod(tmp, 0o711)
dump = os.path.join(tmp, "dump")
os.mkdir(dump)
os.chmod(dump, 0o777)
port, hop = gh.free_port(), gh.free_port()

with open(os.path.join(gh.SRCDIR, "conf", "relayd.conf")) as f:
    text = f.read()
m = re.search(r"^plugins\s*=\s*\[([^\]]*)\]", text, re.M)
R.check("default chain ends in the spool", m is not None and
        re.findall(r'"(\w+)"', m.group(1))[-1:] == ["spool"],
        m.group(0) if m else "no plugins line")
text = rewrite(text, r'listen = \[ "127\.0\.0\.1:2525" \];',
               'listen = [ "127.0.0.1:%d" ];' % port, "listen 127.0.0.1:2525")
text = rewrite(text, r'(^spool = \{.*?)dir = "/var/spool/gatehouse";',
               r'\1dir = "%s";' % spooldir, "spool dir")
text = rewrite(text, r'(^spool = \{.*?host = "127\.0\.0\.1";\s*)port = 25;',
               r'\g<1>port = %d;' % hop, "spool next hop 127.0.0.1:25")
text = rewrite(text, r'servers = \[ \];', 'servers = [ "127.0.0.1:9" ];',
               "dns servers")
text = rewrite(text, r'rdns = true;', 'rdns = false;', "rdns")
conf = os.path.join(tmp, "relayd.conf")
with open(conf, "w") as f:
    f.write(text)

log = open(os.path.join(tmp, "relayd.log"), "w")
relayd = subprocess.Popen([gh.RELAYD, "-c", conf], stdout=log, stderr=log)
sink = None
try:
    gh.wait_port("127.0.0.1", port, proc=relayd)

    # No MTA on the next hop: mail is still accepted, into the queue.
    p = subprocess.run([SOURCE, "-s", "2", "-m", "6", "-f", "a@client.test",
                        "-t", "user@example.test", "127.0.0.1:%d" % port],
                       capture_output=True, text=True, timeout=60)
    R.check("smtp-source: 6 messages accepted with no MTA behind",
            p.returncode == 0 and p.stdout + p.stderr == "",
            p.stdout + p.stderr)
    qdir = os.path.join(spooldir, "queue")
    R.check("6 messages wait in the queue", gh.wait(
        lambda: os.path.isdir(qdir) and len(os.listdir(qdir)) == 6),
        str(os.listdir(qdir) if os.path.isdir(qdir) else None))

    c = gh.Client(port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@client.test>")
    code, lines = c.cmd("RCPT TO:<user@elsewhere.test>")
    R.check("other domain: 550 5.7.1", code == 550 and
            lines[-1].startswith("550 5.7.1"), repr(lines))
    c.cmd("QUIT")
    c.close()

    # The MTA appears: a flush delivers everything.
    sink = subprocess.Popen([SINK, "-u", "nobody", "-d", dump + "/%M.",
                             "127.0.0.1:%d" % hop, "100"],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    gh.wait_port("127.0.0.1", hop, proc=sink)
    q = subprocess.run([gh.RELAYD, "-c", conf, "-q", "flush"],
                       capture_output=True, text=True, timeout=30)
    R.check("relayd -q flush exits 0 and says 6 are due",
            q.returncode == 0 and q.stdout.startswith("6 messages due now"),
            q.stdout + q.stderr)
    # The default scan_interval is 60 s: delivery within the wait below
    # is the workers waking on DIR/flush.
    R.check("smtp-sink received all 6", gh.wait(
        lambda: len(os.listdir(dump)) == 6), str(len(os.listdir(dump))))
    R.check("the queue is empty again",
            gh.wait(lambda: len(os.listdir(qdir)) == 0), str(os.listdir(qdir)))
finally:
    if sink is not None:
        sink.terminate()
        sink.wait(5)
    relayd.terminate()
    relayd.wait(20)
    log.close()
    gh.check_sanitizer(log.name)
    if R.failed:
        with open(log.name, errors="replace") as f:
            print(f.read()[-30000:])
sys.exit(R.done())
