/*
 * tls.c - relayd's TLS server contexts (OpenSSL).
 *
 * The master builds one context per TLS listener while it checks the
 * configuration, before any worker starts: a missing, unreadable or
 * mismatched certificate or key (the listener's, a relayd.tls_sni one or
 * relayd.tls_ca) is a start-up (and -t, and reload) error naming the
 * file and the directive, never a failure on the first STARTTLS.  The
 * contexts are made before privileges are dropped, so the keys may be
 * readable by root only; workers inherit them across fork().
 *
 * Policy: TLS 1.2 and 1.3 only; for TLS 1.2 only ECDHE key exchange
 * with AES-GCM or ChaCha20-Poly1305 (no RSA key exchange, no CBC, no
 * SHA-1 MACs); TLS 1.3 keeps OpenSSL's suites, which are all AEAD.  No
 * renegotiation, no compression, the server's cipher order.
 *
 * SNI (RFC 6066 3): each relayd.tls_sni entry "NAME CERTFILE KEYFILE"
 * gets a context of its own, made with the listener's policy and
 * client-certificate settings; the servername callback switches to the
 * one whose NAME matches (exact names first, then "*.domain", which
 * matches one label), else the listener's certificate is served.  The
 * table hangs off the listener's context as ex_data and dies with it.
 *
 * Client certificates: client_cert=optional asks for one and accepts
 * the handshake whatever it is (tls_client_record then says whether it
 * verified against relayd.tls_ca); client_cert=require fails the
 * handshake without a certificate that verifies.
 */
#include "config.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "relayd.h"

#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
#define TLS_GROUPS "X25519:P-256:P-384"
#define SESSION_CONTEXT "gatehouse-relayd"
#define VERIFY_DEPTH 5		/* client chains: leaf, intermediates, root */

/* A listener's relayd.tls_sni contexts. */
struct sni_entry {
	char *name;			/* "mx.example.test", "*.example.test" */
	SSL_CTX *ctx;
};

struct sni_table {
	size_t n;
	struct sni_entry *e;
};

static int sni_index = -1;		/* ex_data slot of the table */

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

/* client_cert=optional: the handshake goes on whatever the chain is;
 * the verification result stays on the SSL for tls_client_record. */
static int
verify_accept(int ok, X509_STORE_CTX *store)
{
	(void)ok;
	(void)store;
	return 1;
}

/* Ask for a client certificate, naming relayd.tls_ca's subjects as the
 * acceptable issuers (RFC 8446 4.2.4, RFC 5246 7.4.4). */
static int
ctx_client_verify(SSL_CTX *ctx, enum client_cert mode, const char *ca,
		  char *err, size_t errlen)
{
	STACK_OF(X509_NAME) *names;
	char why[512];

	if (ca == NULL || ca[0] == '\0') {
		snprintf(err, errlen, "client_cert needs relayd.tls_ca");
		return -1;
	}
	if (file_readable("CA file", ca, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "relayd.tls_ca: %s", why);
		return -1;
	}
	ERR_clear_error();
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1 ||
	    (names = SSL_load_client_CA_file(ca)) == NULL) {
		snprintf(err, errlen, "relayd.tls_ca %s: no usable CA "
			 "certificate (%s)", ca, tls_error());
		return -1;
	}
	SSL_CTX_set_client_CA_list(ctx, names);
	SSL_CTX_set_verify_depth(ctx, VERIFY_DEPTH);
	if (mode == CLIENT_CERT_REQUIRE)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER |
		    SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_accept);
	return 0;
}

/* One certificate and key under the policy, with the listener's
 * client-certificate settings. */
