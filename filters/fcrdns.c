/*
 * fcrdns.c - forward-confirmed reverse DNS of the client (Haraka's
 * fcrdns).
 *
 * The core looks the client up before lookup_rdns (conn->rdns, notes
 * "rdns.status" and "rdns.ptr"); this plugin turns that into results
 * and notes for other plugins and, by configuration, refuses clients
 * without it.  When the core lookup is off (dns.rdns = false) it does the
 * lookup itself and fills conn->rdns.  Outcomes:
 *
 *   confirmed    a PTR name resolves back to the address: pass, note
 *                "fcrdns" = the name; with reject_generic, a name that
 *                carries the client's IPv4 octets (c-192-0-2-1.isp.example)
 *                is refused as an end-user address
 *   unconfirmed  PTR names, none resolving back: fail; reject_unconfirmed
 *   none         no PTR at all: fail; reject_none
 *   tempfail     a lookup failed temporarily: err; skipped, or 421 with
 *                tempfail = "denysoft"; never a 5xx
 *
 * Refusals happen at lookup_rdns with 550 5.7.25 (RFC 7372 3.2: reverse
 * DNS validation failed); the core then answers every later command the
 * same way until QUIT.
 */
#include "config.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filter.h"

struct fcrdns_conf {
	int reject_none;
	int reject_unconfirmed;
	int reject_generic;
	int tempfail;			/* 0 skip, 1 denysoft */
};

static const char *const tempfail_choices[] = { "skip", "denysoft", NULL };

#define FC(f) offsetof(struct fcrdns_conf, f)

