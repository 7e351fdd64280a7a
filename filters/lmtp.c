/*
 * lmtp.c - the queue plugin that delivers each message over LMTP (RFC
 * 2033) to a local delivery agent (Dovecot, Cyrus, Postfix's lmtp
 * server ...) on a Unix socket or TCP, synchronously: the client gets
 * 250 only when the server said 250 for every recipient.
 *
 * Contract.  At `queue` the transaction goes out over a pooled
 * connection (filters/core/smtpc.c: LHLO, pipelined MAIL/RCPT/DATA, the
 * message dot-stuffed) and the hook returns GH_AGAIN.  After the final
 * dot the server answers once per accepted recipient (RFC 2033 4.2);
 * relayd answers its client once per message, so the replies are folded
 * into one verdict: all 2xx -> OK; all 5xx -> DENY with the first reply;
 * anything else -> DENYSOFT 451 naming the recipients that failed.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"
#include "smtpc.h"

struct lmtp_conf {
	const char *socket;
	const char *host;
	long long port;
	struct smtpc_timeouts to;
	long long max_connections;
};

static const struct gh_directive lmtp_directives[] = {
	{ "socket", GH_DT_STRING, offsetof(struct lmtp_conf, socket), "\"\"",
	  0, 0, NULL, "\"unix:/path\" for a Unix socket; empty: host and "
	  "port" },
	{ "host", GH_DT_STRING, offsetof(struct lmtp_conf, host),
	  "\"127.0.0.1\"", 0, 0, NULL,
	  "LMTP server: an IP address or a name resolved at start-up" },
	{ "port", GH_DT_INT, offsetof(struct lmtp_conf, port), "24", 1,
	  65535, NULL, "LMTP server's TCP port" },
	SMTPC_TIMEOUT_DIRECTIVES(struct lmtp_conf, to),
	{ "max_connections", GH_DT_INT,
	  offsetof(struct lmtp_conf, max_connections), "20", 1, 10000, NULL,
	  "connections per worker; more transactions wait" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

struct lmtp_queue {
	struct gh_call *call;
	struct smtpc_txn *x;
	const char *hop;
};

static int
lmtp_init(struct gh_plugin *p, char *err, size_t errlen)
{
	const struct lmtp_conf *cf = p->conf;
	struct smtpc_dest d;

	memset(&d, 0, sizeof(d));
	d.proto = SMTPC_LMTP;
	d.host = cf->host;
	d.port = (int)cf->port;
	if (smtpc_dest_socket(&d, "lmtp", cf->socket, err, errlen) != 0)
		return -1;
	smtpc_dest_timeouts(&d, &cf->to);
	d.max_connections = cf->max_connections;
	if ((p->data = smtpc_pool_new(p->base, &d, err, errlen)) == NULL)
		return -1;
	smtpc_plugin_timeout(p, &cf->to);
	return 0;
}

static void
lmtp_fini(struct gh_plugin *p)
{
	smtpc_pool_free(p->data);
	p->data = NULL;
}

/*
 * Fold the per-recipient replies to the final dot into one verdict.
 * When some recipients got the message and others did not, 451 is the
 * only answer that loses nobody: the client retries the whole message
 * and the recipients that already have it get it a second time.  SMTP
 * has no way to say "delivered to these only" (RFC 5321 6.1 leaves us
 * 250 or a refusal for the message), so a duplicate is the lesser harm.
 */
static enum gh_verdict
lmtp_final(struct gh_call *c, const char *hop, const struct smtpc_result *res)
{
	char list[400] = "";
	const char *enh4 = NULL;
	size_t i, len = 0, ndelivered = 0, nperm = 0;
	const struct smtpc_reply *first = NULL;

	for (i = 0; i < res->nrcpts; i++) {
		const struct smtpc_rcpt *r = &res->rcpts[i];

		if (r->refused)
			continue;
		if (!r->failed) {
			ndelivered++;
			continue;
		}
		if (first == NULL)
			first = &r->final;
		if (r->final.code / 100 == 5 && !r->final.local)
			nperm++;
		else if (enh4 == NULL && r->final.enh[0] == '4')
			enh4 = r->final.enh;
		gh_clog(c, GH_LOG_INFO, "%s did not deliver to <%s>: %d %s %s",
			hop, r->mailbox, r->final.code, r->final.enh,
			r->final.text);
		smtpc_rcpt_list_add(list, sizeof(list), &len, r->mailbox,
				    &r->final);
	}
	if (ndelivered == 0 && nperm == res->nfailed && first != NULL)
		return smtpc_verdict(c, hop, first, 0);
	if (ndelivered > 0)
		gh_clog(c, GH_LOG_WARN, "%s delivered to %zu of %zu "
			"recipients: answering 451, the client's retry "
			"duplicates the message for those %zu", hop,
			ndelivered, ndelivered + res->nfailed, ndelivered);
	gh_result(c, GH_ERR, "%s delivered %zu of %zu", hop, ndelivered,
		  ndelivered + res->nfailed);
	gh_reply(c, 451, enh4 != NULL ? enh4 : "4.0.0", "delivered to %zu of "
		 "%zu recipients, failed: %s", ndelivered,
		 ndelivered + res->nfailed, list);
	return GH_DENYSOFT;
}

