#!/usr/bin/env python3
"""host_list and relay beyond the scenario file: domains_file, IPv6
clients, and configuration errors that must stop start-up (exit 2) with
a message naming the culprit."""
import os
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("host_list")
TMP = tempfile.mkdtemp(prefix="gh-host-list-")


def check_conf(body):
    """Run relayd -t on a configuration; (exit code, output)."""
    path = os.path.join(TMP, "t.conf")
    with open(path, "w") as f:
        f.write('relayd = { listen = [ "127.0.0.1:%d" ]; };\n%s\n'
                % (gh.free_port(), body))
    p = subprocess.run([gh.RELAYD, "-t", "-c", path], capture_output=True,
                       text=True)
    return p.returncode, p.stdout + p.stderr


def rcpt(port, addr, source="127.0.0.1", family=socket.AF_INET):
    c = gh.Client.__new__(gh.Client)
    c.sock = socket.socket(family, socket.SOCK_STREAM)
    c.sock.settimeout(10)
    c.sock.bind((source, 0))
    c.sock.connect((source if family == socket.AF_INET6 else "127.0.0.1",
                    port))
    c.buf = b""
    c.reply()
    c.cmd("EHLO c.test")
    c.cmd("XSCRIPT rcpt CONT")
    c.cmd("MAIL FROM:<a@sender.test>")
    code, lines = c.cmd("RCPT TO:<%s>" % addr)
    c.cmd("QUIT")
    c.close()
    return code, lines


# domains_file: comments, blank lines, white space, case.
dfile = os.path.join(TMP, "domains")
with open(dfile, "w") as f:
    f.write("# our domains\n\n  Example.TEST  \nexample.org # trailing\n"
            "\t# indented comment\nmail.example.com\n")
body = ('plugins = [ "relay", "host_list", "scripted" ];\n'
        'relay = { clients = [ "::1" ]; };\n'
        'host_list = { domains_file = "%s"; };\n'
        'scripted = { sink_dir = "@SINK@"; };\n' % dfile)
v6 = socket.socket(socket.AF_INET6)
v6.bind(("::1", 0))
v6port = v6.getsockname()[1]
v6.close()
# gh.Relayd writes one IPv4 listener; add an IPv6 one beside it.
r = gh.Relayd(body=body)
with open(r.conf) as f:
    conf = f.read()
conf = conf.replace('listen = [ "127.0.0.1:%d" ];' % r.port,
                    'listen = [ "127.0.0.1:%d", "[::1]:%d" ];'
                    % (r.port, v6port))
with open(r.conf, "w") as f:
    f.write(conf)
r.start()
try:
    for addr in ("u@example.test", "u@EXAMPLE.test", "u@example.org",
                 "u@mail.example.com"):
        code, lines = rcpt(r.port, addr)
        R.check("domains_file accepts %s" % addr, code == 250, repr(lines))
    for addr in ("u@our", "u@example.com", "u@comment.test"):
        code, lines = rcpt(r.port, addr)
        R.check("domains_file refuses %s" % addr,
                code == 550 and "5.7.1 I cannot deliver mail for <%s>"
                % addr in lines[-1], repr(lines))
    code, lines = rcpt(v6port, "u@other.test", "::1", socket.AF_INET6)
    R.check("an IPv6 client in clients relays", code == 250, repr(lines))
    code, lines = rcpt(r.port, "u@other.test")
    R.check("an IPv4 client not in clients does not", code == 550,
            repr(lines))
finally:
    r.stop()

# Errors that must stop start-up, each naming what is wrong.
ERRORS = [
    ('plugins = [ "host_list" ];\nhost_list = { regexes = [ "(a" ]; };',
     'host_list: regexes: bad regex "(a"'),
    ('plugins = [ "host_list" ];\nhost_list = { domains_file = "%s/none"; };'
     % TMP, 'host_list: domains_file "%s/none": No such file' % TMP),
    ('plugins = [ "host_list" ];\nhost_list = { domains = [ "a..b" ]; };',
     'host_list: domains: "a..b" is not a domain name'),
    ('plugins = [ "relay" ];\nrelay = { clients = [ "10.0.0.0/33" ]; };',
     'relay: clients: "10.0.0.0/33" is not an IP address or network'),
    ('plugins = [ "relay" ];\nrelay = { clients = [ "example.test" ]; };',
     'relay: clients: "example.test"'),
]
bad = os.path.join(TMP, "bad-domains")
with open(bad, "w") as f:
    f.write("example.test\nnot a domain\n")
ERRORS.append(('plugins = [ "host_list" ];\nhost_list = { domains_file = '
               '"%s"; };' % bad, '%s:2: "not a domain" is not a domain name'
               % bad))
for body, want in ERRORS:
    rc, out = check_conf(body)
    R.check("relayd -t refuses: %s" % want, rc == 2 and want in out,
            "rc=%d out=%r" % (rc, out))

rc, out = check_conf('plugins = [ "relay", "host_list" ];\n'
                     'relay = { clients = [ "10.0.0.0/8", "::1/128", '
                     '"192.0.2.1" ]; };\nhost_list = { domains = '
                     '[ "example.test" ]; regexes = [ "^a$" ]; };')
R.check("relayd -t accepts a good configuration", rc == 0, out)

for name in ("relay", "host_list"):
    p = subprocess.run([gh.RELAYD, "-h", name], capture_output=True,
                       text=True)
    R.check("relayd -h %s prints the manual" % name,
            p.returncode == 0 and "Example:" in p.stdout and
            "DIRECTIVES" in p.stdout, p.stdout[:200])
    sample = os.path.join(gh.SRCDIR, "conf", name + ".conf")
    rc, out = check_conf('plugins = [ "%s" ];\n%s' % (name,
                                                      open(sample).read()))
    R.check("conf/%s.conf is valid" % name, rc == 0, out)

sys.exit(R.done())
