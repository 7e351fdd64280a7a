/*
 * uribl.c - domains and addresses named in a message, looked up in URI
 * blocklists (SURBL / URIBL style; Haraka's uribl).
 *
 * At data_post the message is read once, up to max_scan octets: the
 * header block and the body, with quoted-printable soft line breaks and
 * =XX escapes undone so that a URL cut by the encoding is still seen.
 * Hosts come from URLs (scheme://host, www.host), mailto: addresses and
 * the addresses in From, Reply-To and Sender.  Each host name is reduced
 * to its registered domain (the last two labels, or three under a known
 * two-level public suffix such as co.uk), since that is what URI lists
 * list; an IPv4 host is reversed as in an IP list.  At most max_lookups
 * distinct names are asked, each in every zone at once; the first
 * listing refuses the message with 550 5.7.1 naming the domain and the
 * zone, and cancels the rest.
 *
 * Return codes: a zone given as "zone" lists on any 127.0.0.x answer
 * with x >= 2 (127.0.0.1 is URIBL's "query refused"); "zone=0x0e" lists
 * when the last octet shares a bit with the mask (SURBL/URIBL bit
 * fields).  Temporary DNS failures are skipped, or refuse with 451 4.7.1
 * when tempfail = "denysoft"; never a 5xx.  base64 bodies are not
 * decoded: URLs in them are not seen.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filter.h"

#define MAX_ZONES 16
#define MAX_NAMES 100
#define HOST_MAX 254
#define ZONE_MAX 200

struct uribl_conf {
	struct gh_strlist zones;
	long long max_lookups;
	long long max_scan;
	int tempfail;			/* 0 skip, 1 denysoft */
	int check_ips;
	struct gh_strlist skip_domains;
	struct gh_strlist two_level_suffixes;
};

static const char *const tempfail_choices[] = { "skip", "denysoft", NULL };

#define UC(f) offsetof(struct uribl_conf, f)

