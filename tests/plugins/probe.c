/*
 * probe.c - a test plugin, loaded as a shared object, that shows what a
 * host handed the plugins and asks for the edits the test configures.
 *
 * At data_post it makes every edit in `edits`, in order, and with
 * `report` it adds an X-Probe header stating what it saw of the
 * connection, the envelope and the message, so a test can compare the
 * host's view (milterd's macros, relayd's session) with what it sent.
 * `deny_rcpt` refuses recipients at rcpt with 550 5.1.1, and
 * `reject_subject` refuses a message at data_post with `reject_reply`.
 * In the report a recipient a plugin removed is marked "!".
 * `stall_rcpt` entries "mailbox:ms" block the thread at that recipient
 * for ms, as a plugin doing blocking work would: the host's other work
 * on that thread waits.
 *
 * Edit specs: "add:Name:value", "insert:IDX:Name:value",
 * "change:Name:NTH:value", "delete:Name:NTH", "rcpt_add:mailbox",
 * "rcpt_del:mailbox", "from:mailbox", "quarantine:reason".
 *
 * For the spool's delivery hooks: `get_mx` entries "domain=ROUTE" answer
 * the get_mx hook for that domain: OK with ROUTE as the "get_mx" note
 * ("host:port ..."), or ROUTE "DENY" / "DENYSOFT" as that verdict
 * ("DENY:ENH:TEXT" with that reply); other domains get CONT.  The deferred, bounce and delivered hooks each log
 * "probe hook HOOK <rcpt> id QUEUE-ID hop HOP: REPLY".
 */
#include "config.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "filter.h"

struct probe_conf {
	struct gh_strlist edits;
	const char *edit_subject;
	int report;
	struct gh_strlist deny_rcpt;
	const char *reject_subject;
	const char *reject_reply;
	struct gh_strlist get_mx;
	struct gh_strlist stall_rcpt;
};