static const struct gh_directive fcrdns_directives[] = {
	{ "reject_none", GH_DT_BOOL, FC(reject_none), "false", 0, 0, NULL,
	  "refuse clients with no PTR record (550 5.7.25)" },
	{ "reject_unconfirmed", GH_DT_BOOL, FC(reject_unconfirmed), "false",
	  0, 0, NULL, "refuse clients whose PTR names do not resolve back to "
	  "their address (550 5.7.25)" },
	{ "reject_generic", GH_DT_BOOL, FC(reject_generic), "false", 0, 0,
	  NULL, "refuse clients whose confirmed name carries their IPv4 "
	  "octets, as end-user lines do (550 5.7.25)" },
	{ "tempfail", GH_DT_ENUM, FC(tempfail), "\"skip\"", 0, 0,
	  tempfail_choices, "a lookup that failed temporarily: \"skip\", or "
	  "\"denysoft\" (421 4.7.25) when a reject_ directive is on" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

struct fcrdns_run {
	struct gh_call *c;
	struct gh_rdns_query *q;
};

/* Does name carry the client's IPv4 octets, in order or reversed, with
 * dots or dashes? */
static int
generic_name(const char *ip, const char *name)
{
	unsigned char a[4];
	char pat[4][40];
	int i;

	if (inet_pton(AF_INET, ip, a) != 1 &&
	    (strncasecmp(ip, "::ffff:", 7) != 0 ||
	     inet_pton(AF_INET, ip + 7, a) != 1))
		return 0;
	snprintf(pat[0], sizeof(pat[0]), "%u.%u.%u.%u", a[0], a[1], a[2], a[3]);
	snprintf(pat[1], sizeof(pat[1]), "%u-%u-%u-%u", a[0], a[1], a[2], a[3]);
	snprintf(pat[2], sizeof(pat[2]), "%u.%u.%u.%u", a[3], a[2], a[1], a[0]);
	snprintf(pat[3], sizeof(pat[3]), "%u-%u-%u-%u", a[3], a[2], a[1], a[0]);
	for (i = 0; i < 4; i++)
		if (strcasestr(name, pat[i]) != NULL)
			return 1;
	return 0;
}

static enum gh_verdict
refuse(struct gh_call *c, const char *why)
{
	gh_clog(c, GH_LOG_INFO, "refused %s: %s", c->conn->remote_ip, why);
	gh_reply(c, 550, "5.7.25", "Reverse DNS validation failed for %s: %s",
		 c->conn->remote_ip, why);
	return GH_DENY;
}

static enum gh_verdict
decide(struct gh_call *c, enum gh_rdns_status st, const char *name,
       const char *ptr)
{
	const struct fcrdns_conf *cf = c->plugin->conf;
	struct gh_notes *n = c->conn->notes;

	gh_note_set(n, "fcrdns.status", gh_rdns_status_name(st));
	switch (st) {
	case GH_RDNS_CONFIRMED:
		if (name == NULL)
			name = "";
		gh_note_set(n, "fcrdns", name);
		if (generic_name(c->conn->remote_ip, name)) {
			gh_note_set(n, "fcrdns.generic", "1");
			gh_result(c, cf->reject_generic ? GH_FAIL : GH_PASS,
				  "%s (generic)", name);
			if (cf->reject_generic)
				return refuse(c, "the name looks like an "
					      "end-user address");
			return GH_CONT;
		}
		gh_result(c, GH_PASS, "%s", name);
		return GH_CONT;
	case GH_RDNS_UNCONFIRMED:
		gh_result(c, GH_FAIL, "%s does not resolve back",
			  ptr ? ptr : "the PTR name");
		if (cf->reject_unconfirmed)
			return refuse(c, "the name does not resolve back to "
				      "the address");
		return GH_CONT;
	case GH_RDNS_NONE:
		gh_result(c, GH_FAIL, "no PTR record");
		if (cf->reject_none)
			return refuse(c, "no PTR record");
		return GH_CONT;
	case GH_RDNS_TEMPFAIL:
		break;
	}
	gh_result(c, GH_ERR, "lookup failed temporarily");
	if (cf->tempfail == 0 || !(cf->reject_none || cf->reject_unconfirmed ||
	    cf->reject_generic))
		return GH_CONT;
	gh_clog(c, GH_LOG_INFO, "deferred %s: reverse DNS lookup failed",
		c->conn->remote_ip);
	gh_reply(c, 421, "4.7.25", "Cannot check the reverse DNS of %s, try "
		 "again later", c->conn->remote_ip);
	return GH_DENYSOFT;
}

static void
found(void *arg, const struct gh_rdns_result *r)
{
	struct fcrdns_run *run = arg;
	struct gh_call *c = run->c;

	run->q = NULL;
	if (r->name != NULL && c->conn->rdns == NULL)
		c->conn->rdns = gh_pstrdup(c->conn->pool, r->name);
	gh_resume(c, decide(c, r->status, r->name, r->ptr));
}

static void
cancel(void *arg)
{
	struct fcrdns_run *run = arg;

	gh_dns_rdns_cancel(run->q);
	run->q = NULL;
}

static enum gh_verdict
fcrdns_lookup_rdns(struct gh_call *c)
{
	const char *st = gh_note_get(c->conn->notes, "rdns.status");
	struct fcrdns_run *run;
	int i;

	if (st != NULL) {
		/* The core already looked. */
		for (i = GH_RDNS_CONFIRMED; i <= GH_RDNS_TEMPFAIL; i++)
			if (strcmp(st, gh_rdns_status_name(i)) == 0)
				return decide(c, (enum gh_rdns_status)i,
					      c->conn->rdns, gh_note_get(
					      c->conn->notes, "rdns.ptr"));
	}
	run = gh_palloc(c->conn->pool, sizeof(*run));
	run->c = c;
	run->q = gh_dns_rdns(c->conn->base, c->conn->remote_ip, found, run);
	if (run->q == NULL)
		return decide(c, GH_RDNS_TEMPFAIL, NULL, NULL);
	gh_on_cancel(c, cancel, run);
	return GH_AGAIN;
}

static const struct gh_hook_entry fcrdns_hooks[] = {
	{ GH_HOOK_LOOKUP_RDNS, fcrdns_lookup_rdns },
	{ 0, NULL }
};

const struct gh_module gh_module_fcrdns = {
	.abi = GH_ABI_VERSION,
	.name = "fcrdns",
	.description = "forward-confirmed reverse DNS of the client",
	.doc =
"Records whether the client's address has forward-confirmed reverse DNS\n"
"(Haraka's fcrdns): a PTR name that resolves back (A for IPv4, AAAA for\n"
"IPv6) to the address.  The core does the lookup before lookup_rdns (set\n"
"dns.rdns = false to turn that off; this plugin then looks itself).\n"
"\n"
"  confirmed    result pass NAME; notes \"fcrdns\" = NAME and, when the\n"
"               name carries the client's IPv4 octets (c-192-0-2-1.isp),\n"
"               \"fcrdns.generic\"; refused with reject_generic\n"
"  unconfirmed  result fail; refused with reject_unconfirmed\n"
"  none         (no PTR) result fail; refused with reject_none\n"
"  tempfail     result err; skipped, or with tempfail = \"denysoft\" (and a\n"
"               reject_ directive on) 421 4.7.25\n"
"\n"
"A refusal is 550 5.7.25 Reverse DNS validation failed for IP: WHY (RFC\n"
"7372), given at lookup_rdns, so every later command but QUIT gets it\n"
"too.  The note \"fcrdns.status\" holds confirmed, unconfirmed, none or\n"
"tempfail for later plugins.\n"
"\n"
"Example:\n"
"\n"
"  fcrdns = { reject_none = true; tempfail = \"denysoft\"; };\n",
	.directives = fcrdns_directives,
	.conf_size = sizeof(struct fcrdns_conf),
	.hooks = fcrdns_hooks,
	.edits = GH_EDITS_NONE,
};