static const struct gh_directive uribl_directives[] = {
	{ "zones", GH_DT_STRLIST, UC(zones), "[ ]", 0, MAX_ZONES, NULL,
	  "URI blocklist zones: \"zone\" (any 127.0.0.x, x >= 2) or "
	  "\"zone=MASK\" (last octet AND MASK, e.g. 0x0e)" },
	{ "max_lookups", GH_DT_INT, UC(max_lookups), "20", 1, MAX_NAMES,
	  NULL, "distinct domains and addresses asked per message" },
	{ "max_scan", GH_DT_INT, UC(max_scan), "524288", 1024, 67108864,
	  NULL, "octets of each message searched for URLs" },
	{ "tempfail", GH_DT_ENUM, UC(tempfail), "\"skip\"", 0, 0,
	  tempfail_choices, "a zone that cannot be asked: \"skip\", or "
	  "\"denysoft\" (451 4.7.1)" },
	{ "check_ips", GH_DT_BOOL, UC(check_ips), "true", 0, 0, NULL,
	  "also ask about IPv4 addresses used as URL hosts" },
	{ "skip_domains", GH_DT_STRLIST, UC(skip_domains), "[ ]", 0, 0, NULL,
	  "registered domains never asked about (your own)" },
	{ "two_level_suffixes", GH_DT_STRLIST, UC(two_level_suffixes), "[ ]",
	  0, 0, NULL, "more public suffixes of two labels (\"co.uk\" is "
	  "built in) under which a domain keeps three labels" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

/* Public suffixes of two labels that mail commonly meets; the rest come
 * from two_level_suffixes. */
static const char *const builtin_suffixes[] = {
	"ac.uk", "co.uk", "gov.uk", "ltd.uk", "me.uk", "net.uk", "org.uk",
	"plc.uk", "com.au", "net.au", "org.au", "edu.au", "gov.au",
	"co.nz", "org.nz", "net.nz", "co.jp", "ne.jp", "or.jp", "ac.jp",
	"co.kr", "or.kr", "com.br", "net.br", "org.br", "com.cn", "net.cn",
	"org.cn", "com.mx", "com.ar", "com.tr", "com.tw", "com.hk",
	"com.sg", "com.my", "co.in", "co.za", "co.il", "com.ua", "com.pl",
	"com.ru", "co.id", "com.vn", "com.ph", "com.co", "com.pe",
	NULL
};

struct uzone {
	char name[ZONE_MAX];
	unsigned mask;			/* 0: any 127.0.0.x, x >= 2 */
};

struct uribl {
	struct uzone zones[MAX_ZONES];
	size_t nzones;
};

struct uname {
	char host[HOST_MAX + 1];	/* registered domain or IPv4 */
	int ip;
};

struct uquery {
	struct uscan *us;
	struct uname *n;
	struct uzone *z;
	struct gh_dns_query *q;
};

struct uscan {
	struct gh_call *c;
	struct uname names[MAX_NAMES];
	size_t nnames;
	size_t max;
	struct uquery *qs;
	size_t nq, pending;
	const struct uquery *tempfail;
	const char *why;
};

/* ------------------------------------------------------------------ */
/* Names.                                                              */

static int
suffix_two_level(const struct uribl_conf *cf, const char *s)
{
	size_t i;

	for (i = 0; builtin_suffixes[i] != NULL; i++)
		if (strcmp(s, builtin_suffixes[i]) == 0)
			return 1;
	for (i = 0; i < cf->two_level_suffixes.n; i++)
		if (strcasecmp(s, cf->two_level_suffixes.v[i]) == 0)
			return 1;
	return 0;
}

/* "a.b.example.co.uk" -> "example.co.uk"; NULL if too short. */
static const char *
registered(const struct uribl_conf *cf, const char *host)
{
	const char *p = host + strlen(host), *l[4] = { NULL };
	int n = 0;

	/* l[k]: the start of the last k+1 labels. */
	while (p > host && n < 4) {
		p--;
		if (*p == '.')
			l[n++] = p + 1;
	}
	if (n < 4 && p == host)
		l[n++] = host;
	if (n < 2)
		return NULL;
	if (n >= 3 && suffix_two_level(cf, l[1]))
		return l[2];
	return l[1];
}

static int
skipped(const struct uribl_conf *cf, const char *dom)
{
	size_t i;

	for (i = 0; i < cf->skip_domains.n; i++)
		if (strcasecmp(dom, cf->skip_domains.v[i]) == 0)
			return 1;
	return 0;
}

static void
name_add(struct uscan *us, const char *host)
{
	const struct uribl_conf *cf = us->c->plugin->conf;
	struct in_addr a;
	const char *dom, *tld;
	size_t i;
	int ip = inet_pton(AF_INET, host, &a) == 1;

	if (ip) {
		if (!cf->check_ips)
			return;
		dom = host;
	} else {
		/* A host name with an alphabetic TLD of two letters or
		 * more; anything else is not worth a query. */
		if (!gh_domain_valid(host) || (tld = strrchr(host, '.')) == NULL ||
		    strlen(tld + 1) < 2 || strspn(tld + 1,
		    "abcdefghijklmnopqrstuvwxyz-0123456789") != strlen(tld + 1) ||
		    isdigit((unsigned char)tld[1]) ||
		    (dom = registered(cf, host)) == NULL || skipped(cf, dom))
			return;
	}
	for (i = 0; i < us->nnames; i++)
		if (strcmp(us->names[i].host, dom) == 0)
			return;
	if (us->nnames >= us->max)
		return;
	snprintf(us->names[us->nnames].host, HOST_MAX + 1, "%s", dom);
	us->names[us->nnames++].ip = ip;
}

/* The host at p (after "://", "www." is part of it): letters, digits,
 * dots and dashes, after an optional "user@". */
static void
host_at(struct uscan *us, const char *p, const char *end)
{
	char host[HOST_MAX + 1];
	const char *q, *at = NULL;
	size_t n = 0;

	for (q = p; q < end && !strchr("/?#\"'<> \t\r\n", *q); q++)
		if (*q == '@')
			at = q;
	if (at != NULL)
		p = at + 1;
	for (; p < end && n < HOST_MAX && (isalnum((unsigned char)*p) ||
	     *p == '.' || *p == '-'); p++)
		host[n++] = (char)tolower((unsigned char)*p);
	while (n > 0 && host[n - 1] == '.')
		n--;
	host[n] = '\0';
	if (n > 0)
		name_add(us, host);
}

/* Hosts in one decoded line. */
static void
scan_line(struct uscan *us, const char *s, size_t len)
{
	const char *end = s + len, *p;

	for (p = s; p < end; p++) {
		if (p + 3 <= end && memcmp(p, "://", 3) == 0 && p > s &&
		    isalpha((unsigned char)p[-1]))
			host_at(us, p + 3, end);
		else if (p + 4 <= end && strncasecmp(p, "www.", 4) == 0 &&
			 (p == s || !isalnum((unsigned char)p[-1])) &&
			 (p < s + 3 || memcmp(p - 3, "://", 3) != 0))
			host_at(us, p, end);
		else if (p + 7 <= end && strncasecmp(p, "mailto:", 7) == 0)
			host_at(us, p + 7, end);
	}
}

static int
hexval(int ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = tolower(ch);
	return ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
}

/* Undo quoted-printable in place: "=XX" and soft breaks ("=" at the end
 * of a line, which the caller joins).  Returns the new length. */
static size_t
qp_decode(char *s, size_t len)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		if (s[i] == '=' && i + 2 < len && hexval(s[i + 1]) >= 0 &&
		    hexval(s[i + 2]) >= 0) {
			s[o++] = (char)(hexval(s[i + 1]) << 4 | hexval(s[i + 2]));
			i += 2;
		} else {
			s[o++] = s[i];
		}
	}
	return o;
}