static const struct gh_directive probe_directives[] = {
	{ "edits", GH_DT_STRLIST, offsetof(struct probe_conf, edits), "[ ]",
	  0, 0, NULL, "edits made at data_post (see probe.c)" },
	{ "edit_subject", GH_DT_STRING,
	  offsetof(struct probe_conf, edit_subject), "\"\"", 0, 0, NULL,
	  "make the edits only if the Subject contains this (empty: always)" },
	{ "report", GH_DT_BOOL, offsetof(struct probe_conf, report), "false",
	  0, 0, NULL, "add an X-Probe header describing what was seen" },
	{ "deny_rcpt", GH_DT_STRLIST, offsetof(struct probe_conf, deny_rcpt),
	  "[ ]", 0, 0, NULL, "recipients refused with 550 5.1.1" },
	{ "reject_subject", GH_DT_STRING,
	  offsetof(struct probe_conf, reject_subject), "\"\"", 0, 0, NULL,
	  "DENY at data_post when the Subject contains this (empty: never)" },
	{ "reject_reply", GH_DT_STRING,
	  offsetof(struct probe_conf, reject_reply),
	  "\"550:5.7.1:probe rejects this\"", 0, 0, NULL,
	  "the reply of that DENY: \"code:enh:text\"" },
	{ "get_mx", GH_DT_STRLIST, offsetof(struct probe_conf, get_mx), "[ ]",
	  0, 0, NULL, "\"domain=host:port ...\", \"domain=DENY\" or "
	  "\"domain=DENYSOFT\": get_mx answers" },
	{ "stall_rcpt", GH_DT_STRLIST, offsetof(struct probe_conf, stall_rcpt),
	  "[ ]", 0, 0, NULL, "\"mailbox:ms\": at that recipient, block the "
	  "thread for ms (a plugin that does blocking work)" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

/* stall_rcpt: hold the whole thread, as a plugin doing blocking work
 * would, so that other sessions' work waits behind it. */
static void
stall(const struct probe_conf *cf, const char *mailbox)
{
	size_t i, n = strlen(mailbox);

	for (i = 0; i < cf->stall_rcpt.n; i++) {
		const char *e = cf->stall_rcpt.v[i];

		if (strncasecmp(e, mailbox, n) == 0 && e[n] == ':')
			usleep((useconds_t)atoi(e + n + 1) * 1000);
	}
}

static enum gh_verdict
on_rcpt(struct gh_call *c)
{
	const struct probe_conf *cf = c->plugin->conf;
	size_t i;

	stall(cf, c->path->addr.mailbox);
	for (i = 0; i < cf->deny_rcpt.n; i++) {
		if (strcasecmp(cf->deny_rcpt.v[i],
			       c->path->addr.mailbox) == 0) {
			gh_reply(c, 550, "5.1.1", "probe: <%s> is not "
				 "accepted here", c->path->addr.mailbox);
			gh_result(c, GH_FAIL, "denied %s",
				  c->path->addr.mailbox);
			return GH_DENY;
		}
	}
	return GH_CONT;
}

static void
edit_one(struct gh_txn *t, const char *spec)
{
	char buf[1024], *f[5] = { NULL }, *save = NULL;
	struct gh_rcpt *r;
	int i, n;

	snprintf(buf, sizeof(buf), "%s", spec);
	f[0] = strtok_r(buf, ":", &save);
	n = strcmp(f[0] ? f[0] : "", "insert") == 0 ||
	    strcmp(f[0] ? f[0] : "", "change") == 0 ? 3 : 2;
	if (f[0] != NULL && strcmp(f[0], "delete") == 0)
		n = 2;
	for (i = 1; i <= n && f[i - 1] != NULL; i++)
		f[i] = strtok_r(NULL, i == n ? "" : ":", &save);
	if (f[0] == NULL || f[1] == NULL)
		return;
	if (strcmp(f[0], "add") == 0 && f[2] != NULL)
		gh_header_add(t, f[1], f[2]);
	else if (strcmp(f[0], "insert") == 0 && f[3] != NULL)
		gh_header_insert(t, (size_t)atoi(f[1]), f[2], f[3]);
	else if (strcmp(f[0], "change") == 0 && f[3] != NULL)
		gh_header_change(t, f[1], (size_t)atoi(f[2]), f[3]);
	else if (strcmp(f[0], "delete") == 0 && f[2] != NULL)
		gh_header_change(t, f[1], (size_t)atoi(f[2]), NULL);
	else if (strcmp(f[0], "rcpt_add") == 0)
		gh_rcpt_add(t, f[1]);
	else if (strcmp(f[0], "from") == 0)
		gh_sender_change(t, f[1]);
	else if (strcmp(f[0], "quarantine") == 0)
		gh_quarantine(t, f[1]);
	else if (strcmp(f[0], "rcpt_del") == 0)
		for (r = t->rcpts; r != NULL; r = r->next)
			if (strcmp(r->path.addr.mailbox, f[1]) == 0)
				gh_rcpt_remove(t, r);
}

static const char *
or_dash(const char *s)
{
	return s != NULL && s[0] != '\0' ? s : "-";
}

static void
report(struct gh_call *c)
{
	const struct gh_conn *k = c->conn;
	struct gh_txn *t = c->txn;
	char rcpts[512] = "";
	const struct gh_rcpt *r;
	size_t off = 0;
	const char *subj = t->msg ? gh_msg_header_get(t->msg, "Subject", 0) :
	    NULL;

	for (r = t->rcpts; r != NULL && off < sizeof(rcpts); r = r->next)
		off += (size_t)snprintf(rcpts + off, sizeof(rcpts) - off,
		    "%s%s%s", off ? "," : "", r->removed ? "!" : "",
		    r->path.addr.mailbox);
	gh_header_add(t, "X-Probe", gh_psprintf(t->pool,
	    "ip=%s port=%d rdns=%s helo=%s auth=%s relaying=%d tls=%d "
	    "host=%s local=%s from=%s rcpts=%s hdrs=%zu size=%" PRIu64
	    " subject=%s qid=%s rdns_status=%s milter=%d",
	    k->remote_ip, k->remote_port, or_dash(k->rdns), or_dash(k->helo),
	    or_dash(k->auth_user), k->relaying, k->tls, or_dash(k->hostname),
	    or_dash(k->local_ip), t->mail_from ?
	    or_dash(t->mail_from->addr.mailbox) : "-", or_dash(rcpts),
	    t->msg ? gh_msg_header_count(t->msg) : 0,
	    t->msg ? gh_msg_size(t->msg) : 0, or_dash(subj),
	    or_dash(gh_note_get(t->notes, "milter.i")),
	    or_dash(gh_note_get(k->notes, "rdns.status")), k->host_milter));
}

static enum gh_verdict
on_data_post(struct gh_call *c)
{
	const struct probe_conf *cf = c->plugin->conf;
	const char *subj = c->txn->msg ?
	    gh_msg_header_get(c->txn->msg, "Subject", 0) : NULL;
	size_t i;

	if (cf->reject_subject[0] != '\0' && subj != NULL &&
	    strstr(subj, cf->reject_subject) != NULL) {
		char code[8] = "", enh[16] = "", text[400] = "";

		sscanf(cf->reject_reply, "%7[^:]:%15[^:]:%399[^\n]", code, enh,
		       text);
		gh_reply(c, atoi(code), enh, "%s", text);
		gh_result(c, GH_FAIL, "subject");
		return GH_DENY;
	}
	if (cf->edit_subject[0] == '\0' || (subj != NULL &&
	    strstr(subj, cf->edit_subject) != NULL))
		for (i = 0; i < cf->edits.n; i++)
			edit_one(c->txn, cf->edits.v[i]);
	if (cf->report)
		report(c);
	gh_result(c, GH_PASS, "%zu edits", cf->edits.n);
	return GH_CONT;
}

/* "ENH:TEXT" (after "DENY:"): DENY with that enhanced code and text. */
static enum gh_verdict
deny_with(struct gh_call *c, const char *spec)
{
	const char *colon = strchr(spec, ':');
	char enh[16];

	if (colon == NULL || (size_t)(colon - spec) >= sizeof(enh))
		return GH_DENY;
	memcpy(enh, spec, (size_t)(colon - spec));
	enh[colon - spec] = '\0';
	gh_reply(c, 550, enh, "%s", colon + 1);
	return GH_DENY;
}

static enum gh_verdict
on_get_mx(struct gh_call *c)
{
	const struct probe_conf *cf = c->plugin->conf;
	size_t i, n = strlen(c->arg);

	for (i = 0; i < cf->get_mx.n; i++) {
		const char *e = cf->get_mx.v[i];

		if (strncasecmp(e, c->arg, n) != 0 || e[n] != '=')
			continue;
		gh_clog(c, GH_LOG_INFO, "probe hook get_mx %s id %s: %s",
			c->arg, c->txn->id, e + n + 1);
		if (strcmp(e + n + 1, "DENY") == 0)
			return GH_DENY;
		if (strcmp(e + n + 1, "DENYSOFT") == 0)
			return GH_DENYSOFT;
		if (strncmp(e + n + 1, "DENY:", 5) == 0)
			return deny_with(c, e + n + 6);
		gh_note_set(c->txn->notes, "get_mx", e + n + 1);
		return GH_OK;
	}
	return GH_CONT;
}

static enum gh_verdict
on_outcome(struct gh_call *c)
{
	const char *hop = gh_note_get(c->txn->notes, "spool.hop");

	gh_clog(c, GH_LOG_INFO, "probe hook %s <%s> id %s hop %s: %s",
		gh_hook_name(c->hook), c->rcpt->path.addr.mailbox, c->txn->id,
		or_dash(hop), c->arg);
	return GH_CONT;
}

static const struct gh_hook_entry probe_hooks[] = {
	{ GH_HOOK_RCPT, on_rcpt },
	{ GH_HOOK_DATA_POST, on_data_post },
	{ GH_HOOK_GET_MX, on_get_mx },
	{ GH_HOOK_DEFERRED, on_outcome },
	{ GH_HOOK_BOUNCE, on_outcome },
	{ GH_HOOK_DELIVERED, on_outcome },
	{ 0, NULL }
};

const struct gh_module gh_module = {
	.abi = GH_ABI_VERSION,
	.name = "probe",
	.description = "test plugin that reports what it saw and makes edits",
	.doc = "A test plugin: see tests/plugins/probe.c.\n",
	.directives = probe_directives,
	.conf_size = sizeof(struct probe_conf),
	.hooks = probe_hooks,
};
