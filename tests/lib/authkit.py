"""authkit.py - what the AUTH tests share: crypt(3) hashes from libcrypt,
SASL encodings, users files, a relayd with auth_file on several
listeners, and a raw client under STARTTLS."""
import base64
import ctypes
import ssl

import gh


def crypt(password, prefix):
    """A crypt(3) hash from libcrypt itself (yescrypt $y$, SHA-512 $6$)."""
    lib = ctypes.CDLL("libcrypt.so.1")
    lib.crypt_gensalt.restype = ctypes.c_char_p
    lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong,
                                  ctypes.c_char_p, ctypes.c_int]
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    setting = lib.crypt_gensalt(prefix.encode(), 0, None, 0)
    return lib.crypt(password.encode(), setting).decode()


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def plain(user, pw, authzid=""):
    """An AUTH PLAIN response (RFC 4616)."""
    return b64("%s\0%s\0%s" % (authzid, user, pw))


def write_users(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def relayd(listen, extra, users, log_level="protocol"):
    """A relayd with auth_file(users) and scripted; one listener per entry
    of listen (its options, "" for none); r.ports in the same order."""
    body = ('plugins = [ "auth_file", "scripted" ];\n'
            'auth_file = { file = "%s"; };\n'
            'scripted = { sink_dir = "@SINK@"; };\n' % users)
    r = gh.Relayd(extra, body, log_level=log_level)
    ports = [r.port] + [gh.free_port() for _ in listen[1:]]
    specs = ", ".join('"127.0.0.1:%d%s"' % (p, (" " + o) if o else "")
                      for p, o in zip(ports, listen))
    with open(r.conf) as f:
        text = f.read()
    with open(r.conf, "w") as f:
        f.write(text.replace('listen = [ "127.0.0.1:%d" ];' % r.port,
                             "listen = [ %s ];" % specs))
    r.ports = ports
    return r


def ctx():
    """A client context that takes the tests' self-signed certificate."""
    c = ssl.create_default_context()
    c.check_hostname = False
    c.verify_mode = ssl.CERT_NONE
    return c


def tls_client(port, source="127.0.0.1"):
    """A raw client after EHLO, STARTTLS and EHLO again; returns
    (client, EHLO lines under TLS)."""
    c = gh.Client(port, source)
    c.reply()
    c.cmd("EHLO client.test")
    code, _ = c.cmd("STARTTLS")
    assert code == 220, code
    c.sock = ctx().wrap_socket(c.sock)
    code, lines = c.cmd("EHLO client.test")
    return c, [l[4:] for l in lines]
