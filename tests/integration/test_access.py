#!/usr/bin/env python3
"""access: configuration errors stop start-up naming the entry; the
default reply text; the sample configuration is valid."""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import dnsmasq  # noqa: E402
import gh  # noqa: E402

R = gh.Results("access")
TMP = tempfile.mkdtemp(prefix="gh-access-")


def check_conf(body):
    path = os.path.join(TMP, "t.conf")
    with open(path, "w") as f:
        f.write('relayd = { listen = [ "127.0.0.1:%d" ]; };\n'
                'plugins = [ "access" ];\n%s\n' % (gh.free_port(), body))
    p = subprocess.run([gh.RELAYD, "-t", "-c", path], capture_output=True,
                       text=True)
    return p.returncode, p.stdout + p.stderr


for body, want in [
        ('access = { client_deny = [ "10.0.0.0/40" ]; };',
         'access: client_deny: "10.0.0.0/40" is not an IP address'),
        ('access = { client_allow = [ "mx.example.test" ]; };',
         'access: client_allow: "mx.example.test" is not an IP address'),
        ('access = { helo_deny = [ "/[a/" ]; };',
         'access: helo_deny: bad regex /[a/'),
        ('access = { rcpt_allow = [ "" ]; };',
         'access: rcpt_allow: "" is not a name'),
        ('access = { mail_deny = [ "a b" ]; };',
         'access: mail_deny: "a b" is not a name')]:
    rc, out = check_conf(body)
    R.check("relayd -t refuses: %s" % want, rc == 2 and want in out,
            "rc=%d %r" % (rc, out))

rc, out = check_conf(open(os.path.join(gh.SRCDIR, "conf",
                                       "access.conf")).read())
R.check("conf/access.conf is valid", rc == 0, out)
p = subprocess.run([gh.RELAYD, "-h", "access"], capture_output=True,
                   text=True)
R.check("relayd -h access", p.returncode == 0 and "rcpt_deny = [ ];" in
        p.stdout and "Decisions:" in p.stdout, p.stdout[:300])

body = ('plugins = [ "access", "scripted" ];\n'
        'access = { mail_deny = [ "example.test" ]; '
        'client_deny = [ "127.0.0.9" ]; };\n'
        'scripted = { sink_dir = "@SINK@"; };\n')
with gh.Relayd(body=body) as r:
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO c.test")
    code, lines = c.cmd("MAIL FROM:<a@example.test>")
    R.check("default reply text", lines == [
        "550 5.7.1 Access denied: sender <a@example.test>"], repr(lines))
    code, lines = c.cmd("MAIL FROM:<a@other.test>")
    R.check("the session goes on after a refused MAIL", code == 250,
            repr(lines))
    c.close()
    c = gh.Client(r.port, source="127.0.0.9")
    code, lines = c.reply()
    R.check("client_deny at connect: 554 5.7.1", lines == [
        "554 5.7.1 Access denied: client 127.0.0.9"], repr(lines))
    R.check("and the connection closes", c.closed())
    c.close()

# Shadow: refusals logged, nothing refused.
with gh.Relayd(body=body.replace('{ mail_deny', '{ mode = "shadow"; '
                                 'mail_deny')) as r:
    c = gh.Client(r.port, source="127.0.0.9")
    code, lines = c.reply()
    R.check("shadow: denied client greeted", code == 220, repr(lines))
    c.cmd("EHLO c.test")
    code, lines = c.cmd("MAIL FROM:<a@example.test>")
    R.check("shadow: denied sender accepted", code == 250, repr(lines))
    c.close()
    R.check("shadow: logged", "shadow: would DENY at mail" in r.log_text())

# rdns lists against a real DNS server: the core fills conn->rdns with
# the forward-confirmed name before the connect hook.
dm = dnsmasq.Dnsmasq([("HOST", "mx.good.test", "127.0.0.21"),
                      ("HOST", "dsl-1.dynamic.bad.test", "127.0.0.22"),
                      ("HOST", "mail.friend.bad.test", "127.0.0.23")]).start()
try:
    body = ('dns = { servers = [ "%s" ]; timeout = 2; };\n'
            'plugins = [ "access", "scripted" ];\n'
            'access = { rdns_deny = [ "bad.test", "/^mx[.]evil/" ]; '
            'rdns_allow = [ "friend.bad.test" ]; '
            'mail_deny = [ "spam.test" ]; };\n'
            'scripted = { sink_dir = "@SINK@"; };\n' % dm.server)
    with gh.Relayd(body=body) as r:
        c = gh.Client(r.port, source="127.0.0.22")
        code, lines = c.reply()
        R.check("rdns_deny: a name below a denied domain", lines == [
            "554 5.7.1 Access denied: host name dsl-1.dynamic.bad.test"],
            repr(lines))
        R.check("rdns_deny closes", c.closed())
        c.close()
        c = gh.Client(r.port, source="127.0.0.21")
        code, lines = c.reply()
        R.check("an unlisted host name is greeted", code == 220,
                repr(lines))
        c.close()
        c = gh.Client(r.port, source="127.0.0.24")
        code, lines = c.reply()
        R.check("no rDNS name: the rdns lists do not apply", code == 220,
                repr(lines))
        c.close()
        c = gh.Client(r.port, source="127.0.0.23")
        code, lines = c.reply()
        R.check("rdns_allow beats rdns_deny", code == 220, repr(lines))
        c.cmd("EHLO c.test")
        code, lines = c.cmd("MAIL FROM:<x@spam.test>")
        R.check("and the trusted client skips mail_deny", code == 250,
                repr(lines))
        c.close()
finally:
    dm.stop()

# A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d: relayd
# writes them as IPv4, so a regex made for IPv4 text still matches.
rr = gh.Relayd(body='plugins = [ "access", "scripted" ];\n'
               'access = { client_deny = [ "/^127\\\\.0\\\\.0\\\\.9$/" ]; };\n'
               'scripted = { sink_dir = "@SINK@"; };\n')
with open(rr.conf) as f:
    text = f.read()
with open(rr.conf, "w") as f:
    f.write(text.replace('"127.0.0.1:%d"' % rr.port,
                         '"[::ffff:127.0.0.1]:%d"' % rr.port))
with rr:
    c = gh.Client(rr.port, source="127.0.0.9")
    code, lines = c.reply()
    R.check("dual-stack listener: an IPv4 regex still denies",
            code == 554, repr(lines))
    c.close()
    c = gh.Client(rr.port, source="127.0.0.8")
    code, lines = c.reply()
    R.check("dual-stack listener: others greeted", code == 220, repr(lines))
    c.close()
sys.exit(R.done())
