/*
 * fuzz_auth.c - the AUTH exchange parsers (relayd/sasl.c) on arbitrary
 * octets: the first octet picks the parser, the rest is the line the
 * client sent (as session.c hands it over: NUL-free, no CRLF).
 *
 * Properties: base64 decoding accepts only whole quanta and decodes to
 * at most 3/4 of the input, re-encoding gives the input back; every
 * response parser leaves NUL-terminated fields within their bounds;
 * PLAIN and CRAM-MD5 fields of an accepted response carry no control
 * octet in the user name (it reaches log lines) and a CRAM-MD5 digest
 * is 32 lower-case hex digits; base64 of the same octets decodes the
 * same in every parser; the challenge is a msg-id or refused.
 */
#include "config.h"

#include <string.h>

#include "fuzz.h"
#include "sasl.h"

#define LINE_MAX_FUZZ 4096

static int
is_lower_hex(const char *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return s[n] == '\0';
}

static void
check_b64(const char *line)
{
	unsigned char out[SASL_DECODED];
	char enc[SASL_DECODED * 2];
	ssize_t n = sasl_b64_decode(line, out, sizeof(out));
	size_t len = strlen(line);

	if (n < 0)
		return;
	FUZZ_ASSERT(len % 4 == 0);
	FUZZ_ASSERT((size_t)n <= len / 4 * 3 && (size_t)n + 3 > len / 4 * 3);
	FUZZ_ASSERT(sasl_b64_encode(out, (size_t)n, enc, sizeof(enc)) == 0);
	/* Strict: one text for each octet string. */
	FUZZ_ASSERT(strcmp(enc, line) == 0);
}

/* Encoding arbitrary octets always decodes back. */
static void
check_roundtrip(const uint8_t *data, size_t size)
{
	unsigned char out[SASL_DECODED];
	char enc[SASL_DECODED * 2];

	/* The decoder wants room for whole quanta, padding included. */
	if (size > SASL_DECODED - 2)
		size = SASL_DECODED - 2;
	FUZZ_ASSERT(sasl_b64_encode(data, size, enc, sizeof(enc)) == 0);
	FUZZ_ASSERT(sasl_b64_decode(enc, out, sizeof(out)) == (ssize_t)size);
	FUZZ_ASSERT(memcmp(out, data, size) == 0);
}

static void
check_field(const char *f)
{
	FUZZ_ASSERT(memchr(f, '\0', SASL_FIELD) != NULL);
}

static void
check_parsers(const char *line)
{
	char user[SASL_FIELD], pass[SASL_FIELD], digest[SASL_DIGEST];
	enum sasl_result r, rl, rc;
	unsigned char out[SASL_DECODED];
	int b64ok = sasl_b64_decode(line, out, sizeof(out)) >= 0;

	memset(user, 'U', sizeof(user));
	memset(pass, 'P', sizeof(pass));
	r = sasl_plain(line, user, pass);
	check_field(user);
	check_field(pass);
	FUZZ_ASSERT((r == SASL_BAD_BASE64) == !b64ok);
	if (r == SASL_OK) {
		FUZZ_ASSERT(user[0] != '\0' && pass[0] != '\0');
		FUZZ_ASSERT(fuzz_no_ctl(user));
	}

	memset(user, 'U', sizeof(user));
	rl = sasl_login(line, user);
	check_field(user);
	FUZZ_ASSERT((rl == SASL_BAD_BASE64) == !b64ok);
	FUZZ_ASSERT(rl != SASL_REFUSED);

	memset(user, 'U', sizeof(user));
	memset(digest, 'D', sizeof(digest));
	rc = sasl_cram_md5(line, user, digest);
	check_field(user);
	FUZZ_ASSERT(memchr(digest, '\0', sizeof(digest)) != NULL);
	FUZZ_ASSERT((rc == SASL_BAD_BASE64) == !b64ok);
	if (rc == SASL_OK || rc == SASL_REFUSED)
		FUZZ_ASSERT(is_lower_hex(digest, SASL_DIGEST - 1));
	if (rc == SASL_OK)
		FUZZ_ASSERT(user[0] != '\0' && fuzz_no_ctl(user));
	if (rc == SASL_BAD_RESPONSE)
		FUZZ_ASSERT(user[0] == '\0' && digest[0] == '\0');
}

static void
check_challenge(const char *host, uint64_t rnd)
{
	char c[SASL_CHALLENGE];

	if (sasl_cram_challenge(c, sizeof(c), rnd, 1700000000LL, host) != 0)
		return;
	FUZZ_ASSERT(c[0] == '<' && c[strlen(c) - 1] == '>');
	FUZZ_ASSERT(strchr(c, '@') != NULL && strchr(c, ' ') == NULL);
	FUZZ_ASSERT(fuzz_no_ctl(c));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char line[LINE_MAX_FUZZ + 1];
	uint64_t rnd = 0;
	size_t n;

	if (size == 0)
		return 0;
	n = size - 1 < LINE_MAX_FUZZ ? size - 1 : LINE_MAX_FUZZ;
	memcpy(line, data + 1, n);
	line[n] = '\0';
	/* session.c never passes a NUL: the string ends at the first. */
	switch (data[0] % 3) {
	case 0:
		check_b64(line);
		check_parsers(line);
		break;
	case 1:
		check_roundtrip(data + 1, size - 1);
		break;
	default:
		memcpy(&rnd, data + 1, n < sizeof(rnd) ? n : sizeof(rnd));
		check_challenge(line, rnd);
		check_parsers(line);
		break;
	}
	return 0;
}
