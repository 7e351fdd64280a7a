/*
 * is_resolvable.c - the sender's domain must be able to receive mail
 * (Haraka's mail_from.is_resolvable).
 *
 * At MAIL the domain of the reverse-path is looked up: its MX records,
 * or, when it has none, the domain itself as an implicit MX (RFC 5321
 * 5.1).  Each exchange (up to max_mx) is looked up as A and AAAA at
 * once; the first usable address accepts the sender and cancels the
 * rest.  A usable address is one mail could be sent back to: not
 * 0/8, loopback, link-local, multicast or reserved (nor private, with
 * reject_private).  Refusals:
 *
 *   - the domain does not exist: 550 5.1.8;
 *   - a null MX, the only MX "." (RFC 7505 3): 550 5.7.27 (RFC 7505 4.2);
 *   - no exchange has a usable address: 550 5.1.8, naming a bogus one;
 *   - a lookup failed temporarily and nothing usable was found: 450 4.1.8,
 *     or nothing, with tempfail = "skip".  Never a 5xx.
 *
 * The null reverse-path <> and address literals are not checked.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

#define MAX_MX 20
#define NAME_MAX_LEN 256

struct isr_conf {
	int tempfail;			/* 0 denysoft, 1 skip */
	long long max_mx;
	int reject_private;
};

static const char *const tempfail_choices[] = { "denysoft", "skip", NULL };

