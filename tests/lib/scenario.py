#!/usr/bin/env python3
"""scenario.py - run SMTP transcript files against a live relayd.

A .scn file starts with the configuration and then holds tests, each one
SMTP session (see tests/scenarios/README for the format).  Every test is
counted; a failed step fails its test and ends the session.
"""
import codecs
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gh  # noqa: E402


def unescape(s):
    return codecs.decode(s.encode(), "unicode_escape").encode("latin-1")


def parse(path):
    """Return [(conf, tests)]: one segment per configuration.  A %relayd
    or %body block after a test starts a new segment with its own relayd;
    the block it does not restate is inherited from the segment before."""
    segs = []
    conf = {"relayd": "", "body": ""}
    tests = []
    section = None
    cur = None
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith("%relayd") or line.startswith("%body"):
                if tests:
                    segs.append((conf, tests))
                    conf = dict(conf)
                    tests = []
                    cur = None
                section = line[1:].split()[0]
                conf[section] = ""
                continue
            if line.startswith("%end"):
                section = None
                continue
            if section:
                conf[section] += line + "\n"
                continue
            if line.startswith("==="):
                cur = {"name": line[3:].strip(), "steps": []}
                tests.append(cur)
                continue
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            if cur is None:
                raise SystemExit("%s: step before the first ===" % path)
            cur["steps"].append(line)
    segs.append((conf, tests))
    return segs


class Failure(Exception):
    pass


def match_reply(want, code, lines):
    parts = want.split(None, 1)
    if code is None:
        raise Failure("connection closed, wanted %s" % want)
    if str(code) != parts[0]:
        raise Failure("got %r, wanted %s" % (lines, want))
    if len(parts) > 1:
        rest = parts[1]
        if rest.startswith("~"):
            if not any(rest[1:] in l for l in lines):
                raise Failure("got %r, wanted text %r" % (lines, rest[1:]))
        elif not lines[-1][4:].startswith(rest):
            raise Failure("got %r, wanted %s" % (lines, want))


def crlf_clean(msg):
    """Where a bare CR or LF is in msg, or None (RFC 5321 2.3.8)."""
    for i, b in enumerate(msg):
        if b == 0x0a and (i == 0 or msg[i - 1] != 0x0d):
            return "bare LF at %d: %r" % (i, msg[max(0, i - 20):i + 20])
        if b == 0x0d and (i + 1 == len(msg) or msg[i + 1] != 0x0a):
            return "bare CR at %d: %r" % (i, msg[max(0, i - 20):i + 20])
    return None


class Conn:
    """One client connection of a test, opened at its first use."""

    def __init__(self, source):
        self.source = source
        self.client = None
        self.pending = b""

    def open(self, port):
        if self.client is None:
            self.client = gh.Client(port, self.source)
        return self.client

    def flush(self):
        if self.client is not None and self.pending:
            self.client.send(self.pending)
        self.pending = b""

    def close(self):
        if self.client is not None:
            self.client.close()


def split_conn(step):
    """("name", rest) for "@name rest", else ("", step)."""
    if step.startswith("@"):
        name, _, rest = step[1:].partition(" ")
        return name, rest
    return "", step


def parse_send(step):
    """(bytes) for C: / R: steps and their C*N: / R*N: repeats."""
    kind, _, text = step.partition(": ")
    count = 1
    if "*" in kind:
        kind, n = kind.split("*", 1)
        count = int(n)
    if kind == "C":
        data = text.encode("utf-8") + b"\r\n"
    else:
        data = unescape(text)
    return data * count


def is_send(step):
    head = step.split(": ", 1)[0]
    return head in ("C", "R") or (head[:2] in ("C*", "R*") and
                                  head[2:].isdigit())


