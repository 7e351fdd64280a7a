#!/usr/bin/env python3
"""scenario.py - run SMTP transcript files against a live relayd.

A .scn file starts with the configuration and then holds tests, each one
SMTP session (see tests/scenarios/README for the format).  Every test is
counted; a failed step fails its test and ends the session.
"""
import codecs
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gh  # noqa: E402


def unescape(s):
    return codecs.decode(s.encode(), "unicode_escape").encode("latin-1")


def parse(path):
    conf = {"relayd": "", "body": ""}
    tests = []
    section = None
    cur = None
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if line.startswith("%relayd"):
                section = "relayd"
                continue
            if line.startswith("%body"):
                section = "body"
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
    return conf, tests


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


def run_test(relayd, test, state):
    steps = test["steps"]
    source = "127.0.0.1"
    if steps and steps[0].startswith("source "):
        source = steps[0].split()[1]
        steps = steps[1:]
    c = None
    pending = b""
    try:
        for step in steps:
            if step.startswith("SLEEP "):
                time.sleep(float(step.split()[1]))
                continue
            if step.startswith("LOG "):
                if pending:
                    c.send(pending)
                    pending = b""
                time.sleep(0.2)
                if step[4:] not in relayd.log_text():
                    raise Failure("log lacks %r" % step[4:])
                continue
            if step.startswith("MESSAGES "):
                time.sleep(0.05)
                n = len(relayd.messages())
                if n != int(step.split()[1]):
                    raise Failure("%d messages queued, wanted %s"
                                  % (n, step.split()[1]))
                continue
            if step.startswith("MSG-CONTAINS ") or \
                    step.startswith("MSG-NOT-CONTAINS "):
                want = unescape(step.split(" ", 1)[1])
                msgs = relayd.messages()
                last = msgs[-1] if msgs else b""
                has = want in last
                if has != step.startswith("MSG-CONTAINS "):
                    raise Failure("%s in %r" % (step, last[:400]))
                continue
            if c is None:
                c = gh.Client(relayd.port, source)
            if step.startswith("C: "):
                pending += step[3:].encode("utf-8") + b"\r\n"
            elif step.startswith("R: "):
                pending += unescape(step[3:])
            elif step.startswith("S: "):
                if pending:
                    c.send(pending)
                    pending = b""
                code, lines = c.reply()
                match_reply(step[3:], code, lines)
            elif step == "CLOSED":
                if pending:
                    c.send(pending)
                    pending = b""
                if not c.closed():
                    raise Failure("connection still open")
            else:
                raise Failure("unknown step %r" % step)
        return None
    except Failure as e:
        return "%s: %s" % (step, e)
    except OSError as e:
        return "%s: %s" % (step, e)
    finally:
        if c is not None:
            c.close()


def main():
    total_pass = total_fail = 0
    for path in sys.argv[1:]:
        conf, tests = parse(path)
        name = os.path.basename(path)
        relayd = gh.Relayd(conf["relayd"], conf["body"]).start()
        try:
            for t in tests:
                err = run_test(relayd, t, None)
                if err is None:
                    total_pass += 1
                else:
                    total_fail += 1
                    print("FAIL %s: %s: %s" % (name, t["name"], err))
                    sys.stdout.flush()
        finally:
            relayd.stop()
            if os.environ.get("GH_KEEP_LOGS") or total_fail:
                print("  (relayd log: %s)" % relayd.log)
    print("scenarios: %d passed, %d failed" % (total_pass, total_fail))
    print("RESULT passed=%d failed=%d" % (total_pass, total_fail))
    return 1 if total_fail else 0


if __name__ == "__main__":
    sys.exit(main())
