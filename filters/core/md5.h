/*
 * md5.h - MD5 (RFC 1321) and HMAC-MD5 (RFC 2104) with their
 * intermediate state exposed, for CRAM-MD5 (RFC 2195).
 *
 * A CRAM-MD5 server need not keep the password: HMAC-MD5 hashes the
 * key XOR ipad and the key XOR opad as one 64-octet block each before
 * anything else, so the two MD5 states after those blocks are all it
 * needs (Dovecot's "{CRAM-MD5}" scheme stores exactly these).  They are
 * still password-equivalent for CRAM-MD5 itself.
 *
 * MD5 is broken for collisions; it is here only because RFC 2195 names
 * it, never for anything new.  Our own small code, so that no
 * deprecated OpenSSL low-level call is needed to set a state.
 */
#ifndef GATEHOUSE_MD5_H
#define GATEHOUSE_MD5_H

#include <stddef.h>
#include <stdint.h>

#define GH_MD5_LEN 16
#define GH_MD5_BLOCK 64
/* Dovecot's {CRAM-MD5} secret: the outer state's words a b c d, then
 * the inner state's, each word little-endian (hmac-cram-md5.c). */
#define GH_CRAM_MD5_SECRET 32

struct gh_md5 {
	uint32_t h[4];
	uint64_t len;			/* octets hashed so far */
	unsigned char buf[GH_MD5_BLOCK];
};

void gh_md5_init(struct gh_md5 *m);
void gh_md5_update(struct gh_md5 *m, const void *data, size_t n);
void gh_md5_final(struct gh_md5 *m, unsigned char out[GH_MD5_LEN]);

struct gh_hmac_md5 {
	struct gh_md5 inner, outer;
};

/* RFC 2104 2: a key over 64 octets is hashed first. */
void gh_hmac_md5_init(struct gh_hmac_md5 *h, const void *key, size_t n);
void gh_hmac_md5_update(struct gh_hmac_md5 *h, const void *data, size_t n);
void gh_hmac_md5_final(struct gh_hmac_md5 *h, unsigned char out[GH_MD5_LEN]);
/* Right after init: the two states as Dovecot stores them. */
void gh_hmac_md5_export(const struct gh_hmac_md5 *h,
			unsigned char out[GH_CRAM_MD5_SECRET]);
/* The context init would have made, from an exported secret. */
void gh_hmac_md5_import(struct gh_hmac_md5 *h,
			const unsigned char in[GH_CRAM_MD5_SECRET]);
/* Wipe a context that held key material. */
void gh_hmac_md5_wipe(struct gh_hmac_md5 *h);

#endif
