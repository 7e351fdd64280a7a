/*
 * helo_checks.c - what the client calls itself at HELO/EHLO (Haraka's
 * helo.checks).
 *
 * Seven checks, each "off", "check" (record the result only) or
 * "reject" (refuse the HELO with 550, or 450 for a DNS failure when
 * tempfail = "denysoft"):
 *
 *   bare_ip           an IP address without brackets (RFC 5321 4.1.3
 *                     requires an address literal: [192.0.2.1])
 *   valid_hostname    a fully qualified host name (RFC 5321 4.1.2, a dot,
 *                     a TLD that is not all digits) or a valid literal
 *   literal_mismatch  an address literal that is not the client's address
 *   ours              our own host name, one of our_names, or our address
 *                     as a literal, from a client that is not us
 *   dynamic           looks like an end-user address: contains the client's
 *                     IPv4 octets, or matches one of dynamic_patterns
 *   rdns_match        not the client's forward-confirmed rDNS name nor in
 *                     its parent domain (no rDNS: not checked)
 *   forward_dns       a host name with no A or AAAA record
 *
 * RFC 5321 4.1.4 forbids refusing a client because its HELO does not
 * match its address, hence literal_mismatch, dynamic, rdns_match and
 * forward_dns only record by default.  Checks run cheapest first; the
 * first failed "reject" check decides.  The results store gets one line
 * naming every failed check, and the note "helo_checks.failed" lists
 * them for later plugins.  Clients that may relay are not checked.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filter.h"

enum action { A_OFF, A_CHECK, A_REJECT };

enum check {
	C_BARE_IP, C_VALID, C_LITERAL, C_OURS, C_DYNAMIC, C_RDNS, C_FORWARD,
	C_COUNT
};

static const char *const check_names[C_COUNT] = {
	"bare_ip", "valid_hostname", "literal_mismatch", "ours", "dynamic",
	"rdns_match", "forward_dns"
};

struct helo_conf {
	int action[C_COUNT];
	struct gh_strlist dynamic_patterns;
	struct gh_strlist our_names;
	int tempfail;			/* 0 skip, 1 denysoft */
	int skip_relaying;
};

static const char *const action_choices[] = {
	"off", "check", "reject", NULL
};
static const char *const tempfail_choices[] = { "skip", "denysoft", NULL };

#define HC(f) offsetof(struct helo_conf, f)

