#!/usr/bin/env python3
"""testssl.sh (Debian's testssl) against relayd's STARTTLS listener.

The issue's bar: nothing of severity MEDIUM or above.  The test makes a
throwaway CA and a server certificate it signs (EC P-256, SAN mx.test
and 127.0.0.1, 200 days), starts relayd with it on a loopback STARTTLS
listener and runs `testssl -t smtp` with the checks that rate the server
(protocols, cipher categories, forward secrecy, server preference,
server defaults, vulnerabilities), skipping the per-cipher walk and the
client simulations, which rate nothing more and triple the run time.
The CA is handed to testssl with --add-ca, so the chain of trust is
checked rather than excused.  Every finding rated MEDIUM, HIGH or
CRITICAL fails the test and is printed; the only exclusions are
certificate findings that come from the throwaway CA alone (EXCUSED).
"""
import json
import os
import shutil
import signal
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "lib"))
import gh  # noqa: E402

R = gh.Results("testssl")
D = gh.tmpdir("gh-testssl-")
SINK = 'plugins = [ "scripted" ];\nscripted = { sink_dir = "@SINK@"; };\n'
TESTSSL = shutil.which("testssl") or shutil.which("testssl.sh")
RUN_TIMEOUT = 420		# seconds; the run takes about two minutes
BAD = ("MEDIUM", "HIGH", "CRITICAL")

# Findings that say something about the test's CA, not about relayd:
EXCUSED = {
    # The throwaway CA publishes no CRL and runs no OCSP responder, so
    # its certificate names neither; a public CA's certificate does.
    "cert_revocation":
        "the test CA has no CRL or OCSP service",
}


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True,
                   cwd=D)


def make_certs():
    """A CA and a server certificate for mx.test and 127.0.0.1."""
    ca, ca_key = os.path.join(D, "ca.pem"), os.path.join(D, "ca.key")
    cert, key = os.path.join(D, "cert.pem"), os.path.join(D, "key.pem")
    ext = os.path.join(D, "server.ext")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-subj",
            "/CN=gatehouse test CA", "-days", "200", "-keyout", ca_key,
            "-out", ca)
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:P-256", "-nodes", "-subj", "/CN=mx.test",
            "-keyout", key, "-out", os.path.join(D, "server.csr"))
    with open(ext, "w") as f:
        f.write("subjectAltName=DNS:mx.test,IP:127.0.0.1\n"
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", os.path.join(D, "server.csr"), "-CA", ca,
            "-CAkey", ca_key, "-CAcreateserial", "-days", "200", "-extfile",
            ext, "-out", cert)
    return ca, cert, key


def run_testssl(port, ca):
    out = os.path.join(D, "testssl.json")
    cmd = [TESTSSL, "-t", "smtp",
           "--protocols", "--std", "--fs", "--server-preference",
           "--server-defaults", "--vulnerable",
           "--add-ca", ca, "--jsonfile", out, "--warnings", "batch",
           "--quiet", "--nodns", "none", "--color", "0",
           "--connect-timeout", "10", "--openssl-timeout", "10",
           "127.0.0.1:%d" % port]
    # Its own process group: on a timeout its openssl children go too.
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, cwd=D,
                         start_new_session=True)
    try:
        stdout, _ = p.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        R.check("testssl finished within %d s" % RUN_TIMEOUT, False)
        return None
    with open(os.path.join(D, "testssl.out"), "w") as f:
        f.write(stdout)
    try:
        with open(out) as f:
            findings = json.load(f)
    except (OSError, ValueError) as e:
        R.check("testssl wrote its JSON file", False,
                "%r rc=%d %s" % (e, p.returncode, stdout[-1500:]))
        return None
    R.check("testssl wrote its JSON file", True)
    return findings


def main():
    if TESTSSL is None:
        R.check("testssl installed", False)
        return R.done()
    ca, cert, key = make_certs()
    extra = 'tls_cert = "%s"; tls_key = "%s";' % (cert, key)
    with gh.Relayd(extra, SINK, log_level="info") as r:
        findings = run_testssl(r.port, ca)
        log = r.log_text()
    if findings is None:
        return R.done()

    by_id = {f.get("id"): f for f in findings}
    # The scan really ran: the checks the verdict rests on are there.
    for fid in ("service", "SSLv3", "TLS1", "TLS1_1", "TLS1_2", "TLS1_3",
                "cipherlist_NULL", "cipherlist_EXPORT", "cipherlist_LOW",
                "cipherlist_3DES_IDEA", "PFS", "cipher_order",
                "heartbleed", "CCS", "ROBOT", "secure_renego",
                "secure_client_renego", "CRIME_TLS", "POODLE_SSL",
                "SWEET32", "FREAK", "LOGJAM", "BEAST", "LUCKY13", "RC4",
                "cert_chain_of_trust", "cert_trust"):
        R.check("testssl reported %s" % fid, fid in by_id, sorted(by_id))
    service = by_id.get("service", {}).get("finding", "")
    R.check("testssl spoke STARTTLS via SMTP", "SMTP" in service.upper(),
            service)
    for fid in ("TLS1_2", "TLS1_3"):
        R.check("%s offered" % fid, "offered" in by_id.get(fid, {}).get(
            "finding", "") and "not offered" not in by_id[fid]["finding"],
            by_id.get(fid))
    for fid in ("SSLv2", "SSLv3", "TLS1", "TLS1_1"):
        R.check("%s not offered" % fid, fid not in by_id or "not offered" in
                by_id[fid].get("finding", ""), by_id.get(fid))

    bad = excused = 0
    for f in findings:
        sev, fid = f.get("severity", ""), f.get("id", "")
        line = "%s %s: %s" % (sev, fid, f.get("finding", ""))
        if sev == "FATAL":
            R.check("testssl: no fatal error", False, line)
        elif sev == "WARN":
            # A check testssl could not finish (e.g. its session-ID
            # resumption probe: s_client hangs up before relayd's TLS 1.3
            # NewSessionTicket arrives); not a rating of the server.
            print("testssl warning (not counted): " + line)
        elif sev in BAD and fid in EXCUSED:
            excused += 1
            print("excused (%s): %s" % (EXCUSED[fid], line))
        elif sev in BAD:
            bad += 1
            print("counted: " + line)
    R.check("no finding of severity MEDIUM or above (%d counted, %d "
            "excused)" % (bad, excused), bad == 0)
    R.check("relayd logged the handshakes",
            "TLS established: TLSv1.3" in log and
            "TLS established: TLSv1.2" in log, log[-600:])
    return R.done()


if __name__ == "__main__":
    sys.exit(main())