static SSL_CTX *
ctx_build(const char *cert, const char *key, const struct listener *ls,
	  const char *ca, char *err, size_t errlen)
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
	if (ls->client_cert != CLIENT_CERT_NONE &&
	    ctx_client_verify(ctx, ls->client_cert, ca, err, errlen) != 0)
		goto fail;
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/* RFC 6066 3: the name as the client sent it; case does not matter. */
static int
sni_match(const char *pattern, const char *name)
{
	const char *dot;

	if (pattern[0] != '*')
		return strcasecmp(pattern, name) == 0;
	/* "*.example.test": exactly one label before ".example.test". */
	if ((dot = strchr(name, '.')) == NULL || dot == name)
		return 0;
	return strcasecmp(pattern + 1, dot) == 0;
}

static int
sni_select(SSL *ssl, int *alert, void *arg)
{
	const struct sni_table *t = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
	size_t i;
	int pass;

	(void)alert;
	if (name == NULL || t == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	/* Exact names first, then wildcards, each in the order given. */
	for (pass = 0; pass < 2; pass++)
		for (i = 0; i < t->n; i++) {
			if ((t->e[i].name[0] == '*') != pass ||
			    !sni_match(t->e[i].name, name))
				continue;
			if (SSL_set_SSL_CTX(ssl, t->e[i].ctx) == NULL)
				return SSL_TLSEXT_ERR_ALERT_FATAL;
			return SSL_TLSEXT_ERR_OK;
		}
	/* Not ours: the listener's certificate, and no acknowledgement. */
	return SSL_TLSEXT_ERR_NOACK;
}

static void
sni_table_free(struct sni_table *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->n; i++) {
		SSL_CTX_free(t->e[i].ctx);
		free(t->e[i].name);
	}
	free(t->e);
	free(t);
}

/* ex_data free function: the table dies with the listener's context. */
static void
sni_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
	    long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	sni_table_free(ptr);
}

/* A host name, or "*." and a domain of at least two labels. */
static int
sni_name_valid(const char *name)
{
	const char *p = name;
	size_t label = 0, labels = 1;

	if (p[0] == '*') {
		if (p[1] != '.')
			return 0;
		p += 2;
	}
	if (*p == '\0' || strlen(p) > 253)
		return 0;
	for (; *p != '\0'; p++) {
		if (*p == '.') {
			if (label == 0 || p[-1] == '-')
				return 0;
			label = 0;
			labels++;
		} else if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' &&
		    *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    (*p == '-' && label > 0)) {
			if (++label > 63)
				return 0;
		} else
			return 0;
	}
	if (label == 0 || p[-1] == '-')
		return 0;
	return name[0] != '*' || labels >= 2;
}

/* "NAME CERTFILE KEYFILE" split in place into three words. */
static const char *
sni_split(char *copy, char **name, char **cert, char **key)
{
	char *save = NULL;

	*name = strtok_r(copy, " \t", &save);
	*cert = *name ? strtok_r(NULL, " \t", &save) : NULL;
	*key = *cert ? strtok_r(NULL, " \t", &save) : NULL;
	if (*key == NULL || strtok_r(NULL, " \t", &save) != NULL)
		return "expected \"NAME CERTFILE KEYFILE\"";
	if (!sni_name_valid(*name))
		return "NAME is a host name or *.domain";
	return NULL;
}

int
tls_conf_check(const struct relayd_conf *c, char *err, size_t errlen)
{
	char a[1024], b[1024], *n1, *n2, *cert, *key;
	const char *why;
	size_t i, j;

	for (i = 0; i < c->tls_sni.n; i++) {
		snprintf(a, sizeof(a), "%s", c->tls_sni.v[i]);
		why = strlen(c->tls_sni.v[i]) >= sizeof(a) ? "too long" :
		    sni_split(a, &n1, &cert, &key);
		for (j = 0; why == NULL && j < i; j++) {
			snprintf(b, sizeof(b), "%s", c->tls_sni.v[j]);
			if (sni_split(b, &n2, &cert, &key) == NULL &&
			    strcasecmp(n1, n2) == 0)
				why = "NAME listed twice";
		}
		if (why != NULL) {
			snprintf(err, errlen, "relayd.tls_sni \"%s\": %s",
				 c->tls_sni.v[i], why);
			return -1;
		}
	}
	return 0;
}

