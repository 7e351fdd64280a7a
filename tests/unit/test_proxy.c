/*
 * test_proxy.c - the PROXY protocol header (v1, v2) and XCLIENT parsers.
 *
 * Each PROXY row is parsed from an exactly sized heap copy (so a read
 * past len is a fault under ASan), then every prefix of it is parsed
 * too: a prefix of a valid header must ask for more, and no prefix of
 * anything may be called a complete header but the whole of a valid
 * one.  Each XCLIENT row compares a one-line summary of what was
 * decoded.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy.h"
#include "t.h"

#define S(x)	x, sizeof(x) - 1
#define ALL	((size_t)-1)

/* Section 2.2 signature. */
#define SIG	"\r\n\r\n\0\r\nQUIT\n"
/* v2 PROXY TCP over IPv4: 192.0.2.1:56324 -> 198.51.100.2:25. */
#define V4ADDR	"\xc0\x00\x02\x01" "\xc6\x33\x64\x02" "\xdc\x04" "\x00\x19"
/* v2 PROXY TCP over IPv6: 2001:db8::1:1234 -> 2001:db8::2:25. */
#define V6ADDR	"\x20\x01\x0d\xb8" "\0\0\0\0" "\0\0\0\0" "\0\0\0\x01" \
		"\x20\x01\x0d\xb8" "\0\0\0\0" "\0\0\0\0" "\0\0\0\x02" \
		"\x04\xd2" "\x00\x19"
#define PAD91	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx" \
		"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

struct prow {
	const char	*name;
	const char	*in;
	size_t		 inlen;
	int		 status;
	size_t		 consumed;	/* ALL: inlen */
	int		 version;
	int		 local;
	const char	*src, *dst;	/* NULL: not checked */
	unsigned	 sport, dport;
};

