/*
 * access.c - allow and deny lists for the client, its host name, HELO,
 * the sender and the recipients (Haraka's access plugin).
 *
 * Five checks, each with an allow list and a deny list:
 *
 *   check   hook          value                    entries
 *   client  connect       the client's address     ADDR, ADDR/BITS, /re/
 *   rdns    connect       forward-confirmed rDNS   name, /re/
 *   helo    helo, ehlo    the HELO/EHLO argument   name, /re/
 *   mail    mail          the reverse-path         addr, domain, <>, /re/
 *   rcpt    rcpt          each forward-path        addr, domain, /re/
 *
 * A name entry "example.test" matches that name and every name below it
 * ("mx.example.test"); for addresses the same goes for the domain, and
 * an entry with '@' matches that one address.  Everything compares
 * case-insensitively.  "/re/" is a POSIX extended regex, also
 * case-insensitive, against the whole value as text.
 *
 * Within one check an allow match wins over any deny match.  An allow at
 * connect (client or rdns) makes the connection trusted: no deny list of
 * this plugin applies to it afterwards.  An allow never accepts anything
 * by itself: the plugin then says CONT and the other plugins decide, so
 * rcpt_allow cannot open a relay.
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

#define NOTE_TRUSTED "access.trusted"

enum access_check { CK_CLIENT, CK_RDNS, CK_HELO, CK_MAIL, CK_RCPT, CK_COUNT };
enum access_side { SIDE_ALLOW, SIDE_DENY };

struct access_conf {
	struct gh_strlist lists[CK_COUNT][2];
	const char *deny_reply;
};

#define LIST(ck, side) offsetof(struct access_conf, lists[ck][side])

static const struct gh_directive access_directives[] = {
	{ "client_allow", GH_DT_STRLIST, LIST(CK_CLIENT, SIDE_ALLOW), "[ ]",
	  0, 0, NULL, "client addresses or networks to trust, or /regex/" },
	{ "client_deny", GH_DT_STRLIST, LIST(CK_CLIENT, SIDE_DENY), "[ ]",
	  0, 0, NULL, "client addresses or networks to refuse, or /regex/" },
	{ "rdns_allow", GH_DT_STRLIST, LIST(CK_RDNS, SIDE_ALLOW), "[ ]",
	  0, 0, NULL, "client host names (and below) to trust, or /regex/" },
	{ "rdns_deny", GH_DT_STRLIST, LIST(CK_RDNS, SIDE_DENY), "[ ]",
	  0, 0, NULL, "client host names (and below) to refuse, or /regex/" },
	{ "helo_allow", GH_DT_STRLIST, LIST(CK_HELO, SIDE_ALLOW), "[ ]",
	  0, 0, NULL, "HELO names (and below) exempt from helo_deny" },
	{ "helo_deny", GH_DT_STRLIST, LIST(CK_HELO, SIDE_DENY), "[ ]",
	  0, 0, NULL, "HELO names (and below) to refuse, or /regex/" },
	{ "mail_allow", GH_DT_STRLIST, LIST(CK_MAIL, SIDE_ALLOW), "[ ]",
	  0, 0, NULL, "senders exempt from mail_deny: addr, domain, <>, /re/" },
	{ "mail_deny", GH_DT_STRLIST, LIST(CK_MAIL, SIDE_DENY), "[ ]",
	  0, 0, NULL, "senders to refuse: address, domain, <>, /regex/" },
	{ "rcpt_allow", GH_DT_STRLIST, LIST(CK_RCPT, SIDE_ALLOW), "[ ]",
	  0, 0, NULL, "recipients exempt from rcpt_deny: addr, domain, /re/" },
	{ "rcpt_deny", GH_DT_STRLIST, LIST(CK_RCPT, SIDE_DENY), "[ ]",
	  0, 0, NULL, "recipients to refuse: address, domain, /regex/" },
	{ "deny_reply", GH_DT_STRING, offsetof(struct access_conf, deny_reply),
	  "\"Access denied\"", 0, 0, NULL,
	  "reply text; what was refused is appended" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

/* What each check is called in directives, logs and replies. */
static const struct {
	const char *name;
	const char *what;	/* in the reply: "Access denied: client X" */
} checks[CK_COUNT] = {
	{ "client", "client" },
	{ "rdns", "host name" },
	{ "helo", "HELO name" },
	{ "mail", "sender" },
	{ "rcpt", "recipient" },
};

