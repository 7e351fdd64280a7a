#!/usr/bin/env python3
"""`make install` and `make uninstall` into a DESTDIR, as a site upgrades.

Checked: a first install puts the shipped relayd.conf and milterd.conf in
$(sysconfdir)/gatehouse and the programs in sbin; the installed relayd
passes -t on the installed relayd.conf; a second install keeps a
relayd.conf the site changed (and says so); uninstall removes what is
still as shipped and keeps the changed file.
"""
import filecmp
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("install")

dest = gh.tmpdir("gh-install-")
# A make of its own, not a job of the `make check` that runs this test.
env = {k: v for k, v in os.environ.items()
       if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def make(target):
    p = subprocess.run(["make", "-C", gh.BUILDDIR, target,
                        "DESTDIR=" + dest], env=env, capture_output=True,
                       text=True, timeout=600)
    R.check("make %s exits 0" % target, p.returncode == 0,
            p.stderr[-600:])
    return p.stdout


def find(name):
    for root, _, files in os.walk(dest):
        if name in files:
            return os.path.join(root, name)
    return None


make("install")
conf = find("relayd.conf")
mconf = find("milterd.conf")
relayd = find("relayd")
R.check("relayd.conf installed", conf is not None
        and conf.endswith(os.path.join("gatehouse", "relayd.conf")))
R.check("milterd.conf installed", mconf is not None)
R.check("relayd and milterd installed",
        relayd is not None and find("milterd") is not None)
if conf and relayd:
    R.check("installed relayd.conf is the shipped one",
            filecmp.cmp(conf, os.path.join(gh.SRCDIR, "conf",
                                           "relayd.conf"), shallow=False))
    p = subprocess.run([relayd, "-t", "-c", conf], capture_output=True,
                       text=True, timeout=60)
    R.check("installed relayd -t accepts the installed relayd.conf",
            p.returncode == 0, p.stdout + p.stderr)

    with open(conf, "a") as f:
        f.write("# changed by the site\n")
    out = make("install")
    with open(conf) as f:
        kept = f.read().endswith("# changed by the site\n")
    R.check("a second install keeps the site's relayd.conf", kept)
    R.check("and says so", "keeping " + conf in out, out[-600:])

    out = make("uninstall")
    R.check("uninstall keeps the changed relayd.conf", os.path.exists(conf),
            out[-600:])
    R.check("uninstall removes the unchanged milterd.conf",
            not os.path.exists(mconf))
    R.check("uninstall removes relayd", not os.path.exists(relayd))

sys.exit(R.done())
