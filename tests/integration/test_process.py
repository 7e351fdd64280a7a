#!/usr/bin/env python3
"""relayd's processes: master and workers, restarts, SIGTERM draining,
SIGHUP reloads, privilege drop, -d and pid_file, listeners.

Every check looks at the real processes (/proc) and talks SMTP to them on
127.0.0.0/8.  Waits poll for a state with a generous bound; nothing
asserts on speed except that a drain with drain_timeout = 1 is over in a
few seconds, which is what the directive promises.
"""
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("process")
SINK = 'scripted = { sink_dir = "@SINK@"; };\nplugins = [ "scripted" ];\n'


def children(pid):
    """Pids whose parent is pid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(d))
    return sorted(out)


def comm(pid):
    try:
        with open("/proc/%d/comm" % pid) as f:
            return f.read().strip()
    except OSError:
        return ""


def uid(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Uid:"):
                return int(line.split()[1])
    return -1


def wait_for(pred, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    return pred()


def greeting(port, host="127.0.0.1"):
    try:
        s = socket.create_connection((host, port), 5)
    except OSError:
        return None
    s.settimeout(5)
    try:
        data = s.recv(4096).decode(errors="replace")
        s.sendall(b"QUIT\r\n")
    except OSError:
        data = ""
    s.close()
    return data


def refused(port):
    try:
        s = socket.create_connection(("127.0.0.1", port), 1)
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    s.close()
    return False


def set_hostname(r, name):
    with open(r.conf) as f:
        text = f.read()
    with open(r.conf, "w") as f:
        f.write(text.replace('hostname = "mx.test"',
                             'hostname = "%s"' % name))


def start_txn(c):
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@client.test>")
    c.cmd("RCPT TO:<b@mx.test>")
    code, _ = c.cmd("DATA")
    c.send("Subject: drain\r\n\r\nfirst line\r\n")
    return code


# --- a dead worker's connection counts are given back ----------------
with gh.Relayd(workers=1, relayd_extra="max_connections_per_ip = 2;",
               body=SINK) as r:
    kids = wait_for(lambda: len(children(r.proc.pid)) == 1 and
                    children(r.proc.pid))
    # Two sessions that count.  (The start-up probe's session may still
    # be open for a moment and take a slot: wait until two are greeted.)
    held = []
    for _ in range(50):
        c = gh.Client(r.port)
        code, _ = c.reply()
        if code == 220:
            held.append(c)
            if len(held) == 2:
                break
        else:
            c.close()
            time.sleep(0.05)
    third = gh.Client(r.port)
    code, _ = third.reply()
    R.check("per-IP limit holds before the crash", code == 421, repr(code))
    third.close()
    os.kill(kids[0], signal.SIGKILL)
    wait_for(lambda: (lambda k: len(k) == 1 and kids[0] not in k and k)
             (children(r.proc.pid)))
    for c in held:
        c.close()
    again = gh.Client(r.port)
    code, lines = again.reply()
    R.check("after a worker crash its counts are released", code == 220,
            repr(lines))
    again.close()
    R.check("release is logged", wait_for(
        lambda: "released 2 connection counts" in r.log_text()),
        r.log_text()[-400:])

# --- master and workers ----------------------------------------------
with gh.Relayd(workers=2, body=SINK) as r:
    kids = wait_for(lambda: len(children(r.proc.pid)) == 2 and
                    children(r.proc.pid))
    R.check("workers = 2: master and two workers",
            kids and len(kids) == 2, repr(kids))
    R.check("workers are relayd",
            kids and all(comm(k) == "relayd" for k in kids),
            repr([comm(k) for k in kids or []]))

    # kill -9 a worker: logged, replaced, service goes on.
    victim = kids[0]
    os.kill(victim, signal.SIGKILL)
    new = wait_for(lambda: (lambda k: len(k) == 2 and victim not in k and k)
                   (children(r.proc.pid)))
    R.check("killed worker is replaced", bool(new), repr(new))
    R.check("master logs the dead worker",
            wait_for(lambda: "worker %d killed by signal 9; restarting"
                     % victim in r.log_text()), r.log_text()[-500:])
    ok = all((greeting(r.port) or "").startswith("220 mx.test")
             for _ in range(6))
    R.check("service continues after the restart", ok)
    R.check("master still runs", r.proc.poll() is None)

# --- SIGTERM drains a transaction, refuses new clients ---------------
r = gh.Relayd(workers=2, body=SINK, relayd_extra="  drain_timeout = 60;")
r.start()
c = gh.Client(r.port)
R.check("transaction reaches DATA", start_txn(c) == 354)
r.proc.send_signal(signal.SIGTERM)
R.check("new connections are refused while draining",
        wait_for(lambda: refused(r.port)))
R.check("relayd still runs for the open session", r.proc.poll() is None)
code, lines = c.cmd(".")
R.check("the message in flight is accepted", code == 250, repr(lines))
code, lines = c.cmd("QUIT")
R.check("QUIT gets 221 while draining", code == 221, repr(lines))
c.close()
try:
    rc = r.proc.wait(15)
except subprocess.TimeoutExpired:
    rc = None
R.check("relayd exits 0 after the drain", rc == 0, repr(rc))
R.check("the message reached the queue", len(r.messages()) == 1)
R.check("stop is logged", "relayd stopped" in r.log_text())
r.stop()

# --- SIGTERM with an idle session and drain_timeout = 1 --------------
r = gh.Relayd(workers=1, body=SINK, relayd_extra="  drain_timeout = 1;")
r.start()
c = gh.Client(r.port)
c.reply()
c.cmd("EHLO client.test")
t0 = time.time()
r.proc.send_signal(signal.SIGTERM)
try:
    rc = r.proc.wait(10)
except subprocess.TimeoutExpired:
    rc = None
took = time.time() - t0
R.check("idle session: exits 0", rc == 0, repr(rc))
R.check("idle session: drain_timeout = 1 ends it within ~2 s", took < 3.0,
        "took %.1f s" % took)
R.check("drain timeout is logged", "drain timeout" in r.log_text(),
        r.log_text()[-400:])
R.check("the idle client is disconnected", c.closed(5))
c.close()
r.stop()

# --- SIGHUP reloads; sessions from before keep working ---------------
with gh.Relayd(workers=2, body=SINK) as r:
    old = gh.Client(r.port)
    code, lines = old.reply()
    R.check("before reload: old greeting", lines[0].startswith("220 mx.test"),
            repr(lines))
    old.cmd("EHLO client.test")
    set_hostname(r, "mx2.test")
    r.proc.send_signal(signal.SIGHUP)
    R.check("reload is logged",
            wait_for(lambda: "configuration reloaded" in r.log_text()))
    g = wait_for(lambda: (lambda s: s.startswith("220 mx2.test") and s)
                 (greeting(r.port) or ""))
    R.check("new sessions see the new hostname", bool(g), repr(g))
    R.check("every new session does",
            all((greeting(r.port) or "").startswith("220 mx2.test")
                for _ in range(6)))
    code, lines = old.cmd("MAIL FROM:<a@client.test>")
    R.check("old session: MAIL after reload", code == 250, repr(lines))
    code, lines = old.cmd("RCPT TO:<b@mx.test>")
    R.check("old session: RCPT after reload", code == 250, repr(lines))
    code, _ = old.cmd("DATA")
    code, lines = old.cmd("Subject: x\r\n\r\nbody\r\n.")
    R.check("old session: message after reload", code == 250, repr(lines))
    code, lines = old.cmd("QUIT")
    R.check("old session keeps its generation's name",
            code == 221 and "mx.test" in lines[-1]
            and "mx2.test" not in lines[-1], repr(lines))
    old.close()
    R.check("old generation exits once drained",
            wait_for(lambda: len(children(r.proc.pid)) == 2))

    # A broken file: logged, the running configuration keeps serving.
    kids = children(r.proc.pid)
    with open(r.conf, "a") as f:
        f.write("\nbogus_setting = 1;\n")
    r.proc.send_signal(signal.SIGHUP)
    R.check("broken reload is logged",
            wait_for(lambda: "reload failed, keeping the running "
                     "configuration" in r.log_text()), r.log_text()[-400:])
    R.check("broken reload names file and line",
            "%s:" % r.conf in r.log_text() and
            'unknown setting "bogus_setting"' in r.log_text())
    R.check("workers untouched by a broken reload",
            children(r.proc.pid) == kids)
    R.check("still serving the last good configuration",
            all((greeting(r.port) or "").startswith("220 mx2.test")
                for _ in range(4)))
    # A file whose plugins cannot start is refused the same way: here
    # the skeleton plugin (relayd -p) refuses an empty mailbox in init.
    pdir = os.path.join(r.dir, "plugins")
    os.mkdir(pdir)
    os.symlink(os.path.join(gh.PLUGIN_DIR, "scripted.so"),
               os.path.join(pdir, "scripted.so"))
    src = os.path.join(pdir, "demo.c")
    with open(src, "w") as f:
        f.write(subprocess.run([gh.RELAYD, "-p", "demo"], capture_output=True,
                               text=True).stdout)
    cc = subprocess.run(["gcc", "-shared", "-fPIC", "-I",
                         os.path.join(gh.SRCDIR, "filters"), "-o",
                         os.path.join(pdir, "demo.so"), src])
    with open(r.conf) as f:
        text = f.read().replace("\nbogus_setting = 1;\n", "\n")
    with open(r.conf, "w") as f:
        f.write(text.replace('plugin_dir = "%s"' % gh.PLUGIN_DIR,
                             'plugin_dir = "%s"' % pdir)
                .replace('plugins = [ "scripted" ];',
                         'plugins = [ "demo", "scripted" ];\n'
                         'demo = { refuse = [ "" ]; };'))
    r.proc.send_signal(signal.SIGHUP)
    R.check("reload whose plugin cannot start is refused",
            cc.returncode == 0 and
            wait_for(lambda: "demo.refuse: empty mailbox" in r.log_text()),
            r.log_text()[-400:])
    R.check("workers untouched by that reload",
            children(r.proc.pid) == kids)
    R.check("serving after a rejected reload",
            (greeting(r.port) or "").startswith("220 mx2.test"))
    R.check("master alive after rejected reloads", r.proc.poll() is None)

# --- user = "nobody": workers drop privileges, the master keeps them --
if os.getuid() == 0:
    with gh.Relayd(workers=2, body=SINK,
                   relayd_extra='  user = "nobody";') as r:
        import pwd
        nobody = pwd.getpwnam("nobody").pw_uid
        kids = wait_for(lambda: len(children(r.proc.pid)) == 2 and
                        children(r.proc.pid))
        R.check("user: workers run as nobody",
                kids and all(uid(k) == nobody for k in kids),
                repr([uid(k) for k in kids or []]))
        R.check("user: master stays root", uid(r.proc.pid) == 0)
        R.check("user: workers serve",
                (greeting(r.port) or "").startswith("220 mx.test"))

# --- -d and pid_file --------------------------------------------------
r = gh.Relayd(workers=1, body=SINK)
pidf = os.path.join(r.dir, "relayd.pid")
with open(r.conf) as f:
    text = f.read()
# A relative -c path must still work once daemon() moved to /.
with open(r.conf, "w") as f:
    f.write(text.replace("  workers = 1;",
                         '  workers = 1;\n  pid_file = "%s";' % pidf))
p = subprocess.run([gh.RELAYD, "-d", "-c", "relayd.conf"], cwd=r.dir,
                   capture_output=True, text=True, timeout=10)
R.check("-d returns 0 at once", p.returncode == 0, p.stderr)
pid = wait_for(lambda: os.path.exists(pidf) and
               open(pidf).read().strip().isdigit() and
               int(open(pidf).read()))
R.check("pid_file is written", bool(pid))
if pid:
    R.check("pid_file names the running master", comm(pid) == "relayd")
    R.check("the master is detached", os.getsid(pid) == pid)
    R.check("the master has its worker",
            wait_for(lambda: len(children(pid)) == 1))
    gh.wait_port("127.0.0.1", r.port)
    R.check("the daemon serves",
            (greeting(r.port) or "").startswith("220 mx.test"))
    set_hostname(r, "mx3.test")
    os.kill(pid, signal.SIGHUP)
    R.check("the daemon reloads its relative -c file",
            bool(wait_for(lambda: (greeting(r.port) or "")
                          .startswith("220 mx3.test"))))
    os.kill(pid, signal.SIGTERM)
    R.check("the daemon stops on SIGTERM",
            wait_for(lambda: comm(pid) != "relayd"))
    R.check("pid_file is removed at exit",
            wait_for(lambda: not os.path.exists(pidf)))

# --- two listeners; an address in use --------------------------------
p1, p3 = gh.free_port("127.0.0.1"), gh.free_port("127.0.0.3")
r = gh.Relayd(workers=1, body=SINK)
with open(r.conf) as f:
    text = f.read()
with open(r.conf, "w") as f:
    f.write(text.replace('listen = [ "127.0.0.1:%d" ]' % r.port,
                         'listen = [ "127.0.0.1:%d", "127.0.0.3:%d" ]'
                         % (p1, p3)))
r.port = p1
with r:
    gh.wait_port("127.0.0.3", p3)
    R.check("listen: 127.0.0.1 answers",
            (greeting(p1) or "").startswith("220 mx.test"))
    R.check("listen: 127.0.0.3 answers",
            (greeting(p3, "127.0.0.3") or "").startswith("220 mx.test"))
    R.check("listen: only the configured addresses",
            refused(p3))  # p3 on 127.0.0.1 is not ours

    busy = gh.Relayd(workers=1, body=SINK)
    with open(busy.conf) as f:
        text = f.read()
    with open(busy.conf, "w") as f:
        f.write(text.replace('"127.0.0.1:%d"' % busy.port,
                             '"127.0.0.1:%d"' % p1))
    p = subprocess.run([gh.RELAYD, "-c", busy.conf], capture_output=True,
                       text=True, timeout=10)
    R.check("address in use: exit 1", p.returncode == 1, repr(p.returncode))
    R.check("address in use: clear message",
            p.stderr == "relayd: cannot listen on 127.0.0.1:%d: Address "
            "already in use\n" % p1, repr(p.stderr))
    R.check("the first relayd is unharmed",
            (greeting(p1) or "").startswith("220 mx.test"))


# A fork that fails (the process limit) is tried again every second, not
# only when another worker exits.  relayd runs as nobody under a process
# limit that a sleeping nobody process fills; when it ends, the master's
# next try succeeds.
def nobody_procs():
    n = 0
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and uid(int(pid)) == 65534:
                n += 1
        except OSError:
            pass
    return n


NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
          "--"]
d = tempfile.mkdtemp(prefix="gh-nofork-")
os.chmod(d, 0o755)
port = gh.free_port()
conf = os.path.join(d, "relayd.conf")
with open(conf, "w") as f:
    f.write('relayd = { hostname = "mx.test"; listen = [ "127.0.0.1:%d" ]; '
            'workers = 1; };\nlog = { level = "info"; };\nplugins = [ ];\n'
            'dns = { servers = [ "127.0.0.1:9" ]; rdns = false; };\n' % port)
os.chmod(conf, 0o644)
filler = subprocess.Popen(NOBODY + ["sleep", "60"])
wait_for(lambda: uid(filler.pid) == 65534, 5)
limit = nobody_procs() + 1      # the master, and no worker


def nproc_limit():
    import resource
    resource.setrlimit(resource.RLIMIT_NPROC, (limit, limit))


logpath = os.path.join(d, "log")
logf = open(logpath, "w")
master = subprocess.Popen(NOBODY + [gh.RELAYD, "-c", conf], stdout=logf,
                          stderr=logf, preexec_fn=nproc_limit)
try:
    R.check("no fork possible: the master says so",
            wait_for(lambda: "started: 0 of 1 workers" in
                     open(logpath).read(), 10),
            open(logpath).read()[-800:])
    filler.kill()
    filler.wait()
    R.check("a process slot frees: the worker starts within seconds",
            wait_for(lambda: len(children(master.pid)) == 1, 6),
            open(logpath).read()[-800:])
    R.check("... and serves", (greeting(port) or "").startswith(
        "220 mx.test"), open(logpath).read()[-800:])
finally:
    if filler.poll() is None:
        filler.kill()
        filler.wait()
    master.send_signal(signal.SIGTERM)
    try:
        master.wait(20)
    except subprocess.TimeoutExpired:
        master.kill()
        master.wait()
    logf.close()

sys.exit(R.done())
