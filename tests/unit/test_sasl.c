/*
 * test_sasl.c - the AUTH response parsers (relayd/sasl.c): strict
 * base64 both ways, PLAIN, LOGIN and CRAM-MD5 responses, and the
 * CRAM-MD5 challenge.  Each row is one response and what comes out.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "sasl.h"
#include "t.h"

static void
b64(const char *in, size_t n, char *out, size_t outlen)
{
	T_CHECK(sasl_b64_encode(in, n, out, outlen) == 0);
}

static void
test_base64(void)
{
	unsigned char buf[64];
	char enc[64];
	size_t n;

	/* RFC 4648 10. */
	static const char *const v[][2] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" },
		{ "foo", "Zm9v" }, { "foob", "Zm9vYg==" },
		{ "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	for (n = 0; n < sizeof(v) / sizeof(v[0]); n++) {
		b64(v[n][0], strlen(v[n][0]), enc, sizeof(enc));
		T_EQ_STR(enc, v[n][1]);
		T_EQ_INT(sasl_b64_decode(v[n][1], buf, sizeof(buf)),
			 strlen(v[n][0]));
		T_CHECK(memcmp(buf, v[n][0], strlen(v[n][0])) == 0);
	}
	T_EQ_INT(sasl_b64_decode("Zg=", buf, sizeof(buf)), -1);
	T_EQ_INT(sasl_b64_decode("Zg==Zg==", buf, sizeof(buf)), -1);
	T_EQ_INT(sasl_b64_decode("Z===", buf, sizeof(buf)), -1);
	T_EQ_INT(sasl_b64_decode("Zm9v YmFy", buf, sizeof(buf)), -1);
	T_EQ_INT(sasl_b64_decode("Zm9=Yg==", buf, sizeof(buf)), -1);
	T_EQ_INT(sasl_b64_decode("Zm9vYmFy", buf, 5), -1);
	/* RFC 4648 3.5: non-zero pad bits. */
	T_EQ_INT(sasl_b64_decode("Zh==", buf, sizeof(buf)), -1);
	T_EQ_INT(sasl_b64_decode("Zm9=", buf, sizeof(buf)), -1);
	/* The output must hold the terminating NUL. */
	T_EQ_INT(sasl_b64_encode("foo", 3, enc, 4), -1);
	T_EQ_INT(sasl_b64_encode("foo", 3, enc, 5), 0);
}

static const struct prow {
	const char *label, *decoded;
	size_t len;
	enum sasl_result r;
	const char *user, *pass;
} prows[] = {
	{ "plain", "\0alice\0pw", 9, SASL_OK, "alice", "pw" },
	{ "authzid = authcid", "alice\0alice\0pw", 14, SASL_OK, "alice",
	  "pw" },
	{ "other authzid", "bob\0alice\0pw", 12, SASL_REFUSED, NULL, NULL },
	{ "one NUL", "alice\0pw", 8, SASL_BAD_RESPONSE, NULL, NULL },
	{ "three NULs", "\0alice\0pw\0", 10, SASL_BAD_RESPONSE, NULL, NULL },
	{ "empty user", "\0\0pw", 4, SASL_REFUSED, NULL, NULL },
	{ "empty password", "\0alice\0", 7, SASL_REFUSED, NULL, NULL },
	{ "CR LF in user", "\0a\r\nb\0pw", 8, SASL_REFUSED, NULL, NULL },
	{ "password with spaces and colon", "\0bob\0a b:c", 10, SASL_OK,
	  "bob", "a b:c" },
};

static void
test_plain(void)
{
	char enc[SASL_DECODED * 2], user[SASL_FIELD], pass[SASL_FIELD];
	char big[600];
	size_t i;

	for (i = 0; i < sizeof(prows) / sizeof(prows[0]); i++) {
		T_BEGIN();
		b64(prows[i].decoded, prows[i].len, enc, sizeof(enc));
		T_EQ_INT(sasl_plain(enc, user, pass), prows[i].r);
		if (prows[i].user != NULL) {
			T_EQ_STR(user, prows[i].user);
			T_EQ_STR(pass, prows[i].pass);
		}
		T_END(prows[i].label);
	}
	T_BEGIN();
	T_EQ_INT(sasl_plain("!!", user, pass), SASL_BAD_BASE64);
	/* A 256-octet password is one too many (RFC 4616 2: 255). */
	memset(big, 'x', sizeof(big));
	big[0] = '\0';
	big[2] = '\0';
	b64(big, 3 + 256, enc, sizeof(enc));
	T_EQ_INT(sasl_plain(enc, user, pass), SASL_BAD_RESPONSE);
	b64(big, 3 + 255, enc, sizeof(enc));
	T_EQ_INT(sasl_plain(enc, user, pass), SASL_OK);
	T_EQ_INT(strlen(pass), 255);
	T_END("plain: bad base64, field bounds");
}