/* A line longer than the buffer is scanned in pieces, each after the
 * first starting with the last CARRY octets of the one before: a URL the
 * cut falls into is then whole in the next piece (a sender chooses where
 * the cut falls). */
#define CARRY 512

/* Scan the full buffer and keep its tail for the next piece. */
static size_t
scan_piece(struct uscan *us, char *line, size_t ll)
{
	char tail[CARRY];

	memcpy(tail, line + ll - CARRY, CARRY);
	scan_line(us, line, qp_decode(line, ll));
	memcpy(line, tail, CARRY);
	return CARRY;
}

/* Read the message line by line; a line ending in "=" (a quoted-
 * printable soft break) is joined with the next. */
static void
scan_message(struct uscan *us)
{
	const struct uribl_conf *cf = us->c->plugin->conf;
	struct gh_txn *t = us->c->txn;
	struct gh_msg_reader *r = gh_msg_reader_open(t->pool, t->msg);
	char buf[8192], line[4096];
	size_t ll = 0, total = 0;
	ssize_t n, i;

	if (r == NULL)
		return;
	while (total < (size_t)cf->max_scan &&
	       (n = gh_msg_read(r, buf, sizeof(buf))) > 0) {
		total += (size_t)n;
		for (i = 0; i < n; i++) {
			if (buf[i] != '\n') {
				if (ll == sizeof(line))
					ll = scan_piece(us, line, ll);
				line[ll++] = buf[i];
				continue;
			}
			while (ll > 0 && line[ll - 1] == '\r')
				ll--;
			if (ll > 0 && line[ll - 1] == '=') {
				ll--;	/* soft break: keep going */
				continue;
			}
			scan_line(us, line, qp_decode(line, ll));
			ll = 0;
		}
	}
	if (ll > 0)
		scan_line(us, line, qp_decode(line, ll));
}

/* Domains of the addresses in From, Reply-To and Sender. */
static void
scan_addresses(struct uscan *us)
{
	static const char *const fields[] = { "From", "Reply-To", "Sender" };
	const struct gh_message *m = us->c->txn->msg;
	size_t f, k;

	for (f = 0; f < 3; f++) {
		const char *v;

		for (k = 0; (v = gh_msg_header_get(m, fields[f], k)) != NULL;
		     k++) {
			const char *at;

			for (at = strchr(v, '@'); at != NULL;
			     at = strchr(at + 1, '@'))
				host_at(us, at + 1, at + 1 + strlen(at + 1));
		}
	}
}

/* ------------------------------------------------------------------ */
/* Lookups.                                                            */

static void
scan_cancel(void *arg)
{
	struct uscan *us = arg;
	size_t i;

	for (i = 0; i < us->nq; i++) {
		gh_dns_cancel(us->qs[i].q);
		us->qs[i].q = NULL;
	}
}

