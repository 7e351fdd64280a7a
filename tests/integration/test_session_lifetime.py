#!/usr/bin/env python3
"""A session that goes away while a plugin is pending: the pending call
is cancelled with the session, and a late answer never reaches freed
memory.  (Under the sanitizer build any use after free is a report, and
so a failure; here the worker must simply survive.)
"""
import os
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("session_lifetime")

# lookup_rdns answers at once, connect only after 700 ms: the connect
# chain is started from inside the finished lookup_rdns chain.
BODY = ('plugins = [ "scripted" ];\n'
        'scripted = { lookup_rdns = "CONT"; connect = "AGAIN:CONT:700"; '
        'sink_dir = "@SINK@"; };\n')

with gh.Relayd(body=BODY) as r:
    workers = set()
    for i in range(5):
        s = socket.create_connection(("127.0.0.1", r.port))
        # A reset, not a close: the server sees an error at once.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                     struct.pack("ii", 1, 0))
        time.sleep(0.05)
        s.close()
    time.sleep(1.5)
    c = gh.Client(r.port)
    code, lines = c.reply()
    R.check("a new session is served after the resets", code == 220,
            repr(lines))
    c.close()
    log = r.log_text()
    R.check("no worker died", "killed by signal" not in log and
            "exited with" not in log, log[-600:])
    R.check("the connect chain waited for the plugin",
            r.proc.poll() is None)

sys.exit(R.done())