/* The relayd.tls_sni contexts for one listener. */
static struct sni_table *
sni_table_build(const struct relayd_conf *c, const struct listener *ls,
		char *err, size_t errlen)
{
	struct sni_table *t;
	char copy[1024], why[768], *name, *cert, *key;
	size_t i;

	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->e = calloc(c->tls_sni.n, sizeof(*t->e))) == NULL) {
		free(t);
		snprintf(err, errlen, "relayd.tls_sni: out of memory");
		return NULL;
	}
	for (i = 0; i < c->tls_sni.n; i++) {
		snprintf(copy, sizeof(copy), "%s", c->tls_sni.v[i]);
		if (sni_split(copy, &name, &cert, &key) != NULL) {
			snprintf(err, errlen, "relayd.tls_sni \"%s\": bad "
				 "entry", c->tls_sni.v[i]);
			goto fail;
		}
		if ((t->e[i].ctx = ctx_build(cert, key, ls, c->tls_ca, why,
					     sizeof(why))) == NULL) {
			if (strncmp(why, "relayd.", 7) == 0)
				snprintf(err, errlen, "%s", why);
			else
				snprintf(err, errlen, "relayd.tls_sni \"%s\": "
					 "%s", c->tls_sni.v[i], why);
			goto fail;
		}
		t->n++;
		if ((t->e[i].name = strdup(name)) == NULL) {
			snprintf(err, errlen, "relayd.tls_sni: out of memory");
			goto fail;
		}
	}
	return t;
fail:
	sni_table_free(t);
	return NULL;
}

SSL_CTX *
tls_server_ctx(const struct relayd_conf *c, const struct listener *ls,
	       char *err, size_t errlen)
{
	SSL_CTX *ctx;
	struct sni_table *t;
	char why[768];

	if ((ctx = ctx_build(ls->cert, ls->key, ls, c->tls_ca, why,
			     sizeof(why))) == NULL) {
		if (strncmp(why, "relayd.", 7) == 0)
			snprintf(err, errlen, "%s", why);
		else
			snprintf(err, errlen, "relayd.listen \"%s\": %s",
				 ls->spec, why);
		return NULL;
	}
	if (c->tls_sni.n == 0)
		return ctx;
	if (sni_index < 0)
		sni_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL,
						     sni_ex_free);
	if (sni_index < 0 || (t = sni_table_build(c, ls, err, errlen)) ==
	    NULL) {
		if (sni_index < 0)
			snprintf(err, errlen, "TLS: %s", tls_error());
		SSL_CTX_free(ctx);
		return NULL;
	}
	if (SSL_CTX_set_ex_data(ctx, sni_index, t) != 1) {
		snprintf(err, errlen, "TLS: %s", tls_error());
		sni_table_free(t);
		SSL_CTX_free(ctx);
		return NULL;
	}
	SSL_CTX_set_tlsext_servername_callback(ctx, sni_select);
	SSL_CTX_set_tlsext_servername_arg(ctx, t);
	return ctx;
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

/* A DN as RFC 2253 text: control and non-ASCII octets come out as
 * \\XX escapes, so the result is printable ASCII. */
static void
name_text(X509_NAME *name, char *buf, size_t len)
{
	BIO *bio = BIO_new(BIO_s_mem());
	int n = 0;

	buf[0] = '\0';
	if (bio == NULL)
		return;
	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) >= 0)
		n = BIO_read(bio, buf, (int)len - 1);
	buf[n > 0 ? n : 0] = '\0';
	BIO_free(bio);
}

/* The client's certificate after the handshake. */
struct tls_client {
	char subject[512];		/* RFC 2253, printable ASCII */
	char issuer[512];
	char fingerprint[65];		/* SHA-256 of the DER, lower hex */
	int verified;			/* chains to relayd.tls_ca */
	const char *why;		/* "ok" or the verification error */
};