static enum gh_verdict
scan_verdict(struct uscan *us, const struct uquery *hit, const char *code)
{
	struct gh_call *c = us->c;
	const struct uribl_conf *cf = c->plugin->conf;

	if (hit != NULL) {
		gh_result(c, GH_FAIL, "%s in %s (%s)", hit->n->host,
			  hit->z->name, code);
		gh_clog(c, GH_LOG_INFO, "refused message: %s is listed in %s "
			"(%s)", hit->n->host, hit->z->name, code);
		gh_reply(c, 550, "5.7.1", "Message refused: it names %s, "
			 "listed in %s", hit->n->host, hit->z->name);
		return GH_DENY;
	}
	if (us->tempfail != NULL) {
		gh_result(c, GH_ERR, "%s: %s", us->tempfail->z->name, us->why);
		if (cf->tempfail == 1) {
			gh_clog(c, GH_LOG_INFO, "deferred message: zone %s "
				"could not be asked (%s)",
				us->tempfail->z->name, us->why);
			gh_reply(c, 451, "4.7.1", "Cannot check the message "
				 "against %s, try again later",
				 us->tempfail->z->name);
			return GH_DENYSOFT;
		}
		return GH_CONT;
	}
	gh_result(c, GH_PASS, "%zu names, none listed", us->nnames);
	return GH_CONT;
}

static int
code_lists(const struct uzone *z, const unsigned char *a)
{
	if (a[0] != 127 || a[1] != 0 || a[2] != 0)
		return 0;
	return z->mask != 0 ? (a[3] & z->mask) != 0 : a[3] >= 2;
}

static void
answer(void *arg, const struct gh_dns_answer *ans)
{
	struct uquery *uq = arg;
	struct uscan *us = uq->us;
	size_t i;

	uq->q = NULL;
	for (i = 0; i < ans->n; i++) {
		if (ans->rr[i].family == AF_INET &&
		    code_lists(uq->z, ans->rr[i].addr)) {
			scan_cancel(us);
			gh_resume(us->c, scan_verdict(us, uq, ans->rr[i].data));
			return;
		}
	}
	if (ans->status == GH_DNS_TEMPFAIL && us->tempfail == NULL) {
		us->tempfail = uq;
		us->why = ans->error ? ans->error : "temporary failure";
	}
	if (--us->pending == 0)
		gh_resume(us->c, scan_verdict(us, NULL, NULL));
}

static void
query_name(struct uquery *uq, char *buf, size_t n)
{
	if (uq->n->ip)
		gh_dns_reverse_name(uq->n->host, uq->z->name, buf, n);
	else
		snprintf(buf, n, "%s.%s", uq->n->host, uq->z->name);
}

static enum gh_verdict
uribl_data_post(struct gh_call *c)
{
	const struct uribl_conf *cf = c->plugin->conf;
	struct uribl *u = c->plugin->data;
	struct uscan *us;
	size_t i, j;

	if (u->nzones == 0 || c->txn == NULL || c->txn->msg == NULL) {
		gh_result(c, GH_SKIP, "no zones");
		return GH_CONT;
	}
	us = gh_palloc(c->txn->pool, sizeof(*us));
	us->c = c;
	us->max = (size_t)cf->max_lookups;
	scan_addresses(us);
	scan_message(us);
	if (us->nnames == 0) {
		gh_result(c, GH_PASS, "no names");
		return GH_CONT;
	}
	us->qs = gh_palloc(c->txn->pool, us->nnames * u->nzones *
			   sizeof(*us->qs));
	for (i = 0; i < us->nnames; i++) {
		for (j = 0; j < u->nzones; j++) {
			struct uquery *uq = &us->qs[us->nq++];
			char name[HOST_MAX + ZONE_MAX + 80];

			uq->us = us;
			uq->n = &us->names[i];
			uq->z = &u->zones[j];
			query_name(uq, name, sizeof(name));
			uq->q = gh_dns_query(c->conn->base, GH_DNS_A, name,
					     answer, uq);
			if (uq->q != NULL)
				us->pending++;
			else if (us->tempfail == NULL) {
				us->tempfail = uq;
				us->why = "resolver unavailable";
			}
		}
	}
	if (us->pending == 0)
		return scan_verdict(us, NULL, NULL);
	gh_on_cancel(c, scan_cancel, us);
	return GH_AGAIN;
}

