#!/usr/bin/env python3
"""relayd's command line: -V, -l, -h, -t, -p and usage errors.

Every broken configuration must stop `relayd -t` with exit 2 and exactly
one line on stderr, "relayd: FILE:LINE: reason", with the line of the
offending setting (FILE alone when there is no line to blame: a missing
or unreadable file).  `relayd -p NAME` must write a plugin that compiles
as a shared object, loads through plugin_dir and works on the wire.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("cli")
TMP = tempfile.mkdtemp(prefix="gh-cli-")


def run(*args, user=None):
    cmd = [gh.RELAYD] + list(args)
    if user is not None:
        # A copy nobody can reach: the checkout may sit below a folder
        # only root may enter (a mktemp -d clone).
        exe = os.path.join(TMP, "relayd-" + user)
        if not os.path.exists(exe):
            shutil.copy(gh.RELAYD, exe)
        cmd = ["runuser", "-u", user, "--", exe] + list(args)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


# -V: the version configure was given.
rc, out, err = run("-V")
version = ""
with open(os.path.join(gh.BUILDDIR, "config.h")) as f:
    m = re.search(r'#define PACKAGE_VERSION "([^"]+)"', f.read())
    version = m.group(1) if m else "?"
R.check("-V exits 0", rc == 0, err)
R.check("-V prints the version", out == "relayd (gatehouse) %s\n" % version,
        repr(out))

# -l: one "name  description" line per built-in plugin.
rc, out, err = run("-l")
R.check("-l exits 0", rc == 0, err)
bad = [l for l in out.splitlines()
       if not re.match(r"^[A-Za-z][A-Za-z0-9_-]*  +\S.*$", l)]
R.check("-l lines are 'name  description'", not bad, repr(bad))

# -h for the host's own groups: every directive of each, with its default,
# as the sample configuration writes it.
with open(os.path.join(gh.SRCDIR, "conf", "relayd.conf")) as f:
    sample = f.read()
for group in ("relayd", "log", "dns"):
    rc, out, err = run("-h", group)
    R.check("-h %s exits 0" % group, rc == 0, err)
    m = re.search(r"^%s = \{(.*?)^\};" % group, sample, re.M | re.S)
    names = re.findall(r"^\s+(\w+) =", m.group(1), re.M) if m else []
    shown = re.findall(r"^  (\w+) = ", out, re.M)
    R.check("-h %s documents the sample's %d directives" % (group,
            len(names)), names and set(names) <= set(shown),
            repr(sorted(set(names) - set(shown))))
    R.check("-h %s gives each a description" % group,
            out.count("\n      ") >= len(shown) > 0, out[:300])

# -h for an unknown plugin.
rc, out, err = run("-h", "no_such_plugin")
R.check("-h unknown exits 2", rc == 2, str(rc))
R.check("-h unknown says so", 'no plugin called "no_such_plugin"' in err
        and out == "", repr(err))

# -h NAME looks for NAME.so in the plugin_dir of the file given with -c
# (the test plugins are not in the compiled-in directory).
pdir = os.path.join(gh.BUILDDIR, "tests", "plugins")
pconf = write("plugin_dir.conf",
              'plugin_dir = "%s";\nplugins = [ ];\n' % pdir)
rc, out, err = run("-c", pconf, "-h", "probe")
R.check("-c FILE -h probe exits 0 (probe.so in FILE's plugin_dir)",
        rc == 0, err)
R.check("-c FILE -h probe prints probe's manual",
        out.startswith("probe - ") and "DIRECTIVES" in out, out[:200])
rc, out, err = run("-h", "probe")
R.check("-h probe without -c: not found, naming where it looked",
        rc == 2 and 'no plugin called "probe"' in err and pdir not in err,
        err)
bad = write("plugin_dir_bad.conf", "plugins = [ ];\nplugin_dir = 5;\n")
rc, out, err = run("-c", bad, "-h", "probe")
R.check("-c FILE -h with a bad plugin_dir: exit 2, FILE:2 and why",
        rc == 2 and err.startswith("relayd: %s:2: plugin_dir: " % bad),
        err)
p = subprocess.run([os.path.join(gh.BUILDDIR, "milterd", "milterd"), "-c",
                    pconf, "-h", "probe"], capture_output=True, text=True,
                   timeout=30)
R.check("milterd -c FILE -h probe finds it the same way",
        p.returncode == 0 and p.stdout.startswith("probe - "), p.stderr)

# Usage errors.
for args in (["-x"], ["-c"], ["stray"], ["-t", "-c", "a", "b"]):
    rc, out, err = run(*args)
    R.check("usage %s exits 2" % args, rc == 2, str(rc))
    R.check("usage %s prints usage" % args, "usage: relayd" in err, err)
rc, out, err = run("-x")
R.check("usage lists -p", "-p name" in err, err)

# -t on the sample configuration.
conf = os.path.join(gh.SRCDIR, "conf", "relayd.conf")
rc, out, err = run("-t", "-c", conf)
R.check("-t conf/relayd.conf exits 0", rc == 0, err)
R.check("-t says valid", "is valid" in out, out)


def broken(label, text, line, reason, name=None):
    """-t on a file whose error is at `line` (None: no line)."""
    path = write(name or label.replace(" ", "_") + ".conf", text)
    rc, out, err = run("-t", "-c", path)
    want = "relayd: %s:%d: " % (path, line) if line else \
        "relayd: %s: " % path
    R.check(label + ": exit 2", rc == 2, "rc=%d %r" % (rc, err))
    R.check(label + ": one line", err.count("\n") == 1 and out == "",
            repr(err) + repr(out))
    R.check(label + ": FILE:LINE", err.startswith(want),
            "%r does not start with %r" % (err, want))
    R.check(label + ": reason", reason in err, "%r lacks %r" % (err, reason))
    return path


broken("syntax error",
       'relayd = {\n  listen = [ "127.0.0.1:2525" ];\n'
       '  workers = = 2;\n};\n', 3, "syntax error")
broken("unclosed group",
       'relayd = {\n  hostname = "x";\n\n', 4, "syntax error")
broken("unknown key",
       'relayd = {\n  hostname = "mx.test";\n\n  bogus = 1;\n};\n', 4,
       'relayd: unknown setting "bogus"')
broken("wrong type",
       'relayd = {\n  workers = "two";\n};\n', 2,
       "relayd.workers: expected an integer")
broken("wrong type bool",
       'log = {\n  level = "info";\n  syslog = 1;\n};\n', 3,
       "log.syslog: expected true or false")
broken("out of range",
       '# comment\nrelayd = {\n  max_line_length = 100;\n};\n', 3,
       "relayd.max_line_length: value 100 is out of range 512..65536")
# libconfig 1.5 keeps the low 32 bits of an integer without an L suffix
# (4294967297 would arrive as 1): the value as written is what is judged.
broken("wrapped integer",
       'relayd = {\n  max_connections = 4294967297;\n};\n', 2,
       "relayd.max_connections: value 4294967297 is out of range 1..1000000")
broken("wrapped integer, colon",
       'relayd = {\n  hostname = "mx.test";\n  max_connections: '
       '-4294967295;\n};\n', 3,
       "relayd.max_connections: value -4294967295 is out of range")
broken("wrapped integer, value on the next line",
       'relayd = {\n  max_connections =\n    4294967297;\n};\n', 2,
       "relayd.max_connections: value 4294967297 is out of range 1..1000000")
broken("wrapped integer, = on the next line",
       'relayd = {\n  max_connections\n    = 4294967297;\n};\n', 2,
       "relayd.max_connections: value 4294967297 is out of range 1..1000000")
broken("integer past 64 bits",
       'relayd = {\n  workers = 99999999999999999999;\n};\n', 2,
       "relayd.workers: value 99999999999999999999 is out of range")
broken("bad enum",
       'relayd = {\n  bare_line_ends = "ignore";\n};\n', 2,
       'expected one of "normalize", "reject"')
broken("unknown plugin",
       'relayd = { };\n\nplugins = [\n  "no_such_plugin"\n];\n', 4,
       'plugins: unknown plugin "no_such_plugin"')
broken("unknown group",
       'relayd = { };\nplugins = [ ];\n\nbogus = {\n  x = 1;\n};\n', 4,
       'unknown setting "bogus" (not a plugin name or a section)')
broken("unknown plugin, one per line",
       'relayd = { };\nplugins = [\n  "no_such_a"\n  , "b"\n];\n', 3,
       'plugins: unknown plugin "no_such_a"')
broken("unknown plugin, same line",
       'relayd = { };\nplugins = [ "no_such_a", "b" ];\n', 2,
       'plugins: unknown plugin "no_such_a"')
broken("mixed array",
       'relayd = {\n  listen = [ "127.0.0.1:2525",\n    5 ];\n};\n', 3,
       "mismatched element type in array")
broken("list element",
       'relayd = {\n  listen = ( "127.0.0.1:2525",\n    5 );\n};\n', 3,
       "relayd.listen: expected a list of strings")
many = ",\n".join('    "127.0.0.1:%d"' % (2000 + i) for i in range(33))
broken("too many listeners",
       'relayd = {\n  listen = [\n%s\n  ];\n};\n' % many, 2,
       "relayd.listen: too many values (33, at most 32)")
broken("trace header not a field name",
       'relayd = {\n  trace_header = "X Gatehouse Trace";\n};\n', None,
       "relayd.trace_header: \"X Gatehouse Trace\" is not a header field "
       "name")
broken("no listener",
       'relayd = {\n  listen = [ ];\n};\n', 2,
       "relayd.listen: needs at least 1 value")
missing = os.path.join(TMP, "missing.conf")
rc, out, err = run("-t", "-c", missing)
R.check("missing file: exit 2", rc == 2, str(rc))
R.check("missing file: message",
        err == "relayd: %s: No such file or directory\n" % missing, err)
d = os.path.join(TMP, "dir.conf")
os.mkdir(d)
rc, out, err = run("-t", "-c", d)
R.check("directory: exit 2", rc == 2, str(rc))
R.check("directory: message", err == "relayd: %s: Is a directory\n" % d,
        err)
# Unreadable: root reads anything, so read it as nobody.
secret = write("secret.conf", "relayd = { };\n")
os.chmod(secret, 0o600)
os.chmod(TMP, 0o755)
if shutil.which("runuser") and os.getuid() == 0:
    rc, out, err = run("-t", "-c", secret, user="nobody")
    R.check("unreadable: exit 2", rc == 2, str(rc))
    R.check("unreadable: message",
            err == "relayd: %s: Permission denied\n" % secret, err)
# Errors in an @include'd file name that file and its line; a missing
# include names the line of the @include.
write("part.conf", "relayd = {\n  hostname = \"x\";\n  workers = -1;\n};\n")
inc = write("inc.conf", '# top\n@include "part.conf"\n')
rc, out, err = run("-t", "-c", inc)
R.check("include: exit 2", rc == 2, str(rc))
R.check("include: names the included file and line",
        err.startswith("relayd: %s:3: relayd.workers: value -1"
                       % os.path.join(TMP, "part.conf")), err)
# An absolute @include (libconfig 1.5 put the include dir in front of
# it); a relative one is read beside the main file whatever the cwd.
sub = os.path.join(TMP, "sub")
os.mkdir(sub)
with open(os.path.join(sub, "part.conf"), "w") as f:
    f.write('relayd = {\n  hostname = "mx.test";\n};\n')
absinc = write("absinc.conf", '@include "%s"\n'
               % os.path.join(sub, "part.conf"))
rc, out, err = run("-t", "-c", absinc)
R.check("absolute @include", rc == 0, err)
relinc = write("relinc.conf", '@include "sub/part.conf"\n')
p = subprocess.run([gh.RELAYD, "-t", "-c", os.path.relpath(relinc, "/")],
                   cwd="/", capture_output=True, text=True)
R.check("relative @include from another cwd", p.returncode == 0, p.stderr)
p = subprocess.run([gh.RELAYD, "-t", "-c", "relinc.conf"], cwd=TMP,
                   capture_output=True, text=True)
R.check("relative @include, file in cwd", p.returncode == 0, p.stderr)
broken("missing include",
       'relayd = { };\n\n@include "nothere.conf"\n', 3,
       "cannot open include file")
# Checks the directive table cannot express.
broken("listen syntax",
       'relayd = {\n  listen = [ "127.0.0.1" ];\n};\n', None,
       'relayd.listen: "127.0.0.1": expected host:port')
broken("listen port",
       'relayd = {\n  listen = [ "127.0.0.1:99999" ];\n};\n', None,
       'relayd.listen: "127.0.0.1:99999"')
broken("unknown user",
       'relayd = {\n  user = "no_such_user_x";\n};\n', None,
       'relayd.user: no user called "no_such_user_x"')

# -p NAME: a skeleton plugin that builds, loads and works.
rc, out, err = run("-p", "demo")
R.check("-p exits 0", rc == 0, err)
R.check("-p exports gh_module_demo",
        "const struct gh_module gh_module_demo = {" in out, out[-400:])
R.check("-p explains both symbol names",
        "gh_module_demo" in out and "`gh_module`" in out)
src = write("demo.c", out)
pdir = os.path.join(TMP, "plugins")
os.mkdir(pdir)
cc = subprocess.run(["gcc", "-Wall", "-Wextra", "-Werror", "-shared",
                     "-fPIC", "-I", gh.BUILDDIR, "-I",
                     os.path.join(gh.SRCDIR, "filters"), "-o",
                     os.path.join(pdir, "demo.so"), src],
                    capture_output=True, text=True)
R.check("-p output compiles with -Wall -Wextra -Werror", cc.returncode == 0,
        cc.stderr)
if shutil.which("clang"):
    cc = subprocess.run(["clang", "-Wall", "-Wextra", "-Werror", "-fsyntax-only",
                         "-I", os.path.join(gh.SRCDIR, "filters"), src],
                        capture_output=True, text=True)
    R.check("-p output is clean under clang", cc.returncode == 0, cc.stderr)
rc, out, err = run("-p", "skeleton")
with open(os.path.join(gh.SRCDIR, "contrib", "plugin-skeleton.c")) as f:
    R.check("contrib/plugin-skeleton.c is relayd -p skeleton",
            f.read() == out)
for bad_name in ("9lives", "has-dash", "has.dot", "", "a" * 65):
    rc, out, err = run("-p", bad_name)
    R.check("-p %r refused" % bad_name, rc == 2 and out == "" and
            "plugin name" in err, err)

body = ('plugin_dir = "%s";\nplugins = [ "demo" ];\n'
        'demo = {\n  refuse = [ "abuse@example.test" ];\n'
        '  message = "no such user here";\n  mode = "enforce";\n'
        '  timeout = 5;\n};\n' % pdir)
good = write("demo.conf", 'relayd = { listen = [ "127.0.0.1:2525" ]; };\n'
             + body)
rc, out, err = run("-t", "-c", good)
R.check("-t with the skeleton .so passes", rc == 0, err)
broken("skeleton directive type",
       'relayd = { };\n' + body.replace('refuse = [ "abuse@example.test" ]',
                                        'refuse = 1'), 5,
       "demo.refuse: expected a string or a list of strings")
broken("skeleton init refuses",
       'relayd = { };\n' + body.replace('"abuse@example.test"', '""'),
       None, "refuse: empty mailbox")

# The skeleton's hook on the wire: a listed recipient gets 550 5.1.1.
r = gh.Relayd(body=body.replace('plugin_dir = "%s";\n' % pdir, "")
              .replace('plugin_dir', '#'))
with open(r.conf) as f:
    text = f.read()
with open(r.conf, "w") as f:
    f.write(text.replace('plugin_dir = "%s";' % gh.PLUGIN_DIR,
                         'plugin_dir = "%s";' % pdir))
with r:
    c = gh.Client(r.port)
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@b.test>")
    code, lines = c.cmd("RCPT TO:<Abuse@Example.test>")
    R.check("skeleton refuses a listed recipient",
            code == 550 and lines[-1].startswith("550 5.1.1 no such user"),
            repr(lines))
    code, lines = c.cmd("QUIT")
    R.check("QUIT after", code == 221)
    c.close()
R.check("skeleton logs the refusal",
        "refused recipient <Abuse@Example.test>" in r.log_text(),
        r.log_text()[-600:])

shutil.rmtree(TMP, ignore_errors=True)
sys.exit(R.done())