static const struct prow prows[] = {
	/* v1, valid. */
	{ "v1 tcp4", S("PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n"),
	  PROXY_OK, ALL, 1, 0, "192.0.2.1", "198.51.100.2", 56324, 25 },
	{ "v1 tcp6", S("PROXY TCP6 2001:db8::1 2001:db8::2 1234 25\r\n"),
	  PROXY_OK, ALL, 1, 0, "2001:db8::1", "2001:db8::2", 1234, 25 },
	{ "v1 tcp6 v4-mapped",
	  S("PROXY TCP6 ::ffff:192.0.2.1 ::1 1 2\r\n"), PROXY_OK, ALL, 1, 0,
	  "::ffff:192.0.2.1", "::1", 1, 2 },
	{ "v1 ports 0 and 65535", S("PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r\n"),
	  PROXY_OK, ALL, 1, 0, "1.2.3.4", "5.6.7.8", 0, 65535 },
	{ "v1 unknown", S("PROXY UNKNOWN\r\n"), PROXY_OK, ALL, 1, 1, NULL,
	  NULL, 0, 0 },
	{ "v1 unknown with addresses ignored",
	  S("PROXY UNKNOWN ffff:: ffff:: 1 2\r\n"), PROXY_OK, ALL, 1, 1, NULL,
	  NULL, 0, 0 },
	{ "v1 unknown at 107 octets", S("PROXY UNKNOWN " PAD91 "\r\n"),
	  PROXY_OK, 107, 1, 1, NULL, NULL, 0, 0 },
	{ "v1 then SMTP stays", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nEHLO x\r\n"),
	  PROXY_OK, 32, 1, 0, "1.2.3.4", "5.6.7.8", 1, 2 },
	{ "v1 then a second header stays",
	  S("PROXY UNKNOWN\r\nPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
	  PROXY_OK, 15, 1, 1, NULL, NULL, 0, 0 },

	/* v1, refused. */
	{ "v1 unknown at 108 octets", S("PROXY UNKNOWN " PAD91 "x\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 no line end in 107", S("PROXY UNKNOWN " PAD91 "xx"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 double space", S("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 trailing space", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 five fields", S("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 seven fields", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 port 65536", S("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 port six digits", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 000025\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 port leading zero", S("PROXY TCP4 1.2.3.4 5.6.7.8 025 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 port sign", S("PROXY TCP4 1.2.3.4 5.6.7.8 +25 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 port negative", S("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 tcp4 with ipv6", S("PROXY TCP4 ::1 ::1 1 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 tcp6 with ipv4", S("PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 octet 256", S("PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 three octets", S("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 leading zero octet", S("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 host name", S("PROXY TCP4 localhost 5.6.7.8 1 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 bare LF", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 CR not LF", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 tab", S("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 NUL", S("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 8-bit", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\xff\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 lower case", S("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 protocol TCP5", S("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 UNKNOWNX", S("PROXY UNKNOWNX\r\n"), PROXY_ERROR, 0, 0, 0, NULL,
	  NULL, 0, 0 },
	{ "v1 no protocol", S("PROXY \r\n"), PROXY_ERROR, 0, 0, 0, NULL,
	  NULL, 0, 0 },
	{ "v1 PROXY alone", S("PROXY\r\n"), PROXY_ERROR, 0, 0, 0, NULL, NULL,
	  0, 0 },
	{ "SMTP instead", S("EHLO client.test\r\n"), PROXY_ERROR, 0, 0, 0,
	  NULL, NULL, 0, 0 },
	{ "wrong first octet", S("X"), PROXY_ERROR, 0, 0, 0, NULL, NULL, 0,
	  0 },
	{ "wrong protocol early", S("PROXY TCP9"), PROXY_ERROR, 0, 0, 0, NULL,
	  NULL, 0, 0 },

	/* Incomplete. */
	{ "nothing yet", S(""), PROXY_NEED_MORE, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v1 partial", S("PROXY TCP4 1.2.3.4 5.6."), PROXY_NEED_MORE, 0, 0,
	  0, NULL, NULL, 0, 0 },
	{ "v1 up to CR", S("PROXY UNKNOWN\r"), PROXY_NEED_MORE, 0, 0, 0, NULL,
	  NULL, 0, 0 },
	{ "v2 signature only", S(SIG), PROXY_NEED_MORE, 0, 0, 0, NULL, NULL,
	  0, 0 },
	{ "v2 address block short of its length",
	  S(SIG "\x21\x11\x00\x0c" "\xc0\x00\x02"), PROXY_NEED_MORE, 0, 0, 0,
	  NULL, NULL, 0, 0 },

	/* v2, valid. */
	{ "v2 tcp4", S(SIG "\x21\x11\x00\x0c" V4ADDR), PROXY_OK, ALL, 2, 0,
	  "192.0.2.1", "198.51.100.2", 56324, 25 },
	{ "v2 tcp6", S(SIG "\x21\x21\x00\x24" V6ADDR), PROXY_OK, ALL, 2, 0,
	  "2001:db8::1", "2001:db8::2", 1234, 25 },
	{ "v2 local", S(SIG "\x20\x00\x00\x00"), PROXY_OK, ALL, 2, 1, NULL,
	  NULL, 0, 0 },
	{ "v2 local ignores its block", S(SIG "\x20\x11\x00\x0c" V4ADDR),
	  PROXY_OK, ALL, 2, 1, NULL, NULL, 0, 0 },
	{ "v2 tcp4 with TLVs",
	  S(SIG "\x21\x11\x00\x1f" V4ADDR "\x02\x00\x09" "mx.a.test"
	    "\x04\x00\x04" "\0\0\0\0"), PROXY_OK, ALL, 2, 0, "192.0.2.1",
	  "198.51.100.2", 56324, 25 },
	{ "v2 tcp4 with empty TLV",
	  S(SIG "\x21\x11\x00\x0f" V4ADDR "\x04\x00\x00"), PROXY_OK, ALL, 2,
	  0, "192.0.2.1", "198.51.100.2", 56324, 25 },
	{ "v2 then SMTP stays", S(SIG "\x21\x11\x00\x0c" V4ADDR "EHLO x\r\n"),
	  PROXY_OK, 28, 2, 0, "192.0.2.1", "198.51.100.2", 56324, 25 },

	/* v2, refused. */
	{ "v2 version 1", S(SIG "\x11\x11\x00\x0c" V4ADDR), PROXY_ERROR, 0, 0,
	  0, NULL, NULL, 0, 0 },
	{ "v2 version 3", S(SIG "\x31\x11\x00\x0c" V4ADDR), PROXY_ERROR, 0, 0,
	  0, NULL, NULL, 0, 0 },
	{ "v2 command 2", S(SIG "\x22\x11\x00\x0c" V4ADDR), PROXY_ERROR, 0, 0,
	  0, NULL, NULL, 0, 0 },
	{ "v2 family 4", S(SIG "\x21\x41\x00\x0c" V4ADDR), PROXY_ERROR, 0, 0,
	  0, NULL, NULL, 0, 0 },
	{ "v2 transport 3", S(SIG "\x21\x13\x00\x0c" V4ADDR), PROXY_ERROR, 0,
	  0, 0, NULL, NULL, 0, 0 },
	{ "v2 local with family 5", S(SIG "\x20\x50\x00\x00"), PROXY_ERROR, 0,
	  0, 0, NULL, NULL, 0, 0 },
	{ "v2 proxy unspec", S(SIG "\x21\x00\x00\x00"), PROXY_ERROR, 0, 0, 0,
	  NULL, NULL, 0, 0 },
	{ "v2 proxy udp", S(SIG "\x21\x12\x00\x0c" V4ADDR), PROXY_ERROR, 0, 0,
	  0, NULL, NULL, 0, 0 },
	{ "v2 proxy unix", S(SIG "\x21\x31\x00\x0c" V4ADDR), PROXY_ERROR, 0,
	  0, 0, NULL, NULL, 0, 0 },
	{ "v2 tcp4 block too short", S(SIG "\x21\x11\x00\x0b" V4ADDR),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v2 tcp6 block too short", S(SIG "\x21\x21\x00\x0c" V4ADDR),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v2 TLV past the block",
	  S(SIG "\x21\x11\x00\x10" V4ADDR "\x02\x00\x09" "m"), PROXY_ERROR, 0,
	  0, 0, NULL, NULL, 0, 0 },
	{ "v2 half a TLV header", S(SIG "\x21\x11\x00\x0e" V4ADDR "\x02\x00"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v2 longer than relayd takes", S(SIG "\x21\x11\x10\x00" V4ADDR),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v2 signature wrong at 7", S("\r\n\r\n\0\r\nquit\n\x21\x11\x00\x0c"),
	  PROXY_ERROR, 0, 0, 0, NULL, NULL, 0, 0 },
	{ "v2 signature cut by SMTP", S("\r\n\r\nEHLO"), PROXY_ERROR, 0, 0, 0,
	  NULL, NULL, 0, 0 },
};

static int
parse_exact(const char *in, size_t len, struct proxy_info *pi, size_t *used)
{
	unsigned char *copy = malloc(len ? len : 1);
	int st;

	memcpy(copy, in, len);
	st = proxy_parse(copy, len, pi, used);
	free(copy);
	return st;
}

static void
prow_check(const struct prow *r)
{
	struct proxy_info pi;
	size_t used = 12345, k, want;
	int st;

	st = parse_exact(r->in, r->inlen, &pi, &used);
	T_EQ_INT(st, r->status);
	if (st == PROXY_ERROR)
		T_CHECK(pi.why != NULL);
	if (r->status == PROXY_OK && st == PROXY_OK) {
		want = r->consumed == ALL ? r->inlen : r->consumed;
		T_EQ_INT(used, want);
		T_EQ_INT(pi.version, r->version);
		T_EQ_INT(pi.local, r->local);
		if (r->src != NULL) {
			T_EQ_STR(pi.src_addr, r->src);
			T_EQ_STR(pi.dst_addr, r->dst);
			T_EQ_INT(pi.src_port, r->sport);
			T_EQ_INT(pi.dst_port, r->dport);
			T_EQ_INT(pi.src.ss_family, pi.family);
		}
	}
	/* Every proper prefix of the header (of the whole input when
	 * there is none): never complete; of a valid header, need more. */
	want = r->status == PROXY_OK ? (r->consumed == ALL ? r->inlen :
	    r->consumed) : r->inlen;
	for (k = 0; k < want; k++) {
		st = parse_exact(r->in, k, &pi, &used);
		if (r->status == PROXY_OK)
			T_EQ_INT(st, PROXY_NEED_MORE);
		else
			T_CHECK(st != PROXY_OK);
		if (t_cur_failed) {
			fprintf(stderr, "  (prefix of %zu octets)\n", k);
			break;
		}
	}
}

/* The sockaddr form matches the text: what the session would use. */
static void
test_proxy_sockaddr(void)
{
	static const char in[] = "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n";
	struct proxy_info pi;
	struct sockaddr_in *sin = (struct sockaddr_in *)&pi.src;
	char text[INET_ADDRSTRLEN];
	size_t used;

	T_EQ_INT(proxy_parse((const unsigned char *)in, sizeof(in) - 1, &pi,
	    &used), PROXY_OK);
	T_EQ_INT(sin->sin_family, AF_INET);
	T_EQ_INT(ntohs(sin->sin_port), 56324);
	inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
	T_EQ_STR(text, "192.0.2.1");
}

/* v2 TLV octets are counted. */
static void
test_proxy_tlv_len(void)
{
	static const char in[] = SIG "\x21\x11\x00\x1f" V4ADDR "\x02\x00\x09"
	    "mx.a.test" "\x04\x00\x04" "\0\0\0\0";
	struct proxy_info pi;
	size_t used;

	T_EQ_INT(proxy_parse((const unsigned char *)in, sizeof(in) - 1, &pi,
	    &used), PROXY_OK);
	T_EQ_INT(pi.tlv_len, 19);
	T_EQ_INT(pi.family, AF_INET);
}

/* ------------------------------------------------------------------ */
/* XCLIENT.                                                            */

struct xrow {
	const char	*args;
	int		 rc;
	const char	*summary;	/* what was decoded, see summarize() */
};

static const struct xrow xrows[] = {
	{ "ADDR=192.0.2.1", 0, "ADDR=192.0.2.1" },
	{ "ADDR=IPV6:2001:db8::1 PORT=4321", 0, "ADDR=2001:db8::1 PORT=4321" },
	{ "addr=ipv6:2001:db8::1", 0, "ADDR=2001:db8::1" },
	{ "ADDR=2001:db8::1", 0, "ADDR=2001:db8::1" },
	{ "NAME=mx.example.test HELO=client.example.test PROTO=ESMTP "
	  "LOGIN=user+40example.test", 0, "NAME=mx.example.test "
	  "HELO=client.example.test LOGIN=user@example.test PROTO=ESMTP" },
	{ "NAME=[UNAVAILABLE] REVERSE_NAME=[TEMPUNAVAIL]", 0,
	  "NAME=[U] REVERSE_NAME=[T]" },
	{ "NAME=[TEMPUNAVAIL]", 0, "NAME=[T]" },
	/* Postfix's valid_hostname() takes underscores. */
	{ "NAME=host_1.example.net", 0, "NAME=host_1.example.net" },
	{ "NAME=1host.example.net", 0, "NAME=1host.example.net" },
	{ "ADDR=[UNAVAILABLE] PORT=[UNAVAILABLE]", 0, "ADDR=[U] PORT=[U]" },
	{ "NAME=+5BUNAVAILABLE+5D", 0, "NAME=[U]" },
	{ "DESTADDR=127.0.0.1 DESTPORT=25 PROTO=smtp", 0,
	  "PROTO=smtp DESTADDR=127.0.0.1 DESTPORT=25" },
	{ "PORT=0 DESTPORT=65535", 0, "PORT=0 DESTPORT=65535" },
	{ "LOGIN=a+20b", 0, "LOGIN=a b" },
	{ "LOGIN=j+C3+A9r+C3+B4me", 0, "LOGIN=j\xc3\xa9r\xc3\xb4me" },
	{ "HELO=[192.0.2.1]", 0, "HELO=[192.0.2.1]" },
	{ "ADDR=[TEMPUNAVAIL]", -1, NULL },
	{ "HELO=a+0Db", -1, NULL },
	{ "HELO=a+0Ab", -1, NULL },
	{ "LOGIN=a+00b", -1, NULL },
	{ "LOGIN=a+7Fb", -1, NULL },
	{ "HELO=a+0db", -1, NULL },
	{ "HELO=a+2", -1, NULL },
	{ "HELO=a+", -1, NULL },
	{ "HELO=a+20b", -1, NULL },
	{ "HELO=a+C3+A9", -1, NULL },
	{ "HELO=a=b", -1, NULL },
	{ "HELO=a\rb", -1, NULL },
	{ "HELO=a\xc3\xa9", -1, NULL },
	{ "HELO=", -1, NULL },
	{ "LOGIN=", -1, NULL },
	{ "PORT=65536", -1, NULL },
	{ "PORT=-1", -1, NULL },
	{ "PORT=", -1, NULL },
	{ "PORT=123456", -1, NULL },
	{ "ADDR=999.1.1.1", -1, NULL },
	{ "ADDR=IPV6:192.0.2.1", -1, NULL },
	{ "ADDR=mx.example.test", -1, NULL },
	{ "NAME=-bad.test", -1, NULL },
	{ "NAME=bad-.test", -1, NULL },
	{ "NAME=a..test", -1, NULL },
	{ "NAME=a.test.", -1, NULL },
	/* Digits and dots alone are an address, not a name (Postfix). */
	{ "NAME=1.2.3.4", -1, NULL },
	{ "NAME=12345", -1, NULL },
	{ "PROTO=LMTP", -1, NULL },
	{ "FOO=bar", -1, NULL },
	{ "ADDR", -1, NULL },
	{ "=x", -1, NULL },
	{ "ADDR=1.2.3.4 ADDR=1.2.3.5", -1, NULL },
	{ "ADDR=1.2.3.4  PORT=1", -1, NULL },
	{ "ADDR=1.2.3.4 ", -1, NULL },
	{ " ADDR=1.2.3.4", -1, NULL },
	{ "", -1, NULL },
};

/* "ATTR=value" for each attribute present, in enum order: [U] for
 * unavailable, [T] for tempunavail. */
static void
summarize(const struct xclient *x, char *buf, size_t n)
{
	size_t i, o = 0;
	const char *v;

	buf[0] = '\0';
	for (i = 0; i < XCLIENT_NATTRS; i++) {
		switch (x->attr[i].state) {
		case XCLIENT_ABSENT:
			continue;
		case XCLIENT_UNAVAILABLE:
			v = "[U]";
			break;
		case XCLIENT_TEMPUNAVAIL:
			v = "[T]";
			break;
		default:
			v = x->attr[i].value;
			break;
		}
		o += (size_t)snprintf(buf + o, n - o, "%s%s=%s", o ? " " : "",
		    xclient_attr_name((enum xclient_attr)i), v);
		if (o >= n)
			return;
	}
}

static void
xrow_check(const struct xrow *r)
{
	struct xclient x;
	char sum[2048];
	int rc;

	rc = xclient_parse(r->args, &x);
	T_EQ_INT(rc, r->rc);
	if (rc == 0 && r->rc == 0) {
		summarize(&x, sum, sizeof(sum));
		T_EQ_STR(sum, r->summary);
	}
	if (rc < 0)
		T_CHECK(x.why != NULL);
}

/* The decoded forms of ports and address families. */
static void
test_xclient_decoded(void)
{
	struct xclient x;

	T_EQ_INT(xclient_parse("ADDR=IPV6:::1 PORT=00025 DESTADDR=10.0.0.1 "
	    "DESTPORT=587", &x), 0);
	T_EQ_INT(x.addr_family, AF_INET6);
	T_EQ_INT(x.destaddr_family, AF_INET);
	T_EQ_INT(x.port, 25);
	T_EQ_INT(x.destport, 587);
	T_EQ_STR(x.attr[XCLIENT_ADDR].value, "::1");
}

/* Values are bounded: 255 decoded octets fit, 256 do not, however
 * they are written. */
static void
test_xclient_bounds(void)
{
	char args[1024];
	struct xclient x;
	size_t i;

	strcpy(args, "LOGIN=");
	for (i = 0; i < 255; i++)
		strcat(args, "+41");
	T_EQ_INT(xclient_parse(args, &x), 0);
	T_EQ_INT(strlen(x.attr[XCLIENT_LOGIN].value), 255);
	strcat(args, "A");
	T_EQ_INT(xclient_parse(args, &x), -1);
}

int
main(void)
{
	size_t i;

	for (i = 0; i < sizeof(prows) / sizeof(prows[0]); i++) {
		T_BEGIN();
		prow_check(&prows[i]);
		T_END(prows[i].name);
	}
	T_RUN(test_proxy_sockaddr);
	T_RUN(test_proxy_tlv_len);
	for (i = 0; i < sizeof(xrows) / sizeof(xrows[0]); i++) {
		T_BEGIN();
		xrow_check(&xrows[i]);
		T_END(xrows[i].args);
	}
	T_RUN(test_xclient_decoded);
	T_RUN(test_xclient_bounds);
	return t_done("test_proxy");
}
