/*
 * test_md5.c - MD5 and HMAC-MD5 (filters/core/md5.c): the RFC 1321 A.5
 * test suite, the RFC 2202 2 HMAC-MD5 test cases, RFC 2195's CRAM-MD5
 * example, input cut at every point, and the export/import of the
 * HMAC states that Dovecot's {CRAM-MD5} scheme stores.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "md5.h"
#include "t.h"

static void
hex(const unsigned char *p, size_t n, char *out)
{
	size_t i;

	for (i = 0; i < n; i++)
		snprintf(out + 2 * i, 3, "%02x", p[i]);
}

static const struct {
	const char *in, *md5;
} rfc1321[] = {
	{ "", "d41d8cd98f00b204e9800998ecf8427e" },
	{ "a", "0cc175b9c0f1b6a831c399e269772661" },
	{ "abc", "900150983cd24fb0d6963f7d28e17f72" },
	{ "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
	{ "abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b" },
	{ "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
	  "d174ab98d277d9f5a5611c2c9f419d9f" },
	{ "1234567890123456789012345678901234567890"
	  "1234567890123456789012345678901234567890",
	  "57edf4a22be3c955ac49da2e2107b67a" },
};

static void
test_rfc1321(void)
{
	unsigned char d[GH_MD5_LEN];
	char h[2 * GH_MD5_LEN + 1];
	struct gh_md5 m;
	size_t i;

	for (i = 0; i < sizeof(rfc1321) / sizeof(rfc1321[0]); i++) {
		gh_md5_init(&m);
		gh_md5_update(&m, rfc1321[i].in, strlen(rfc1321[i].in));
		gh_md5_final(&m, d);
		hex(d, sizeof(d), h);
		T_EQ_STR(h, rfc1321[i].md5);
	}
}

/* Every cut of a 200-octet input (over three blocks) into two updates
 * gives the one-update digest; so do octet-at-a-time updates. */
static void
test_cuts(void)
{
	unsigned char in[200], whole[GH_MD5_LEN], d[GH_MD5_LEN];
	struct gh_md5 m;
	size_t n, cut, i;

	for (i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(i * 7 + 3);
	for (n = 0; n <= sizeof(in); n += 1) {
		gh_md5_init(&m);
		gh_md5_update(&m, in, n);
		gh_md5_final(&m, whole);
		for (cut = 0; cut <= n; cut++) {
			gh_md5_init(&m);
			gh_md5_update(&m, in, cut);
			gh_md5_update(&m, in + cut, n - cut);
			gh_md5_final(&m, d);
			T_CHECK(memcmp(d, whole, sizeof(d)) == 0);
		}
		gh_md5_init(&m);
		for (i = 0; i < n; i++)
			gh_md5_update(&m, in + i, 1);
		gh_md5_final(&m, d);
		T_CHECK(memcmp(d, whole, sizeof(d)) == 0);
	}
}

static void
fill(unsigned char *p, int v, size_t n)
{
	memset(p, v, n);
}

static void
check_hmac(const unsigned char *key, size_t klen, const void *data,
	   size_t dlen, const char *want)
{
	struct gh_hmac_md5 h;
	unsigned char d[GH_MD5_LEN];
	char x[2 * GH_MD5_LEN + 1];

	gh_hmac_md5_init(&h, key, klen);
	gh_hmac_md5_update(&h, data, dlen);
	gh_hmac_md5_final(&h, d);
	hex(d, sizeof(d), x);
	T_EQ_STR(x, want);
}

/* RFC 2202 2, test cases 1 to 7. */
static void
test_rfc2202(void)
{
	unsigned char key[80], data[80];
	size_t i;

	fill(key, 0x0b, 16);
	check_hmac(key, 16, "Hi There", 8,
		   "9294727a3638bb1c13f48ef8158bfc9d");
	check_hmac((const unsigned char *)"Jefe", 4,
		   "what do ya want for nothing?", 28,
		   "750c783e6ab0b503eaa86e310a5db738");
	fill(key, 0xaa, 16);
	fill(data, 0xdd, 50);
	check_hmac(key, 16, data, 50, "56be34521d144c88dbb8c733f0e8b3f6");
	for (i = 0; i < 25; i++)
		key[i] = (unsigned char)(i + 1);
	fill(data, 0xcd, 50);
	check_hmac(key, 25, data, 50, "697eaf0aca3a3aea3a75164746ffaa79");
	fill(key, 0x0c, 16);
	check_hmac(key, 16, "Test With Truncation", 20,
		   "56461ef2342edc00f9bab995690efd4c");
	fill(key, 0xaa, 80);
	check_hmac(key, 80, "Test Using Larger Than Block-Size Key - Hash "
		   "Key First", 54, "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd");
	check_hmac(key, 80, "Test Using Larger Than Block-Size Key and "
		   "Larger Than One Block-Size Data", 73,
		   "6f630fad67cda0ee1fb1f562db3aa53e");
}

/* RFC 2195 2: the example exchange, once from the password and once
 * from its exported states, imported again. */
static void
test_rfc2195(void)
{
	static const char chal[] = "<1896.697170952@postoffice.reston.mci.net>";
	static const char pw[] = "tanstaaftanstaaf";
	unsigned char sec[GH_CRAM_MD5_SECRET], sec2[GH_CRAM_MD5_SECRET];
	unsigned char d[GH_MD5_LEN];
	char x[2 * GH_CRAM_MD5_SECRET + 1];
	struct gh_hmac_md5 h;

	check_hmac((const unsigned char *)pw, strlen(pw), chal, strlen(chal),
		   "b913a602c7eda7a495b4e6e7334d3890");
	gh_hmac_md5_init(&h, pw, strlen(pw));
	gh_hmac_md5_export(&h, sec);
	gh_hmac_md5_wipe(&h);
	hex(sec, sizeof(sec), x);
	/* The same from the tests' pure-Python MD5 compression
	 * (tests/integration/test_auth_cram.py). */
	T_EQ_STR(x, "d06d4e1b26fccaa4b0b61801132340a3"
		 "54b21152711fb604ca3e035e7015116b");
	gh_hmac_md5_import(&h, sec);
	gh_hmac_md5_export(&h, sec2);
	T_CHECK(memcmp(sec, sec2, sizeof(sec)) == 0);
	gh_hmac_md5_update(&h, chal, strlen(chal));
	gh_hmac_md5_final(&h, d);
	hex(d, sizeof(d), x);
	T_EQ_STR(x, "b913a602c7eda7a495b4e6e7334d3890");
}

/* The empty key: the pads alone. */
static void
test_empty_key(void)
{
	check_hmac(NULL, 0, "", 0, "74e6f7298a9c2d168935f58c001bad88");
}

int
main(void)
{
	T_RUN(test_rfc1321);
	T_RUN(test_cuts);
	T_RUN(test_rfc2202);
	T_RUN(test_rfc2195);
	T_RUN(test_empty_key);
	return t_done("test_md5");
}