static const struct gh_directive isr_directives[] = {
	{ "tempfail", GH_DT_ENUM, offsetof(struct isr_conf, tempfail),
	  "\"denysoft\"", 0, 0, tempfail_choices,
	  "a lookup that failed temporarily: \"denysoft\" (450 4.1.8) or "
	  "\"skip\" (accept the sender)" },
	{ "max_mx", GH_DT_INT, offsetof(struct isr_conf, max_mx), "10", 1,
	  MAX_MX, NULL, "exchanges looked up, in preference order" },
	{ "reject_private", GH_DT_BOOL, offsetof(struct isr_conf,
	  reject_private), "false", 0, 0, NULL,
	  "count private addresses (RFC 1918, 100.64/10, fc00::/7) as "
	  "unusable too" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

struct check;

struct exchange {
	struct check *ck;
	char name[NAME_MAX_LEN];
	struct gh_dns_query *q4, *q6;
};

struct check {
	struct gh_call *c;
	char domain[NAME_MAX_LEN];
	struct gh_dns_query *mxq;
	struct exchange ex[MAX_MX];
	size_t nex, pending;
	int implicit;			/* no MX: the domain itself */
	int tempfail;
	const char *why;		/* of the first temporary failure */
	char bogus[NAME_MAX_LEN + 64];	/* "mx.test (127.0.0.5)" */
};

/* ------------------------------------------------------------------ */
/* Addresses mail cannot go back to.                                   */

static int
v4_unusable(const unsigned char *a, int private_too)
{
	if (a[0] == 0 || a[0] == 127 || a[0] >= 224 ||	/* 0/8, lo, mc, res */
	    (a[0] == 169 && a[1] == 254))		/* link-local */
		return 1;
	if (!private_too)
		return 0;
	return a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
	    (a[0] == 192 && a[1] == 168) ||
	    (a[0] == 100 && (a[1] & 0xc0) == 64);	/* RFC 6598 */
}

static int
v6_unusable(const unsigned char *a, int private_too)
{
	static const unsigned char zero[16], mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};

	if (memcmp(a, zero, 15) == 0 && a[15] <= 1)	/* :: and ::1 */
		return 1;
	if (memcmp(a, mapped, 12) == 0)
		return v4_unusable(a + 12, private_too);
	if (a[0] == 0xff || (a[0] == 0xfe && (a[1] & 0xc0) == 0x80))
		return 1;				/* mc, link-local */
	return private_too && (a[0] & 0xfe) == 0xfc;	/* ULA */
}

static int
unusable(const struct gh_dns_rr *rr, int private_too)
{
	return rr->family == AF_INET ? v4_unusable(rr->addr, private_too) :
	    v6_unusable(rr->addr, private_too);
}

/* ------------------------------------------------------------------ */
/* Outcomes.                                                           */

static void
check_cancel(void *arg)
{
	struct check *ck = arg;
	size_t i;

	gh_dns_cancel(ck->mxq);
	ck->mxq = NULL;
	for (i = 0; i < ck->nex; i++) {
		gh_dns_cancel(ck->ex[i].q4);
		gh_dns_cancel(ck->ex[i].q6);
		ck->ex[i].q4 = ck->ex[i].q6 = NULL;
	}
}

static enum gh_verdict
refuse(struct check *ck, const char *enh, const char *why)
{
	struct gh_call *c = ck->c;

	gh_result(c, GH_FAIL, "%s: %s", ck->domain, why);
	gh_clog(c, GH_LOG_INFO, "refused <%s>: %s",
		c->path->addr.mailbox, why);
	gh_reply(c, 550, enh, "Sender address rejected: %s", why);
	return GH_DENY;
}

static enum gh_verdict
defer(struct check *ck)
{
	struct gh_call *c = ck->c;
	const struct isr_conf *cf = c->plugin->conf;

	gh_result(c, GH_ERR, "%s: %s", ck->domain, ck->why);
	if (cf->tempfail == 1) {
		gh_clog(c, GH_LOG_INFO, "<%s> not checked (%s): skipped",
			c->path->addr.mailbox, ck->why);
		return GH_CONT;
	}
	gh_clog(c, GH_LOG_INFO, "deferred <%s>: lookup of %s failed (%s)",
		c->path->addr.mailbox, ck->domain, ck->why);
	gh_reply(c, 450, "4.1.8", "Sender address rejected: cannot resolve "
		 "domain %s (%s), try again later", ck->domain, ck->why);
	return GH_DENYSOFT;
}

static void
finish(struct check *ck, enum gh_verdict v)
{
	check_cancel(ck);
	gh_resume(ck->c, v);
}

static void
finish_unresolved(struct check *ck)
{
	char why[NAME_MAX_LEN * 2 + 128];

	if (ck->tempfail) {
		finish(ck, defer(ck));
		return;
	}
	if (ck->bogus[0] != '\0')
		snprintf(why, sizeof(why), "domain %s has no usable mail "
			 "server address: %s", ck->domain, ck->bogus);
	else if (ck->implicit)
		snprintf(why, sizeof(why), "domain %s has no MX or address "
			 "record", ck->domain);
	else
		snprintf(why, sizeof(why), "the mail servers of domain %s "
			 "have no address", ck->domain);
	finish(ck, refuse(ck, "5.1.8", why));
}

/* ------------------------------------------------------------------ */
/* Lookups.                                                            */

static void
addr_answer(void *arg, const struct gh_dns_answer *ans, int v6)
{
	struct exchange *ex = arg;
	struct check *ck = ex->ck;
	const struct isr_conf *cf = ck->c->plugin->conf;
	size_t i;

	if (v6)
		ex->q6 = NULL;
	else
		ex->q4 = NULL;
	for (i = 0; i < ans->n; i++) {
		if (!unusable(&ans->rr[i], cf->reject_private)) {
			gh_result(ck->c, GH_PASS, "%s: %s (%s)", ck->domain,
				  ex->name, ans->rr[i].data);
			finish(ck, GH_CONT);
			return;
		}
		if (ck->bogus[0] == '\0')
			snprintf(ck->bogus, sizeof(ck->bogus), "%s (%s)",
				 ex->name, ans->rr[i].data);
	}
	if (ans->status == GH_DNS_TEMPFAIL && !ck->tempfail) {
		ck->tempfail = 1;
		ck->why = ans->error ? ans->error : "temporary failure";
	}
	if (--ck->pending == 0)
		finish_unresolved(ck);
}

static void
a_answer(void *arg, const struct gh_dns_answer *ans)
{
	addr_answer(arg, ans, 0);
}

static void
aaaa_answer(void *arg, const struct gh_dns_answer *ans)
{
	addr_answer(arg, ans, 1);
}

static void
exchange_add(struct check *ck, const char *name)
{
	struct exchange *ex = &ck->ex[ck->nex++];
	struct event_base *base = ck->c->conn->base;

	ex->ck = ck;
	snprintf(ex->name, sizeof(ex->name), "%s", name);
	if ((ex->q4 = gh_dns_query(base, GH_DNS_A, name, a_answer, ex)))
		ck->pending++;
	if ((ex->q6 = gh_dns_query(base, GH_DNS_AAAA, name, aaaa_answer, ex)))
		ck->pending++;
	if (ex->q4 == NULL || ex->q6 == NULL) {
		ck->tempfail = 1;
		ck->why = "resolver unavailable";
	}
}

static void
mx_answer(void *arg, const struct gh_dns_answer *ans)
{
	struct check *ck = arg;
	const struct isr_conf *cf = ck->c->plugin->conf;
	size_t i;

	ck->mxq = NULL;
	if (ans->status == GH_DNS_TEMPFAIL) {
		ck->tempfail = 1;
		ck->why = ans->error ? ans->error : "temporary failure";
		finish(ck, defer(ck));
		return;
	}
	if (ans->status == GH_DNS_NXDOMAIN) {
		char why[NAME_MAX_LEN + 64];

		snprintf(why, sizeof(why), "domain %s does not exist",
			 ck->domain);
		finish(ck, refuse(ck, "5.1.8", why));
		return;
	}
	if (ans->status == GH_DNS_NODATA) {
		/* RFC 5321 5.1: no MX, the domain is its own exchange. */
		ck->implicit = 1;
		exchange_add(ck, ck->domain);
	}
	/* RFC 7505 3: a null MX is the domain's only MX. */
	if (ans->n == 1 && ans->rr[0].data[0] == '\0') {
		char why[NAME_MAX_LEN + 64];

		snprintf(why, sizeof(why), "domain %s accepts no mail (null "
			 "MX)", ck->domain);
		finish(ck, refuse(ck, "5.7.27", why));
		return;
	}
	/* The answer is sorted by preference; a stray "." among real
	 * exchanges is a misconfiguration, skipped. */
	for (i = 0; i < ans->n && ck->nex < (size_t)cf->max_mx; i++)
		if (ans->rr[i].data[0] != '\0')
			exchange_add(ck, ans->rr[i].data);
	if (ck->pending == 0)
		finish_unresolved(ck);
}

static int
ascii_only(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return 0;
	return 1;
}

static enum gh_verdict
isr_mail(struct gh_call *c)
{
	const struct gh_addr *from = &c->path->addr;
	struct gh_pool *pool = c->txn ? c->txn->pool : c->conn->pool;
	struct check *ck;

	if (from->is_null || from->domain == NULL) {
		gh_result(c, GH_SKIP, "null sender");
		return GH_CONT;
	}
	if (from->is_literal) {
		gh_result(c, GH_SKIP, "address literal");
		return GH_CONT;
	}
	/* U-labels (RFC 6531) are not in the DNS as such: the query would
	 * need their A-label (xn--) form, which IDNA makes; without it the
	 * lookup could only say "does not exist", wrongly. */
	if (!ascii_only(from->domain)) {
		gh_result(c, GH_SKIP, "internationalised domain %s: not looked "
			  "up", from->domain);
		return GH_CONT;
	}
	ck = gh_palloc(pool, sizeof(*ck));
	ck->c = c;
	snprintf(ck->domain, sizeof(ck->domain), "%s", from->domain);
	ck->mxq = gh_dns_query(c->conn->base, GH_DNS_MX, ck->domain,
			       mx_answer, ck);
	if (ck->mxq == NULL) {
		ck->why = "resolver unavailable";
		return defer(ck);
	}
	gh_on_cancel(c, check_cancel, ck);
	return GH_AGAIN;
}

static const struct gh_hook_entry isr_hooks[] = {
	{ GH_HOOK_MAIL, isr_mail },
	{ 0, NULL }
};

const struct gh_module gh_module_is_resolvable = {
	.abi = GH_ABI_VERSION,
	.name = "is_resolvable",
	.description = "the sender's domain must be able to receive mail",
	.doc =
"Refuses senders whose domain could not receive a reply (Haraka's\n"
"mail_from.is_resolvable).  At MAIL the domain's MX records are looked\n"
"up; with none, the domain itself is the exchange (RFC 5321 5.1).  Each\n"
"exchange, up to max_mx in preference order, is looked up as A and AAAA\n"
"at once, and the first usable address accepts the sender.  Unusable are\n"
"0.0.0.0/8, 127/8, 169.254/16, multicast and reserved IPv4 (224/3), ::,\n"
"::1, fe80::/10, ff00::/8, and with reject_private also 10/8, 172.16/12,\n"
"192.168/16, 100.64/10 and fc00::/7.\n"
"\n"
"  - no such domain:             550 5.1.8 Sender address rejected:\n"
"                                domain D does not exist\n"
"  - null MX (RFC 7505):         550 5.7.27 ... domain D accepts no mail\n"
"  - no exchange has a usable    550 5.1.8 ... domain D has no usable\n"
"    address:                    mail server address: mx.D (127.0.0.1)\n"
"  - a temporary DNS failure and 450 4.1.8 ... cannot resolve domain D\n"
"    nothing usable found:       (timeout), try again later; or, with\n"
"                                tempfail = \"skip\", the sender passes\n"
"\n"
"The null sender <>, address literals and internationalised domains in\n"
"UTF-8 (RFC 6531 U-labels, which the DNS knows only in their xn-- form)\n"
"are not checked.  Answers are\n"
"cached by the core resolver (the `dns` group), so a busy sender domain\n"
"costs no queries.  Results: pass (the exchange and address found), fail\n"
"(why), err (the temporary failure), skip.\n"
"\n"
"Example:\n"
"\n"
"  is_resolvable = { tempfail = \"denysoft\"; reject_private = true; };\n",
	.directives = isr_directives,
	.conf_size = sizeof(struct isr_conf),
	.hooks = isr_hooks,
	.edits = GH_EDITS_NONE,
};
