/*
 * dnsbl.c - DNS blocklists and allowlists for the client's address
 * (RFC 5782; Haraka's dnsbl and dnswl).
 *
 * At connect the client's address, reversed (2.0.0.127.zone for IPv4,
 * 32 nibbles for IPv6, RFC 5782 2.1 and 2.4), is looked up as an A
 * record in every zone at once.  An answer whose address passes the
 * zone's return-code filter lists the client.  An allowlist zone
 * (`allow_zones`) wins over every blocklist: the client is noted as
 * "dnswl" and, with allow_ok, the connect chain ends in OK.  A blocklist
 * listing refuses at connect (554 5.7.1, and every later command too), or,
 * with reject = "rcpt", refuses each recipient with 550 5.7.1 except the
 * local parts in `always_accept` (postmaster: RFC 5321 4.5.1) and except
 * clients that may relay (conn->relaying or an AUTH user), so that a
 * listed site can still reach the postmaster and a listed submitter can
 * still send.  The reply names the zone.
 *
 * A temporary DNS failure is never a hard refusal: it is skipped or,
 * with tempfail = "denysoft", refused with 4xx where a listing would be.
 *
 * Zone health (RFC 5782 5): a zone must never list 127.0.0.1.  The first
 * connection of each worker (and again every check_interval) also asks
 * for 1.0.0.127.zone, in parallel with the client's own lookups; a zone
 * that lists it is broken (expired domain with a wildcard, a resolver
 * that rewrites NXDOMAIN) and is disabled with a warning until a later
 * check finds it healthy.  The resolver merges and caches those
 * questions, so the check costs nothing per connection.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "filter.h"

#define MAX_ZONES 32
#define MAX_RANGES 16
#define ZONE_MAX 200		/* leaves room for 64 octets of nibbles */

struct dnsbl_conf {
	struct gh_strlist zones;
	struct gh_strlist allow_zones;
	int reject;			/* 0 connect, 1 rcpt */
	int tempfail;			/* 0 skip, 1 denysoft */
	struct gh_strlist always_accept;
	int allow_ok;
	int check_zones;
	long long check_interval;
};

static const char *const reject_choices[] = { "connect", "rcpt", NULL };
static const char *const tempfail_choices[] = { "skip", "denysoft", NULL };

#define DC(f) offsetof(struct dnsbl_conf, f)