static const struct gh_directive helo_directives[] = {
	{ "bare_ip", GH_DT_ENUM, HC(action) + C_BARE_IP * sizeof(int),
	  "\"reject\"", 0, 0, action_choices,
	  "an IP address without brackets (RFC 5321 4.1.3)" },
	{ "valid_hostname", GH_DT_ENUM, HC(action) + C_VALID * sizeof(int),
	  "\"reject\"", 0, 0, action_choices,
	  "not a fully qualified host name nor a valid address literal" },
	{ "literal_mismatch", GH_DT_ENUM,
	  HC(action) + C_LITERAL * sizeof(int), "\"check\"", 0, 0,
	  action_choices, "an address literal that is not the client's" },
	{ "ours", GH_DT_ENUM, HC(action) + C_OURS * sizeof(int),
	  "\"reject\"", 0, 0, action_choices,
	  "our host name, one of our_names, or our address" },
	{ "dynamic", GH_DT_ENUM, HC(action) + C_DYNAMIC * sizeof(int),
	  "\"check\"", 0, 0, action_choices,
	  "contains the client's IPv4 octets or matches dynamic_patterns" },
	{ "rdns_match", GH_DT_ENUM, HC(action) + C_RDNS * sizeof(int),
	  "\"check\"", 0, 0, action_choices,
	  "neither the client's rDNS name nor in its parent domain" },
	{ "forward_dns", GH_DT_ENUM, HC(action) + C_FORWARD * sizeof(int),
	  "\"check\"", 0, 0, action_choices,
	  "a host name without A or AAAA records" },
	{ "dynamic_patterns", GH_DT_STRLIST, HC(dynamic_patterns),
	  "[ \"(^|[.-])(dyn|dynamic|dhcp|dsl|adsl|ppp|pool|cable|dialup|"
	  "dial-?in)[0-9.-]\" ]", 0, 64, NULL,
	  "POSIX extended regexes, case-insensitive, for dynamic" },
	{ "our_names", GH_DT_STRLIST, HC(our_names), "[ ]", 0, 64, NULL,
	  "more names that are ours (the relayd hostname always is)" },
	{ "tempfail", GH_DT_ENUM, HC(tempfail), "\"skip\"", 0, 0,
	  tempfail_choices, "forward_dns when DNS fails: \"skip\" it or, "
	  "when it rejects, \"denysoft\" (450 4.7.1)" },
	{ "skip_relaying", GH_DT_BOOL, HC(skip_relaying), "true", 0, 0,
	  NULL, "do not check clients that may relay" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

struct helo_data {
	regex_t *re;
	size_t nre;
};

/* One HELO being checked. */
struct helo_run {
	struct gh_call *c;
	const char *helo;
	char failed[160];		/* "dynamic,rdns_match" */
	struct gh_dns_query *q4, *q6;
	int pending, found, tempfail;
	const char *why;
};

/* ------------------------------------------------------------------ */
/* The checks: each returns 1 when the HELO fails it, 0 when it passes,
 * -1 when it does not apply.                                          */

static int
literal_addr(const char *helo, unsigned char a[16], int *family)
{
	char buf[80];
	size_t len = strlen(helo);
	const char *in;

	if (len < 3 || helo[0] != '[' || helo[len - 1] != ']' ||
	    len - 2 >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%.*s", (int)(len - 2), helo + 1);
	/* RFC 5321 4.1.3: "IPv6:" tags an IPv6 literal. */
	if (strncasecmp(buf, "IPv6:", 5) == 0) {
		in = buf + 5;
		*family = AF_INET6;
	} else {
		in = buf;
		*family = AF_INET;
	}
	return inet_pton(*family, in, a) == 1 ? 0 : -1;
}

static int
is_literal(const char *helo)
{
	return helo[0] == '[';
}

/* The client's address, IPv4-mapped IPv6 as IPv4. */
static int
client_addr(const struct gh_conn *conn, unsigned char a[16], int *family)
{
	static const unsigned char mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};

	if (inet_pton(AF_INET, conn->remote_ip, a) == 1) {
		*family = AF_INET;
		return 0;
	}
	if (inet_pton(AF_INET6, conn->remote_ip, a) != 1)
		return -1;
	*family = AF_INET6;
	if (memcmp(a, mapped, 12) == 0) {
		memmove(a, a + 12, 4);
		*family = AF_INET;
	}
	return 0;
}

static int
check_bare_ip(struct gh_call *c, const char *helo)
{
	unsigned char a[16];

	(void)c;
	return inet_pton(AF_INET, helo, a) == 1 ||
	    inet_pton(AF_INET6, helo, a) == 1;
}

static int
check_valid(struct gh_call *c, const char *helo)
{
	unsigned char a[16];
	const char *tld;
	int family;

	(void)c;
	if (is_literal(helo))
		return literal_addr(helo, a, &family) != 0;
	if (!gh_domain_valid(helo) || (tld = strrchr(helo, '.')) == NULL)
		return 1;
	/* A TLD is never all digits (RFC 3696 2). */
	return strspn(tld + 1, "0123456789") == strlen(tld + 1);
}

static int
check_literal(struct gh_call *c, const char *helo)
{
	unsigned char a[16], b[16];
	int fa, fb;

	if (!is_literal(helo) || literal_addr(helo, a, &fa) != 0 ||
	    client_addr(c->conn, b, &fb) != 0)
		return -1;
	return fa != fb || memcmp(a, b, fa == AF_INET ? 4 : 16) != 0;
}

static int
check_ours(struct gh_call *c, const char *helo)
{
	const struct helo_conf *cf = c->plugin->conf;
	unsigned char a[16], l[16];
	int fa;
	size_t i;

	if (is_literal(helo)) {
		/* A client on our own address may use it. */
		if (literal_addr(helo, a, &fa) != 0 ||
		    strcmp(c->conn->remote_ip, c->conn->local_ip) == 0)
			return 0;
		/* [IPv6:::ffff:a.b.c.d] names the IPv4 address a.b.c.d. */
		if (fa == AF_INET6 && memcmp(a, "\0\0\0\0\0\0\0\0\0\0\377\377",
		    12) == 0) {
			memmove(a, a + 12, 4);
			fa = AF_INET;
		}
		if (inet_pton(fa, c->conn->local_ip, l) != 1)
			return 0;
		return memcmp(a, l, fa == AF_INET ? 4 : 16) == 0;
	}
	if (c->conn->hostname != NULL &&
	    strcasecmp(helo, c->conn->hostname) == 0)
		return 1;
	for (i = 0; i < cf->our_names.n; i++)
		if (strcasecmp(helo, cf->our_names.v[i]) == 0)
			return 1;
	return 0;
}

/* Does helo carry the client's IPv4 octets, in order or reversed, with
 * dots, dashes or nothing between them ("c-192-0-2-1", "1.2.0.192")? */
static int
has_client_octets(const struct gh_conn *conn, const char *helo)
{
	unsigned char a[16];
	char pat[4][40];
	int fa, i;

	if (client_addr(conn, a, &fa) != 0 || fa != AF_INET)
		return 0;
	snprintf(pat[0], sizeof(pat[0]), "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
	snprintf(pat[1], sizeof(pat[1]), "%u-%u-%u-%u", a[0], a[1], a[2], a[3]);
	snprintf(pat[2], sizeof(pat[2]), "%u.%u.%u.%u", a[3], a[2], a[1], a[0]);
	snprintf(pat[3], sizeof(pat[3]), "%u-%u-%u-%u", a[3], a[2], a[1], a[0]);
	for (i = 0; i < 4; i++)
		if (strcasestr(helo, pat[i]) != NULL)
			return 1;
	return 0;
}

static int
check_dynamic(struct gh_call *c, const char *helo)
{
	const struct helo_data *d = c->plugin->data;
	size_t i;

	if (is_literal(helo))
		return -1;
	if (has_client_octets(c->conn, helo))
		return 1;
	for (i = 0; i < d->nre; i++)
		if (regexec(&d->re[i], helo, 0, NULL, 0) == 0)
			return 1;
	return 0;
}

/* The name without its first label, when that leaves a domain with a
 * dot ("mail.example.test" -> "example.test"), else NULL. */
static const char *
parent(const char *name)
{
	const char *dot = strchr(name, '.');

	return dot != NULL && strchr(dot + 1, '.') != NULL ? dot + 1 : NULL;
}

static int
check_rdns(struct gh_call *c, const char *helo)
{
	const char *rdns = c->conn->rdns, *ph, *pr;

	if (is_literal(helo) || rdns == NULL)
		return -1;
	if (strcasecmp(helo, rdns) == 0)
		return 0;
	ph = parent(helo);
	pr = parent(rdns);
	if ((ph != NULL && pr != NULL && strcasecmp(ph, pr) == 0) ||
	    (pr != NULL && strcasecmp(helo, pr) == 0) ||
	    (ph != NULL && strcasecmp(ph, rdns) == 0))
		return 0;
	return 1;
}

static int (*const sync_checks[C_FORWARD])(struct gh_call *,
					   const char *) = {
	check_bare_ip, check_valid, check_literal, check_ours, check_dynamic,
	check_rdns
};

static const struct {
	const char *enh;
	const char *text;
} refusals[C_COUNT] = {
	{ "5.5.2", "an address literal needs brackets (RFC 5321 4.1.3)" },
	{ "5.5.2", "is not a valid host name" },
	{ "5.7.1", "is not your address" },
	{ "5.7.1", "is our name, not yours" },
	{ "5.7.1", "looks like a dynamic address" },
	{ "5.7.1", "does not match your reverse DNS" },
	{ "5.7.1", "has no address in the DNS" },
};

/* ------------------------------------------------------------------ */
/* Running them.                                                       */

static void
failed_add(struct helo_run *hr, enum check k)
{
	size_t len = strlen(hr->failed);

	snprintf(hr->failed + len, sizeof(hr->failed) - len, "%s%s",
		 len ? "," : "", check_names[k]);
}

static enum gh_verdict
refuse(struct helo_run *hr, enum check k)
{
	struct gh_call *c = hr->c;
	char shown[80];

	gh_sanitize(shown, sizeof(shown), hr->helo, strlen(hr->helo));
	gh_result(c, GH_FAIL, "%s: %s", hr->failed, shown);
	gh_note_set(c->conn->notes, "helo_checks.failed", hr->failed);
	gh_clog(c, GH_LOG_INFO, "refused HELO %s from %s: %s", shown,
		c->conn->remote_ip, check_names[k]);
	gh_reply(c, 550, refusals[k].enh, "HELO %s %s", shown,
		 refusals[k].text);
	return GH_DENY;
}

static enum gh_verdict
summary(struct helo_run *hr)
{
	struct gh_call *c = hr->c;

	gh_note_set(c->conn->notes, "helo_checks.failed", hr->failed);
	if (hr->failed[0] != '\0')
		gh_result(c, GH_FAIL, "%s (recorded only)", hr->failed);
	else
		gh_result(c, GH_PASS, "all checks passed");
	return GH_CONT;
}

static enum gh_verdict
forward_verdict(struct helo_run *hr)
{
	const struct helo_conf *cf = hr->c->plugin->conf;
	struct gh_call *c = hr->c;

	if (hr->found)
		return summary(hr);
	if (hr->tempfail) {
		gh_clog(c, GH_LOG_INFO, "forward DNS of HELO not known (%s)",
			hr->why);
		if (cf->action[C_FORWARD] != A_REJECT || cf->tempfail == 0)
			return summary(hr);
		gh_result(c, GH_ERR, "forward_dns: %s", hr->why);
		gh_reply(c, 450, "4.7.1", "Cannot check your HELO name (%s), "
			 "try again later", hr->why);
		return GH_DENYSOFT;
	}
	failed_add(hr, C_FORWARD);
	if (cf->action[C_FORWARD] == A_REJECT)
		return refuse(hr, C_FORWARD);
	return summary(hr);
}

static void
forward_answer(struct helo_run *hr, const struct gh_dns_answer *ans)
{
	if (ans->status == GH_DNS_OK)
		hr->found = 1;
	else if (ans->status == GH_DNS_TEMPFAIL) {
		hr->tempfail = 1;
		hr->why = ans->error ? ans->error : "temporary failure";
	}
	if (--hr->pending == 0)
		gh_resume(hr->c, forward_verdict(hr));
}

static void
a_answer(void *arg, const struct gh_dns_answer *ans)
{
	struct helo_run *hr = arg;

	hr->q4 = NULL;
	forward_answer(hr, ans);
}

static void
aaaa_answer(void *arg, const struct gh_dns_answer *ans)
{
	struct helo_run *hr = arg;

	hr->q6 = NULL;
	forward_answer(hr, ans);
}

static void
forward_cancel(void *arg)
{
	struct helo_run *hr = arg;

	gh_dns_cancel(hr->q4);
	gh_dns_cancel(hr->q6);
	hr->q4 = hr->q6 = NULL;
}

static enum gh_verdict
forward_start(struct helo_run *hr)
{
	struct event_base *base = hr->c->conn->base;

	hr->q4 = gh_dns_query(base, GH_DNS_A, hr->helo, a_answer, hr);
	hr->q6 = gh_dns_query(base, GH_DNS_AAAA, hr->helo, aaaa_answer, hr);
	hr->pending = (hr->q4 != NULL) + (hr->q6 != NULL);
	if (hr->q4 == NULL || hr->q6 == NULL) {
		hr->tempfail = 1;
		hr->why = "resolver unavailable";
	}
	if (hr->pending == 0)
		return forward_verdict(hr);
	gh_on_cancel(hr->c, forward_cancel, hr);
	return GH_AGAIN;
}

static enum gh_verdict
helo_hook(struct gh_call *c)
{
	const struct helo_conf *cf = c->plugin->conf;
	struct helo_run *hr;
	int k, r;

	if (cf->skip_relaying && c->conn->relaying) {
		gh_result(c, GH_SKIP, "client may relay");
		return GH_CONT;
	}
	hr = gh_palloc(c->conn->pool, sizeof(*hr));
	hr->c = c;
	hr->helo = gh_pstrdup(c->conn->pool, c->arg ? c->arg : "");
	for (k = 0; k < C_FORWARD; k++) {
		if (cf->action[k] == A_OFF ||
		    (r = sync_checks[k](c, hr->helo)) != 1)
			continue;
		failed_add(hr, (enum check)k);
		if (cf->action[k] == A_REJECT)
			return refuse(hr, (enum check)k);
	}
	/* Only a name that could exist is worth asking the DNS about. */
	if (cf->action[C_FORWARD] == A_OFF || is_literal(hr->helo) ||
	    check_valid(c, hr->helo) != 0)
		return summary(hr);
	return forward_start(hr);
}

/* ------------------------------------------------------------------ */

static int
helo_init(struct gh_plugin *p, char *err, size_t errlen)
{
	const struct helo_conf *cf = p->conf;
	struct helo_data *d = calloc(1, sizeof(*d));
	size_t i;
	int rc;

	if (d == NULL || (cf->dynamic_patterns.n > 0 &&
	    (d->re = calloc(cf->dynamic_patterns.n, sizeof(*d->re))) == NULL)) {
		free(d);
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->data = d;
	for (i = 0; i < cf->dynamic_patterns.n; i++) {
		rc = regcomp(&d->re[i], cf->dynamic_patterns.v[i],
			     REG_EXTENDED | REG_ICASE | REG_NOSUB);
		if (rc != 0) {
			char why[128];

			regerror(rc, &d->re[i], why, sizeof(why));
			snprintf(err, errlen, "helo_checks: dynamic_patterns "
				 "\"%s\": %s", cf->dynamic_patterns.v[i], why);
			return -1;
		}
		d->nre++;
	}
	return 0;
}

static void
helo_fini(struct gh_plugin *p)
{
	struct helo_data *d = p->data;
	size_t i;

	if (d == NULL)
		return;
	for (i = 0; i < d->nre; i++)
		regfree(&d->re[i]);
	free(d->re);
	free(d);
	p->data = NULL;
}

static const struct gh_hook_entry helo_hooks[] = {
	{ GH_HOOK_HELO, helo_hook },
	{ GH_HOOK_EHLO, helo_hook },
	{ 0, NULL }
};

const struct gh_module gh_module_helo_checks = {
	.abi = GH_ABI_VERSION,
	.name = "helo_checks",
	.description = "check the name the client gives at HELO/EHLO",
	.doc =
"Checks the argument of HELO and EHLO (Haraka's helo.checks).  Each check\n"
"is \"off\", \"check\" (only record the result) or \"reject\":\n"
"\n"
"  bare_ip           an IP address without brackets: 550 5.5.2 (RFC 5321\n"
"                    4.1.3 wants [192.0.2.1] or [IPv6:2001:db8::1])\n"
"  valid_hostname    not a fully qualified host name (a dot, a TLD not all\n"
"                    digits) nor a valid address literal: 550 5.5.2\n"
"  literal_mismatch  an address literal that is not the client's: 550 5.7.1\n"
"  ours              our hostname, one of our_names, or our own address as\n"
"                    a literal from a client that is not us: 550 5.7.1\n"
"  dynamic           contains the client's IPv4 octets (in order or\n"
"                    reversed, with dots or dashes) or matches one of\n"
"                    dynamic_patterns: 550 5.7.1\n"
"  rdns_match        neither the client's forward-confirmed rDNS name nor\n"
"                    a name in the same parent domain (no rDNS: not\n"
"                    checked): 550 5.7.1\n"
"  forward_dns       a host name with neither A nor AAAA records: 550\n"
"                    5.7.1; a DNS failure is skipped, or with tempfail =\n"
"                    \"denysoft\" gives 450 4.7.1\n"
"\n"
"Checks run in that order and the first failed \"reject\" check refuses\n"
"the HELO (the client may try again); the reply quotes the HELO and says\n"
"which check failed.  RFC 5321 4.1.4 forbids refusing a client because\n"
"its HELO does not match its address, so literal_mismatch, dynamic,\n"
"rdns_match and forward_dns only record by default.  Clients that may\n"
"relay are not checked (skip_relaying).\n"
"\n"
"Results: pass, or fail naming every failed check.  The connection note\n"
"\"helo_checks.failed\" holds the same comma list for later plugins.\n"
"\n"
"Example:\n"
"\n"
"  helo_checks = {\n"
"    dynamic = \"reject\";\n"
"    our_names = [ \"mx1.example.test\", \"mx2.example.test\" ];\n"
"  };\n",
	.directives = helo_directives,
	.conf_size = sizeof(struct helo_conf),
	.hooks = helo_hooks,
	.init = helo_init,
	.fini = helo_fini,
	.edits = GH_EDITS_NONE,
};
