"""smtpsink.py - a scriptable SMTP/LMTP next hop for the queue plugins'
tests: it records the exact octets of each message, counts connections,
notices pipelined commands and answers as the test says.

Rules (Sink.rules, changeable between messages):
  greeting  the greeting line, e.g. "421 4.3.2 busy" (then it closes)
  ehlo      reply to EHLO/LHLO, e.g. "502 5.5.1 no" (HELO then works)
  mail      reply to MAIL
  rcpt      {mailbox: reply} for RCPT; others get 250
  rcpt_first  reply to the first RCPT of each transaction ("%s": its
            mailbox), whatever rcpt says; not for the null sender
  data      reply to DATA (default 354)
  dot       reply to the final dot (SMTP); default 250 ... queued as Qn
  lmtp      {mailbox: reply} per recipient after the dot (LMTP)
  in_data   "hang": stop reading after DATA's 354; "drop": close then;
            "reply:TEXT": read a little of the message, answer TEXT
            (unasked) and close
  close_after  "MAIL": close the connection once MAIL is answered
  dot_delay seconds to wait before answering the final dot
  mail_delay  seconds to wait before answering MAIL
  close_after_dot  close the connection after answering the final dot
"""
import os
import socket
import threading
import time


class Sink:
    def __init__(self, lmtp=False, unix_path=None, pipelining=True,
                 size=True, eightbit=True, smtputf8=False, port=0,
                 host="127.0.0.1"):
        self.lmtp = lmtp
        self.caps = []
        if pipelining:
            self.caps.append("PIPELINING")
        if size:
            self.caps.append("SIZE 52428800")
        if eightbit:
            self.caps.append("8BITMIME")
        if smtputf8:
            self.caps.append("SMTPUTF8")
        self.caps.append("ENHANCEDSTATUSCODES")
        self.rules = {}
        self.messages = []     # dicts: mail, rcpts, data (unstuffed), raw
        self.connections = 0
        self.active = 0        # sessions open now, and the most at once
        self.max_active = 0
        self.commands = []     # (connection number, line)
        self.pipelined = []    # per transaction: DATA came with MAIL
        self.lock = threading.Lock()
        self.unix_path = unix_path
        if unix_path:
            if os.path.exists(unix_path):
                os.unlink(unix_path)
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            self.port = None
        else:
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((host, port))
            self.port = self.sock.getsockname()[1]
        self.sock.listen(64)
        self.qid = 0
        self.stopped = False
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass
        for c in list(self.conns):
            try:
                c.close()
            except OSError:
                pass

    def _accept(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
                n = self.connections
                self.conns.append(c)
            threading.Thread(target=self._serve, args=(c, n),
                             daemon=True).start()

    def _serve(self, c, n):
        if c.family != socket.AF_UNIX:
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            Session(self, c, n).run()
        except OSError:
            pass
        finally:
            with self.lock:
                self.active -= 1
            try:
                c.close()
            except OSError:
                pass

    def wait_messages(self, count, timeout=10.0):
        end = time.time() + timeout
        while time.time() < end and len(self.messages) < count:
            time.sleep(0.02)
        return len(self.messages) >= count


def unstuff(raw):
    out = []
    for line in raw.split(b"\r\n"):
        out.append(line[1:] if line.startswith(b".") else line)
    return b"\r\n".join(out)


class Session:
    def __init__(self, sink, c, n):
        self.sink, self.c, self.n = sink, c, n
        self.buf = b""
        self.mail = None
        self.rcpts = []
        self.nrcpt_cmds = 0     # RCPT commands since MAIL

    def send(self, line):
        self.c.sendall(line.encode() + b"\r\n")

    def line(self):
        while b"\r\n" not in self.buf:
            chunk = self.c.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line.decode("utf-8", "replace")

    def rule(self, key, default):
        return self.sink.rules.get(key, default)

    def run(self):
        greeting = self.rule("greeting", None)
        if greeting:
            self.send(greeting)
            if not greeting.startswith("220"):
                return
        else:
            self.send("220 sink.test ESMTP")
        while True:
            line = self.line()
            if line is None:
                return
            with self.sink.lock:
                self.sink.commands.append((self.n, line))
            verb = line.split(" ", 1)[0].upper()
            if verb in ("EHLO", "LHLO"):
                r = self.rule("ehlo", None)
                if r:
                    self.send(r)
                    continue
                lines = ["sink.test"] + self.sink.caps
                for l in lines[:-1]:
                    self.send("250-" + l)
                self.send("250 " + lines[-1])
            elif verb == "HELO":
                self.send("250 sink.test")
            elif verb == "MAIL":
                with self.sink.lock:
                    self.sink.pipelined.append(b"DATA\r\n" in self.buf)
                r = self.rule("mail", "250 2.1.0 Ok")
                time.sleep(self.rule("mail_delay", 0))
                if r.startswith("2"):
                    self.mail = line
                    self.rcpts = []
                    self.nrcpt_cmds = 0
                self.send(r)
                if self.rule("close_after", None) == "MAIL":
                    return
            elif verb == "RCPT":
                addr = line[line.find("<") + 1:line.rfind(">")]
                r = self.rule("rcpt", {}).get(addr, "250 2.1.5 Ok")
                first = self.rule("rcpt_first", None)
                if (first is not None and self.nrcpt_cmds == 0 and
                        "<>" not in (self.mail or "")):
                    r = first.replace("%s", addr)
                self.nrcpt_cmds += 1
                if r.startswith("2"):
                    self.rcpts.append(addr)
                self.send(r)
            elif verb == "DATA":
                if self.mail is None or not self.rcpts:
                    self.send("554 5.5.1 Error: no valid recipients")
                    continue
                r = self.rule("data", "354 go ahead")
                self.send(r)
                if not r.startswith("354"):
                    continue
                mode = self.rule("in_data", None)
                if mode == "hang":
                    time.sleep(30)
                    return
                if mode == "drop":
                    self.c.recv(10)
                    return
                if mode is not None and mode.startswith("reply:"):
                    self.c.recv(16384)
                    self.send(mode[6:])
                    time.sleep(0.3)
                    return
                if not self.data():
                    return
            elif verb == "RSET":
                self.mail, self.rcpts = None, []
                self.send("250 2.0.0 Ok")
            elif verb == "NOOP":
                self.send("250 2.0.0 Ok")
            elif verb == "QUIT":
                self.send("221 2.0.0 Bye")
                return
            else:
                self.send("502 5.5.2 Error: command not recognized")

    def data(self):
        while True:
            if self.buf.startswith(b".\r\n"):
                raw, self.buf = b"", self.buf[3:]
                break
            i = self.buf.find(b"\r\n.\r\n")
            if i >= 0:
                raw, self.buf = self.buf[:i + 2], self.buf[i + 5:]
                break
            chunk = self.c.recv(1 << 20)
            if not chunk:
                return False
            self.buf += chunk
        time.sleep(self.rule("dot_delay", 0))
        with self.sink.lock:
            self.sink.qid += 1
            qid = "Q%d" % self.sink.qid
        if self.sink.lmtp:
            per = self.rule("lmtp", {})
            replies = [per.get(a, "250 2.0.0 <%s> Ok: queued as %s" %
                               (a, qid)) for a in self.rcpts]
            delivered = [a for a, r in zip(self.rcpts, replies)
                         if r.startswith("2")]
            if delivered:
                self.record(raw, delivered)
            for r in replies:
                self.send(r)
        else:
            r = self.rule("dot", "250 2.0.0 Ok: queued as %s" % qid)
            if r.startswith("2"):
                self.record(raw, self.rcpts)
            self.send(r)
        self.mail, self.rcpts = None, []
        return not self.rule("close_after_dot", False)

    def record(self, raw, rcpts):
        with self.sink.lock:
            self.sink.messages.append({
                "mail": self.mail, "rcpts": list(rcpts), "raw": raw,
                "data": unstuff(raw), "conn": self.n})