static const struct gh_directive dnsbl_directives[] = {
	{ "zones", GH_DT_STRLIST, DC(zones), "[ ]", 0, MAX_ZONES, NULL,
	  "blocklist zones, each \"zone\" or \"zone=CODES\" with CODES a "
	  "comma list of addresses and ranges: \"bl.test=127.0.0.2-127.0.0.11,"
	  "127.0.0.20\"" },
	{ "allow_zones", GH_DT_STRLIST, DC(allow_zones), "[ ]", 0, MAX_ZONES,
	  NULL, "allowlist (dnswl) zones, same syntax; a listed client is "
	  "never refused by a blocklist" },
	{ "reject", GH_DT_ENUM, DC(reject), "\"rcpt\"", 0, 0, reject_choices,
	  "where a listed client is refused: \"connect\" (554, then every "
	  "command) or \"rcpt\" (550 per recipient, always_accept excepted)" },
	{ "tempfail", GH_DT_ENUM, DC(tempfail), "\"skip\"", 0, 0,
	  tempfail_choices, "a zone that cannot be asked (timeout, SERVFAIL): "
	  "\"skip\" it, or \"denysoft\" (4xx) where a listing would refuse" },
	{ "always_accept", GH_DT_STRLIST, DC(always_accept),
	  "[ \"postmaster\", \"abuse\" ]", 0, 0, NULL,
	  "with reject = \"rcpt\": local parts a listed client may still "
	  "write to" },
	{ "allow_ok", GH_DT_BOOL, DC(allow_ok), "true", 0, 0, NULL,
	  "a client on an allowlist ends the connect chain with OK (later "
	  "connect plugins do not run)" },
	{ "check_zones", GH_DT_BOOL, DC(check_zones), "true", 0, 0, NULL,
	  "disable a zone that lists 127.0.0.1 (RFC 5782 5), with a warning" },
	{ "check_interval", GH_DT_INT, DC(check_interval), "3600", 60, 604800,
	  NULL, "seconds between zone health checks" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

enum health { H_UNKNOWN, H_OK, H_BROKEN };

struct range {
	uint32_t lo, hi;		/* host order */
};

struct zone {
	char name[ZONE_MAX];
	int allow;			/* an allowlist zone */
	struct range ranges[MAX_RANGES];
	size_t nranges;			/* 0: any 127/8 but 127.255.255/24 */
	enum health health;
	time_t checked;
};

struct dnsbl {
	struct zone zones[2 * MAX_ZONES];
	size_t nzones;
};

/* One zone's lookups for one connection. */
struct zlookup {
	struct lookup *l;
	struct zone *z;
	struct gh_dns_query *q, *hq;	/* the client; the health check */
	enum gh_dns_status status;
	const char *error;
	char code[16];			/* the listing address */
	int listed;
	int odd;			/* answered, but nothing usable */
};

struct lookup {
	struct gh_call *c;
	struct dnsbl *d;
	struct zlookup z[2 * MAX_ZONES];
	size_t n, pending;
};

/* ------------------------------------------------------------------ */
/* Configuration.                                                      */

static int
addr4(const char *s, uint32_t *out)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		return -1;
	*out = ntohl(a.s_addr);
	return 0;
}

/* "127.0.0.2-127.0.0.11,127.0.0.20" */
static int
ranges_parse(struct zone *z, const char *spec, char *err, size_t errlen)
{
	char buf[512], *item, *save = NULL, *dash;

	snprintf(buf, sizeof(buf), "%s", spec);
	for (item = strtok_r(buf, ",", &save); item != NULL;
	     item = strtok_r(NULL, ",", &save)) {
		struct range *r = &z->ranges[z->nranges];

		while (*item == ' ')
			item++;
		if (z->nranges == MAX_RANGES) {
			snprintf(err, errlen, "dnsbl: zone %s: more than %d "
				 "codes", z->name, MAX_RANGES);
			return -1;
		}
		if ((dash = strchr(item, '-')) != NULL)
			*dash++ = '\0';
		if (addr4(item, &r->lo) != 0 ||
		    addr4(dash ? dash : item, &r->hi) != 0 || r->hi < r->lo) {
			snprintf(err, errlen, "dnsbl: zone %s: bad return code "
				 "\"%s\" (want 127.0.0.2 or 127.0.0.2-127.0.0.11)",
				 z->name, item);
			return -1;
		}
		z->nranges++;
	}
	return 0;
}

static int
zone_parse(struct zone *z, const char *spec, int allow, char *err,
	   size_t errlen)
{
	const char *eq = strchr(spec, '=');
	size_t len = eq ? (size_t)(eq - spec) : strlen(spec);
	size_t i;

	memset(z, 0, sizeof(*z));
	z->allow = allow;
	if (len > 0 && spec[len - 1] == '.')
		len--;
	if (len == 0 || len >= sizeof(z->name)) {
		snprintf(err, errlen, "dnsbl: bad zone \"%s\"", spec);
		return -1;
	}
	for (i = 0; i < len; i++)
		z->name[i] = (char)tolower((unsigned char)spec[i]);
	z->name[len] = '\0';
	if (!gh_domain_valid(z->name)) {
		snprintf(err, errlen, "dnsbl: bad zone name \"%s\"", z->name);
		return -1;
	}
	return eq != NULL ? ranges_parse(z, eq + 1, err, errlen) : 0;
}

static int
dnsbl_init(struct gh_plugin *p, char *err, size_t errlen)
{
	const struct dnsbl_conf *cf = p->conf;
	struct dnsbl *d = calloc(1, sizeof(*d));
	size_t i;

	if (d == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->data = d;
	/* Allowlists first: they are decided first. */
	for (i = 0; i < cf->allow_zones.n; i++)
		if (zone_parse(&d->zones[d->nzones++], cf->allow_zones.v[i], 1,
			       err, errlen) != 0)
			return -1;
	for (i = 0; i < cf->zones.n; i++)
		if (zone_parse(&d->zones[d->nzones++], cf->zones.v[i], 0, err,
			       errlen) != 0)
			return -1;
	return 0;
}

static void
dnsbl_fini(struct gh_plugin *p)
{
	free(p->data);
	p->data = NULL;
}

/* ------------------------------------------------------------------ */
/* Answers.                                                            */

/* Does address a (host order) list the client in z? */
static int
code_lists(const struct zone *z, uint32_t a)
{
	size_t i;

	if (z->nranges == 0)
		/* RFC 5782 2.3: listings are 127.0.0.0/8; 127.255.255.x is
		 * what some zones answer for "your resolver may not ask". */
		return (a >> 24) == 127 && (a >> 8) != 0x7fffff;
	for (i = 0; i < z->nranges; i++)
		if (a >= z->ranges[i].lo && a <= z->ranges[i].hi)
			return 1;
	return 0;
}

static void lookup_finish(struct lookup *l);

static void
client_answer(void *arg, const struct gh_dns_answer *ans)
{
	struct zlookup *zl = arg;
	size_t i;

	zl->q = NULL;
	zl->status = ans->status;
	zl->error = ans->error;
	for (i = 0; i < ans->n; i++) {
		uint32_t a;

		if (ans->rr[i].family != AF_INET)
			continue;
		a = (uint32_t)ans->rr[i].addr[0] << 24 |
		    (uint32_t)ans->rr[i].addr[1] << 16 |
		    (uint32_t)ans->rr[i].addr[2] << 8 | ans->rr[i].addr[3];
		if (code_lists(zl->z, a)) {
			zl->listed = 1;
			snprintf(zl->code, sizeof(zl->code), "%s",
				 ans->rr[i].data);
			break;
		}
	}
	zl->odd = ans->status == GH_DNS_OK && !zl->listed;
	if (zl->odd)
		snprintf(zl->code, sizeof(zl->code), "%s", ans->rr[0].data);
	if (--zl->l->pending == 0)
		lookup_finish(zl->l);
}

static void
health_answer(void *arg, const struct gh_dns_answer *ans)
{
	struct zlookup *zl = arg;
	struct zone *z = zl->z;

	zl->hq = NULL;
	if (ans->status != GH_DNS_TEMPFAIL) {
		enum health h = ans->status == GH_DNS_OK ? H_BROKEN : H_OK;

		if (h == H_BROKEN && z->health != H_BROKEN)
			gh_log(GH_LOG_WARN, "dnsbl: zone %s lists 127.0.0.1 "
			       "(answer %s): broken or wildcard zone, disabled "
			       "until a later check", z->name, ans->rr[0].data);
		else if (h == H_OK && z->health == H_BROKEN)
			gh_log(GH_LOG_WARN, "dnsbl: zone %s is healthy again, "
			       "enabled", z->name);
		z->health = h;
		z->checked = time(NULL);
	}
	if (--zl->l->pending == 0)
		lookup_finish(zl->l);
}

static void
lookup_cancel(void *arg)
{
	struct lookup *l = arg;
	size_t i;

	for (i = 0; i < l->n; i++) {
		gh_dns_cancel(l->z[i].q);
		gh_dns_cancel(l->z[i].hq);
		l->z[i].q = l->z[i].hq = NULL;
	}
}

/* ------------------------------------------------------------------ */
/* The verdict.                                                        */

static enum gh_verdict
verdict_allowed(struct gh_call *c, const struct zlookup *zl)
{
	const struct dnsbl_conf *cf = c->plugin->conf;

	gh_note_set(c->conn->notes, "dnswl", zl->z->name);
	gh_result(c, GH_PASS, "allowlisted by %s (%s)", zl->z->name,
		  zl->code);
	gh_clog(c, GH_LOG_INFO, "%s is on allowlist %s (%s)",
		c->conn->remote_ip, zl->z->name, zl->code);
	return cf->allow_ok ? GH_OK : GH_CONT;
}

static enum gh_verdict
verdict_listed(struct gh_call *c, const struct zlookup *zl)
{
	const struct dnsbl_conf *cf = c->plugin->conf;

	gh_result(c, GH_FAIL, "listed in %s (%s)", zl->z->name, zl->code);
	gh_note_set(c->conn->notes, "dnsbl.listed", zl->z->name);
	gh_note_set(c->conn->notes, "dnsbl.code", zl->code);
	if (cf->reject == 1) {
		gh_clog(c, GH_LOG_INFO, "%s is listed in %s (%s): refusing "
			"recipients", c->conn->remote_ip, zl->z->name,
			zl->code);
		return GH_CONT;
	}
	gh_clog(c, GH_LOG_INFO, "%s is listed in %s (%s): refused",
		c->conn->remote_ip, zl->z->name, zl->code);
	gh_reply(c, 554, "5.7.1", "Your address %s is listed in %s",
		 c->conn->remote_ip, zl->z->name);
	return GH_DENY;
}

static enum gh_verdict
verdict_tempfail(struct gh_call *c, const struct zlookup *zl)
{
	const struct dnsbl_conf *cf = c->plugin->conf;

	gh_result(c, GH_ERR, "%s: %s", zl->z->name,
		  zl->error ? zl->error : "temporary failure");
	if (cf->tempfail == 0) {
		gh_clog(c, GH_LOG_INFO, "zone %s not asked about %s (%s): "
			"skipped", zl->z->name, c->conn->remote_ip,
			zl->error ? zl->error : "temporary failure");
		return GH_CONT;
	}
	gh_note_set(c->conn->notes, "dnsbl.tempfail", zl->z->name);
	if (cf->reject == 1)
		return GH_CONT;
	gh_clog(c, GH_LOG_INFO, "zone %s not asked about %s (%s): deferred",
		zl->z->name, c->conn->remote_ip,
		zl->error ? zl->error : "temporary failure");
	gh_reply(c, 421, "4.7.1", "Cannot check your address against %s, "
		 "try again later", zl->z->name);
	return GH_DENYSOFT;
}

static int
usable(const struct zlookup *zl)
{
	return zl->z->health != H_BROKEN;
}

static enum gh_verdict
lookup_decide(struct lookup *l)
{
	struct gh_call *c = l->c;
	const struct zlookup *tempfail = NULL;
	size_t i, nchecked = 0;

	for (i = 0; i < l->n; i++) {
		const struct zlookup *zl = &l->z[i];

		if (!usable(zl))
			continue;
		if (zl->odd)
			gh_clog(c, GH_LOG_DEBUG, "zone %s answered %s for %s: "
				"not a listing", zl->z->name, zl->code,
				c->conn->remote_ip);
		if (zl->listed && zl->z->allow)
			return verdict_allowed(c, zl);
	}
	for (i = 0; i < l->n; i++) {
		const struct zlookup *zl = &l->z[i];

		if (!usable(zl) || zl->z->allow)
			continue;
		nchecked++;
		if (zl->listed)
			return verdict_listed(c, zl);
		if (zl->status == GH_DNS_TEMPFAIL && tempfail == NULL)
			tempfail = zl;
	}
	if (tempfail != NULL)
		return verdict_tempfail(c, tempfail);
	gh_result(c, GH_PASS, "not listed (%zu zones)", nchecked);
	return GH_CONT;
}

static void
lookup_finish(struct lookup *l)
{
	gh_resume(l->c, lookup_decide(l));
}

/* ------------------------------------------------------------------ */
/* Hooks.                                                              */

static int
needs_check(const struct dnsbl_conf *cf, const struct zone *z)
{
	return cf->check_zones && (z->health == H_UNKNOWN ||
	    time(NULL) - z->checked >= cf->check_interval);
}

static void
zone_start(struct lookup *l, struct zlookup *zl, const char *ip)
{
	struct gh_call *c = l->c;
	const struct dnsbl_conf *cf = c->plugin->conf;
	char name[300];

	zl->l = l;
	zl->status = GH_DNS_TEMPFAIL;
	zl->error = "resolver unavailable";
	if (gh_dns_reverse_name(ip, zl->z->name, name, sizeof(name)) != 0)
		return;
	if ((zl->q = gh_dns_query(c->conn->base, GH_DNS_A, name,
				  client_answer, zl)) != NULL)
		l->pending++;
	if (!needs_check(cf, zl->z) ||
	    gh_dns_reverse_name("127.0.0.1", zl->z->name, name,
				sizeof(name)) != 0)
		return;
	if ((zl->hq = gh_dns_query(c->conn->base, GH_DNS_A, name,
				   health_answer, zl)) != NULL)
		l->pending++;
}

static enum gh_verdict
dnsbl_connect(struct gh_call *c)
{
	struct dnsbl *d = c->plugin->data;
	struct lookup *l;
	size_t i;

	if (d->nzones == 0) {
		gh_result(c, GH_SKIP, "no zones");
		return GH_CONT;
	}
	l = gh_palloc(c->conn->pool, sizeof(*l));
	l->c = c;
	l->d = d;
	for (i = 0; i < d->nzones; i++) {
		l->z[l->n].z = &d->zones[i];
		zone_start(l, &l->z[l->n++], c->conn->remote_ip);
	}
	if (l->pending == 0)
		return lookup_decide(l);	/* nothing could be asked */
	gh_on_cancel(c, lookup_cancel, l);
	return GH_AGAIN;
}

static int
always_accepted(const struct dnsbl_conf *cf, const struct gh_addr *a)
{
	size_t i;

	for (i = 0; i < cf->always_accept.n; i++)
		if (strcasecmp(a->local, cf->always_accept.v[i]) == 0)
			return 1;
	return 0;
}

static enum gh_verdict
dnsbl_rcpt(struct gh_call *c)
{
	const struct dnsbl_conf *cf = c->plugin->conf;
	const char *zone = gh_note_get(c->conn->notes, "dnsbl.listed");
	const char *soft = gh_note_get(c->conn->notes, "dnsbl.tempfail");
	const struct gh_addr *to = &c->path->addr;

	if (cf->reject != 1 || (zone == NULL && soft == NULL))
		return GH_CONT;
	if (always_accepted(cf, to)) {
		gh_clog(c, GH_LOG_INFO, "listed client %s may write to <%s>",
			c->conn->remote_ip, to->mailbox);
		return GH_CONT;
	}
	if (c->conn->relaying || c->conn->auth_user != NULL) {
		gh_result(c, GH_SKIP, "listed, but may relay");
		return GH_CONT;
	}
	if (zone != NULL) {
		gh_clog(c, GH_LOG_INFO, "refused <%s>: %s is listed in %s",
			to->mailbox, c->conn->remote_ip, zone);
		gh_reply(c, 550, "5.7.1", "Your address %s is listed in %s",
			 c->conn->remote_ip, zone);
		return GH_DENY;
	}
	gh_clog(c, GH_LOG_INFO, "deferred <%s>: zone %s could not be asked "
		"about %s", to->mailbox, soft, c->conn->remote_ip);
	gh_reply(c, 450, "4.7.1", "Cannot check your address against %s, "
		 "try again later", soft);
	return GH_DENYSOFT;
}

static const struct gh_hook_entry dnsbl_hooks[] = {
	{ GH_HOOK_CONNECT, dnsbl_connect },
	{ GH_HOOK_RCPT, dnsbl_rcpt },
	{ 0, NULL }
};

const struct gh_module gh_module_dnsbl = {
	.abi = GH_ABI_VERSION,
	.name = "dnsbl",
	.description = "refuse clients on DNS blocklists, pass those on "
	    "allowlists",
	.doc =
"Looks the client's address up in DNS blocklists and allowlists (RFC\n"
"5782; Haraka's dnsbl and dnswl) at connect, all zones at once.  IPv4\n"
"addresses are asked as 2.0.0.127.ZONE, IPv6 as 32 reversed nibbles.\n"
"\n"
"A zone lists the client when it answers an A record that passes the\n"
"zone's return-code filter: \"bl.test=127.0.0.2-127.0.0.11,127.0.0.20\"\n"
"takes only those codes; a zone with no filter takes any 127.0.0.0/8\n"
"address except 127.255.255.x (the \"query refused\" codes some lists\n"
"give to public resolvers).\n"
"\n"
"  - on an allowlist (`allow_zones`): the note \"dnswl\" is set to the\n"
"    zone, blocklists are ignored, and with allow_ok the connect chain\n"
"    ends in OK;\n"
"  - on a blocklist, reject = \"connect\": 554 5.7.1 Your address IP is\n"
"    listed in ZONE, and the same to every later command but QUIT;\n"
"  - on a blocklist, reject = \"rcpt\": notes \"dnsbl.listed\" and\n"
"    \"dnsbl.code\", then every RCPT gets 550 5.7.1 Your address IP is\n"
"    listed in ZONE, except recipients whose local part is in\n"
"    always_accept (postmaster must stay reachable, RFC 5321 4.5.1) and\n"
"    clients that may relay or have authenticated;\n"
"  - a zone that could not be asked (timeout, SERVFAIL, REFUSED): skipped,\n"
"    or with tempfail = \"denysoft\" a 4xx where a listing would refuse\n"
"    (421 4.7.1 at connect, 450 4.7.1 at RCPT).  Never a 5xx.\n"
"\n"
"Zone health (RFC 5782 5): with check_zones, the first connection of\n"
"each worker, and one every check_interval seconds, also asks for\n"
"127.0.0.1 in each zone; a zone that lists it is disabled with a warning\n"
"until a later check finds it healthy.  Answers are cached by the core\n"
"resolver (see the `dns` group), so repeated clients cost no queries.\n"
"\n"
"Results: pass (not listed / allowlisted), fail (listed in ZONE (CODE)),\n"
"err (ZONE: timeout).\n"
"\n"
"Example:\n"
"\n"
"  dnsbl = {\n"
"    zones = [ \"zen.spamhaus.org=127.0.0.2-127.0.0.11\", \"bl.example\" ];\n"
"    allow_zones = [ \"wl.example=127.0.10.0-127.0.10.255\" ];\n"
"    reject = \"rcpt\";\n"
"  };\n",
	.directives = dnsbl_directives,
	.conf_size = sizeof(struct dnsbl_conf),
	.hooks = dnsbl_hooks,
	.init = dnsbl_init,
	.fini = dnsbl_fini,
	.edits = GH_EDITS_NONE,
};
