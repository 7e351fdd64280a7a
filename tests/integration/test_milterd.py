#!/usr/bin/env python3
"""milterd against miltertest: the MTA side played by the Debian package
miltertest, running the Lua scripts in tests/milter/.

Each group starts milterd on a loopback TCP socket with its own
configuration, runs its scripts, and checks milterd's log.  A script
prints "ok: ..." per check and fails loudly (see tests/milter/lib.lua);
every "ok:" line counts as a pass, a script that exits non-zero as a
failure.  Also: the command line (-V, -t, -l) and a clean, prompt stop on
SIGTERM.
A dnsmasq serves the test zone for milterd's own rDNS lookups.
"""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import dnsmasq  # noqa: E402
import gh  # noqa: E402

R = gh.Results("milterd")
MILTERD = os.path.join(gh.BUILDDIR, "milterd", "milterd")
SCRIPTS = os.path.join(gh.SRCDIR, "tests", "milter")
MILTERTEST = shutil.which("miltertest")
DNS = None

BASE = """milterd = {
  socket = "inet:%(port)d@127.0.0.1";
  threads = 2;
%(milterd)s
};
log = { level = "debug"; };
dns = { servers = [ "%(dns)s" ]; timeout = 2; };
plugin_dir = "%(plugin_dir)s";
%(body)s
"""

GROUPS = [
    ("main", """  trace_header = "X-Gatehouse-Trace";
  reply_timeout = 2;
  eom_timeout = 3;""",
     """plugins = [ "scripted", "probe" ];
probe = {
  report = true;
  edit_subject = "edit me";
  edits = [ "add:X-Added:yes", "insert:1:X-Inserted:first",
            "change:Subject:1:changed", "delete:X-Remove:1",
            "rcpt_add:added@example.net", "rcpt_del:c@Example.NET",
            "from:new@example.org", "quarantine:probe says so" ];
};""",
     ["session", "macros_absent", "rdns", "edits", "verdicts", "abort",
      "timeout"]),
    ("shadow", """  body_max = 64;
  fail_action = "reject";
  reply_timeout = 1;""",
     """plugins = [ "scripted", "probe" ];
scripted = { mode = "shadow"; };
probe = { report = true; };""",
     ["shadow_body"]),
    ("bare", """  trace_header = "X-Gatehouse-Trace";""",
     "plugins = [ ];", ["negotiate"]),
    ("connect", "",
     """plugins = [ "scripted" ];
scripted = { connect = "DENY:554:5.7.1:go away"; };""",
     ["connect_deny"]),
    ("declared", "",
     """plugins = [ "access", "headers" ];""", ["declared"]),
    ("noreply", "",
     """plugins = [ "access" ];
access = { helo_deny = [ "bad.example" ]; };""", ["noreply"]),
    # One loop, held four seconds by a recipient: run_pair() plays two
    # sessions at once.
    ("nrlate", """  threads = 1;
  reply_timeout = 2;""",
     """plugins = [ "probe" ];
probe = { stall_rcpt = [ "stall@example.net:4000" ]; };""", []),
]


class Milterd:
    def __init__(self, milterd_extra, body):
        self.dir = tempfile.mkdtemp(prefix="gh-milterd-")
        self.port = gh.free_port()
        self.conf = os.path.join(self.dir, "milterd.conf")
        base = BASE
        if "threads =" in milterd_extra:    # the group sets its own
            base = base.replace("  threads = 2;\n", "")
        with open(self.conf, "w") as f:
            f.write(base % {"port": self.port, "milterd": milterd_extra,
                            "plugin_dir": gh.PLUGIN_DIR, "body": body,
                            "dns": DNS.server})
        self.log = os.path.join(self.dir, "milterd.log")

    def start(self):
        self.logf = open(self.log, "w")
        self.proc = subprocess.Popen([MILTERD, "-c", self.conf],
                                     stdout=self.logf, stderr=self.logf)
        gh.wait_port("127.0.0.1", self.port, proc=self.proc)
        return self

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.logf.close()

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()


def run_script(m, name):
    path = os.path.join(SCRIPTS, name + ".lua")
    p = subprocess.run([MILTERTEST, "-s", path,
                        "-D", "socket=inet:%d@127.0.0.1" % m.port,
                        "-D", "lib=" + os.path.join(SCRIPTS, "lib.lua"),
                        "-D", "hostname=" + socket.gethostname()],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=120)
    out = p.stdout.decode(errors="replace")
    oks = [l for l in out.splitlines() if l.startswith("ok: ")]
    for line in oks:
        R.check("%s: %s" % (name, line[4:]), True)
    R.check("%s.lua ran to the end" % name, p.returncode == 0,
            "\n--- miltertest exited %d:\n%s\n--- milterd log:\n%s"
            % (p.returncode, out, m.log_text()[-3000:]))


