/*
 * proxy.c - the PROXY protocol header (v1 and v2) and XCLIENT argument
 * parsers.
 *
 * Contract in proxy.h.  Both are strict: a trusted front end speaks the
 * protocol exactly, and anything else is an attacker or a
 * misconfiguration, either of which must close the connection rather
 * than have relayd guess the client's address.  Every index is checked
 * against len before the octet is read; the v1 line is copied into no
 * buffer larger than its bound, the v2 block is read in place.
 */
#include "config.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "proxy.h"

/* Section 2.2: the v2 signature, then version/command, family/transport
 * and the length make the fixed 16 octets. */
static const unsigned char v2_sig[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a
};
#define V2_FIXED	16
#define V2_CMD_LOCAL	0x0
#define V2_CMD_PROXY	0x1
#define V2_AF_UNSPEC	0x0
#define V2_AF_INET	0x1
#define V2_AF_INET6	0x2
#define V2_AF_UNIX	0x3
#define V2_TR_UNSPEC	0x0
#define V2_TR_STREAM	0x1
#define V2_TR_DGRAM	0x2
/* The address block sizes of section 2.2. */
#define V2_LEN_INET	12
#define V2_LEN_INET6	36
#define V2_LEN_UNIX	216

static const char v1_prefix[] = "PROXY ";
static const char *const v1_protos[] = { "TCP4 ", "TCP6 ", "UNKNOWN" };

static enum proxy_status
fail(struct proxy_info *out, const char *why)
{
	out->why = why;
	return PROXY_ERROR;
}

/* Does a[0..n) start b, or b start a[0..n)? (n may exceed strlen(b)) */
static int
prefix_agrees(const unsigned char *a, size_t n, const char *b)
{
	size_t blen = strlen(b);

	return memcmp(a, b, n < blen ? n : blen) == 0;
}

/* ------------------------------------------------------------------ */
/* Version 1: one text line.                                            */

/* A port as section 2.1 writes it: decimal, 0..65535; relayd also
 * refuses leading zeros, which no sender writes. */
