#!/usr/bin/env python3
"""uribl against a real DNS server (dnsmasq on a loopback port): URLs in
the body and headers, registered-domain reduction, IP hosts, bit-mask
zones, quoted-printable, skip_domains, the per-message lookup bound, and
temporary DNS failures giving 451 or a skip."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import dnsmasq  # noqa: E402
import gh  # noqa: E402

R = gh.Results("uribl")

RECORDS = [
    ("A", "spammer.test.uribl.test", "127.0.0.2"),
    ("A", "evil.co.uk.uribl.test", "127.0.0.2"),
    ("A", "66.2.0.192.uribl.test", "127.0.0.2"),
    ("A", "fromspam.test.uribl.test", "127.0.0.2"),
    ("A", "refusedq.test.uribl.test", "127.0.0.1"),
    ("A", "bits.test.multi.test", "127.0.0.4"),
    ("A", "nobits.test.multi.test", "127.0.0.2"),
]


def relayd(dns, conf):
    body = ('dns = { servers = [ "%s" ]; timeout = 2; rdns = false; };\n'
            'plugins = [ "uribl", "scripted" ];\n'
            'uribl = { %s };\n'
            'scripted = { sink_dir = "@SINK@"; };\n' % (dns, conf))
    return gh.Relayd(body=body).start()


def send(port, body, headers="From: <a@sender.test>\r\nSubject: t\r\n"):
    c = gh.Client(port, "127.0.0.2")
    c.reply()
    c.cmd("EHLO client.test")
    c.cmd("MAIL FROM:<a@sender.test>")
    c.cmd("RCPT TO:<b@example.test>")
    c.cmd("DATA")
    code, lines = c.cmd(headers + "\r\n" + body + "\r\n.")
    c.cmd("QUIT")
    c.close()
    return code, lines[-1] if lines else ""


dm = dnsmasq.Dnsmasq(RECORDS).start()
try:
    r = relayd(dm.server, 'zones = [ "uribl.test", "multi.test=0x0c" ]; '
               'skip_domains = [ "example.test" ];')
    try:
        code, line = send(r.port, "see https://www.clean.test/x and "
                          "http://example.test/")
        R.check("clean links: accepted", code == 250, line)
        code, line = send(r.port, "buy at http://www.spammer.test/now")
        R.check("listed domain refused, named with the zone",
                line == "550 5.7.1 Message refused: it names spammer.test, "
                "listed in uribl.test", line)
        code, line = send(r.port, "visit WWW.Spammer.TEST today")
        R.check("www. without scheme, any case", code == 550, line)
        code, line = send(r.port, "go https://user@a.b.evil.co.uk:8080/p")
        R.check("co.uk: three labels kept", code == 550 and
                "evil.co.uk" in line, line)
        code, line = send(r.port, "go http://192.0.2.66/x")
        R.check("IP host looked up reversed", code == 550 and
                "192.0.2.66" in line, line)
        code, line = send(r.port, "ok", "From: Spam <x@fromspam.test>\r\n")
        R.check("From address domain looked up", code == 550 and
                "fromspam.test" in line, line)
        code, line = send(r.port, "link: http://www.spam=\r\nmer.test/=3D")
        R.check("quoted-printable soft break undone", code == 550, line)
        code, line = send(r.port, "<a href=3D\"http://spammer.test\">x</a>")
        R.check("quoted-printable =3D undone", code == 550, line)
        code, line = send(r.port, "http://refusedq.test/")
        R.check("127.0.0.1 is not a listing", code == 250, line)
        code, line = send(r.port, "http://bits.test/")
        R.check("mask zone: bit set lists", code == 550 and
                "multi.test" in line, line)
        code, line = send(r.port, "http://nobits.test/")
        R.check("mask zone: bit not in mask does not", code == 250, line)
    finally:
        r.stop()
    R.check("refusal logged", "uribl: refused message: spammer.test is "
            "listed in uribl.test (127.0.0.2)" in r.log_text())
    asked = [q for q in dm.queries() if "example.test.uribl" in q]
    R.check("skip_domains never asked", asked == [], repr(asked))

    # The per-message bound.
    r = relayd(dm.server, 'zones = [ "uribl.test" ]; max_lookups = 5;')
    try:
        before = len(dm.queries())
        links = " ".join("http://www.d%d.test/" % i for i in range(30))
        links += " http://a.one.test/ http://b.one.test/"
        code, line = send(r.port, links)
        R.check("many links: accepted", code == 250, line)
        asked = [q for q in dm.queries()[before:] if ".uribl.test " in q]
        R.check("max_lookups names asked (%d)" % len(asked),
                len(asked) == 5, repr(asked))
        code, line = send(r.port, "http://a.one.test/ http://b.one.test/")
        asked = [q for q in dm.queries() if "one.test.uribl.test" in q]
        R.check("one query per registered domain", len(asked) == 1,
                repr(asked))
        # A line longer than the scanner's buffer is read in pieces that
        # overlap: whatever the padding, the URL is whole in one of them
        # (a sender picks where the cut falls).
        for pad in (4060, 4080, 4090, 8150):
            code, line = send(r.port, "x" * pad +
                              " http://www.spammer.test/now")
            R.check("long line, %d octets before the URL: refused" % pad,
                    code == 550, line)
        # Quoted-printable soft breaks are joined however long the line.
        html = "<p>" + "x" * 4050 + ' <a href=3D"http://www.spammer.test/' \
            'now">buy</a></p>'
        qp = "\r\n".join(html[i:i + 75] + "=" for i in
                          range(0, len(html), 75)) + "\r\n"
        code, last = gh.send_mail(r.port, ["b@example.test"], (
            "From: <a@sender.test>\r\nSubject: t\r\n"
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n" + qp)
            .encode(), "a@sender.test", "127.0.0.2")
        R.check("URL past 4 KB of soft-broken quoted-printable: refused",
                code == 550, repr(last))
    finally:
        r.stop()

    # A zone that cannot be asked.
    r = relayd(dm.server, 'zones = [ "uribl.zone" ]; tempfail = "denysoft";')
    try:
        code, line = send(r.port, "http://www.clean.test/")
        R.check("tempfail=denysoft: 451 4.7.1", code == 451 and "4.7.1"
                in line, line)
    finally:
        r.stop()
    r = relayd(dm.server, 'zones = [ "uribl.zone" ];')
    try:
        code, line = send(r.port, "http://www.clean.test/")
        R.check("tempfail=skip: accepted", code == 250, line)
    finally:
        r.stop()
finally:
    dm.stop()

sys.exit(R.done())
