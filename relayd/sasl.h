/*
 * sasl.h - the client's side of an SMTP AUTH exchange (RFC 4954),
 * decoded and taken apart: base64 (RFC 4648), PLAIN (RFC 4616), LOGIN
 * and CRAM-MD5 (RFC 2195) responses, and the CRAM-MD5 challenge.
 *
 * Pure functions on bounded buffers, with no session state, so that
 * session.c runs the exchange and tests/fuzz/fuzz_auth.c can feed them
 * anything.  Fields come out NUL-terminated and NUL-free; the caller
 * wipes them when done (they may hold a password).
 */
#ifndef GATEHOUSE_SASL_H
#define GATEHOUSE_SASL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SASL_FIELD 256		/* RFC 4616 2: 255 octets at most, + NUL */
#define SASL_DECODED 1024	/* a decoded response */
#define SASL_DIGEST 33		/* CRAM-MD5: 32 lower-case hex digits + NUL */
#define SASL_CHALLENGE 320	/* "<random.time@hostname>" + NUL */

enum sasl_result {
	SASL_OK,		/* the fields are filled */
	SASL_BAD_BASE64,	/* 501 5.5.2: cannot decode */
	SASL_BAD_RESPONSE,	/* 501 5.5.2: decoded, but malformed */
	SASL_REFUSED		/* well formed, can never succeed: 535 */
};

/* Strict base64 (RFC 4648 4): whole quanta, padding only at the end,
 * no white space, zero pad bits (3.5).  outlen must hold whole quanta
 * (3 octets for every 4 characters, padding included).  Returns the
 * decoded length, or -1. */
ssize_t sasl_b64_decode(const char *in, unsigned char *out, size_t outlen);
/* Base64 of n octets into out (NUL-terminated); -1 if out is short. */
int sasl_b64_encode(const void *in, size_t n, char *out, size_t outlen);

/* A user name that cannot go into a log line or a header as it is. */
int sasl_user_bad(const char *user);

/* PLAIN: "[authzid] NUL authcid NUL passwd" into user and pass
 * (SASL_FIELD each).  An authzid other than the authcid, an empty
 * authcid or password, or a user with control octets: SASL_REFUSED. */
enum sasl_result sasl_plain(const char *b64, char *user, char *pass);
/* LOGIN: one base64 field (the user, then the password) into field
 * (SASL_FIELD); its emptiness is for the caller to judge. */
enum sasl_result sasl_login(const char *b64, char *field);
/* CRAM-MD5: "user SP digest" (RFC 2195 2; the last space splits, so a
 * name may hold spaces) into user (SASL_FIELD) and digest (SASL_DIGEST,
 * lower-cased).  A digest that is not 32 hex digits: SASL_BAD_RESPONSE;
 * an empty user or one with control octets: SASL_REFUSED. */
enum sasl_result sasl_cram_md5(const char *b64, char *user, char *digest);

/* RFC 2195 2: the challenge "<rnd.now@host>" (a msg-id, RFC 5322 3.6.4)
 * into out (SASL_CHALLENGE); -1 if host does not fit or is not a plain
 * domain name. */
int sasl_cram_challenge(char *out, size_t outlen, uint64_t rnd,
			long long now, const char *host);

#endif
