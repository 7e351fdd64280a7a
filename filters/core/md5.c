/*
 * md5.c - MD5 (RFC 1321) and HMAC-MD5 (RFC 2104), with the states after
 * the HMAC key blocks exported and imported as Dovecot's {CRAM-MD5}
 * password scheme keeps them.  See md5.h.
 *
 * Written from RFC 1321 3.1-3.5: the message is processed in 64-octet
 * blocks of sixteen little-endian words, four rounds of sixteen steps;
 * the padding is 0x80, zeros to 56 mod 64, then the bit length as a
 * little-endian 64-bit number.
 */
#include "config.h"

#include <string.h>

#include "md5.h"

/* RFC 1321 3.4: T[i] = floor(2^32 * abs(sin(i))), i = 1..64. */
static const uint32_t md5_t[64] = {
	0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee,
	0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
	0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be,
	0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
	0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa,
	0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
	0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed,
	0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
	0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c,
	0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
	0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05,
	0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
	0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039,
	0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
	0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1,
	0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391
};

/* The left rotations of each round's four steps. */
static const unsigned md5_s[4][4] = {
	{ 7, 12, 17, 22 }, { 5, 9, 14, 20 }, { 4, 11, 16, 23 },
	{ 6, 10, 15, 21 }
};

static uint32_t
rol(uint32_t x, unsigned n)
{
	return x << n | x >> (32 - n);
}

static uint32_t
le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	    (uint32_t)p[3] << 24;
}

static void
put_le32(unsigned char *p, uint32_t v)
{
	p[0] = (unsigned char)v;
	p[1] = (unsigned char)(v >> 8);
	p[2] = (unsigned char)(v >> 16);
	p[3] = (unsigned char)(v >> 24);
}

/* RFC 1321 3.4: one 64-octet block into the state. */
static void
md5_block(uint32_t h[4], const unsigned char *blk)
{
	uint32_t x[16], a = h[0], b = h[1], c = h[2], d = h[3], f, t;
	unsigned i, g;

	for (i = 0; i < 16; i++)
		x[i] = le32(blk + 4 * i);
	for (i = 0; i < 64; i++) {
		switch (i / 16) {
		case 0:
			f = (b & c) | (~b & d);
			g = i;
			break;
		case 1:
			f = (b & d) | (c & ~d);
			g = (5 * i + 1) % 16;
			break;
		case 2:
			f = b ^ c ^ d;
			g = (3 * i + 5) % 16;
			break;
		default:
			f = c ^ (b | ~d);
			g = (7 * i) % 16;
			break;
		}
		t = d;
		d = c;
		c = b;
		b = b + rol(a + f + md5_t[i] + x[g], md5_s[i / 16][i % 4]);
		a = t;
	}
	h[0] += a;
	h[1] += b;
	h[2] += c;
	h[3] += d;
}

void
gh_md5_init(struct gh_md5 *m)
{
	/* RFC 1321 3.3. */
	m->h[0] = 0x67452301;
	m->h[1] = 0xefcdab89;
	m->h[2] = 0x98badcfe;
	m->h[3] = 0x10325476;
	m->len = 0;
}

void
gh_md5_update(struct gh_md5 *m, const void *data, size_t n)
{
	const unsigned char *p = data;
	size_t have = (size_t)(m->len % GH_MD5_BLOCK), take;

	m->len += n;
	if (have > 0) {
		take = GH_MD5_BLOCK - have < n ? GH_MD5_BLOCK - have : n;
		memcpy(m->buf + have, p, take);
		p += take;
		n -= take;
		if (have + take < GH_MD5_BLOCK)
			return;
		md5_block(m->h, m->buf);
	}
	for (; n >= GH_MD5_BLOCK; p += GH_MD5_BLOCK, n -= GH_MD5_BLOCK)
		md5_block(m->h, p);
	if (n > 0)
		memcpy(m->buf, p, n);
}

void
gh_md5_final(struct gh_md5 *m, unsigned char out[GH_MD5_LEN])
{
	/* RFC 1321 3.1, 3.2: 0x80, zeros to 56 mod 64, the bit length. */
	static const unsigned char pad[GH_MD5_BLOCK] = { 0x80 };
	unsigned char len[8];
	uint64_t bits = m->len * 8;
	size_t have = (size_t)(m->len % GH_MD5_BLOCK);
	unsigned i;

	for (i = 0; i < 8; i++)
		len[i] = (unsigned char)(bits >> (8 * i));
	gh_md5_update(m, pad, have < 56 ? 56 - have : 120 - have);
	gh_md5_update(m, len, sizeof(len));
	for (i = 0; i < 4; i++)
		put_le32(out + 4 * i, m->h[i]);
	memset(m, 0, sizeof(*m));
}

void
gh_hmac_md5_init(struct gh_hmac_md5 *h, const void *key, size_t n)
{
	unsigned char k[GH_MD5_BLOCK], pad[GH_MD5_BLOCK];
	struct gh_md5 m;
	unsigned i;

	memset(k, 0, sizeof(k));
	if (n > GH_MD5_BLOCK) {
		gh_md5_init(&m);
		gh_md5_update(&m, key, n);
		gh_md5_final(&m, k);
	} else if (n > 0) {
		memcpy(k, key, n);
	}
	for (i = 0; i < GH_MD5_BLOCK; i++)
		pad[i] = k[i] ^ 0x36;
	gh_md5_init(&h->inner);
	gh_md5_update(&h->inner, pad, sizeof(pad));
	for (i = 0; i < GH_MD5_BLOCK; i++)
		pad[i] = k[i] ^ 0x5c;
	gh_md5_init(&h->outer);
	gh_md5_update(&h->outer, pad, sizeof(pad));
	explicit_bzero(k, sizeof(k));
	explicit_bzero(pad, sizeof(pad));
}

void
gh_hmac_md5_update(struct gh_hmac_md5 *h, const void *data, size_t n)
{
	gh_md5_update(&h->inner, data, n);
}

void
gh_hmac_md5_final(struct gh_hmac_md5 *h, unsigned char out[GH_MD5_LEN])
{
	unsigned char in[GH_MD5_LEN];

	gh_md5_final(&h->inner, in);
	gh_md5_update(&h->outer, in, sizeof(in));
	gh_md5_final(&h->outer, out);
	explicit_bzero(in, sizeof(in));
}

void
gh_hmac_md5_export(const struct gh_hmac_md5 *h,
		   unsigned char out[GH_CRAM_MD5_SECRET])
{
	unsigned i;

	for (i = 0; i < 4; i++) {
		put_le32(out + 4 * i, h->outer.h[i]);
		put_le32(out + 16 + 4 * i, h->inner.h[i]);
	}
}

void
gh_hmac_md5_import(struct gh_hmac_md5 *h,
		   const unsigned char in[GH_CRAM_MD5_SECRET])
{
	unsigned i;

	memset(h, 0, sizeof(*h));
	for (i = 0; i < 4; i++) {
		h->outer.h[i] = le32(in + 4 * i);
		h->inner.h[i] = le32(in + 16 + 4 * i);
	}
	/* One key block hashed in each. */
	h->outer.len = h->inner.len = GH_MD5_BLOCK;
}

void
gh_hmac_md5_wipe(struct gh_hmac_md5 *h)
{
	explicit_bzero(h, sizeof(*h));
}
