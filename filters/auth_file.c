/*
 * auth_file.c - the SMTP AUTH backend of hashed passwords in a file.
 *
 * relayd runs the `auth` hook once a client has given an identity and a
 * password (AUTH PLAIN or LOGIN, RFC 4954): call->arg is the mechanism,
 * call->user and call->password what the client sent.  This plugin
 * answers OK when the user is in its file and the password matches the
 * crypt(3) hash there, DENY when the user is there and the password is
 * wrong, and CONT for a user it does not know, so that another backend
 * later in the chain may.  A chain that ends in CONT is a failure (535).
 *
 * The file holds "user:hash" lines; the hash must be one crypt(3) calls
 * strong (libxcrypt's crypt_checksalt: yescrypt $y$, SHA-512 $6$,
 * bcrypt $2b$, ...).  Anything else, plain text above all, stops
 * start-up with the file and the line.  The file is read at start-up
 * and on reload (SIGHUP), by each worker.
 *
 * Hashing is deliberately slow and runs on the worker's loop: a check
 * takes milliseconds, which relayd.auth_max_failures bounds per client.
 * An unknown user is hashed too (against the file's first hash), so that
 * the time taken does not say which users exist.
 */
#include "config.h"

#include <crypt.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

#define LINE_MAX_LEN 1024

struct auth_file_conf {
	const char *file;
};

static const struct gh_directive auth_file_directives[] = {
	{ "file", GH_DT_STRING, offsetof(struct auth_file_conf, file), "\"\"",
	  0, 0, NULL, "\"user:hash\" lines, crypt(3) hashes only (empty: no "
	  "users, every AUTH fails)" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

struct user {
	const char *name;
	const char *hash;
	unsigned line;
};

struct users {
	struct gh_pool *pool;
	struct user *v;
	size_t n, cap;
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

/* Why the line "user:hash" cannot be used, or NULL. */
static const char *
line_check(char *line, char **hash)
{
	char *colon = strchr(line, ':');

	if (colon == NULL)
		return "expected user:hash";
	*colon = '\0';
	*hash = colon + 1;
	if (!name_valid(line))
		return "the user name is empty or has spaces or control "
		    "characters";
	if (strchr(*hash, ':') != NULL)
		return "expected user:hash (one colon)";
	/* Plain text, DES and MD5 crypt all fail here. */
	if ((*hash)[0] != '$' || crypt_checksalt(*hash) != CRYPT_SALT_OK)
		return "not a strong crypt(3) hash (yescrypt $y$ or "
		    "SHA-512 $6$ expected); plain-text passwords are refused";
	return NULL;
}

static int
user_add(struct users *u, const char *name, const char *hash, unsigned line)
{
	if (u->n == u->cap) {
		size_t cap = u->cap ? u->cap * 2 : 64;
		struct user *v = realloc(u->v, cap * sizeof(*v));

		if (v == NULL)
			return -1;
		u->v = v;
		u->cap = cap;
	}
	u->v[u->n].name = gh_pstrdup(u->pool, name);
	u->v[u->n].hash = gh_pstrdup(u->pool, hash);
	u->v[u->n].line = line;
	u->n++;
	return 0;
}

static int
file_read(struct users *u, const char *path, char *err, size_t errlen)
{
	char line[LINE_MAX_LEN + 2], *hash;
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
		if ((why = line_check(line, &hash)) != NULL)
			goto bad;
		if (user_add(u, line, hash, lineno) != 0) {
			why = "out of memory";
			goto bad;
		}
	}
	fclose(fp);
	return 0;
bad:
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

/* Equal strings, in a time that depends on the length only. */
static int
same(const char *a, const char *b)
{
	size_t n = strlen(a), i;
	unsigned char d = 0;

	if (n != strlen(b))
		return 0;
	for (i = 0; i < n; i++)
		d |= (unsigned char)(a[i] ^ b[i]);
	return d == 0;
}

static int
password_ok(struct users *u, const char *password, const char *hash)
{
	const char *out;

	memset(&u->cd, 0, sizeof(u->cd));
	out = crypt_rn(password, hash, &u->cd, sizeof(u->cd));
	return out != NULL && out[0] == '$' && same(out, hash);
}

static enum gh_verdict
auth_file_auth(struct gh_call *c)
{
	struct users *u = c->plugin->data;
	struct user key, *found;

	if (c->user == NULL || c->password == NULL || u->n == 0)
		return GH_CONT;
	key.name = c->user;
	found = bsearch(&key, u->v, u->n, sizeof(*u->v), user_cmp);
	if (found == NULL) {
		/* Spend the same time as for a known user. */
		(void)password_ok(u, c->password, u->v[0].hash);
		gh_result(c, GH_SKIP, "unknown user");
		return GH_CONT;
	}
	if (!password_ok(u, c->password, found->hash)) {
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
"AUTH LOGIN (RFC 4954) against a file of\n"
"\n"
"    user:hash\n"
"\n"
"lines, where hash is a crypt(3) hash that libxcrypt calls strong:\n"
"yescrypt ($y$, Debian's default) or SHA-512 ($6$), also bcrypt ($2b$)\n"
"and the like.  Make one with\n"
"\n"
"    mkpasswd -m yescrypt        (Debian package whois)\n"
"    openssl passwd -6\n"
"\n"
"Empty lines and lines starting with # are skipped.  A plain-text\n"
"password, a DES or MD5 hash, a malformed line or a user listed twice\n"
"stops start-up (and relayd -t) with the file and the line.  The file\n"
"is read again on reload (SIGHUP).\n"
"\n"
"Verdicts at the auth hook: OK (235 2.7.0, the client may relay) for a\n"
"known user with the right password; DENY (535 5.7.8) for a known\n"
"user with a wrong one; CONT for a user not in the file, so that a\n"
"later backend may know it (a chain that ends in CONT fails with 535).\n"
"An unknown user costs the same hashing time as a known one.\n"
"\n"
"relayd offers AUTH only when a plugin is bound to the auth hook, and\n"
"only under TLS unless the listener says auth_plaintext=yes.  CRAM-MD5\n"
"is not offered: it needs the password itself (or an equivalent) on\n"
"the server, and this file holds only one-way hashes.\n"
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
