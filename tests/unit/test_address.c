/*
 * test_address.c - unit tests for the RFC 5321 path parser (address.c).
 *
 * Most cases are rows of a table: input, MAIL or RCPT, and either the
 * expected parts or the expected error text.  Limits are tested at the
 * bound and one past it with generated strings.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "core.h"
#include "t.h"

#define F_NULL	0x01
#define F_LIT	0x02
#define F_QUOT	0x04
#define F_UTF8	0x08
#define F_ROUTE	0x10

#define MAIL GH_PATH_MAIL
#define RCPT GH_PATH_RCPT

struct pcase {
	const char *in;
	enum gh_path_kind kind;
	const char *why;	/* NULL: must parse */
	const char *local, *domain, *mailbox;
	unsigned flags;
	size_t nparams;
};

/* A row that must fail with text why. */
#define BAD(in, kind, why) { in, kind, why, NULL, NULL, NULL, 0, 0 }

static const struct pcase cases[] = {
	/* Plain addresses. */
	{ "<a@example.com>", MAIL, NULL, "a", "example.com", "a@example.com",
	  0, 0 },
	{ "<a@example.com>", RCPT, NULL, "a", "example.com", "a@example.com",
	  0, 0 },
	{ " <a@example.com>", MAIL, NULL, "a", "example.com", "a@example.com",
	  0, 0 },
	{ "<First.Last+tag@Sub.Example.COM>", RCPT, NULL, "First.Last+tag",
	  "Sub.Example.COM", "First.Last+tag@Sub.Example.COM", 0, 0 },
	{ "<!#$%&'*+-/=?^_`{|}~@x.y>", MAIL, NULL, "!#$%&'*+-/=?^_`{|}~",
	  "x.y", "!#$%&'*+-/=?^_`{|}~@x.y", 0, 0 },
	{ "<u@localhost>", RCPT, NULL, "u", "localhost", "u@localhost", 0, 0 },
	{ "<u@123.example>", RCPT, NULL, "u", "123.example",
	  "u@123.example", 0, 0 },
	{ "<u@a-b.c-d.e>", RCPT, NULL, "u", "a-b.c-d.e", "u@a-b.c-d.e", 0, 0 },

	/* Null path and postmaster. */
	{ "<>", MAIL, NULL, "", NULL, "", F_NULL, 0 },
	{ "<> BODY=8BITMIME", MAIL, NULL, "", NULL, "", F_NULL, 1 },
	{ " <>", MAIL, NULL, "", NULL, "", F_NULL, 0 },
	BAD("<>", RCPT, "Null recipient not allowed"),
	{ "<postmaster>", RCPT, NULL, "postmaster", NULL, "postmaster", 0, 0 },
	{ "<PostMaster>", RCPT, NULL, "PostMaster", NULL, "PostMaster", 0, 0 },
	BAD("<postmaster>", MAIL, "Missing domain"),
	BAD("<\"postmaster\">", RCPT, "Missing domain"),
	BAD("<@a.b:postmaster>", RCPT, "Missing domain"),
	{ "<postmaster@example.com>", RCPT, NULL, "postmaster",
	  "example.com", "postmaster@example.com", 0, 0 },
	BAD("<user>", RCPT, "Missing domain"),
	BAD("<user@>", RCPT, "Missing domain"),

	/* Source routes: accepted, ignored. */
	{ "<@a.example:u@c.example>", RCPT, NULL, "u", "c.example",
	  "u@c.example", F_ROUTE, 0 },
	{ "<@a.example,@b.example:u@c.example>", MAIL, NULL, "u",
	  "c.example", "u@c.example", F_ROUTE, 0 },
	BAD("<@a.example>", RCPT, "Invalid source route"),
	BAD("<@a.example,b.example:u@c>", RCPT, "Invalid source route"),
	BAD("<@-a.example:u@c>", RCPT, "Invalid source route"),
	BAD("<@[1.2.3.4]:u@c>", RCPT, "Invalid source route"),
	BAD("<@a.example:>", RCPT, "Invalid local part"),

	/* Dot-strings. */
	BAD("<.a@b>", RCPT, "Invalid local part"),
	BAD("<a.@b>", RCPT, "Invalid local part"),
	BAD("<a..b@c>", RCPT, "Invalid local part"),
	BAD("<a(b)@c>", RCPT, "Invalid character in local part"),
	BAD("<a\"b\"@c>", RCPT, "Invalid character in local part"),
	BAD("<a,b@c>", RCPT, "Invalid character in local part"),
	BAD("<a@b@c>", RCPT, "Invalid character in domain"),

	/* Quoted strings. */
	{ "<\"a@b\"@example.com>", RCPT, NULL, "\"a@b\"", "example.com",
	  "\"a@b\"@example.com", F_QUOT, 0 },
	{ "<\"john doe\"@example.com>", RCPT, NULL, "\"john doe\"",
	  "example.com", "\"john doe\"@example.com", F_QUOT, 0 },
	{ "<\"a\\\"b\\\\c\"@x.y>", RCPT, NULL, "\"a\\\"b\\\\c\"", "x.y",
	  "\"a\\\"b\\\\c\"@x.y", F_QUOT, 0 },
	{ "<\"\"@x.y>", RCPT, NULL, "\"\"", "x.y", "\"\"@x.y", F_QUOT, 0 },
	BAD("<\"a>@x.y>", RCPT, "Unterminated quoted string"),
	BAD("<\"abc@x.y>", RCPT, "Unterminated quoted string"),
	BAD("<\"abc\\", RCPT, "Unterminated quoted string"),
	BAD("<\"a\\\x01\"@x.y>", RCPT, "Control character in address"),
	BAD("<\"a\\\xc3\xa9\"@x.y>", RCPT, "Invalid quoted pair"),
	BAD("<\"a\"b@x.y>", RCPT, "Invalid character in local part"),
	BAD("<\"a\x01\"@x.y>", RCPT, "Control character in address"),
	/* Quotes that are not needed are dropped: the same mailbox. */
	{ "<\"postmaster\"@x.y>", RCPT, NULL, "postmaster", "x.y",
	  "postmaster@x.y", 0, 0 },
	{ "<\"b\\ad\"@x.y>", RCPT, NULL, "bad", "x.y", "bad@x.y", 0, 0 },
	{ "<\"first.last\"@x.y>", MAIL, NULL, "first.last", "x.y",
	  "first.last@x.y", 0, 0 },
	{ "<\".a\"@x.y>", RCPT, NULL, "\".a\"", "x.y", "\".a\"@x.y", F_QUOT,
	  0 },
	{ "<\"a..b\"@x.y>", RCPT, NULL, "\"a..b\"", "x.y", "\"a..b\"@x.y",
	  F_QUOT, 0 },

	/* Domains. */
	BAD("<a@-b.com>", RCPT, "Invalid domain"),
	BAD("<a@b-.com>", RCPT, "Invalid domain"),
	BAD("<a@b..com>", RCPT, "Invalid domain"),
	BAD("<a@.b.com>", RCPT, "Invalid domain"),
	BAD("<a@b.com.>", RCPT, "Invalid domain"),
	BAD("<a@b_c.com>", RCPT, "Invalid character in domain"),
	BAD("<a@b.com x>", RCPT, "Space in address"),

	/* Address literals. */
	{ "<a@[192.0.2.1]>", RCPT, NULL, "a", "[192.0.2.1]", "a@[192.0.2.1]",
	  F_LIT, 0 },
	{ "<a@[IPv6:2001:db8::1]>", RCPT, NULL, "a", "[IPv6:2001:db8::1]",
	  "a@[IPv6:2001:db8::1]", F_LIT, 0 },
	{ "<a@[ipv6:::ffff:192.0.2.1]>", RCPT, NULL, "a",
	  "[ipv6:::ffff:192.0.2.1]", "a@[ipv6:::ffff:192.0.2.1]", F_LIT, 0 },
	BAD("<a@[192.0.2.256]>", RCPT, "Invalid address literal"),
	BAD("<a@[192.0.2]>", RCPT, "Invalid address literal"),
	BAD("<a@[2001:db8::1]>", RCPT, "Invalid address literal"),
	BAD("<a@[IPv6:2001:db8::g]>", RCPT, "Invalid address literal"),
	BAD("<a@[IPv6:192.0.2.1]>", RCPT, "Invalid address literal"),
	BAD("<a@[x-tag:whatever]>", RCPT, "Invalid address literal"),
	BAD("<a@[]>", RCPT, "Invalid address literal"),
	BAD("<a@[192.0.2.1>", RCPT, "Unterminated address literal"),
	BAD("<a@[192.0.2.1]x>", RCPT, "Invalid character in domain"),
	BAD("<a@[192.0.2.1 ]>", RCPT, "Invalid address literal"),

	/* UTF-8 (RFC 6531). */
	{ "<j\xc3\xb6rg@example.com>", RCPT, NULL, "j\xc3\xb6rg",
	  "example.com", "j\xc3\xb6rg@example.com", F_UTF8, 0 },
	{ "<u@b\xc3\xbc" "cher.de>", RCPT, NULL, "u", "b\xc3\xbc" "cher.de",
	  "u@b\xc3\xbc" "cher.de", F_UTF8, 0 },
	{ "<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac"
	  "\xe5\x8f\xb8>", MAIL, NULL, "\xe7\x94\xa8\xe6\x88\xb7",
	  "\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac\xe5\x8f\xb8",
	  "\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac"
	  "\xe5\x8f\xb8", F_UTF8, 0 },
	{ "<\"\xc3\xa9 x\"@a.b>", RCPT, NULL, "\"\xc3\xa9 x\"", "a.b",
	  "\"\xc3\xa9 x\"@a.b", F_QUOT | F_UTF8, 0 },
	BAD("<a\xff@b.c>", RCPT, "Invalid UTF-8 in address"),
	BAD("<a\xc0\xaf@b.c>", RCPT, "Invalid UTF-8 in address"),
	BAD("<a\xed\xa0\x80@b.c>", RCPT, "Invalid UTF-8 in address"),
	BAD("<a@b\xc3.c>", RCPT, "Invalid UTF-8 in address"),
	BAD("<a@[192.0.2.1\xc3\xa9]>", RCPT, "Invalid address literal"),

	/* Brackets, spaces, control characters. */
	BAD("a@example.com", MAIL, "Address must be in angle brackets"),
	BAD("", MAIL, "Address must be in angle brackets"),
	BAD("  <a@example.com>", MAIL, "Address must be in angle brackets"),
	BAD("<a@example.com", RCPT, "Missing closing angle bracket"),
	BAD("<a", RCPT, "Missing closing angle bracket"),
	BAD("<", MAIL, "Missing closing angle bracket"),
	BAD("<a @example.com>", RCPT, "Space in address"),
	BAD("< a@example.com>", RCPT, "Space in address"),
	BAD("<a@example.com\r\n>", RCPT, "Control character in address"),
	BAD("<a\n@example.com>", RCPT, "Control character in address"),
	BAD("<a\x01@example.com>", RCPT, "Control character in address"),
	BAD("<a\x7f@example.com>", RCPT, "Control character in address"),
	BAD("<<a@example.com>>", RCPT, "Invalid character in local part"),

	/* After the closing bracket. */
	BAD("<a@b.c>x", MAIL, "Garbage after address"),
	BAD("<a@b.c>>", MAIL, "Garbage after address"),
	BAD("<a@b.c>\tSIZE=1", MAIL, "Garbage after address"),
	BAD("<a@b.c>\r\n", MAIL, "Garbage after address"),
	{ "<a@b.c> ", MAIL, NULL, "a", "b.c", "a@b.c", 0, 0 },

	/* Parameters. */
	{ "<a@b.c> SIZE=123", MAIL, NULL, "a", "b.c", "a@b.c", 0, 1 },
	{ "<a@b.c> SIZE=123 BODY=8BITMIME SMTPUTF8", MAIL, NULL, "a", "b.c",
	  "a@b.c", 0, 3 },
	{ "<a@b.c>  size=1   body=7BIT  ", MAIL, NULL, "a", "b.c", "a@b.c",
	  0, 2 },
	{ "<a@b.c> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a+2Bb@c.d", RCPT,
	  NULL, "a", "b.c", "a@b.c", 0, 2 },
	{ "<a@b.c> X-1-Y", MAIL, NULL, "a", "b.c", "a@b.c", 0, 1 },
	BAD("<a@b.c> SIZE=1 size=2", MAIL, "Duplicate parameter"),
	BAD("<a@b.c> SMTPUTF8 SMTPUTF8", MAIL, "Duplicate parameter"),
	BAD("<a@b.c> -SIZE=1", MAIL, "Invalid parameter keyword"),
	BAD("<a@b.c> SI_ZE=1", MAIL, "Invalid parameter keyword"),
	BAD("<a@b.c> =1", MAIL, "Invalid parameter keyword"),
	BAD("<a@b.c> <x@y.z>", MAIL, "Invalid parameter keyword"),
	BAD("<a@b.c> SIZE=", MAIL, "Invalid parameter value"),
	BAD("<a@b.c> SIZE=1=2", MAIL, "Invalid parameter value"),
	BAD("<a@b.c> SIZE=1\r\n", MAIL, "Invalid parameter value"),
	BAD("<a@b.c> ENVID=\xc3\xa9", MAIL, "Invalid parameter value"),
	BAD("<a@b.c> ENVID=a\x01", MAIL, "Invalid parameter value"),
	BAD("<a@b.c> SIZE\x01", MAIL, "Invalid parameter keyword"),
	{ "<a@b.c> A B C D E F G H I J K L M N O P", MAIL, NULL, "a", "b.c",
	  "a@b.c", 0, 16 },
	BAD("<a@b.c> A B C D E F G H I J K L M N O P Q", MAIL,
	    "Too many parameters"),
};