def run_step(relayd, step, conns, state):
    name, step = split_conn(step)
    conn = conns.setdefault(name, Conn("127.0.0.1"))
    if step.startswith("source "):
        if conn.client is not None:
            raise Failure("source after the connection opened")
        conn.source = step.split()[1]
    elif step.startswith("SLEEP "):
        for c in conns.values():
            c.flush()
        time.sleep(float(step.split()[1]))
    elif step.startswith("LOG "):
        for c in conns.values():
            c.flush()
        want = step[4:]
        end = time.time() + 2.0
        while want not in relayd.log_text()[state["log"]:]:
            if time.time() > end:
                raise Failure("log lacks %r" % want)
            time.sleep(0.05)
    elif step.startswith("LOG-LACKS "):
        for c in conns.values():
            c.flush()
        time.sleep(0.2)
        if step[10:] in relayd.log_text()[state["log"]:]:
            raise Failure("log has it")
    elif step.startswith("MESSAGES "):
        arg = step.split()[1]
        time.sleep(0.05)
        n = len(relayd.messages())
        if arg.startswith("+"):
            n -= state["messages"]
        if n != int(arg):
            raise Failure("%d messages queued, wanted %s" % (n, arg))
    elif step.startswith("MSG-CONTAINS ") or \
            step.startswith("MSG-NOT-CONTAINS "):
        want = unescape(step.split(" ", 1)[1])
        msgs = relayd.messages()[state["messages"]:]
        last = msgs[-1] if msgs else b""
        if (want in last) != step.startswith("MSG-CONTAINS "):
            raise Failure("in %r" % last[:400])
    elif step == "MSG-CRLF-CLEAN":
        msgs = relayd.messages()[state["messages"]:]
        if not msgs:
            raise Failure("no message queued by this test")
        err = crlf_clean(msgs[-1])
        if err:
            raise Failure(err)
    elif is_send(step):
        conn.open(relayd.port)
        conn.pending += parse_send(step)
    elif step.startswith("S: ") or step.startswith("S<") or \
            step.startswith("S*"):
        head, _, want = step.partition(": ")
        c = conn.open(relayd.port)
        conn.flush()
        limit = float(head[2:]) if head.startswith("S<") else None
        count = int(head[2:]) if head.startswith("S*") else 1
        started = time.time()
        for i in range(count):
            code, lines = c.reply()
            try:
                match_reply(want, code, lines)
            except Failure as e:
                raise Failure("reply %d of %d: %s" % (i + 1, count, e))
        if limit is not None and time.time() - started > limit:
            raise Failure("reply after %.1f s, wanted within %s s"
                          % (time.time() - started, limit))
    elif step == "SHUT":
        c = conn.open(relayd.port)
        conn.flush()
        c.sock.shutdown(socket.SHUT_WR)
    elif step == "CLOSED":
        c = conn.open(relayd.port)
        conn.flush()
        if not c.closed():
            raise Failure("connection still open")
    else:
        raise Failure("unknown step")


def run_test(relayd, test):
    conns = {}
    state = {"messages": len(relayd.messages()),
             "log": len(relayd.log_text())}
    step = ""
    try:
        for step in test["steps"]:
            run_step(relayd, step, conns, state)
        return None
    except Failure as e:
        return "%s: %s" % (step, e)
    except OSError as e:
        return "%s: %s" % (step, e)
    finally:
        for c in conns.values():
            c.close()


def main():
    total_pass = total_fail = 0
    for path in sys.argv[1:]:
        name = os.path.basename(path)
        for conf, tests in parse(path):
            failed = total_fail
            relayd = gh.Relayd(conf["relayd"], conf["body"]).start()
            try:
                for t in tests:
                    err = run_test(relayd, t)
                    if err is None:
                        total_pass += 1
                    else:
                        total_fail += 1
                        print("FAIL %s: %s: %s" % (name, t["name"], err))
                        sys.stdout.flush()
            finally:
                relayd.stop()
                if os.environ.get("GH_KEEP_LOGS") or total_fail > failed:
                    print("  (relayd log: %s)" % relayd.log)
    for report in gh._SANITIZER:
        total_fail += 1
        print("FAIL sanitizer report in %s" % report)
    print("scenarios: %d passed, %d failed" % (total_pass, total_fail))
    print("RESULT passed=%d failed=%d" % (total_pass, total_fail))
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main())