def run_pair(m, first, second, delay):
    """Two scripts at once, the second started delay seconds after the
    first; each is checked as run_script checks one."""
    def start(name):
        path = os.path.join(SCRIPTS, name + ".lua")
        return subprocess.Popen([MILTERTEST, "-s", path,
                                 "-D", "socket=inet:%d@127.0.0.1" % m.port,
                                 "-D", "lib=" + os.path.join(SCRIPTS,
                                                             "lib.lua")],
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
    procs = [(first, start(first))]
    time.sleep(delay)
    procs.append((second, start(second)))
    for name, p in procs:
        out = p.communicate(timeout=120)[0].decode(errors="replace")
        for line in out.splitlines():
            if line.startswith("ok: "):
                R.check("%s: %s" % (name, line[4:]), True)
        R.check("%s.lua ran to the end" % name, p.returncode == 0,
                "\n--- miltertest exited %d:\n%s\n--- milterd log:\n%s"
                % (p.returncode, out, m.log_text()[-3000:]))


def log_has(m, pattern, label):
    R.check(label, re.search(pattern, m.log_text()) is not None,
            "no /%s/ in:\n%s" % (pattern, m.log_text()[-3000:]))


def command_line():
    p = subprocess.run([MILTERD, "-V"], capture_output=True, text=True)
    R.check("-V prints the version", p.returncode == 0 and
            p.stdout.startswith("milterd (gatehouse)"), p.stdout)
    p = subprocess.run([MILTERD, "-l"], capture_output=True, text=True)
    R.check("-l lists the plugins", p.returncode == 0, p.stderr)
    d = tempfile.mkdtemp(prefix="gh-milterd-t-")
    good = os.path.join(d, "good.conf")
    with open(good, "w") as f:
        f.write('milterd = { socket = "unix:%s/m.sock"; threads = 3; };\n'
                'relayd = { listen = [ "127.0.0.1:2525" ]; };\n'
                'plugin_dir = "%s";\nplugins = [ "probe" ];\n'
                % (d, gh.PLUGIN_DIR))
    p = subprocess.run([MILTERD, "-t", "-c", good], capture_output=True,
                       text=True)
    R.check("-t: a valid file (relayd group ignored) exits 0",
            p.returncode == 0, p.stdout + p.stderr)
    bad = os.path.join(d, "bad.conf")
    with open(bad, "w") as f:
        f.write('milterd = {\n  socket = "inet:1@127.0.0.1";\n'
                '  no_such_key = 1;\n};\n')
    p = subprocess.run([MILTERD, "-t", "-c", bad], capture_output=True,
                       text=True)
    R.check("-t: an unknown key exits 2 naming file and line",
            p.returncode == 2 and "bad.conf:3" in p.stderr, p.stderr)
    with open(bad, "w") as f:
        f.write('milterd = { socket = "127.0.0.1:25"; };\n')
    p = subprocess.run([MILTERD, "-t", "-c", bad], capture_output=True,
                       text=True)
    R.check("-t: a socket that is not unix: or inet: exits 2",
            p.returncode == 2 and "socket" in p.stderr, p.stderr)
    with open(bad, "w") as f:
        f.write('milterd = { fail_action = "maybe"; };\n')
    p = subprocess.run([MILTERD, "-t", "-c", bad], capture_output=True,
                       text=True)
    R.check("-t: a fail_action outside its choices exits 2",
            p.returncode == 2, p.stderr)
    with open(bad, "w") as f:
        f.write('milterd = { socket = "inet:1@127.0.0.1"; '
                'trace_header = "X Gatehouse: Trace"; };\n')
    p = subprocess.run([MILTERD, "-t", "-c", bad], capture_output=True,
                       text=True)
    R.check("-t: a trace_header that is no field name exits 2",
            p.returncode == 2 and "milterd.trace_header" in p.stderr and
            "not a header field name" in p.stderr, p.stderr)
    shutil.rmtree(d, ignore_errors=True)
    sample = os.path.join(gh.SRCDIR, "conf", "milterd.conf")
    p = subprocess.run([MILTERD, "-t", "-c", sample], capture_output=True,
                       text=True)
    R.check("-t: conf/milterd.conf is valid", p.returncode == 0, p.stderr)
    p = subprocess.run([MILTERD, "-h", "milterd"], capture_output=True,
                       text=True)
    dirs = re.findall(r"^  ([a-z_]+) = (.*);   \(", p.stdout, re.M)
    R.check("-h milterd lists the milterd group", len(dirs) >= 10, p.stdout)
    text = open(sample).read()
    for name, default in dirs:
        R.check("conf/milterd.conf shows %s at its default" % name,
                re.search(r"^  %s = %s;" % (name, re.escape(default)), text,
                          re.M) is not None, "want %s = %s" % (name, default))


def unix_socket():
    """A Unix socket with socket_mode, and a clean stop on SIGTERM."""
    d = tempfile.mkdtemp(prefix="gh-milterd-u-")
    sock = os.path.join(d, "milterd.sock")
    conf = os.path.join(d, "milterd.conf")
    with open(conf, "w") as f:
        f.write('milterd = { socket = "unix:%s"; socket_mode = "0660"; };\n'
                'plugins = [ ];\n' % sock)
    log = open(os.path.join(d, "log"), "w")
    proc = subprocess.Popen([MILTERD, "-c", conf], stdout=log, stderr=log)
    for _ in range(200):
        if os.path.exists(sock) or proc.poll() is not None:
            break
        subprocess.run(["sleep", "0.02"])
    R.check("unix socket created", os.path.exists(sock))
    # A SIGTERM in the first moments races libmilter's own start-up (its
    # signal thread closes the listening socket before the listener runs,
    # and smfi_main fails): let smfi_main begin first.
    subprocess.run(["sleep", "0.5"])
    R.check("socket_mode applied", os.path.exists(sock) and
            (os.stat(sock).st_mode & 0o777) == 0o660)
    t = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    took = time.monotonic() - t
    log.close()
    text = open(os.path.join(d, "log")).read()
    R.check("SIGTERM stops milterd with status 0", rc == 0,
            "rc=%s\n%s" % (rc, text))
    # libmilter's listener polls for five seconds between looks at its
    # stop flag; milterd wakes it.
    R.check("SIGTERM: stopped at once, not at libmilter's next poll",
            took < 3.0, "took %.1f s" % took)
    R.check("SIGTERM: plugins stopped and logged", "milterd stopped" in text,
            text)
    shutil.rmtree(d, ignore_errors=True)


RELOAD_BODY = """plugins = [ "access" ];
access = { rcpt_deny = [ "%s@example.net" ]; };"""


def wait_log(m, pattern, count=1, timeout=10):
    """Wait until pattern appears count times in milterd's log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(re.findall(pattern, m.log_text())) >= count:
            return True
        time.sleep(0.05)
    return False


def reload():
    """SIGHUP: a changed deny rule takes effect for new sessions; a broken
    file keeps the running configuration and milterd running."""
    m = Milterd("", RELOAD_BODY % "first").start()
    try:
        run_script(m, "reload_before")
        with open(m.conf, "w") as f:
            f.write(BASE % {"port": m.port, "milterd": "",
                            "plugin_dir": gh.PLUGIN_DIR,
                            "body": RELOAD_BODY % "second",
                            "dns": DNS.server})
        m.proc.send_signal(signal.SIGHUP)
        R.check("SIGHUP: configuration reloaded",
                wait_log(m, r"configuration reloaded: generation 2"),
                m.log_text()[-3000:])
        R.check("SIGHUP: milterd still running", m.proc.poll() is None)
        run_script(m, "reload_after")
        R.check("the old generation stops once its sessions ended",
                wait_log(m, r"generation 1 stopping"), m.log_text()[-3000:])
        # Line 9 of the file: a directive the milterd group lacks.
        with open(m.conf, "w") as f:
            f.write((BASE % {"port": m.port, "milterd": "",
                             "plugin_dir": gh.PLUGIN_DIR,
                             "body": RELOAD_BODY % "first",
                             "dns": DNS.server}).replace(
                                 "threads = 2;", "threads = 2; bogus = 1;"))
        m.proc.send_signal(signal.SIGHUP)
        R.check("broken file: reload refused with FILE:LINE",
                wait_log(m, r"reload failed, keeping the running "
                         r"configuration: \S*milterd\.conf:\d+"),
                m.log_text()[-3000:])
        R.check("broken file: milterd still running",
                m.proc.poll() is None)
        run_script(m, "reload_after")
        # A plugin that cannot start (a file that does not exist) is
        # refused too, as -t refuses it.
        with open(m.conf, "w") as f:
            f.write(BASE % {"port": m.port, "milterd": "",
                            "plugin_dir": gh.PLUGIN_DIR,
                            "body": 'plugins = [ "nosuchplugin" ];',
                            "dns": DNS.server})
        m.proc.send_signal(signal.SIGHUP)
        R.check("unknown plugin: reload refused",
                wait_log(m, r"reload failed.*nosuchplugin"),
                m.log_text()[-3000:])
        run_script(m, "reload_after")
        # A new socket waits for the next start; the stop below must
        # still wake the listener on the socket that is open.
        with open(m.conf, "w") as f:
            f.write(BASE % {"port": gh.free_port(), "milterd": "",
                            "plugin_dir": gh.PLUGIN_DIR,
                            "body": "plugins = [ ];", "dns": DNS.server})
        m.proc.send_signal(signal.SIGHUP)
        R.check("a new socket: reloaded, the change waits for a restart",
                wait_log(m, r"socket_mode changes take effect at the next "
                         r"start"), m.log_text()[-2000:])
        t = time.monotonic()
        m.proc.send_signal(signal.SIGTERM)
        try:
            rc = m.proc.wait(10)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t
        R.check("SIGTERM after reloads: clean exit 0", rc == 0,
                m.log_text()[-2000:])
        R.check("SIGTERM on an inet socket: stopped at once",
                took < 3.0, "took %.1f s" % took)
    finally:
        m.kill()
        shutil.rmtree(m.dir, ignore_errors=True)


def main():
    if MILTERTEST is None:
        R.check("miltertest is installed (Debian package miltertest)",
                False)
        return R.done()
    command_line()
    global DNS
    # 127.0.0.10 has a PTR (and its A back); 127.0.0.9 has none.
    DNS = dnsmasq.Dnsmasq([("HOST", "host10.example.test", "127.0.0.10")])
    DNS.start()
    try:
        groups()
        reload()
    finally:
        DNS.stop()
    unix_socket()
    return R.done()


def groups():
    for name, extra, body, scripts in GROUPS:
        m = Milterd(extra, body).start()
        try:
            for s in scripts:
                run_script(m, s)
            if name == "nrlate":
                run_pair(m, "nr_late_b", "nr_late_a", 0.6)
                log_has(m, r"verdict CONT came after the wait; the MTA "
                        r"expected no answer and went on",
                        "log: a late unanswered MAIL keeps its verdict")
            if name == "main":
                log_has(m, r"DENY at rcpt by scripted: 550 5\.1\.1 no such "
                        r"user", "log: a refused recipient names plugin and "
                        "reply")
                log_has(m, r"trace: txn=\S+ queue_id=4XyzQ1 client=127\.0"
                        r"\.0\.7 from=<a@example\.org> rcpts=2",
                        "log: decision trace with the queue id")
                log_has(m, r"no verdict at rcpt in time: answering "
                        r"tempfail", "log: a missed deadline is logged")
                log_has(m, r"no verdict at eom in time: answering "
                        r"tempfail", "log: eom deadline logged")
                log_has(m, r"end of message: progress sent",
                        "smfi_progress while end of message waits")
            elif name == "shadow":
                log_has(m, r"scripted: shadow: would DENY at rcpt",
                        "log: shadow mode logs what it would do")
                log_has(m, r"body over body_max", "log: body cut at "
                        "body_max")
                log_has(m, r"no verdict at rcpt in time: answering reject",
                        "log: fail_action reject")
            elif name == "declared":
                log_has(m, r"negotiated actions 0x100 ",
                        "log: only SETSYMLIST negotiated")
                log_has(m, r"DENY at data_headers by headers: 550 5\.6\.0",
                        "log: header refusal at end of message")
            elif name == "noreply":
                log_has(m, r"sender refused: ", "log: the sender refused "
                        "at the unanswered MAIL")
                log_has(m, r"recipient refused: 501 5\.1\.7 .* \(the "
                        r"sender, at MAIL\)", "log: its 501 given at RCPT")
                log_has(m, r"DENY at helo by access: 550 5\.7\.1",
                        "log: HELO refused by access")
            elif name == "connect":
                log_has(m, r"DENY at connect by scripted: 554 5\.7\.1 go "
                        r"away", "log: connection refused by plugin")
        finally:
            m.kill()
            shutil.rmtree(m.dir, ignore_errors=True)


sys.exit(main())