static unsigned
flags_of(const struct gh_addr *a)
{
	return (a->is_null ? F_NULL : 0) | (a->is_literal ? F_LIT : 0) |
	    (a->is_quoted ? F_QUOT : 0) | (a->utf8 ? F_UTF8 : 0) |
	    (a->had_route ? F_ROUTE : 0);
}

static void
check_case(const struct pcase *c, const char *label)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_path path;
	const char *why = NULL;
	int rc;

	T_BEGIN();
	rc = gh_path_parse(p, c->in, c->kind, &path, &why);
	if (c->why != NULL) {
		T_EQ_INT(rc, -1);
		T_EQ_STR(why, c->why);
		T_CHECK(path.addr.mailbox == NULL && path.nparams == 0);
	} else {
		T_EQ_INT(rc, 0);
		T_EQ_STR(path.addr.local, c->local);
		T_EQ_STR(path.addr.domain, c->domain);
		T_EQ_STR(path.addr.mailbox, c->mailbox);
		T_EQ_INT(flags_of(&path.addr), c->flags);
		T_EQ_INT(path.nparams, c->nparams);
	}
	T_END(label);
	gh_pool_destroy(p);
}

static void
test_table(void)
{
	char label[128];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(label, sizeof(label), "cases[%zu] %s", i,
		    cases[i].in);
		check_case(&cases[i], label);
	}
}

