/*
 * sasl.c - the client's responses of an SMTP AUTH exchange, decoded and
 * taken apart (RFC 4954 4, RFC 4648, RFC 4616, RFC 2195).  See sasl.h.
 *
 * Nothing here keeps state or logs: session.c turns each result into
 * a reply and decides what counts as a failure.  Every copy is bounded
 * by SASL_FIELD, and every decoded buffer is wiped before return.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "sasl.h"

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int
b64_value(unsigned char ch)
{
	if (ch >= 'A' && ch <= 'Z')
		return ch - 'A';
	if (ch >= 'a' && ch <= 'z')
		return ch - 'a' + 26;
	if (ch >= '0' && ch <= '9')
		return ch - '0' + 52;
	if (ch == '+')
		return 62;
	if (ch == '/')
		return 63;
	return -1;
}

ssize_t
sasl_b64_decode(const char *in, unsigned char *out, size_t outlen)
{
	size_t len = strlen(in), i, n = 0;
	int v[4], k, pad;

	if (len % 4 != 0 || len / 4 * 3 > outlen)
		return -1;
	for (i = 0; i < len; i += 4) {
		pad = 0;
		for (k = 0; k < 4; k++) {
			if (in[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
			} else if (pad > 0 ||
			    (v[k] = b64_value((unsigned char)in[i + k])) < 0) {
				return -1;
			}
		}
		/* RFC 4648 3.5: the bits padding leaves over must be zero,
		 * so that each octet string has one text. */
		if ((pad == 2 && (v[1] & 15) != 0) ||
		    (pad == 1 && (v[2] & 3) != 0))
			return -1;
		out[n++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[n++] = (unsigned char)((v[1] & 15) << 4 |
						   v[2] >> 2);
		if (pad < 1)
			out[n++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
	}
	return (ssize_t)n;
}

int
sasl_b64_encode(const void *in, size_t n, char *out, size_t outlen)
{
	const unsigned char *p = in;
	size_t i, o = 0;
	uint32_t v;

	if (outlen == 0 || (n + 2) / 3 * 4 >= outlen)
		return -1;
	for (i = 0; i < n; i += 3) {
		v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		out[o++] = b64_alphabet[v >> 18 & 63];
		out[o++] = b64_alphabet[v >> 12 & 63];
		out[o++] = i + 1 < n ? b64_alphabet[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? b64_alphabet[v & 63] : '=';
	}
	out[o] = '\0';
	return 0;
}

int
sasl_user_bad(const char *u)
{
	for (; *u != '\0'; u++)
		if ((unsigned char)*u < 0x20 || *u == 0x7f)
			return 1;
	return 0;
}

/* Copy a decoded field; -1 when too long or holding a NUL. */
static int
field_copy(char *dst, const unsigned char *src, size_t n)
{
	if (n >= SASL_FIELD || memchr(src, '\0', n) != NULL)
		return -1;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return 0;
}

/* RFC 4616 2: [authzid] NUL authcid NUL passwd. */
enum sasl_result
sasl_plain(const char *b64, char *user, char *pass)
{
	unsigned char buf[SASL_DECODED];
	ssize_t n = sasl_b64_decode(b64, buf, sizeof(buf));
	unsigned char *authcid, *passwd;
	enum sasl_result r = SASL_OK;
	size_t zlen;

	user[0] = pass[0] = '\0';
	if (n < 0)
		return SASL_BAD_BASE64;
	authcid = memchr(buf, '\0', (size_t)n);
	passwd = authcid ? memchr(authcid + 1, '\0',
				  (size_t)(buf + n - authcid - 1)) : NULL;
	if (passwd == NULL || field_copy(user, authcid + 1,
	    (size_t)(passwd - authcid - 1)) != 0 ||
	    field_copy(pass, passwd + 1, (size_t)(buf + n - passwd - 1)) != 0) {
		r = SASL_BAD_RESPONSE;
		goto done;
	}
	/* Acting for another identity (authzid) is not supported: an
	 * authzid must be the authcid itself. */
	zlen = (size_t)(authcid - buf);
	if (zlen > 0 && (zlen != strlen(user) || memcmp(buf, user, zlen) != 0))
		r = SASL_REFUSED;
	else if (user[0] == '\0' || pass[0] == '\0' || sasl_user_bad(user))
		r = SASL_REFUSED;
done:
	explicit_bzero(buf, sizeof(buf));
	return r;
}

enum sasl_result
sasl_login(const char *b64, char *field)
{
	unsigned char buf[SASL_DECODED];
	ssize_t n = sasl_b64_decode(b64, buf, sizeof(buf));
	enum sasl_result r = SASL_OK;

	field[0] = '\0';
	if (n < 0)
		return SASL_BAD_BASE64;
	if (field_copy(field, buf, (size_t)n) != 0)
		r = SASL_BAD_RESPONSE;
	explicit_bzero(buf, sizeof(buf));
	return r;
}

static int
hex_lower(unsigned char c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))
		return c;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 'a';
	return -1;
}

/* RFC 2195 2: the user name, a space, 32 lower-case hex digits (the
 * upper case is taken too: the value is the same). */
enum sasl_result
sasl_cram_md5(const char *b64, char *user, char *digest)
{
	unsigned char buf[SASL_DECODED];
	ssize_t n = sasl_b64_decode(b64, buf, sizeof(buf));
	enum sasl_result r = SASL_OK;
	unsigned char *sp = NULL;
	size_t i;
	int c;

	user[0] = digest[0] = '\0';
	if (n < 0)
		return SASL_BAD_BASE64;
	for (i = (size_t)n; i > 0; i--)
		if (buf[i - 1] == ' ') {
			sp = buf + i - 1;
			break;
		}
	if (sp == NULL || buf + n - (sp + 1) != SASL_DIGEST - 1 ||
	    field_copy(user, buf, (size_t)(sp - buf)) != 0) {
		r = SASL_BAD_RESPONSE;
		goto done;
	}
	for (i = 0; i < SASL_DIGEST - 1; i++) {
		if ((c = hex_lower(sp[1 + i])) < 0) {
			r = SASL_BAD_RESPONSE;
			goto done;
		}
		digest[i] = (char)c;
	}
	digest[i] = '\0';
	if (user[0] == '\0' || sasl_user_bad(user))
		r = SASL_REFUSED;
done:
	if (r == SASL_BAD_RESPONSE)
		user[0] = digest[0] = '\0';
	explicit_bzero(buf, sizeof(buf));
	return r;
}

int
sasl_cram_challenge(char *out, size_t outlen, uint64_t rnd, long long now,
		    const char *host)
{
	const unsigned char *p;
	int n;

	/* The right side of a msg-id: no space, control octet or
	 * bracket, so that the client's HMAC input is unambiguous. */
	for (p = (const unsigned char *)host; *p != '\0'; p++)
		if (*p <= ' ' || *p >= 0x7f || *p == '<' || *p == '>' ||
		    *p == '@')
			return -1;
	if (host[0] == '\0')
		return -1;
	n = snprintf(out, outlen, "<%llu.%lld@%s>", (unsigned long long)rnd,
		     now, host);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}
