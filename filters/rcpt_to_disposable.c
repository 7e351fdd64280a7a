/*
 * rcpt_to_disposable.c - addresses that expire: user-YYYYMMDD@domain.
 *
 * This is the plugin the tutorial (contrib/plugin-tutorial.md) walks
 * through, after the example in Haraka's own tutorial.  A user hands out
 * "jane-20261231@example.test" and gets the mail at "jane@example.test"
 * until the end of 31 December 2026 (UTC); after that the address is
 * refused:
 *
 *   RCPT TO:<jane-20261231@example.test>   before the date: rewritten to
 *                                          <jane@example.test>, CONT
 *   RCPT TO:<jane-20240101@example.test>   after the date:
 *                                          550 5.1.1 Address expired
 *
 * Any other recipient is none of this plugin's business: CONT.  The
 * plugin never accepts a recipient; the plugins after it (host_list, for
 * one) decide about the rewritten address as if the client had sent it.
 *
 * The whole plugin is: a descriptor (at the end), a hook table with one
 * hook, and the hook function with its helpers.  It has no directives,
 * so it needs no init, fini or state.
 */
#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "filter.h"		/* the one header a plugin includes */

#define DATE_DIGITS 8		/* YYYYMMDD */

/* ------------------------------------------------------------------ */
/* Dates.                                                              */

static int
days_in_month(int year, int month)
{
	static const int days[12] = {
		31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31
	};
	int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;

	return month == 2 && leap ? 29 : days[month - 1];
}

/*
 * Read DATE_DIGITS digits at s as YYYYMMDD.  Returns the date as the
 * number YYYYMMDD (so that dates compare as numbers), or -1 if s is not
 * a real calendar date: "user-12345678" is an ordinary address, not an
 * expired one.
 */
static long
date_parse(const char *s)
{
	int i, year, month, day;

	for (i = 0; i < DATE_DIGITS; i++)
		if (!isdigit((unsigned char)s[i]))
			return -1;
	if (sscanf(s, "%4d%2d%2d", &year, &month, &day) != 3)
		return -1;
	if (month < 1 || month > 12 || day < 1 ||
	    day > days_in_month(year, month))
		return -1;
	return (long)year * 10000 + month * 100 + day;
}

/* Today in UTC as YYYYMMDD: the same answer on every host, whatever its
 * time zone. */
static long
date_today(void)
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	return (long)(tm.tm_year + 1900) * 10000 + (tm.tm_mon + 1) * 100 +
	    tm.tm_mday;
}

/* ------------------------------------------------------------------ */
/* The rcpt hook.                                                      */

/*
 * Find the "-YYYYMMDD" suffix of a local part.  Returns the position of
 * the '-' and the date in *date, or NULL when the local part does not
 * end that way or nothing comes before the '-'.
 */
static const char *
disposable_suffix(const char *local, long *date)
{
	size_t len = strlen(local);
	const char *dash;

	if (len < DATE_DIGITS + 2)	/* at least "x-YYYYMMDD" */
		return NULL;
	dash = local + len - DATE_DIGITS - 1;
	if (*dash != '-' || (*date = date_parse(dash + 1)) < 0)
		return NULL;
	return dash;
}

/*
 * The hook: c->path is the recipient being decided, c->txn the
 * transaction it would join.  Returning CONT lets the next plugin in
 * `plugins` decide; DENY refuses this recipient only, and the client may
 * go on with others.
 */
static enum gh_verdict
disposable_rcpt(struct gh_call *c)
{
	struct gh_addr *a = &c->path->addr;
	const char *dash;
	char *local;
	long date;

	/* <postmaster> has no domain; a local part that needs its quotes
	 * ("jane 2026...") is taken literally, as the user wrote it (one
	 * that does not, "jane-2026...", arrives without them: the parser
	 * makes it the plain mailbox it is). */
	if (a->domain == NULL || a->is_quoted ||
	    (dash = disposable_suffix(a->local, &date)) == NULL)
		return GH_CONT;

	if (date < date_today()) {
		/* Past its date: refused.  Every refusal gets a log line,
		 * a result for the decision trace and a precise reply
		 * (RFC 3463: X.1.1, bad destination mailbox address).  A
		 * parsed address holds no control octets, so it may go
		 * into the log line as it is. */
		gh_clog(c, GH_LOG_INFO, "<%s> expired on %ld", a->mailbox,
			date);
		gh_result(c, GH_FAIL, "%s expired", a->mailbox);
		gh_reply(c, 550, "5.1.1", "Address expired");
		return GH_DENY;
	}

	/*
	 * Still valid: rewrite the recipient in place.  The strings come
	 * from the transaction's pool, so they live exactly as long as the
	 * recipient does and are never freed one by one.  The core copies
	 * c->path into the transaction's recipient list once the rcpt
	 * stage has accepted it, so the list (and the Received header, and
	 * the queue) holds the rewritten address; later rcpt plugins see it
	 * too.
	 */
	local = gh_pstrndup(c->txn->pool, a->local, (size_t)(dash - a->local));
	gh_result(c, GH_PASS, "%s rewritten to %s@%s", a->mailbox, local,
		  a->domain);
	a->local = local;
	a->mailbox = gh_psprintf(c->txn->pool, "%s@%s", local, a->domain);
	return GH_CONT;
}

/* ------------------------------------------------------------------ */
/* The module: what the core needs to know.                            */

/* Which hooks the plugin has; { 0, NULL } ends the table. */
static const struct gh_hook_entry disposable_hooks[] = {
	{ GH_HOOK_RCPT, disposable_rcpt },
	{ 0, NULL }
};

/* No settings, so the directive table is just its end marker. */
static const struct gh_directive disposable_directives[] = {
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

/* Built-in plugins export gh_module_NAME (see GH_PLUGINS in Makefile.am);
 * a shared-object plugin exports the same thing as gh_module. */
const struct gh_module gh_module_rcpt_to_disposable = {
	.abi = GH_ABI_VERSION,
	.name = "rcpt_to_disposable",
	.description = "expiring addresses: user-YYYYMMDD@domain",
	.doc =
"Disposable addresses of the form user-YYYYMMDD@domain: mail to them is\n"
"delivered to user@domain until the end of that day (UTC), and refused\n"
"after it.  At RCPT:\n"
"\n"
"  - the date has passed: 550 5.1.1 Address expired;\n"
"  - otherwise the recipient is rewritten to user@domain and the plugin\n"
"    says CONT: the plugins after it decide about user@domain, and the\n"
"    accepted recipient list, the Received header and the queue hold\n"
"    user@domain.\n"
"\n"
"Only a local part that ends in '-' and eight digits forming a real date\n"
"counts (quoted or not: \"jane-20261231\"@x is jane-20261231@x); anything\n"
"else (a local part that needs its quotes, user-12345678, <postmaster>)\n"
"is left alone.  Put rcpt_to_disposable before host_list and the other\n"
"rcpt plugins, so that they see the rewritten address.\n"
"\n"
"This plugin is the example of contrib/plugin-tutorial.md.\n"
"\n"
"Example:\n"
"\n"
"    plugins = [ \"rcpt_to_disposable\", \"host_list\", \"smtp_forward\" ];\n",
	.directives = disposable_directives,
	.conf_size = 0,
	.hooks = disposable_hooks,
	.edits = GH_EDITS_NONE,
};