/* n octets of "aaa...", a dot after every 49th so no label is long. */
static void
mkdomain(char *buf, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		buf[i] = (i + 1) % 50 == 0 ? '.' : 'a';
	buf[n] = '\0';
}

static void
mkrun(char *buf, int c, size_t n)
{
	memset(buf, c, n);
	buf[n] = '\0';
}

struct lcase {
	size_t local, domain;	/* generated lengths */
	int quoted;		/* local part quoted (length incl. quotes) */
	const char *why;
};

static const struct lcase limits[] = {
	{ 64, 10, 0, NULL },
	{ 65, 10, 0, "Local part too long" },
	{ 64, 10, 1, NULL },
	{ 65, 10, 1, "Local part too long" },
	{ 1, 255, 0, NULL },	/* path 1+1+1+255+1 = 259: see below */
	{ 1, 256, 0, "Domain too long" },
	{ 64, 189, 0, NULL },	/* path exactly 256 */
	{ 64, 190, 0, "Address too long" },
	{ 63, 190, 0, NULL },
};

static void
test_limits(void)
{
	char local[128], dom[300], in[512], label[64];
	struct gh_pool *p;
	struct gh_path path;
	const char *why;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
		const struct lcase *l = &limits[i];
		const char *want = l->why;

		if (l->quoted) {
			mkrun(local, 'q', l->local);
			local[0] = local[l->local - 1] = '"';
		} else
			mkrun(local, 'l', l->local);
		mkdomain(dom, l->domain);
		snprintf(in, sizeof(in), "<%s@%s>", local, dom);
		/* A 255-octet domain cannot fit a 256-octet path. */
		if (want == NULL && strlen(in) > 256)
			want = "Address too long";
		snprintf(label, sizeof(label), "limits[%zu] local=%zu dom=%zu",
		    i, l->local, l->domain);

		p = gh_pool_create();
		why = NULL;
		T_BEGIN();
		rc = gh_path_parse(p, in, GH_PATH_RCPT, &path, &why);
		if (want == NULL) {
			T_EQ_INT(rc, 0);
			/* "qq...q" needs no quotes: they are dropped. */
			T_EQ_INT(strlen(path.addr.local),
			    l->quoted ? l->local - 2 : l->local);
			T_EQ_INT(strlen(path.addr.domain), l->domain);
		} else {
			T_EQ_INT(rc, -1);
			T_EQ_STR(why, want);
		}
		T_END(label);
		gh_pool_destroy(p);
	}
}

