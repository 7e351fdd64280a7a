"""dnsmasq.py - a real DNS server for gatehouse's tests.

Dnsmasq(records).start() runs dnsmasq in the foreground on 127.0.0.1 and
a free UDP/TCP port, serving only the records given; .server is the
"127.0.0.1:PORT" string for relayd's `dns.servers`.  Names under the
`local` domains that have no record get NXDOMAIN; anything else gets
REFUSED (dnsmasq has no upstream), which a resolver reports as a temporary
failure.  Records:

  ("A", name, "127.0.0.2")           --address (no PTR made)
  ("AAAA", name, "::2")              --address
  ("HOST", name, "127.0.0.9")        --host-record: A and the PTR back
  ("PTR", "9.0.0.127.in-addr.arpa", name)
  ("MX", domain, exchange, pref)     exchange "." is the null MX (RFC 7505)
  ("TXT", name, "text")

Silent(): a UDP socket that reads questions and never answers: a dead or
very slow server, for timeout tests.  query(): a minimal DNS client that
waits until a server answers.
"""
import os
import random
import socket
import struct
import subprocess
import tempfile
import threading
import time

DNSMASQ = "/usr/sbin/dnsmasq"


def free_udp_port():
    """A port free for both UDP and TCP on 127.0.0.1 (dnsmasq binds both)."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket()
        try:
            t.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            t.close()
            u.close()
        return port
    raise RuntimeError("no free port")


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def query(port, name, qtype=1, timeout=1.0):
    """Send one question; return the rcode, or None without an answer."""
    tid = random.randint(0, 65535)
    pkt = struct.pack(">HHHHHH", tid, 0x0100, 1, 0, 0, 0)
    pkt += _encode_name(name) + struct.pack(">HH", qtype, 1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(pkt, ("127.0.0.1", port))
        data = s.recv(4096)
        return data[3] & 15
    except OSError:
        return None
    finally:
        s.close()


class Dnsmasq:
    def __init__(self, records, local=("test", "127.in-addr.arpa"),
                 ttl=60):
        self.port = free_udp_port()
        self.server = "127.0.0.1:%d" % self.port
        self.dir = tempfile.mkdtemp(prefix="gh-dnsmasq-")
        self.log = os.path.join(self.dir, "dnsmasq.log")
        args = [DNSMASQ, "--no-daemon", "--port=%d" % self.port,
                "--listen-address=127.0.0.1", "--bind-interfaces",
                "--no-resolv", "--no-hosts", "-C", "/dev/null",
                "--pid-file=", "--user=" + self._user(),
                "--local-ttl=%d" % ttl, "--log-queries",
                "--log-facility=" + self.log]
        for d in local:
            args.append("--local=/%s/" % d)
        for r in records:
            args.append(self._arg(r))
        self.args = args
        self.proc = None

    @staticmethod
    def _user():
        # dnsmasq drops to "nobody" when started as root; keep it simple
        # and let it run as whoever we are.
        import pwd
        return pwd.getpwuid(os.getuid()).pw_name

    @staticmethod
    def _arg(r):
        kind = r[0]
        if kind in ("A", "AAAA"):
            return "--address=/%s/%s" % (r[1], r[2])
        if kind == "HOST":
            return "--host-record=%s,%s" % (r[1], r[2])
        if kind == "PTR":
            return "--ptr-record=%s,%s" % (r[1], r[2])
        if kind == "MX":
            if r[2] == ".":
                # MX 0 "." as raw RDATA: preference 0, root name.
                return "--dns-rr=%s,15,%04x00" % (r[1], r[3])
            return "--mx-host=%s,%s,%d" % (r[1], r[2], r[3])
        if kind == "TXT":
            return "--txt-record=%s,%s" % (r[1], r[2])
        raise ValueError("unknown record kind %r" % (kind,))

    def start(self):
        self.proc = subprocess.Popen(self.args, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        end = time.time() + 10
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("dnsmasq exited: %s" %
                                   self.proc.stderr.read().decode())
            if query(self.port, "probe.invalid", timeout=0.2) is not None:
                return self
            time.sleep(0.05)
        raise RuntimeError("dnsmasq does not answer on %d" % self.port)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def queries(self):
        """Lines dnsmasq logged for questions it received."""
        try:
            with open(self.log, errors="replace") as f:
                return [l for l in f if "query[" in l]
        except OSError:
            return []

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()


class Silent:
    """A UDP 'server' that swallows every question."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = "127.0.0.1:%d" % self.port
        self.received = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                self.sock.recv(4096)
                self.received += 1
            except socket.timeout:
                pass
            except OSError:
                return

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self._stop = True
        self.thread.join(2)
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()
