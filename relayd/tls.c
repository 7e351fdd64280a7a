/*
 * tls.c - relayd's TLS server contexts (OpenSSL).
 *
 * The master builds one context per TLS listener while it checks the
 * configuration, before any worker starts: a missing, unreadable or
 * mismatched certificate or key is a start-up (and -t, and reload)
 * error naming the file, never a failure on the first STARTTLS.  The
 * contexts are made before privileges are dropped, so the key may be
 * readable by root only; workers inherit them across fork().
 *
 * Policy: TLS 1.2 and 1.3 only; for TLS 1.2 only ECDHE key exchange
 * with AES-GCM or ChaCha20-Poly1305 (no RSA key exchange, no CBC, no
 * SHA-1 MACs); TLS 1.3 keeps OpenSSL's suites, which are all AEAD.  No
 * renegotiation, no compression, the server's cipher order.
 */
#include "config.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "relayd.h"

#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
#define TLS_GROUPS "X25519:P-256:P-384"
#define SESSION_CONTEXT "gatehouse-relayd"

/* The oldest queued OpenSSL error as text ("" when none). */
const char *
tls_error(void)
{
	static char buf[256];
	unsigned long e = ERR_get_error();

	if (e == 0)
		return "unknown error";
	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	return buf;
}

/* fopen() first: OpenSSL's "system lib" says less than strerror. */
static int
file_readable(const char *what, const char *path, char *err, size_t errlen)
{
	FILE *fp = fopen(path, "r");

	if (fp != NULL) {
		fclose(fp);
		return 0;
	}
	snprintf(err, errlen, "TLS %s %s: %s", what, path, strerror(errno));
	return -1;
}

static int
ctx_policy(SSL_CTX *ctx, char *err, size_t errlen)
{
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 ||
	    SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1 ||
	    SSL_CTX_set_session_id_context(ctx,
	    (const unsigned char *)SESSION_CONTEXT,
	    sizeof(SESSION_CONTEXT) - 1) != 1) {
		snprintf(err, errlen, "TLS policy: %s", tls_error());
		return -1;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
	return 0;
}

SSL_CTX *
tls_server_ctx(const char *cert, const char *key, char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if (file_readable("certificate", cert, err, errlen) != 0 ||
	    file_readable("key", key, err, errlen) != 0)
		return NULL;
	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		snprintf(err, errlen, "TLS: %s", tls_error());
		return NULL;
	}
	if (ctx_policy(ctx, err, errlen) != 0)
		goto fail;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "TLS certificate %s: %s", cert,
			 tls_error());
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errlen, "TLS key %s: %s", key, tls_error());
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "TLS key %s does not match the "
			 "certificate %s", key, cert);
		ERR_clear_error();
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

void
tls_ctx_free(SSL_CTX *ctx)
{
	SSL_CTX_free(ctx);
}

/* "TLSv1.3 TLS_AES_256_GCM_SHA384 256": for the log and the notes. */
void
tls_describe(SSL *ssl, char *version, size_t vlen, char *cipher,
	     size_t clen)
{
	const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
	int bits = 0;

	snprintf(version, vlen, "%s", SSL_get_version(ssl));
	if (c != NULL)
		SSL_CIPHER_get_bits(c, &bits);
	snprintf(cipher, clen, "%s %d", c != NULL ? SSL_CIPHER_get_name(c) :
		 "unknown", bits);
}