static int
port_parse(const unsigned char *s, size_t n, uint16_t *port)
{
	unsigned long v = 0;
	size_t i;

	if (n == 0 || n > 5 || (n > 1 && s[0] == '0'))
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (unsigned long)(s[i] - '0');
	}
	if (v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* An address of the given family into sa and text. */
static int
addr_parse(const unsigned char *s, size_t n, int af,
    struct sockaddr_storage *ss, char *text, uint16_t port)
{
	char tmp[INET6_ADDRSTRLEN];
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

	if (n == 0 || n >= sizeof(tmp))
		return -1;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	memset(ss, 0, sizeof(*ss));
	if (af == AF_INET) {
		if (inet_pton(AF_INET, tmp, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
	} else {
		if (inet_pton(AF_INET6, tmp, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
	}
	memcpy(text, tmp, n + 1);
	return 0;
}

/* Check the octets of a line still without its end: "PROXY ", then a
 * prefix of a protocol, then printable ASCII. */
static enum proxy_status
v1_prefix_check(const unsigned char *buf, size_t n, struct proxy_info *out)
{
	size_t i, rest;
	size_t np = sizeof(v1_prefix) - 1;

	if (!prefix_agrees(buf, n, v1_prefix))
		return fail(out, "not a PROXY header");
	if (n > np) {
		rest = n - np;
		for (i = 0; i < 3; i++)
			if (prefix_agrees(buf + np, rest, v1_protos[i]))
				break;
		if (i == 3)
			return fail(out, "v1: unknown protocol");
	}
	return PROXY_NEED_MORE;
}

/*
 * Split the line (no CRLF) on single spaces into at most nf fields.
 * An empty field (two spaces, or a space at either end) is an error.
 * Returns the number of fields, or -1.
 */
static int
v1_fields(const unsigned char *s, size_t n, const unsigned char **f,
    size_t *flen, int nf)
{
	size_t i, start = 0;
	int k = 0;

	for (i = 0; i <= n; i++) {
		if (i < n && s[i] != ' ')
			continue;
		if (i == start || k == nf)
			return -1;
		f[k] = s + start;
		flen[k++] = i - start;
		start = i + 1;
	}
	return k;
}

static enum proxy_status
v1_line(const unsigned char *s, size_t n, struct proxy_info *out)
{
	const unsigned char *f[6];
	size_t fl[6];
	int af;

	out->version = 1;
	/* Section 2.1: after UNKNOWN, anything up to the CRLF is ignored
	 * and the real connection's addresses are used. */
	if (n >= 13 && memcmp(s, "PROXY UNKNOWN", 13) == 0) {
		if (n > 13 && s[13] != ' ')
			return fail(out, "v1: unknown protocol");
		out->local = 1;
		out->family = AF_UNSPEC;
		return PROXY_OK;
	}
	if (v1_fields(s, n, f, fl, 6) != 6)
		return fail(out, "v1: not six fields separated by one space");
	if (fl[1] == 4 && memcmp(f[1], "TCP4", 4) == 0)
		af = AF_INET;
	else if (fl[1] == 4 && memcmp(f[1], "TCP6", 4) == 0)
		af = AF_INET6;
	else
		return fail(out, "v1: unknown protocol");
	if (port_parse(f[4], fl[4], &out->src_port) < 0 ||
	    port_parse(f[5], fl[5], &out->dst_port) < 0)
		return fail(out, "v1: bad port");
	if (addr_parse(f[2], fl[2], af, &out->src, out->src_addr,
	    out->src_port) < 0 ||
	    addr_parse(f[3], fl[3], af, &out->dst, out->dst_addr,
	    out->dst_port) < 0)
		return fail(out, "v1: bad address for the protocol");
	out->family = af;
	return PROXY_OK;
}

static enum proxy_status
v1_parse(const unsigned char *buf, size_t len, struct proxy_info *out,
    size_t *consumed)
{
	size_t i;

	/* Refuse what is not a PROXY line at its first octets, not after
	 * 107 of them. */
	if (v1_prefix_check(buf, len < 13 ? len : 13, out) == PROXY_ERROR)
		return PROXY_ERROR;
	for (i = 0; i < len; i++) {
		if (buf[i] == '\r')
			break;
		if (buf[i] < 0x20 || buf[i] > 0x7e)
			return fail(out, "v1: control or 8-bit octet");
		if (i + 1 >= PROXY_V1_MAX - 1)
			return fail(out, "v1: longer than 107 octets");
	}
	if (i == len || i + 1 == len)
		return PROXY_NEED_MORE;
	if (buf[i + 1] != '\n')
		return fail(out, "v1: CR not followed by LF");
	*consumed = i + 2;
	return v1_line(buf, i, out);
}

/* ------------------------------------------------------------------ */
/* Version 2: a binary block.                                           */

static uint16_t
be16(const unsigned char *p)
{
	return (uint16_t)((p[0] << 8) | p[1]);
}

/* The fixed octets seen so far: signature, version, command, family. */
static enum proxy_status
v2_fixed_check(const unsigned char *buf, size_t len, struct proxy_info *out)
{
	unsigned fam, tr;

	if (memcmp(buf, v2_sig, len < 12 ? len : 12) != 0)
		return fail(out, "not a PROXY header");
	if (len > 12) {
		if ((buf[12] >> 4) != 2)
			return fail(out, "v2: version is not 2");
		if ((buf[12] & 0xf) > V2_CMD_PROXY)
			return fail(out, "v2: unknown command");
	}
	if (len > 13) {
		/* Section 2.2: other values must be rejected. */
		fam = buf[13] >> 4;
		tr = buf[13] & 0xf;
		if (fam > V2_AF_UNIX || tr > V2_TR_DGRAM)
			return fail(out, "v2: unknown family or transport");
	}
	return PROXY_NEED_MORE;
}

/* TLVs (section 2.2.x) fill the rest of the block exactly. */
static int
v2_tlvs(const unsigned char *p, size_t n)
{
	size_t i = 0, tl;

	while (i < n) {
		if (n - i < 3)
			return -1;
		tl = be16(p + i + 1);
		if (tl > n - i - 3)
			return -1;
		i += 3 + tl;
	}
	return 0;
}

static enum proxy_status
v2_proxy(const unsigned char *blk, size_t blen, unsigned fam, unsigned tr,
    struct proxy_info *out)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)&out->src;
	struct sockaddr_in *d4 = (struct sockaddr_in *)&out->dst;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&out->src;
	struct sockaddr_in6 *d6 = (struct sockaddr_in6 *)&out->dst;
	size_t alen;

	if ((fam != V2_AF_INET && fam != V2_AF_INET6) || tr != V2_TR_STREAM)
		return fail(out, "v2: not TCP over IPv4 or IPv6");
	alen = fam == V2_AF_INET ? V2_LEN_INET : V2_LEN_INET6;
	if (blen < alen)
		return fail(out, "v2: address block too short");
	if (v2_tlvs(blk + alen, blen - alen) < 0)
		return fail(out, "v2: malformed TLV");
	out->tlv_len = blen - alen;
	memset(&out->src, 0, sizeof(out->src));
	memset(&out->dst, 0, sizeof(out->dst));
	if (fam == V2_AF_INET) {
		out->family = AF_INET;
		s4->sin_family = d4->sin_family = AF_INET;
		memcpy(&s4->sin_addr, blk, 4);
		memcpy(&d4->sin_addr, blk + 4, 4);
		out->src_port = be16(blk + 8);
		out->dst_port = be16(blk + 10);
		s4->sin_port = htons(out->src_port);
		d4->sin_port = htons(out->dst_port);
		inet_ntop(AF_INET, &s4->sin_addr, out->src_addr,
		    sizeof(out->src_addr));
		inet_ntop(AF_INET, &d4->sin_addr, out->dst_addr,
		    sizeof(out->dst_addr));
	} else {
		out->family = AF_INET6;
		s6->sin6_family = d6->sin6_family = AF_INET6;
		memcpy(&s6->sin6_addr, blk, 16);
		memcpy(&d6->sin6_addr, blk + 16, 16);
		out->src_port = be16(blk + 32);
		out->dst_port = be16(blk + 34);
		s6->sin6_port = htons(out->src_port);
		d6->sin6_port = htons(out->dst_port);
		inet_ntop(AF_INET6, &s6->sin6_addr, out->src_addr,
		    sizeof(out->src_addr));
		inet_ntop(AF_INET6, &d6->sin6_addr, out->dst_addr,
		    sizeof(out->dst_addr));
	}
	return PROXY_OK;
}

static enum proxy_status
v2_parse(const unsigned char *buf, size_t len, struct proxy_info *out,
    size_t *consumed)
{
	size_t total;

	if (v2_fixed_check(buf, len < V2_FIXED ? len : V2_FIXED, out) ==
	    PROXY_ERROR)
		return PROXY_ERROR;
	if (len < V2_FIXED)
		return PROXY_NEED_MORE;
	total = V2_FIXED + (size_t)be16(buf + 14);
	if (total > PROXY_V2_MAX)
		return fail(out, "v2: header longer than relayd accepts");
	if (len < total)
		return PROXY_NEED_MORE;
	out->version = 2;
	*consumed = total;
	/* Section 2.2: LOCAL (health checks) uses the real endpoints and
	 * ignores the block, family included. */
	if ((buf[12] & 0xf) == V2_CMD_LOCAL) {
		out->local = 1;
		out->family = AF_UNSPEC;
		return PROXY_OK;
	}
	return v2_proxy(buf + V2_FIXED, total - V2_FIXED, buf[13] >> 4,
	    buf[13] & 0xf, out);
}

enum proxy_status
proxy_parse(const unsigned char *buf, size_t len, struct proxy_info *out,
    size_t *consumed)
{
	enum proxy_status st;
	size_t used = 0;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return PROXY_NEED_MORE;
	if (buf[0] == v2_sig[0])
		st = v2_parse(buf, len, out, &used);
	else
		st = v1_parse(buf, len, out, &used);
	if (st == PROXY_OK)
		*consumed = used;
	return st;
}

/* ------------------------------------------------------------------ */
/* XCLIENT.                                                            */

static const char *const xc_names[XCLIENT_NATTRS] = {
	"NAME", "REVERSE_NAME", "ADDR", "PORT", "HELO", "LOGIN", "PROTO",
	"DESTADDR", "DESTPORT"
};

const char *
xclient_attr_name(enum xclient_attr a)
{
	return (unsigned)a < XCLIENT_NATTRS ? xc_names[a] : "?";
}

static int
xc_fail(struct xclient *out, const char *why)
{
	out->why = why;
	return -1;
}

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * Decode the xtext s[0..n) into dst (RFC 3461 section 4: xchar is "!"
 * to "~" but "+" and "="; "+" is followed by two upper-case hex digits).
 * A decoded control octet is refused: it would reach a header or a log.
 */
static const char *
xtext_decode(const char *s, size_t n, char *dst, size_t dstsz)
{
	size_t i, o = 0;
	int hi, lo;
	unsigned char c;

	for (i = 0; i < n; i++) {
		c = (unsigned char)s[i];
		if (c < '!' || c > '~' || c == '=')
			return "Bad xtext in XCLIENT value";
		if (c == '+') {
			if (n - i < 3 || (hi = hexval((unsigned char)s[i +
			    1])) < 0 || (lo = hexval((unsigned char)s[i +
			    2])) < 0)
				return "Bad xtext escape in XCLIENT value";
			c = (unsigned char)(hi << 4 | lo);
			i += 2;
			if (c < 0x20 || c == 0x7f)
				return "Control character in XCLIENT value";
		}
		if (o + 1 >= dstsz)
			return "XCLIENT value too long";
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
	return NULL;
}

/* Postfix's PORT: decimal digits, at most 65535. */
static int
xc_port(const char *v, uint16_t *port)
{
	unsigned long n = 0;
	size_t i, len = strlen(v);

	if (len == 0 || len > 5)
		return -1;
	for (i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		n = n * 10 + (unsigned long)(v[i] - '0');
	}
	if (n > 65535)
		return -1;
	*port = (uint16_t)n;
	return 0;
}

/* An address, IPv6 with or without "IPV6:"; the value is left without
 * the prefix. */
static int
xc_addr(char *v, int *family)
{
	unsigned char bin[16];
	size_t skip = 0;

	if (strncasecmp(v, "IPV6:", 5) == 0)
		skip = 5;
	if (skip == 0 && inet_pton(AF_INET, v, bin) == 1)
		*family = AF_INET;
	else if (inet_pton(AF_INET6, v + skip, bin) == 1)
		*family = AF_INET6;
	else
		return -1;
	memmove(v, v + skip, strlen(v + skip) + 1);
	return 0;
}

/* A host name as Postfix's valid_hostname() takes it: dot-separated
 * labels of letters, digits, hyphens and underscores, 1..63 octets, no
 * hyphen at either end (RFC 1123 section 2.1); not digits and dots
 * alone, which would be an address, not a name. */
static int
xc_hostname(const char *v)
{
	size_t lab = 0;
	const char *p;

	if (*v == '\0' || v[strspn(v, "0123456789.")] == '\0')
		return -1;
	for (p = v; *p != '\0'; p++) {
		if (*p == '.') {
			if (lab == 0 || p[-1] == '-')
				return -1;
			lab = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return -1;
		if ((lab == 0 && *p == '-') || ++lab > 63)
			return -1;
	}
	return lab == 0 || p[-1] == '-' ? -1 : 0;
}

/* HELO: printable ASCII, no space (the decoder already refused
 * controls; 8-bit octets are refused here). */
static int
xc_printable(const char *v)
{
	if (*v == '\0')
		return -1;
	for (; *v != '\0'; v++)
		if ((unsigned char)*v <= ' ' || (unsigned char)*v > '~')
			return -1;
	return 0;
}

static int
xc_check(struct xclient *out, enum xclient_attr a)
{
	char *v = out->attr[a].value;

	switch (a) {
	case XCLIENT_NAME:
	case XCLIENT_REVERSE_NAME:
		return xc_hostname(v) < 0 ? xc_fail(out, "Bad XCLIENT "
		    "host name") : 0;
	case XCLIENT_ADDR:
		return xc_addr(v, &out->addr_family) < 0 ? xc_fail(out,
		    "Bad XCLIENT address") : 0;
	case XCLIENT_DESTADDR:
		return xc_addr(v, &out->destaddr_family) < 0 ? xc_fail(out,
		    "Bad XCLIENT address") : 0;
	case XCLIENT_PORT:
		return xc_port(v, &out->port) < 0 ? xc_fail(out,
		    "Bad XCLIENT port") : 0;
	case XCLIENT_DESTPORT:
		return xc_port(v, &out->destport) < 0 ? xc_fail(out,
		    "Bad XCLIENT port") : 0;
	case XCLIENT_HELO:
		return xc_printable(v) < 0 ? xc_fail(out,
		    "Bad XCLIENT HELO") : 0;
	case XCLIENT_LOGIN:
		return *v == '\0' ? xc_fail(out, "Empty XCLIENT LOGIN") : 0;
	case XCLIENT_PROTO:
		return strcasecmp(v, "SMTP") != 0 && strcasecmp(v, "ESMTP") !=
		    0 ? xc_fail(out, "Bad XCLIENT protocol") : 0;
	default:
		return xc_fail(out, "Bad XCLIENT attribute name");
	}
}

/* One "NAME=value" of n octets. */
static int
xc_pair(struct xclient *out, const char *s, size_t n)
{
	const char *eq = memchr(s, '=', n);
	const char *why;
	size_t nl, i;
	enum xclient_attr a;

	if (eq == NULL)
		return xc_fail(out, "Missing = in XCLIENT attribute");
	nl = (size_t)(eq - s);
	for (i = 0; i < XCLIENT_NATTRS; i++)
		if (strlen(xc_names[i]) == nl &&
		    strncasecmp(s, xc_names[i], nl) == 0)
			break;
	if (i == XCLIENT_NATTRS)
		return xc_fail(out, "Bad XCLIENT attribute name");
	a = (enum xclient_attr)i;
	if (out->attr[a].state != XCLIENT_ABSENT)
		return xc_fail(out, "Duplicate XCLIENT attribute");
	if ((why = xtext_decode(eq + 1, n - nl - 1, out->attr[a].value,
	    sizeof(out->attr[a].value))) != NULL)
		return xc_fail(out, why);
	if (strcmp(out->attr[a].value, "[UNAVAILABLE]") == 0) {
		out->attr[a].state = XCLIENT_UNAVAILABLE;
		out->attr[a].value[0] = '\0';
		return 0;
	}
	if (strcmp(out->attr[a].value, "[TEMPUNAVAIL]") == 0) {
		/* Postfix: only a name lookup can fail for now. */
		if (a != XCLIENT_NAME && a != XCLIENT_REVERSE_NAME)
			return xc_fail(out, "[TEMPUNAVAIL] is for NAME only");
		out->attr[a].state = XCLIENT_TEMPUNAVAIL;
		out->attr[a].value[0] = '\0';
		return 0;
	}
	out->attr[a].state = XCLIENT_VALUE;
	return xc_check(out, a);
}

int
xclient_parse(const char *args, struct xclient *out)
{
	const char *p = args, *sp;
	size_t n;

	memset(out, 0, sizeof(*out));
	if (*p == '\0')
		return xc_fail(out, "XCLIENT needs attributes");
	for (;;) {
		sp = strchr(p, ' ');
		n = sp != NULL ? (size_t)(sp - p) : strlen(p);
		if (n == 0)
			return xc_fail(out, "Extra space in XCLIENT");
		if (xc_pair(out, p, n) < 0)
			return -1;
		if (sp == NULL)
			return 0;
		p = sp + 1;
	}
}
