/*
 * auth_file.c - the SMTP AUTH backend of hashed passwords in a file.
 *
 * relayd runs the `auth` hook once a client has given an identity and a
 * password (AUTH PLAIN or LOGIN, RFC 4954): call->arg is the mechanism,
 * call->user and call->password what the client sent; for CRAM-MD5
 * (RFC 2195) call->challenge and call->digest instead.  This plugin
 * answers OK when the user is in its file and the secret there verifies
 * what the client sent, DENY when the user is there and it does not,
 * and CONT for a user it does not know (or cannot check for this
 * mechanism), so that another backend later in the chain may.  A chain
 * that ends in CONT is a failure (535).
 *
 * The file holds "user:secret[:secret]" lines.  A secret is either a
 * crypt(3) hash that libxcrypt calls strong (crypt_checksalt: yescrypt
 * $y$, SHA-512 $6$, bcrypt $2b$, ...) or Dovecot's "{CRAM-MD5}" scheme:
 * the HMAC-MD5 inner and outer MD5 states after the key blocks, which
 * verify a CRAM-MD5 digest without the password (see md5.h) and also a
 * PLAIN/LOGIN password (recomputed and compared).  At most one of
 * each.  Anything else, plain text above all, stops start-up with the
 * file and the line.  The file is read at start-up and on reload
 * (SIGHUP), by each worker.  When some user has a {CRAM-MD5} secret,
 * init sets GH_AUTH_CRAM_MD5 so that relayd offers CRAM-MD5.
 *
 * Hashing is deliberately slow and runs on the worker's loop: a check
 * takes milliseconds, which relayd.auth_max_failures bounds per client.
 * A PLAIN/LOGIN check costs one crypt(3) whenever the file has a crypt
 * hash (an unknown user's and a {CRAM-MD5}-only user's too, against the
 * file's first hash), and a CRAM-MD5 check one HMAC whatever the user,
 * so that the time taken does not say which users exist.
 */
#include "config.h"

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filter.h"
#include "md5.h"

#define LINE_MAX_LEN 1024

struct auth_file_conf {
	const char *file;
};