static void
test_label_63(void)
{
	char lab[80], in[128];
	struct gh_pool *p = gh_pool_create();
	struct gh_path path;
	const char *why = NULL;

	mkrun(lab, 'x', 63);
	snprintf(in, sizeof(in), "<a@%s.com>", lab);
	T_EQ_INT(gh_path_parse(p, in, GH_PATH_RCPT, &path, &why), 0);
	mkrun(lab, 'x', 64);
	snprintf(in, sizeof(in), "<a@%s.com>", lab);
	T_EQ_INT(gh_path_parse(p, in, GH_PATH_RCPT, &path, &why), -1);
	T_EQ_STR(why, "Domain label too long");
	gh_pool_destroy(p);
}

static void
test_params(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_path path;
	const char *why = NULL;

	T_EQ_INT(gh_path_parse(p, "<a@b.c> size=123 Body=8BITMIME smtputf8 "
	    "ENVID=QQ314159", GH_PATH_MAIL, &path, &why), 0);
	T_EQ_INT(path.nparams, 4);
	T_EQ_STR(path.params[0].key, "SIZE");
	T_EQ_STR(path.params[0].value, "123");
	T_EQ_STR(path.params[1].key, "BODY");
	T_EQ_STR(path.params[1].value, "8BITMIME");
	T_EQ_STR(path.params[2].key, "SMTPUTF8");
	T_CHECK(path.params[2].value == NULL);
	T_EQ_STR(path.params[3].value, "QQ314159");

	T_EQ_STR(gh_path_param(&path, "SIZE"), "123");
	T_EQ_STR(gh_path_param(&path, "size"), "123");
	T_EQ_STR(gh_path_param(&path, "body"), "8BITMIME");
	T_EQ_STR(gh_path_param(&path, "SMTPUTF8"), "");
	T_CHECK(gh_path_param(&path, "RET") == NULL);
	T_CHECK(gh_path_param(&path, "SIZ") == NULL);
	T_CHECK(gh_path_param(&path, NULL) == NULL);
	T_CHECK(gh_path_param(NULL, "SIZE") == NULL);
	gh_pool_destroy(p);
}