/* ------------------------------------------------------------------ */

static int
uribl_init(struct gh_plugin *p, char *err, size_t errlen)
{
	const struct uribl_conf *cf = p->conf;
	struct uribl *u = calloc(1, sizeof(*u));
	size_t i;

	if (u == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	p->data = u;
	for (i = 0; i < cf->zones.n; i++) {
		struct uzone *z = &u->zones[u->nzones];
		const char *spec = cf->zones.v[i], *eq = strchr(spec, '=');
		size_t len = eq ? (size_t)(eq - spec) : strlen(spec), k;
		char *endp;

		if (len == 0 || len >= sizeof(z->name)) {
			snprintf(err, errlen, "uribl: bad zone \"%s\"", spec);
			return -1;
		}
		for (k = 0; k < len; k++)
			z->name[k] = (char)tolower((unsigned char)spec[k]);
		z->name[len] = '\0';
		if (!gh_domain_valid(z->name)) {
			snprintf(err, errlen, "uribl: bad zone name \"%s\"",
				 z->name);
			return -1;
		}
		if (eq != NULL) {
			unsigned long m = strtoul(eq + 1, &endp, 0);

			if (eq[1] == '\0' || *endp != '\0' || m == 0 ||
			    m > 255) {
				snprintf(err, errlen, "uribl: zone %s: bad "
					 "mask \"%s\" (want 1..255, e.g. 0x0e)",
					 z->name, eq + 1);
				return -1;
			}
			z->mask = (unsigned)m;
		}
		u->nzones++;
	}
	return 0;
}

static void
uribl_fini(struct gh_plugin *p)
{
	free(p->data);
	p->data = NULL;
}

static const struct gh_hook_entry uribl_hooks[] = {
	{ GH_HOOK_DATA_POST, uribl_data_post },
	{ 0, NULL }
};

const struct gh_module gh_module_uribl = {
	.abi = GH_ABI_VERSION,
	.name = "uribl",
	.description = "refuse messages naming domains on URI blocklists",
	.doc =
"Looks up the domains and addresses a message names in URI blocklists\n"
"(SURBL and URIBL style; Haraka's uribl).  At data_post the message is\n"
"read once, up to max_scan octets, headers and body, with quoted-\n"
"printable undone.  Names come from URLs (scheme://host, www.host),\n"
"mailto: and the addresses in From, Reply-To and Sender.  A host name is\n"
"reduced to its registered domain: the last two labels, or three under\n"
"a two-level public suffix (co.uk, com.au, ... and two_level_suffixes);\n"
"an IPv4 URL host is asked reversed (check_ips).  Domains in\n"
"skip_domains are never asked.  At most max_lookups distinct names are\n"
"asked per message, each in every zone at once.\n"
"\n"
"  - a name is listed: 550 5.7.1 Message refused: it names DOMAIN, listed\n"
"    in ZONE (the remaining lookups are cancelled);\n"
"  - a zone could not be asked: skipped, or with tempfail = \"denysoft\"\n"
"    451 4.7.1; never a 5xx;\n"
"  - otherwise CONT, result pass \"N names, none listed\".\n"
"\n"
"A zone \"z\" lists on any 127.0.0.x answer with x >= 2 (127.0.0.1 is\n"
"URIBL's \"query refused\"); \"z=MASK\" lists when the last octet shares a\n"
"bit with MASK (multi.surbl.org and multi.uribl.com encode their lists\n"
"as bits).  base64-encoded bodies are not decoded.\n"
"\n"
"Example:\n"
"\n"
"  uribl = {\n"
"    zones = [ \"multi.uribl.com=0x0e\", \"multi.surbl.org=0xfe\" ];\n"
"    skip_domains = [ \"example.test\" ];\n"
"  };\n",
	.directives = uribl_directives,
	.conf_size = sizeof(struct uribl_conf),
	.hooks = uribl_hooks,
	.init = uribl_init,
	.fini = uribl_fini,
	.edits = GH_EDITS_NONE,
};