static void
test_login(void)
{
	char enc[64], f[SASL_FIELD];

	b64("alice", 5, enc, sizeof(enc));
	T_EQ_INT(sasl_login(enc, f), SASL_OK);
	T_EQ_STR(f, "alice");
	T_EQ_INT(sasl_login("", f), SASL_OK);
	T_EQ_STR(f, "");
	b64("a\0b", 3, enc, sizeof(enc));
	T_EQ_INT(sasl_login(enc, f), SASL_BAD_RESPONSE);
	T_EQ_INT(sasl_login("YWxpY2U", f), SASL_BAD_BASE64);
}

static const struct crow {
	const char *label, *decoded;
	enum sasl_result r;
	const char *user, *digest;
} crows[] = {
	{ "RFC 2195 example", "tim b913a602c7eda7a495b4e6e7334d3890",
	  SASL_OK, "tim", "b913a602c7eda7a495b4e6e7334d3890" },
	{ "upper-case digest", "tim B913A602C7EDA7A495B4E6E7334D3890",
	  SASL_OK, "tim", "b913a602c7eda7a495b4e6e7334d3890" },
	{ "space in the name", "t m b913a602c7eda7a495b4e6e7334d3890",
	  SASL_OK, "t m", "b913a602c7eda7a495b4e6e7334d3890" },
	{ "no space", "timb913a602c7eda7a495b4e6e7334d3890",
	  SASL_BAD_RESPONSE, NULL, NULL },
	{ "short digest", "tim b913a602c7eda7a495b4e6e7334d389",
	  SASL_BAD_RESPONSE, NULL, NULL },
	{ "long digest", "tim b913a602c7eda7a495b4e6e7334d38900",
	  SASL_BAD_RESPONSE, NULL, NULL },
	{ "not hex", "tim g913a602c7eda7a495b4e6e7334d3890",
	  SASL_BAD_RESPONSE, NULL, NULL },
	{ "trailing space", "tim b913a602c7eda7a495b4e6e7334d3890 ",
	  SASL_BAD_RESPONSE, NULL, NULL },
	{ "empty user", " b913a602c7eda7a495b4e6e7334d3890", SASL_REFUSED,
	  NULL, NULL },
	{ "tab in user", "t\tm b913a602c7eda7a495b4e6e7334d3890",
	  SASL_REFUSED, NULL, NULL },
};

static void
test_cram(void)
{
	char enc[256], user[SASL_FIELD], digest[SASL_DIGEST];
	size_t i;

	for (i = 0; i < sizeof(crows) / sizeof(crows[0]); i++) {
		T_BEGIN();
		b64(crows[i].decoded, strlen(crows[i].decoded), enc,
		    sizeof(enc));
		T_EQ_INT(sasl_cram_md5(enc, user, digest), crows[i].r);
		if (crows[i].user != NULL) {
			T_EQ_STR(user, crows[i].user);
			T_EQ_STR(digest, crows[i].digest);
		}
		T_END(crows[i].label);
	}
	T_BEGIN();
	T_EQ_INT(sasl_cram_md5("*", user, digest), SASL_BAD_BASE64);
	T_EQ_INT(sasl_cram_md5("", user, digest), SASL_BAD_RESPONSE);
	T_END("cram: bad base64, empty");
}

static void
test_challenge(void)
{
	char c[SASL_CHALLENGE], host[300];

	T_EQ_INT(sasl_cram_challenge(c, sizeof(c), 1896, 697170952,
				     "postoffice.reston.mci.net"), 0);
	T_EQ_STR(c, "<1896.697170952@postoffice.reston.mci.net>");
	T_EQ_INT(sasl_cram_challenge(c, sizeof(c), 1, 2, "a b"), -1);
	T_EQ_INT(sasl_cram_challenge(c, sizeof(c), 1, 2, "a>b"), -1);
	T_EQ_INT(sasl_cram_challenge(c, sizeof(c), 1, 2, ""), -1);
	memset(host, 'h', sizeof(host) - 1);
	host[sizeof(host) - 1] = '\0';
	T_EQ_INT(sasl_cram_challenge(c, sizeof(c), ~0ULL, 1LL << 40, host),
		 -1);
	host[253] = '\0';
	T_EQ_INT(sasl_cram_challenge(c, sizeof(c), ~0ULL, 1LL << 40, host),
		 0);
}

int
main(void)
{
	T_RUN(test_base64);
	test_plain();
	T_RUN(test_login);
	test_cram();
	T_RUN(test_challenge);
	return t_done("test_sasl");
}
