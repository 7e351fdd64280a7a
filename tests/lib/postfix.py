"""postfix.py - a private Postfix instance for gatehouse's tests and the
benchmark (Debian package postfix; needs root for Postfix's master).

It lives in a temporary directory: its own config directory,
queue_directory and data_directory, no chroot, one smtpd on a loopback
port, logging to a file, and smtp-sink as its relay host, dumping each
message to a file (dump=True) or only counting.  With milter_port set,
smtpd_milters points at a milter on loopback TCP.
"""
import os
import shutil
import subprocess
import time

import gh

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"

# Only the services this test needs, none chrooted.
MASTER_CF = """\
%(addr)s inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
mail_owner = postfix
setgid_group = postdrop
queue_directory = %(dir)s/queue
data_directory = %(dir)s/data
maillog_file = %(dir)s/maillog
maillog_file_prefixes = %(dir)s
myhostname = mx.postfix.test
mydomain = postfix.test
myorigin = $myhostname
mydestination =
relay_domains = example.net
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
relayhost = [127.0.0.1]:%(sink_port)d
smtp_dns_support_level = disabled
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
alias_maps =
alias_database =
local_recipient_maps =
smtpd_tls_security_level = none
smtp_tls_security_level = none
smtpd_error_sleep_time = 0
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""

MILTER_CF = """\
smtpd_milters = inet:127.0.0.1:%(milter_port)d
milter_default_action = tempfail
milter_connect_timeout = 5s
milter_command_timeout = 15s
milter_content_timeout = 30s
"""


class Postfix:
    def __init__(self, milter=True, dump=True):
        self.dump = dump
        self.dir = gh.tmpdir("gh-postfix-")
        os.chmod(self.dir, 0o755)
        self.etc = os.path.join(self.dir, "etc")
        self.port = gh.free_port()
        self.sink_port = gh.free_port()
        self.milter_port = gh.free_port() if milter else None
        self.sink_dir = os.path.join(self.dir, "sink")
        os.makedirs(self.etc)
        os.makedirs(self.sink_dir)
        os.chmod(self.sink_dir, 0o777)
        os.makedirs(os.path.join(self.dir, "queue"))
        data = os.path.join(self.dir, "data")
        os.makedirs(data)
        shutil.chown(data, "postfix", "postfix")
        v = {"dir": self.dir, "sink_port": self.sink_port,
             "milter_port": self.milter_port,
             "addr": "127.0.0.1:%d" % self.port}
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(MAIN_CF % v)
            if milter:
                f.write(MILTER_CF % v)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(MASTER_CF % v)
        self.sink = None

    def postfix(self, *args):
        return subprocess.run([POSTFIX, "-c", self.etc] + list(args),
                              capture_output=True, text=True, timeout=60)

    def start(self):
        # smtp-sink as the relay host; it dumps each message to a file.
        dump = ["-d", os.path.join(self.sink_dir, "msg.")] if self.dump \
            else []
        self.sink = subprocess.Popen(
            [SMTP_SINK, "-u", "nobody"] + dump +
            ["127.0.0.1:%d" % self.sink_port, "256"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        gh.wait_port("127.0.0.1", self.sink_port, proc=self.sink)
        p = self.postfix("post-install", "create-missing")
        if p.returncode != 0:
            raise RuntimeError("post-install: " + p.stdout + p.stderr)
        p = self.postfix("start")
        if p.returncode != 0:
            raise RuntimeError("postfix start: %s%s\n%s"
                               % (p.stdout, p.stderr, self.maillog()))
        gh.wait_port("127.0.0.1", self.port, timeout=20)
        return self

    def stop(self):
        self.postfix("stop")
        if self.sink is not None and self.sink.poll() is None:
            self.sink.terminate()
            self.sink.wait(5)

    def maillog(self):
        try:
            with open(os.path.join(self.dir, "maillog"),
                      errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def messages(self):
        out = []
        for name in sorted(os.listdir(self.sink_dir)):
            with open(os.path.join(self.sink_dir, name), "rb") as f:
                out.append(f.read().decode(errors="replace"))
        return out

    def wait_messages(self, n, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            msgs = self.messages()
            if len(msgs) >= n:
                return msgs
            time.sleep(0.1)
        return self.messages()