static const struct gh_directive auth_file_directives[] = {
	{ "file", GH_DT_STRING, offsetof(struct auth_file_conf, file), "\"\"",
	  0, 0, NULL, "\"user:secret[:secret]\" lines, crypt(3) hashes and "
	  "{CRAM-MD5} secrets only (empty: no users, every AUTH fails)" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

#define CRAM_PREFIX "{CRAM-MD5}"

struct user {
	const char *name;
	const char *hash;	/* crypt(3), or NULL */
	unsigned char cram[GH_CRAM_MD5_SECRET];	/* if has_cram */
	int has_cram;
	unsigned line;
};

struct users {
	struct gh_pool *pool;
	struct user *v;
	size_t n, cap;
	size_t ncram;		/* users with a {CRAM-MD5} secret */
	const char *dummy;	/* the first crypt hash: for timing */
	struct crypt_data cd;	/* large: one per worker, not per call */
};

static int
user_cmp(const void *a, const void *b)
{
	return strcmp(((const struct user *)a)->name,
		      ((const struct user *)b)->name);
}

/* A name a log line can hold as it is: printable, no space or colon. */
static int
name_valid(const char *s)
{
	const unsigned char *p;

	for (p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p <= ' ' || *p == 0x7f || *p == ':')
			return 0;
	return s[0] != '\0';
}

static int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "{CRAM-MD5}" and 64 hex digits (doveadm pw -s CRAM-MD5); -1 if not. */
static int
cram_parse(const char *f, unsigned char out[GH_CRAM_MD5_SECRET])
{
	size_t i;
	int hi, lo;

	if (strncasecmp(f, CRAM_PREFIX, strlen(CRAM_PREFIX)) != 0)
		return -1;
	f += strlen(CRAM_PREFIX);
	if (strlen(f) != 2 * GH_CRAM_MD5_SECRET)
		return -1;
	for (i = 0; i < GH_CRAM_MD5_SECRET; i++) {
		if ((hi = hex_value((unsigned char)f[2 * i])) < 0 ||
		    (lo = hex_value((unsigned char)f[2 * i + 1])) < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

/* One secret field into u; why it cannot be used, or NULL. */
static const char *
secret_check(const char *f, struct user *u)
{
	if (f[0] == '\0')
		return "an empty secret";
	if (f[0] == '{') {
		if (u->has_cram)
			return "two {CRAM-MD5} secrets";
		if (cram_parse(f, u->cram) != 0)
			return "only the {CRAM-MD5} scheme is taken, with "
			    "64 hex digits (doveadm pw -s CRAM-MD5); "
			    "plain-text passwords are refused";
		u->has_cram = 1;
		return NULL;
	}
	if (u->hash != NULL)
		return "two crypt(3) hashes";
	/* Plain text, DES and MD5 crypt all fail here. */
	if (f[0] != '$' || crypt_checksalt(f) != CRYPT_SALT_OK)
		return "not a strong crypt(3) hash (yescrypt $y$ or "
		    "SHA-512 $6$ expected) nor a {CRAM-MD5} secret; "
		    "plain-text passwords are refused";
	u->hash = f;
	return NULL;
}

/* The line "user:secret[:secret]" into u (pointing into line); why it
 * cannot be used, or NULL. */
static const char *
line_check(char *line, struct user *u)
{
	char *colon = strchr(line, ':'), *f, *next;
	const char *why;
	int n = 0;

	memset(u, 0, sizeof(*u));
	if (colon == NULL)
		return "expected user:hash";
	*colon = '\0';
	u->name = line;
	if (!name_valid(line))
		return "the user name is empty or has spaces or control "
		    "characters";
	for (f = colon + 1; f != NULL; f = next) {
		if ((next = strchr(f, ':')) != NULL)
			*next++ = '\0';
		if (++n > 2)
			return "expected user:hash, user:{CRAM-MD5}hex or "
			    "user:hash:{CRAM-MD5}hex";
		if ((why = secret_check(f, u)) != NULL)
			return why;
	}
	return NULL;
}

static int
user_add(struct users *u, const struct user *nu)
{
	struct user *e;

	if (u->n == u->cap) {
		size_t cap = u->cap ? u->cap * 2 : 64;
		struct user *v = calloc(cap, sizeof(*v));

		if (v == NULL)
			return -1;
		if (u->n > 0) {
			memcpy(v, u->v, u->n * sizeof(*v));
			explicit_bzero(u->v, u->n * sizeof(*v));
		}
		free(u->v);
		u->v = v;
		u->cap = cap;
	}
	e = &u->v[u->n++];
	*e = *nu;
	e->name = gh_pstrdup(u->pool, nu->name);
	if (nu->hash != NULL) {
		e->hash = gh_pstrdup(u->pool, nu->hash);
		if (u->dummy == NULL)
			u->dummy = e->hash;
	}
	if (e->has_cram)
		u->ncram++;
	return 0;
}

static int
file_read(struct users *u, const char *path, char *err, size_t errlen)
{
	char line[LINE_MAX_LEN + 2];
	struct user nu;
	const char *why;
	unsigned lineno = 0;
	size_t len;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "auth_file: %s: %s", path,
			 strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		lineno++;
		len = strlen(line);
		if (len > 0 && line[len - 1] != '\n' && !feof(fp)) {
			why = "line too long";
			goto bad;
		}
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		why = line_check(line, &nu);
		nu.line = lineno;
		if (why == NULL && user_add(u, &nu) != 0)
			why = "out of memory";
		explicit_bzero(&nu, sizeof(nu));
		if (why != NULL)
			goto bad;
	}
	explicit_bzero(line, sizeof(line));
	fclose(fp);
	return 0;
bad:
	explicit_bzero(line, sizeof(line));
	snprintf(err, errlen, "auth_file: %s:%u: %s", path, lineno, why);
	fclose(fp);
	return -1;
}

static void
users_free(struct users *u)
{
	if (u == NULL)
		return;
	explicit_bzero(&u->cd, sizeof(u->cd));
	if (u->v != NULL)
		explicit_bzero(u->v, u->cap * sizeof(*u->v));
	free(u->v);
	gh_pool_destroy(u->pool);
	free(u);
}

static int
auth_file_init(struct gh_plugin *p, char *err, size_t errlen)
{
	const struct auth_file_conf *cf = p->conf;
	struct users *u = calloc(1, sizeof(*u));
	size_t i;

	if (u == NULL) {
		snprintf(err, errlen, "auth_file: out of memory");
		return -1;
	}
	u->pool = gh_pool_create();
	p->data = u;
	if (cf->file[0] == '\0') {
		gh_log(GH_LOG_WARN, "auth_file: no file set: no user can "
		       "authenticate");
		return 0;
	}
	if (file_read(u, cf->file, err, errlen) != 0)
		goto fail;
	if (u->n > 1)
		qsort(u->v, u->n, sizeof(*u->v), user_cmp);
	for (i = 1; i < u->n; i++)
		if (strcmp(u->v[i - 1].name, u->v[i].name) == 0) {
			snprintf(err, errlen, "auth_file: %s:%u: user \"%s\" "
				 "also on line %u", cf->file,
				 u->v[i].line > u->v[i - 1].line ?
				 u->v[i].line : u->v[i - 1].line, u->v[i].name,
				 u->v[i].line > u->v[i - 1].line ?
				 u->v[i - 1].line : u->v[i].line);
			goto fail;
		}
	if (u->ncram > 0)
		p->auth_mechs |= GH_AUTH_CRAM_MD5;
	gh_log(GH_LOG_INFO, "auth_file: %zu users from %s, %zu with a "
	       "{CRAM-MD5} secret%s", u->n, cf->file, u->ncram,
	       u->ncram > 0 ? ": CRAM-MD5 offered" : "");
	return 0;
fail:
	/* fini runs only for plugins whose init succeeded. */
	users_free(u);
	p->data = NULL;
	return -1;
}

static void
auth_file_fini(struct gh_plugin *p)
{
	users_free(p->data);
	p->data = NULL;
}

/* Equal octets, in a time that does not depend on where they differ. */
static int
same_mem(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;
	unsigned char d = 0;
	size_t i;

	for (i = 0; i < n; i++)
		d |= (unsigned char)(x[i] ^ y[i]);
	return d == 0;
}

/* Equal strings, in a time that depends on the length only. */
static int
same(const char *a, const char *b)
{
	size_t n = strlen(a);

	return n == strlen(b) && same_mem(a, b, n);
}

static int
password_ok(struct users *u, const char *password, const char *hash)
{
	const char *out;

	memset(&u->cd, 0, sizeof(u->cd));
	out = crypt_rn(password, hash, &u->cd, sizeof(u->cd));
	return out != NULL && out[0] == '$' && same(out, hash);
}

/* PLAIN/LOGIN against a {CRAM-MD5} secret: the states this password
 * gives, compared with the stored ones. */
static int
password_cram_ok(const char *password, const unsigned char *cram)
{
	unsigned char mine[GH_CRAM_MD5_SECRET];
	struct gh_hmac_md5 h;
	int ok;

	gh_hmac_md5_init(&h, password, strlen(password));
	gh_hmac_md5_export(&h, mine);
	gh_hmac_md5_wipe(&h);
	ok = same_mem(mine, cram, sizeof(mine));
	explicit_bzero(mine, sizeof(mine));
	return ok;
}

/* RFC 2195 2: the client's digest must be HMAC-MD5(password,
 * challenge), which the stored states give without the password. */
static int
digest_ok(const unsigned char *cram, const char *challenge,
	  const char *digest)
{
	unsigned char d[GH_MD5_LEN];
	char hex[2 * GH_MD5_LEN + 1];
	struct gh_hmac_md5 h;
	size_t i;
	int ok;

	gh_hmac_md5_import(&h, cram);
	gh_hmac_md5_update(&h, challenge, strlen(challenge));
	gh_hmac_md5_final(&h, d);
	gh_hmac_md5_wipe(&h);
	for (i = 0; i < GH_MD5_LEN; i++)
		snprintf(hex + 2 * i, 3, "%02x", d[i]);
	/* relayd gives the digest lower-cased, 32 digits. */
	ok = same(hex, digest);
	explicit_bzero(d, sizeof(d));
	explicit_bzero(hex, sizeof(hex));
	return ok;
}

static const unsigned char zero_secret[GH_CRAM_MD5_SECRET];

static enum gh_verdict
auth_cram(struct gh_call *c, const struct user *found)
{
	int ok;

	/* One HMAC whatever the user: the time says nothing. */
	ok = digest_ok(found && found->has_cram ? found->cram : zero_secret,
		       c->challenge, c->digest);
	if (found == NULL) {
		gh_result(c, GH_SKIP, "unknown user");
		return GH_CONT;
	}
	if (!found->has_cram) {
		gh_result(c, GH_SKIP, "no {CRAM-MD5} secret for this user");
		return GH_CONT;
	}
	if (!ok) {
		gh_result(c, GH_FAIL, "wrong CRAM-MD5 digest");
		return GH_DENY;
	}
	gh_result(c, GH_PASS, "CRAM-MD5");
	return GH_OK;
}

static enum gh_verdict
auth_file_auth(struct gh_call *c)
{
	struct users *u = c->plugin->data;
	struct user key, *found;
	int ok;

	if (c->user == NULL || u == NULL || u->n == 0)
		return GH_CONT;
	key.name = c->user;
	found = bsearch(&key, u->v, u->n, sizeof(*u->v), user_cmp);
	if (c->password == NULL) {
		if (c->challenge == NULL || c->digest == NULL)
			return GH_CONT;
		return auth_cram(c, found);
	}
	if (found != NULL && found->hash != NULL) {
		ok = password_ok(u, c->password, found->hash);
	} else {
		/* Spend the same time as for a known user. */
		if (u->dummy != NULL)
			(void)password_ok(u, c->password, u->dummy);
		/* Every line has a secret: without a hash, a {CRAM-MD5}. */
		ok = password_cram_ok(c->password, found != NULL ?
				      found->cram : zero_secret);
	}
	if (found == NULL) {
		gh_result(c, GH_SKIP, "unknown user");
		return GH_CONT;
	}
	if (!ok) {
		gh_result(c, GH_FAIL, "wrong password");
		return GH_DENY;
	}
	gh_result(c, GH_PASS, "%s", c->arg != NULL ? c->arg : "auth");
	return GH_OK;
}

static const struct gh_hook_entry auth_file_hooks[] = {
	{ GH_HOOK_AUTH, auth_file_auth },
	{ 0, NULL }
};

const struct gh_module gh_module_auth_file = {
	.abi = GH_ABI_VERSION,
	.name = "auth_file",
	.description = "SMTP AUTH users from a file of crypt(3) hashes",
	.doc =
"Checks the identity and password a client gives with AUTH PLAIN or\n"
"AUTH LOGIN, and the digest of AUTH CRAM-MD5 (RFC 4954, RFC 2195),\n"
"against a file of\n"
"\n"
"    user:secret\n"
"    user:secret:secret\n"
"\n"
"lines.  A secret is one of\n"
"\n"
"  - a crypt(3) hash that libxcrypt calls strong: yescrypt ($y$,\n"
"    Debian's default) or SHA-512 ($6$), also bcrypt ($2b$) and the\n"
"    like.  Make one with\n"
"        mkpasswd -m yescrypt        (Debian package whois)\n"
"        openssl passwd -6\n"
"    It verifies PLAIN and LOGIN only.\n"
"\n"
"  - Dovecot's {CRAM-MD5} scheme: \"{CRAM-MD5}\" and 64 hex digits, the\n"
"    HMAC-MD5 inner and outer MD5 states after the key blocks (what\n"
"        doveadm pw -s CRAM-MD5      (Debian package dovecot-core)\n"
"    prints).  It verifies CRAM-MD5, and PLAIN and LOGIN too (the states\n"
"    are recomputed from the password given and compared).\n"
"\n"
"A user has at most one of each; with both, PLAIN and LOGIN use the\n"
"crypt(3) hash.  For example\n"
"\n"
"    alice:$y$j9T$...\n"
"    bob:$6$...:{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b2...\n"
"    carol:{CRAM-MD5}5f0a...\n"
"\n"
"WARNING: a {CRAM-MD5} secret is not a one-way hash for CRAM-MD5.\n"
"Whoever reads it can answer any CRAM-MD5 challenge as that user\n"
"(though it does not give the password for PLAIN or LOGIN, nor for\n"
"other services).  Keep the file readable by relayd only, and give a\n"
"{CRAM-MD5} secret only to users whose clients need CRAM-MD5.\n"
"\n"
"Empty lines and lines starting with # are skipped.  A plain-text\n"
"password (also as Dovecot's {PLAIN}), another {SCHEME}, a DES or MD5\n"
"crypt hash, two secrets of one kind, a malformed line or a user listed\n"
"twice stops start-up (and relayd -t) with the file and the line.  The\n"
"file is read again on reload (SIGHUP).\n"
"\n"
"relayd offers AUTH only when a plugin is bound to the auth hook, and\n"
"only under TLS unless the listener says auth_plaintext=yes.  It offers\n"
"CRAM-MD5 besides PLAIN and LOGIN only when some user in the file has a\n"
"{CRAM-MD5} secret.  Some clients (Python's smtplib, some mail user\n"
"agents) then choose CRAM-MD5 for every user: a user with a crypt(3)\n"
"hash only fails it, so give every user a {CRAM-MD5} secret or none.\n"
"\n"
"Verdicts at the auth hook: OK (235 2.7.0, the client may relay) for a\n"
"known user whose secret verifies what the client sent; DENY (535\n"
"5.7.8) for a known user when it does not; CONT for a user not in the\n"
"file, or CRAM-MD5 for a user without a {CRAM-MD5} secret, so that a\n"
"later backend may know it (a chain that ends in CONT fails with 535).\n"
"The digest is compared in constant time.  An unknown user costs the\n"
"same hashing time as a known one.\n"
"\n"
"Example:\n"
"  plugins = [ \"auth_file\", \"relay\", \"smtp_forward\" ];\n"
"  auth_file = { file = \"/etc/gatehouse/users\"; };\n",
	.directives = auth_file_directives,
	.conf_size = sizeof(struct auth_file_conf),
	.hooks = auth_file_hooks,
	.init = auth_file_init,
	.fini = auth_file_fini,
	.edits = GH_EDITS_NONE,
};
