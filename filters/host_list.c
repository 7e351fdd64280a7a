/*
 * host_list.c - accept recipients in the domains we receive mail for
 * (Haraka's rcpt_to.in_host_list).
 *
 * At rcpt: a recipient whose domain is listed (in `domains`, in the file
 * `domains_file`, or matched by one of `regexes`) is accepted with OK.
 * <postmaster> without a domain is always accepted (RFC 5321 4.5.1: it
 * must be, with no domain at all).  Any other recipient is refused with
 * 550 5.7.1, unless the client may relay (conn->relaying, see the relay
 * plugin): then the plugin says CONT and the core accepts it, as Haraka
 * does.
 *
 * Domains compare case-insensitively (RFC 5321 2.4), after dropping one
 * trailing dot.  The list is sorted once at init and searched with
 * bsearch, so a domains_file of many thousand lines costs nothing per
 * recipient.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filter.h"

#define DOMAIN_MAX 256		/* RFC 5321 4.5.3.1.2: 255 octets */

struct host_list_conf {
	struct gh_strlist domains;
	const char *domains_file;
	struct gh_strlist regexes;
};

static const struct gh_directive host_list_directives[] = {
	{ "domains", GH_DT_STRLIST, offsetof(struct host_list_conf, domains),
	  "[ ]", 0, 0, NULL, "domains we accept mail for (exact match)" },
	{ "domains_file", GH_DT_STRING,
	  offsetof(struct host_list_conf, domains_file), "\"\"", 0, 0, NULL,
	  "file of more domains, one a line, '#' starts a comment" },
	{ "regexes", GH_DT_STRLIST, offsetof(struct host_list_conf, regexes),
	  "[ ]", 0, 0, NULL,
	  "POSIX extended regexes matched case-insensitively against the "
	  "recipient's domain" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

struct host_list_data {
	char **domains;		/* lower case, sorted */
	size_t ndomains, cap;
	regex_t *regexes;
	size_t nregexes;
};

static void
lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* Copy domain d into buf, lower case, without one trailing dot. */
static int
domain_key(char *buf, size_t n, const char *d)
{
	size_t len = strlen(d);

	if (len > 0 && d[len - 1] == '.')
		len--;
	if (len == 0 || len >= n)
		return -1;
	memcpy(buf, d, len);
	buf[len] = '\0';
	lower(buf);
	return 0;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
domain_add(struct host_list_data *d, const char *name)
{
	char key[DOMAIN_MAX], **v;

	if (domain_key(key, sizeof(key), name) != 0 || !gh_domain_valid(key))
		return -1;
	if (d->ndomains == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 16;
		if ((v = realloc(d->domains, d->cap * sizeof(*v))) == NULL)
			return -1;
		d->domains = v;
	}
	if ((d->domains[d->ndomains] = strdup(key)) == NULL)
		return -1;
	d->ndomains++;
	return 0;
}

/* Read domains_file: one domain a line; '#' to the end of a line and
 * white space around a name are ignored. */
static int
file_load(struct host_list_data *d, const char *plugin, const char *path,
	  char *err, size_t errlen)
{
	char line[1024], *p, *end;
	unsigned lineno = 0;
	FILE *fp;

	if ((fp = fopen(path, "r")) == NULL) {
		snprintf(err, errlen, "%s: domains_file \"%s\": %s", plugin,
			 path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), fp) != NULL) {
		lineno++;
		if ((p = strchr(line, '#')) != NULL)
			*p = '\0';
		for (p = line; isspace((unsigned char)*p); p++)
			;
		for (end = p + strlen(p); end > p &&
		    isspace((unsigned char)end[-1]); end--)
			;
		*end = '\0';
		if (*p == '\0')
			continue;
		if (domain_add(d, p) != 0) {
			snprintf(err, errlen, "%s: %s:%u: \"%s\" is not a "
				 "domain name", plugin, path, lineno, p);
			fclose(fp);
			return -1;
		}
	}
	if (ferror(fp)) {
		snprintf(err, errlen, "%s: domains_file \"%s\": %s", plugin,
			 path, strerror(errno));
		fclose(fp);
		return -1;
	}
	fclose(fp);
	return 0;
}

static int
regexes_compile(struct host_list_data *d, const char *plugin,
		const struct gh_strlist *l, char *err, size_t errlen)
{
	char why[256];
	size_t i;
	int rc;

	if (l->n == 0)
		return 0;
	if ((d->regexes = calloc(l->n, sizeof(*d->regexes))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", plugin);
		return -1;
	}
	for (i = 0; i < l->n; i++) {
		rc = regcomp(&d->regexes[i], l->v[i],
			     REG_EXTENDED | REG_ICASE | REG_NOSUB);
		if (rc != 0) {
			regerror(rc, &d->regexes[i], why, sizeof(why));
			snprintf(err, errlen, "%s: regexes: bad regex \"%s\": "
				 "%s", plugin, l->v[i], why);
			return -1;
		}
		d->nregexes++;
	}
	return 0;
}

static void
host_list_fini(struct gh_plugin *p)
{
	struct host_list_data *d = p->data;
	size_t i;

	if (d == NULL)
		return;
	for (i = 0; i < d->ndomains; i++)
		free(d->domains[i]);
	free(d->domains);
	for (i = 0; i < d->nregexes; i++)
		regfree(&d->regexes[i]);
	free(d->regexes);
	free(d);
	p->data = NULL;
}

static int
host_list_init(struct gh_plugin *p, char *err, size_t errlen)
{
	const struct host_list_conf *cf = p->conf;
	struct host_list_data *d = calloc(1, sizeof(*d));
	size_t i;

	if ((p->data = d) == NULL) {
		snprintf(err, errlen, "%s: out of memory", p->name);
		return -1;
	}
	for (i = 0; i < cf->domains.n; i++) {
		if (domain_add(d, cf->domains.v[i]) != 0) {
			snprintf(err, errlen, "%s: domains: \"%s\" is not a "
				 "domain name", p->name, cf->domains.v[i]);
			return -1;
		}
	}
	if (cf->domains_file[0] != '\0' &&
	    file_load(d, p->name, cf->domains_file, err, errlen) != 0)
		return -1;
	if (regexes_compile(d, p->name, &cf->regexes, err, errlen) != 0)
		return -1;
	if (d->ndomains > 0)
		qsort(d->domains, d->ndomains, sizeof(*d->domains), cmp_str);
	return 0;
}

/* Is domain ours?  Returns what matched, for the trace, or NULL. */
static const char *
host_list_match(const struct host_list_data *d,
		const struct host_list_conf *cf, const char *domain)
{
	char key[DOMAIN_MAX], *k = key;
	size_t i;

	if (domain_key(key, sizeof(key), domain) != 0)
		return NULL;
	if (d->ndomains > 0 && bsearch(&k, d->domains, d->ndomains,
	    sizeof(*d->domains), cmp_str) != NULL)
		return "list";
	for (i = 0; i < d->nregexes; i++)
		if (regexec(&d->regexes[i], key, 0, NULL, 0) == 0)
			return cf->regexes.v[i];
	return NULL;
}

static enum gh_verdict
host_list_rcpt(struct gh_call *c)
{
	const struct gh_addr *a = &c->path->addr;
	const char *how;
	char clean[600];

	if (a->domain == NULL) {
		/* Only <postmaster> parses without a domain at RCPT. */
		gh_result(c, GH_PASS, "postmaster");
		return GH_OK;
	}
	if ((how = host_list_match(c->plugin->data, c->plugin->conf,
	    a->domain)) != NULL) {
		gh_result(c, GH_PASS, "%s in %s", a->domain, how);
		return GH_OK;
	}
	if (c->conn->relaying) {
		/* The core accepts a CONT from a relaying client. */
		gh_result(c, GH_SKIP, "%s not local, relaying", a->domain);
		return GH_CONT;
	}
	gh_sanitize(clean, sizeof(clean), a->mailbox, strlen(a->mailbox));
	gh_clog(c, GH_LOG_INFO, "refused <%s>: domain not in the host list",
		clean);
	gh_result(c, GH_FAIL, "%s not local", a->domain);
	gh_reply(c, 550, "5.7.1", "I cannot deliver mail for <%s>",
		 a->mailbox);
	return GH_DENY;
}

static const struct gh_hook_entry host_list_hooks[] = {
	{ GH_HOOK_RCPT, host_list_rcpt },
	{ 0, NULL }
};

const struct gh_module gh_module_host_list = {
	.abi = GH_ABI_VERSION,
	.name = "host_list",
	.description = "accept recipients in our own domains",
	.doc =
"Accepts the recipients of the domains this host receives mail for and\n"
"refuses the others (Haraka: rcpt_to.in_host_list).  At RCPT:\n"
"\n"
"  - the recipient's domain is in `domains` or in `domains_file`, or one\n"
"    of `regexes` matches it: OK, the recipient is accepted (no later rcpt\n"
"    plugin runs);\n"
"  - <postmaster> with no domain: OK (RFC 5321 4.5.1 requires it);\n"
"  - otherwise, from a client that may relay (see the relay plugin):\n"
"    CONT, and the core accepts the recipient;\n"
"  - otherwise: 550 5.7.1 I cannot deliver mail for <ADDRESS>.\n"
"\n"
"Domain names compare case-insensitively and exactly: \"example.test\"\n"
"does not cover \"sub.example.test\"; use a regex such as\n"
"\"(^|\\\\.)example\\\\.test$\" for that.  A trailing dot is ignored.  Regexes\n"
"are POSIX extended, case-insensitive, and see the domain alone (lower\n"
"case, no '@').  Address literals ([192.0.2.1]) only match a regex.\n"
"\n"
"domains_file holds one domain a line; '#' starts a comment, blank lines\n"
"are skipped.  It is read when relayd starts and on reload (SIGHUP).  An\n"
"unreadable file, a line that is not a domain name or a bad regex stops\n"
"start-up, and `relayd -t` names it.\n"
"\n"
"Put host_list after the plugins that refuse recipients for other\n"
"reasons, and after rewriting plugins such as rcpt_to_disposable.\n"
"\n"
"Example:\n"
"\n"
"    plugins = [ \"relay\", \"host_list\", \"smtp_forward\" ];\n"
"    host_list = {\n"
"      domains = [ \"example.test\", \"example.org\" ];\n"
"      domains_file = \"/usr/local/etc/gatehouse/domains\";\n"
"      regexes = [ \"(^|\\\\.)example\\\\.net$\" ];\n"
"    };\n",
	.directives = host_list_directives,
	.conf_size = sizeof(struct host_list_conf),
	.hooks = host_list_hooks,
	.init = host_list_init,
	.fini = host_list_fini,
	.edits = GH_EDITS_NONE,
};