static int
client_cert(SSL *ssl, struct tls_client *cl)
{
	X509 *x = SSL_get0_peer_certificate(ssl);
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0, i;
	long v;

	memset(cl, 0, sizeof(*cl));
	if (x == NULL)
		return 0;
	name_text(X509_get_subject_name(x), cl->subject, sizeof(cl->subject));
	name_text(X509_get_issuer_name(x), cl->issuer, sizeof(cl->issuer));
	if (X509_digest(x, EVP_sha256(), md, &mdlen) != 1)
		mdlen = 0;
	for (i = 0; i < mdlen && 2 * i + 2 < sizeof(cl->fingerprint); i++)
		snprintf(cl->fingerprint + 2 * i, 3, "%02x", md[i]);
	v = SSL_get_verify_result(ssl);
	cl->verified = v == X509_V_OK;
	cl->why = cl->verified ? "ok" : X509_verify_cert_error_string(v);
	return 1;
}

void
tls_client_record(SSL *ssl, struct gh_conn *c)
{
	struct tls_client cl;
	char msg[700];

	if (!client_cert(ssl, &cl))
		return;
	gh_note_set(c->notes, "tls.client_subject", cl.subject);
	gh_note_set(c->notes, "tls.client_issuer", cl.issuer);
	gh_note_set(c->notes, "tls.client_fingerprint", cl.fingerprint);
	gh_note_set(c->notes, "tls.client_verified", cl.verified ? "yes" :
		    "no");
	snprintf(msg, sizeof(msg), "client certificate %s: %s", cl.subject,
		 cl.why);
	gh_results_add(c->results, "tls", cl.verified ? GH_PASS : GH_FAIL,
		       msg);
	gh_log(GH_LOG_INFO, "%s TLS client certificate \"%s\" issuer \"%s\" "
	       "sha256 %s: %s", c->id, cl.subject, cl.issuer, cl.fingerprint,
	       cl.verified ? "verified" : cl.why);
}

const char *
tls_verify_error(SSL *ssl)
{
	long v;

	if (ssl == NULL || (v = SSL_get_verify_result(ssl)) == X509_V_OK)
		return NULL;
	return X509_verify_cert_error_string(v);
}

/* Text for a header comment: RFC 5322 3.2.2 quotes ( ) and \\. */
static void
comment_text(char *dst, size_t n, const char *s)
{
	size_t o = 0;

	for (; *s != '\0' && o + 3 < n; s++) {
		if (*s == '(' || *s == ')' || *s == '\\' || *s == '"')
			dst[o++] = '\\';
		dst[o++] = *s >= ' ' && *s < 0x7f ? *s : '?';
	}
	dst[o] = '\0';
}

void
tls_received(const struct gh_notes *n, char *buf, size_t len)
{
	const char *version = gh_note_get(n, "tls.version");
	const char *cipher = gh_note_get(n, "tls.cipher");
	const char *subject = gh_note_get(n, "tls.client_subject");
	const char *verified = gh_note_get(n, "tls.client_verified");
	const char *sp;
	char name[128], subj[1100];
	size_t o;

	buf[0] = '\0';
	if (version == NULL || cipher == NULL)
		return;
	/* tls.cipher is "NAME BITS" (tls_describe). */
	sp = strrchr(cipher, ' ');
	snprintf(name, sizeof(name), "%.*s", sp != NULL ? (int)(sp - cipher) :
		 (int)strlen(cipher), cipher);
	snprintf(buf, len, "\r\n\t(using %s with cipher %s (%s bits))",
		 version, name, sp != NULL ? sp + 1 : "?");
	if (subject == NULL)
		return;
	comment_text(subj, sizeof(subj), subject);
	o = strlen(buf);
	snprintf(buf + o, len - o, "\r\n\t(client certificate \"%s\" %s)",
		 subj, verified != NULL && strcmp(verified, "yes") == 0 ?
		 "verified" : "not verified");
}
