#!/usr/bin/env python3
"""Every built-in plugin documents itself, and its sample file is valid.

The directive names come from two places that must agree: the table
`relayd -h` prints (the code's) and the group in conf/NAME.conf (the
sample a user copies).

For each plugin `relayd -l` lists:
  - `relayd -h NAME` exits 0, starts with "NAME - description" as -l has
    it, and lists the plugin's directives with their defaults, including
    the common `mode` and `timeout`;
  - conf/NAME.conf exists, holds the group NAME with every directive of
    the table, each at the default -h prints, and nothing else;
  - `plugins = [ "NAME" ];` with that file @include'd, or pasted in,
    passes `relayd -t`.
"""
import os
import re
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("plugin_docs")
TMP = tempfile.mkdtemp(prefix="gh-docs-")
DIRECTIVE = re.compile(r"^  ([A-Za-z_][A-Za-z0-9_]*) = (.*);   \((.*)\)$")


def run(*args):
    p = subprocess.run([gh.RELAYD] + list(args), capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stdout, p.stderr


def strip_comments(text):
    """libconfig text without comments (#, //, /* */), strings kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif ch == "#" or text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            i = text.find("*/", i + 2)
            i = n if i < 0 else i + 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def squeeze(value):
    """A value with the blanks outside strings removed."""
    return re.sub(r'("(?:[^"\\]|\\.)*")|\s+',
                  lambda m: m.group(1) or "", value)


def group_settings(text, name):
    """{key: value} of the top-level group `name`, or None."""
    text = strip_comments(text)
    m = re.search(r"(?m)^\s*%s\s*[=:]\s*\{" % re.escape(name), text)
    if m is None:
        return None
    body, depth, i = [], 1, m.end()
    while i < len(text) and depth:
        ch = text[i]
        if ch == '"':
            j = i + 1
            while j < len(text) and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            body.append(text[i:j + 1])
            i = j + 1
            continue
        depth += ch in "{[(" and 1 or 0
        depth -= ch in "}])" and 1 or 0
        if depth:
            body.append(ch)
        i += 1
    body = "".join(body)
    out = {}
    # Split on ; or , at depth 0, outside strings.
    parts, cur, depth = [], [], 0
    for tok in re.findall(r'"(?:[^"\\]|\\.)*"|.', body, re.S):
        if tok in "[(":
            depth += 1
        elif tok in "])":
            depth -= 1
        if tok in ";," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(tok)
    parts.append("".join(cur))
    for part in parts:
        if not part.strip():
            continue
        k, _, v = part.partition("=")
        out[k.strip()] = squeeze(v)
    return out


rc, listing, err = run("-l")
R.check("-l exits 0", rc == 0, err)
plugins = []
for line in listing.splitlines():
    name, _, desc = line.partition("  ")
    plugins.append((name, desc.strip()))
R.check("-l lists plugins", len(plugins) > 0, repr(listing))

for name, desc in plugins:
    rc, out, err = run("-h", name)
    R.check("%s: -h exits 0" % name, rc == 0, err)
    R.check("%s: -h opens with name and description" % name,
            out.startswith("%s - %s\n" % (name, desc)), out[:200])
    _, sep, table = out.partition("\nDIRECTIVES")
    R.check("%s: -h has the directive table" % name, sep != "", out[-300:])
    dirs = {}
    for line in table.splitlines():
        m = DIRECTIVE.match(line)
        if m:
            dirs[m.group(1)] = squeeze(m.group(2))
    own = [d for d in dirs if d not in ("mode", "timeout")]
    R.check("%s: -h shows mode and timeout" % name,
            "mode" in dirs and "timeout" in dirs, repr(sorted(dirs)))
    for d in own:
        R.check("%s: -h shows directive %s" % (name, d),
                re.search(r"(?m)^  %s = " % d, out) is not None)

    path = os.path.join(gh.SRCDIR, "conf", name + ".conf")
    R.check("%s: conf/%s.conf exists" % (name, name), os.path.exists(path))
    if not os.path.exists(path):
        continue
    with open(path) as f:
        sample = f.read()
    got = group_settings(sample, name)
    R.check("%s: conf/%s.conf has the group %s" % (name, name, name),
            got is not None)
    got = got or {}
    for d, default in dirs.items():
        R.check("%s: conf shows %s" % (name, d), d in got,
                "missing from %s" % path)
        if d in got:
            R.check("%s: conf shows %s at its default" % (name, d),
                    got[d] == default,
                    "conf %s, -h %s" % (got[d], default))
    extra = sorted(set(got) - set(dirs))
    R.check("%s: conf has no setting -h lacks" % name, not extra,
            repr(extra))

    head = ('relayd = { listen = [ "127.0.0.1:2525" ]; };\n'
            'plugins = [ "%s" ];\n' % name)
    conf = os.path.join(TMP, name + "-include.conf")
    with open(conf, "w") as f:
        f.write(head + '@include "%s"\n' % path)
    rc, out, err = run("-t", "-c", conf)
    R.check("%s: -t with @include conf/%s.conf" % (name, name), rc == 0,
            err)
    conf = os.path.join(TMP, name + "-inline.conf")
    with open(conf, "w") as f:
        f.write(head + sample)
    rc, out, err = run("-t", "-c", conf)
    R.check("%s: -t with conf/%s.conf pasted in" % (name, name), rc == 0,
            err)

rc, out, err = run("-h", "no_such_plugin")
R.check("-h unknown plugin exits 2", rc == 2, str(rc))
R.check("-h unknown plugin says so, and where it looked",
        re.fullmatch(r'relayd: no plugin called "no_such_plugin" '
                     r'\(relayd -l lists them; no_such_plugin\.so is '
                     r'looked for in /\S+\)\n', err) is not None, repr(err))

sys.exit(R.done())