static void
test_null_why(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_path path;

	/* why may be NULL; s may be NULL. */
	T_EQ_INT(gh_path_parse(p, "junk", GH_PATH_MAIL, &path, NULL), -1);
	T_EQ_INT(gh_path_parse(p, NULL, GH_PATH_MAIL, &path, NULL), -1);
	gh_pool_destroy(p);
}

struct dcase {
	const char *in;
	int ok;
};

static const struct dcase domains[] = {
	{ "example.com", 1 },
	{ "localhost", 1 },
	{ "a", 1 },
	{ "1.2.3.4", 1 },	/* all-digit labels are still labels */
	{ "xn--bcher-kva.de", 1 },
	{ "b\xc3\xbc" "cher.de", 1 },
	{ "a-b.c", 1 },
	{ "", 0 },
	{ ".", 0 },
	{ "example.com.", 0 },
	{ ".example.com", 0 },
	{ "a..b", 0 },
	{ "-a.b", 0 },
	{ "a-.b", 0 },
	{ "a_b.c", 0 },
	{ "a b.c", 0 },
	{ "[192.0.2.1]", 0 },
	{ "b\xc3.de", 0 },
	{ "a\r\n", 0 },
};

static void
test_domain_valid(void)
{
	char buf[300], label[64];
	size_t i;

	for (i = 0; i < sizeof(domains) / sizeof(domains[0]); i++) {
		snprintf(label, sizeof(label), "domains[%zu]", i);
		T_BEGIN();
		T_EQ_INT(gh_domain_valid(domains[i].in), domains[i].ok);
		T_END(label);
	}
	T_BEGIN();
	mkdomain(buf, 255);
	T_EQ_INT(gh_domain_valid(buf), 1);
	mkdomain(buf, 256);
	T_EQ_INT(gh_domain_valid(buf), 0);
	mkrun(buf, 'x', 63);
	T_EQ_INT(gh_domain_valid(buf), 1);
	mkrun(buf, 'x', 64);
	T_EQ_INT(gh_domain_valid(buf), 0);
	T_EQ_INT(gh_domain_valid(NULL), 0);
	T_END("domain lengths");
}

int
main(void)
{
	test_table();
	test_limits();
	test_domain_valid();
	T_RUN(test_label_63);
	T_RUN(test_params);
	T_RUN(test_null_why);
	return t_done("test_address");
}
