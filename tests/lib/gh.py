"""gh.py - helpers for gatehouse's live tests: start relayd on loopback
with a configuration, talk SMTP to it byte by byte, and stop it.

Tests use real processes on 127.0.0.0/8 only.  Each test file prints one
"RESULT passed=N failed=N" line that tests/run adds up.
"""
import os
import re
import atexit
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BUILDDIR = os.environ.get("GH_BUILDDIR", os.getcwd())
SRCDIR = os.environ.get("GH_SRCDIR", os.getcwd())
RELAYD = os.path.join(BUILDDIR, "relayd", "relayd")
PLUGIN_DIR = os.path.join(BUILDDIR, "tests", "plugins")


# Temporary folders of this test run: removed at exit unless a check
# failed or GH_KEEP_LOGS is set, so failures keep their logs.
_TMPDIRS = []
_FAILED = [False]
# Sanitizer reports found in the logs of processes this run started.
SANITIZER_MARKS = ("runtime error:", "ERROR: AddressSanitizer",
                   "ERROR: LeakSanitizer")
_SANITIZER = []


def check_sanitizer(path):
    """Record a sanitizer report in a log file: it fails the suite."""
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return
    for line in text.splitlines():
        if any(m in line for m in SANITIZER_MARKS):
            _SANITIZER.append("%s: %s" % (path, line.strip()))
            _FAILED[0] = True
            return


def _cleanup():
    if _FAILED[0] or os.environ.get("GH_KEEP_LOGS"):
        return
    for d in _TMPDIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup)


def tmpdir(prefix="gh-test-"):
    d = tempfile.mkdtemp(prefix=prefix)
    _TMPDIRS.append(d)
    return d


def free_port(host="127.0.0.1"):
    s = socket.socket()
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(host, port, timeout=10.0, proc=None):
    end = time.time() + timeout
    while time.time() < end:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %d" % proc.returncode)
        try:
            socket.create_connection((host, port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("nothing listens on %s:%d" % (host, port))


def wait(cond, timeout=10.0):
    """Poll cond until it holds or timeout seconds pass; its last value."""
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    return cond()


def common_port(hosts):
    """A TCP port free on every one of hosts (loopback aliases)."""
    for _ in range(50):
        port = free_port(hosts[0])
        ok = True
        for h in hosts[1:]:
            s = socket.socket()
            try:
                s.bind((h, port))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return port
    raise RuntimeError("no port free on all of %s" % hosts)


def children(pid):
    """The pids of a process's children (relayd's workers)."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def queue_files(spooldir, sub="queue"):
    """The files of a spool plugin's directory (queue, tmp, corrupt)."""
    d = os.path.join(spooldir, sub)
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


def dot_stuff(msg):
    """RFC 5321 4.5.2: a line starting with "." gets another."""
    return b"\r\n".join(b"." + l if l.startswith(b".") else l
                        for l in msg.split(b"\r\n"))


def send_mail(port, rcpts, msg, sender="s@x.test", source="127.0.0.1"):
    """One transaction; the reply to the final dot, or the first RCPT
    reply that is not 250 (then no DATA)."""
    c = Client(port, source)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<%s>" % sender)
    for r in rcpts:
        code, lines = c.cmd("RCPT TO:<%s>" % r)
        if code != 250:
            c.close()
            return code, lines
    c.cmd("DATA")
    c.send(dot_stuff(msg) + b".\r\n")
    final = c.reply()
    c.cmd("QUIT")
    c.close()
    return final


class Relayd:
    """A relayd on its own port with a generated configuration.

    relayd_extra: lines for the relayd group; body: the rest of the file
    (plugins and their groups)."""

    def __init__(self, relayd_extra="", body="", workers=1, log_level="debug",
                 sink=False):
        self.dir = tmpdir("gh-relayd-")
        self.port = free_port()
        self.sink_dir = os.path.join(self.dir, "sink")
        os.mkdir(self.sink_dir)
        body = body.replace("@SINK@", self.sink_dir)
        if not re.search(r"^\s*dns\s*=", body, re.M):
            # Tests never ask the machine's resolver (it is not on
            # loopback): no rDNS unless a test brings its own DNS server.
            body += '\ndns = { servers = [ "127.0.0.1:9" ]; rdns = false; };\n'

        self.conf = os.path.join(self.dir, "relayd.conf")
        with open(self.conf, "w") as f:
            f.write('relayd = {\n  hostname = "mx.test";\n'
                    '  listen = [ "127.0.0.1:%d" ];\n  workers = %d;\n%s\n};\n'
                    'log = { level = "%s"; };\nplugin_dir = "%s";\n%s\n'
                    % (self.port, workers, relayd_extra, log_level,
                       PLUGIN_DIR, body))
        self.log = os.path.join(self.dir, "relayd.log")
        self.proc = None

    def start(self):
        self.logf = open(self.log, "w")
        self.proc = subprocess.Popen([RELAYD, "-c", self.conf],
                                     stdout=self.logf, stderr=self.logf)
        wait_port("127.0.0.1", self.port, proc=self.proc)
        return self

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and not self.logf.closed:
            self.logf.close()
            check_sanitizer(self.log)

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def messages(self):
        out = []
        for name in sorted(os.listdir(self.sink_dir)):
            if name.endswith(".eml"):
                with open(os.path.join(self.sink_dir, name), "rb") as f:
                    out.append(f.read())
        return out

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


class Client:
    """A raw SMTP client: send exact bytes, read replies."""

    def __init__(self, port, source="127.0.0.1", timeout=10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def _line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode(errors="replace")

    def reply(self):
        """(code, [lines]) or (None, []) when the server closed."""
        lines = []
        while True:
            line = self._line()
            if line is None:
                return (None, lines)
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                try:
                    return (int(line[:3]), lines)
                except ValueError:
                    return (-1, lines)

    def closed(self, timeout=5.0):
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (socket.timeout, ConnectionResetError):
            return False

    def close(self):
        self.sock.close()


class Results:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, label, cond, detail=""):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            _FAILED[0] = True
            print("FAIL %s: %s %s" % (self.name, label, detail))
            sys.stdout.flush()

    def done(self):
        for report in _SANITIZER:
            self.failed += 1
            print("FAIL %s: sanitizer report in %s" % (self.name, report))
        del _SANITIZER[:]
        print("%s: %d passed, %d failed" % (self.name, self.passed,
                                            self.failed))
        print("RESULT passed=%d failed=%d" % (self.passed, self.failed))
        return 1 if self.failed else 0