enum entry_kind {
	E_NET,		/* address or network */
	E_NAME,		/* a name and the names below it */
	E_ADDR,		/* one mailbox */
	E_NULL,		/* the null reverse-path <> */
	E_REGEX
};

struct entry {
	enum entry_kind kind;
	const char *text;	/* as configured, for logs */
	char *key;		/* E_NAME, E_ADDR: lower case */
	struct gh_net net;	/* E_NET */
	regex_t re;		/* E_REGEX */
};

struct entries {
	struct entry *v;
	size_t n;
};

struct access_data {
	struct entries lists[CK_COUNT][2];
};

/* ------------------------------------------------------------------ */
/* Entries.                                                            */


static char *
lower_dup(const char *s)
{
	size_t len = strlen(s);
	char *d, *p;

	/* A trailing dot names the same host (RFC 1034 3.1). */
	if (len > 1 && s[len - 1] == '.')
		len--;
	if ((d = strndup(s, len)) == NULL)
		return NULL;
	for (p = d; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return d;
}

static int
is_regex(const char *s)
{
	size_t len = strlen(s);

	return len >= 2 && s[0] == '/' && s[len - 1] == '/';
}

/* Parse one entry of check ck.  Returns 0, or -1 with err filled. */
static int
entry_parse(struct entry *e, enum access_check ck, const char *s,
	    char *err, size_t errlen)
{
	char pat[1024], why[256];
	int rc;

	e->text = s;
	if (is_regex(s)) {
		snprintf(pat, sizeof(pat), "%.*s", (int)strlen(s) - 2, s + 1);
		rc = regcomp(&e->re, pat, REG_EXTENDED | REG_ICASE | REG_NOSUB);
		if (rc != 0) {
			regerror(rc, &e->re, why, sizeof(why));
			snprintf(err, errlen, "bad regex %s: %s", s, why);
			return -1;
		}
		e->kind = E_REGEX;
		return 0;
	}
	if (ck == CK_CLIENT) {
		if (gh_net_parse(s, &e->net) == 0) {
			e->kind = E_NET;
			return 0;
		}
		snprintf(err, errlen, "\"%s\" is not an IP address, a "
			 "network (ADDR/BITS) or a /regex/", s);
		return -1;
	}
	if (s[0] == '\0' || strchr(s, ' ') != NULL) {
		snprintf(err, errlen, "\"%s\" is not a name, an address or "
			 "a /regex/", s);
		return -1;
	}
	if (strcmp(s, "<>") == 0 && ck == CK_MAIL) {
		e->kind = E_NULL;
		return 0;
	}
	e->kind = (ck == CK_MAIL || ck == CK_RCPT) && strchr(s, '@') != NULL ?
	    E_ADDR : E_NAME;
	if ((e->key = lower_dup(s)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* Is name equal to key, or a name below it (".key" at its end)? */
static int
name_match(const char *name, const char *key)
{
	size_t n = strlen(name), k = strlen(key);

	if (n > 0 && name[n - 1] == '.')
		n--;
	if (n == k)
		return strncasecmp(name, key, k) == 0;
	return n > k && name[n - k - 1] == '.' &&
	    strncasecmp(name + n - k, key, k) == 0;
}

/* ------------------------------------------------------------------ */
/* Matching.  A value is what one check looks at.                       */

struct value {
	const char *text;		/* IP, name or mailbox, as text */
	const struct gh_conn *conn;	/* CK_CLIENT */
	const struct gh_addr *addr;	/* CK_MAIL, CK_RCPT */
};

static int
entry_match(const struct entry *e, const struct value *v)
{
	switch (e->kind) {
	case E_REGEX:
		return regexec(&e->re, v->text, 0, NULL, 0) == 0;
	case E_NET:
		return gh_net_match(&e->net, v->conn);
	case E_NULL:
		return v->addr != NULL && v->addr->is_null;
	case E_ADDR:
		return v->addr != NULL && strcasecmp(v->addr->mailbox,
		    e->key) == 0;
	case E_NAME:
		if (v->addr != NULL)
			return v->addr->domain != NULL &&
			    name_match(v->addr->domain, e->key);
		return name_match(v->text, e->key);
	}
	return 0;
}

static const struct entry *
list_match(const struct entries *l, const struct value *v)
{
	size_t i;

	for (i = 0; i < l->n; i++)
		if (entry_match(&l->v[i], v))
			return &l->v[i];
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Hooks.                                                              */

static enum gh_verdict
access_refuse(struct gh_call *c, enum access_check ck, const char *value,
	      const struct entry *e, enum gh_verdict verdict, int code)
{
	const struct access_conf *cf = c->plugin->conf;
	char clean[300];

	gh_sanitize(clean, sizeof(clean), value, strlen(value));
	gh_clog(c, GH_LOG_INFO, "%s %s refused by %s_deny entry %s",
		checks[ck].name, clean, checks[ck].name, e->text);
	gh_result(c, GH_FAIL, "%s %s in %s_deny", checks[ck].name, clean,
		  checks[ck].name);
	gh_reply(c, code, "5.7.1", "%s: %s %s", cf->deny_reply,
		 checks[ck].what, value);
	return verdict;
}

/*
 * Run check ck on v.  Returns 1 if allowed, -1 if denied (with *denied
 * set), 0 if neither list matched.
 */
static int
access_run(struct gh_call *c, enum access_check ck, const struct value *v,
	   const struct entry **denied)
{
	const struct access_data *d = c->plugin->data;
	const struct entry *e;
	char clean[300];

	if ((e = list_match(&d->lists[ck][SIDE_ALLOW], v)) != NULL) {
		gh_sanitize(clean, sizeof(clean), v->text, strlen(v->text));
		gh_result(c, GH_PASS, "%s %s in %s_allow", checks[ck].name,
			  clean, checks[ck].name);
		return 1;
	}
	if ((*denied = list_match(&d->lists[ck][SIDE_DENY], v)) != NULL)
		return -1;
	return 0;
}

static int
trusted(const struct gh_call *c)
{
	return gh_note_get(c->conn->notes, NOTE_TRUSTED) != NULL;
}

static enum gh_verdict
access_connect(struct gh_call *c)
{
	struct value client = { c->conn->remote_ip, c->conn, NULL };
	struct value rdns = { c->conn->rdns, NULL, NULL };
	const struct entry *client_e = NULL, *rdns_e = NULL;
	int rc_client, rc_rdns = 0;

	rc_client = access_run(c, CK_CLIENT, &client, &client_e);
	if (c->conn->rdns != NULL)
		rc_rdns = access_run(c, CK_RDNS, &rdns, &rdns_e);
	if (rc_client > 0 || rc_rdns > 0) {
		gh_note_set(c->conn->notes, NOTE_TRUSTED, "1");
		return GH_CONT;
	}
	/* At connect the client is shown the door (Haraka does the same):
	 * nothing it could say later would change the answer. */
	if (rc_client < 0)
		return access_refuse(c, CK_CLIENT, client.text, client_e,
				     GH_DENYDISCONNECT, 554);
	if (rc_rdns < 0)
		return access_refuse(c, CK_RDNS, rdns.text, rdns_e,
				     GH_DENYDISCONNECT, 554);
	return GH_CONT;
}

static enum gh_verdict
access_helo(struct gh_call *c)
{
	struct value v = { c->arg, NULL, NULL };
	const struct entry *e = NULL;

	if (trusted(c) || access_run(c, CK_HELO, &v, &e) >= 0)
		return GH_CONT;
	return access_refuse(c, CK_HELO, v.text, e, GH_DENY, 550);
}

static enum gh_verdict
access_path(struct gh_call *c, enum access_check ck)
{
	struct value v = { c->path->addr.mailbox, NULL, &c->path->addr };
	const struct entry *e = NULL;
	char shown[600];

	if (trusted(c) || access_run(c, ck, &v, &e) >= 0)
		return GH_CONT;
	snprintf(shown, sizeof(shown), "<%s>", v.text);
	return access_refuse(c, ck, shown, e, GH_DENY, 550);
}

static enum gh_verdict
access_mail(struct gh_call *c)
{
	return access_path(c, CK_MAIL);
}

static enum gh_verdict
access_rcpt(struct gh_call *c)
{
	return access_path(c, CK_RCPT);
}

/* ------------------------------------------------------------------ */
/* Life cycle.                                                         */

static void
access_fini(struct gh_plugin *p)
{
	struct access_data *d = p->data;
	size_t ck, side, i;

	if (d == NULL)
		return;
	for (ck = 0; ck < CK_COUNT; ck++) {
		for (side = 0; side < 2; side++) {
			struct entries *l = &d->lists[ck][side];

			for (i = 0; i < l->n; i++) {
				if (l->v[i].kind == E_REGEX)
					regfree(&l->v[i].re);
				free(l->v[i].key);
			}
			free(l->v);
		}
	}
	free(d);
	p->data = NULL;
}

static int
list_load(struct entries *l, enum access_check ck, enum access_side side,
	  const struct gh_strlist *src, const char *plugin, char *err,
	  size_t errlen)
{
	char why[512];
	size_t i;

	if (src->n == 0)
		return 0;
	if ((l->v = calloc(src->n, sizeof(*l->v))) == NULL) {
		snprintf(err, errlen, "%s: out of memory", plugin);
		return -1;
	}
	for (i = 0; i < src->n; i++) {
		if (entry_parse(&l->v[i], ck, src->v[i], why,
		    sizeof(why)) != 0) {
			/* A half-parsed entry holds nothing to free. */
			snprintf(err, errlen, "%s: %s_%s: %s", plugin,
				 checks[ck].name, side == SIDE_ALLOW ?
				 "allow" : "deny", why);
			return -1;
		}
		l->n++;
	}
	return 0;
}

static int
idle(const struct access_data *d, enum access_check ck)
{
	return d->lists[ck][SIDE_ALLOW].n == 0 && d->lists[ck][SIDE_DENY].n == 0;
}

static int
access_init(struct gh_plugin *p, char *err, size_t errlen)
{
	const struct access_conf *cf = p->conf;
	struct access_data *d = calloc(1, sizeof(*d));
	int ck, side;

	if ((p->data = d) == NULL) {
		snprintf(err, errlen, "%s: out of memory", p->name);
		return -1;
	}
	for (ck = 0; ck < CK_COUNT; ck++)
		for (side = 0; side < 2; side++)
			if (list_load(&d->lists[ck][side], ck, side,
			    &cf->lists[ck][side], p->name, err, errlen) != 0)
				return -1;
	/* A check whose two lists are empty has nothing to say at its
	 * hook; connect also decides trust, but only from its lists. */
	if (idle(d, CK_CLIENT) && idle(d, CK_RDNS))
		p->idle_hooks |= GH_HOOK_BIT(GH_HOOK_CONNECT);
	if (idle(d, CK_HELO))
		p->idle_hooks |= GH_HOOK_BIT(GH_HOOK_HELO) |
				 GH_HOOK_BIT(GH_HOOK_EHLO);
	if (idle(d, CK_MAIL))
		p->idle_hooks |= GH_HOOK_BIT(GH_HOOK_MAIL);
	if (idle(d, CK_RCPT))
		p->idle_hooks |= GH_HOOK_BIT(GH_HOOK_RCPT);
	return 0;
}

static const struct gh_hook_entry access_hooks[] = {
	{ GH_HOOK_CONNECT, access_connect },
	{ GH_HOOK_HELO, access_helo },
	{ GH_HOOK_EHLO, access_helo },
	{ GH_HOOK_MAIL, access_mail },
	{ GH_HOOK_RCPT, access_rcpt },
	{ 0, NULL }
};

const struct gh_module gh_module_access = {
	.abi = GH_ABI_VERSION,
	.name = "access",
	.description = "allow and deny lists for client, rDNS, HELO, sender, "
	    "recipient",
	.doc =
"Allow and deny lists, as Haraka's access plugin has them, for five\n"
"checks:\n"
"\n"
"  client  at connect, the client's IP address:\n"
"          \"192.0.2.1\", \"192.0.2.0/24\", \"2001:db8::/32\", /regex/\n"
"  rdns    at connect, the client's forward-confirmed host name, which\n"
"          the core looks up before lookup_rdns (skipped when there is\n"
"          none):\n"
"          \"example.test\" (that name and every name below it), /regex/\n"
"  helo    at HELO and EHLO, the name given: like rdns\n"
"  mail    at MAIL, the sender: \"user@example.test\" (that address),\n"
"          \"example.test\" (its domain and the domains below), \"<>\" (the\n"
"          null sender), /regex/ (against the address, \"\" for <>)\n"
"  rcpt    at RCPT, each recipient: like mail, without \"<>\"\n"
"\n"
"An entry that starts and ends with '/' is a POSIX extended regex; all\n"
"comparisons ignore case.  A bad entry stops start-up and `relayd -t`\n"
"names it.\n"
"\n"
"Decisions:\n"
"\n"
"  - In each check an allow match wins over any deny match.\n"
"  - A client matched by client_allow or rdns_allow is trusted: none of\n"
"    this plugin's deny lists applies to it, at connect or later.\n"
"  - A deny at connect answers 554 5.7.1 and closes the connection; at\n"
"    HELO, MAIL and RCPT it answers 550 5.7.1 and the client may go on\n"
"    (a refused RCPT refuses that recipient only).  The text is\n"
"    deny_reply and what was refused: \"550 5.7.1 Access denied: sender\n"
"    <spam@example.test>\".  Every refusal is logged with the entry that\n"
"    matched.\n"
"  - An allow only stops this plugin from refusing: it never accepts a\n"
"    recipient by itself (rcpt_allow cannot open a relay); the other\n"
"    plugins still decide.\n"
"\n"
"Example:\n"
"\n"
"    plugins = [ \"relay\", \"access\", \"host_list\", \"smtp_forward\" ];\n"
"    access = {\n"
"      client_allow = [ \"192.0.2.0/24\" ];\n"
"      client_deny = [ \"198.51.100.0/24\", \"/^203\\\\.0\\\\.113\\\\./\" ];\n"
"      rdns_deny = [ \"dynamic.example.net\", \"/(^|[.-])dsl[0-9-]*\\\\./\" ];\n"
"      helo_deny = [ \"localhost\" ];\n"
"      mail_deny = [ \"spammer.example\", \"bad@example.org\" ];\n"
"      mail_allow = [ \"good.spammer.example\" ];\n"
"      rcpt_deny = [ \"/^(abuse-test|noreply)@/\" ];\n"
"    };\n",
	.directives = access_directives,
	.conf_size = sizeof(struct access_conf),
	.hooks = access_hooks,
	.init = access_init,
	.fini = access_fini,
	.edits = GH_EDITS_NONE,
};