static void
lmtp_done(void *arg, const struct smtpc_result *res)
{
	struct lmtp_queue *q = arg;
	struct gh_call *c = q->call;
	struct gh_txn *t = c->txn;
	const struct smtpc_reply *r = &res->reply;
	enum gh_verdict v;

	q->x = NULL;
	if (res->stage == SMTPC_ST_RCPT && !r->local)
		v = smtpc_rcpt_verdict(c, q->hop, res);
	else if (res->stage != SMTPC_ST_DOT)
		v = smtpc_verdict(c, q->hop, r, 0);
	else if (res->nfailed > 0)
		v = lmtp_final(c, q->hop, res);
	else {
		t->queue_reply = gh_psprintf(t->pool, "%s; delivered to %zu "
		    "recipient%s, server said: %s%s%s", t->id, res->nrcpts,
		    res->nrcpts == 1 ? "" : "s", r->enh, r->enh[0] ? " " : "",
		    r->text);
		gh_clog(c, GH_LOG_INFO, "delivered %s to %zu recipients via "
			"%s: %d %s %s", t->id, res->nrcpts, q->hop, r->code,
			r->enh, r->text);
		gh_result(c, GH_PASS, "%s %d %s", q->hop, r->code, r->enh);
		v = GH_OK;
	}
	gh_resume(c, v);
}

static void
lmtp_cancel(void *arg)
{
	struct lmtp_queue *q = arg;

	/* Closed before the final dot: the server delivers nothing. */
	smtpc_txn_cancel(q->x);
	q->x = NULL;
}

static enum gh_verdict
lmtp_queue(struct gh_call *c)
{
	struct smtpc_pool *pool = c->plugin->data;
	struct gh_txn *t = c->txn;
	struct lmtp_queue *q = gh_palloc(t->pool, sizeof(*q));
	const struct gh_rcpt *r;

	for (r = t->rcpts; r != NULL && r->removed; r = r->next)
		;
	if (r == NULL) {
		gh_clog(c, GH_LOG_INFO, "no recipients left, nothing "
			"delivered");
		gh_result(c, GH_SKIP, "no recipients");
		t->queue_reply = gh_psprintf(t->pool, "%s; no recipients "
		    "left", t->id);
		return GH_OK;
	}
	q->call = c;
	q->hop = smtpc_pool_name(pool);
	q->x = smtpc_txn_start(pool, c->conn->hostname, t, lmtp_done, q);
	if (q->x == NULL) {
		gh_clog(c, GH_LOG_ERR, "out of memory");
		gh_reply(c, 451, "4.3.0", "Local error, try again later");
		return GH_DENYSOFT;
	}
	gh_on_cancel(c, lmtp_cancel, q);
	return GH_AGAIN;
}

static const struct gh_hook_entry lmtp_hooks[] = {
	{ GH_HOOK_QUEUE, lmtp_queue },
	{ 0, NULL }
};

static const char lmtp_doc[] =
"lmtp - deliver each message over LMTP (RFC 2033).\n"
"\n"
"At the queue hook the message goes to the LMTP server on a Unix socket\n"
"(socket = \"unix:/path\") or on host:port, and the client's reply waits\n"
"for the server's.  LHLO uses relayd's hostname; MAIL, the RCPTs and\n"
"DATA are pipelined when the server offers PIPELINING (LMTP servers\n"
"do); SIZE, BODY=8BITMIME and SMTPUTF8 pass as for smtp_forward.\n"
"Connections are pooled per worker (max_connections), kept idle for\n"
"idle_timeout seconds and checked with RSET before reuse.\n"
"\n"
"A recipient refused at RCPT: the message is not sent (no final dot),\n"
"and the client gets 451 if any refusal was temporary, 550 if all were\n"
"permanent: no recipient is lost, none gets it twice.\n"
"\n"
"After the final dot the server replies once per accepted recipient\n"
"(RFC 2033 4.2), but relayd answers its client once per message:\n"
"\n"
"  every reply 2xx          250 2.0.0 Message accepted: ID; delivered to\n"
"                           N recipients, server said: ...\n"
"  every reply 5xx          550 with the first reply's enhanced code\n"
"  any 4xx, or some         451 (the first 4xx's enhanced code, else\n"
"  delivered and some not   4.0.0) naming the recipients that failed\n"
"\n"
"In the last case the recipients that were delivered get the message\n"
"again when the client retries: SMTP cannot say \"delivered to these\n"
"only\", a 250 would lose the others, and a 550 would bounce a message\n"
"some recipients have.  A duplicate is the lesser harm; the log line\n"
"(warning) names the case.  Put recipients that often fail temporarily\n"
"(quota) in their own transactions to avoid it, or deliver through a\n"
"spool.\n"
"\n"
"No server, refused connection, timeout: 451 4.4.1; connection lost\n"
"mid-session: 451 4.4.2 (replies not received count as failed).  The\n"
"plugin's `timeout` does not apply (a deadline over the whole could cut\n"
"the wait for the replies to the final dot short, and make duplicates):\n"
"each step has its own timeout, and the wait for a free connection is\n"
"at most data_timeout (then 451 4.4.1).\n"
"\n"
"Example:\n"
"\n"
"  plugins = [ \"host_list\", \"lmtp\" ];\n"
"  lmtp = { socket = \"unix:/run/dovecot/lmtp\"; };\n";

const struct gh_module gh_module_lmtp = {
	.abi = GH_ABI_VERSION,
	.name = "lmtp",
	.description = "deliver each message over LMTP; 250 only when every "
	    "recipient got it",
	.doc = lmtp_doc,
	.directives = lmtp_directives,
	.conf_size = sizeof(struct lmtp_conf),
	.hooks = lmtp_hooks,
	.init = lmtp_init,
	.fini = lmtp_fini,
	.edits = GH_EDITS_NONE,
};
