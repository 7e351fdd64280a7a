/*
 * smtp_forward.c - the queue plugin that hands each accepted message to
 * the next hop over SMTP, synchronously: the client gets 250 only after
 * the next hop said 250 to the final dot (RFC 5321 6.1: we never take
 * responsibility for a message the next hop did not take).
 *
 * Contract.  At `queue` the transaction goes to the next hop chosen by
 * the recipients' domain (`routes`, else host:port) over a pooled
 * connection (filters/core/smtpc.c) and the hook returns GH_AGAIN; the
 * hop's answer resumes it: 250 -> OK with the hop's words in the reply,
 * 5xx -> DENY 550, 4xx or no answer -> DENYSOFT 451.  In rcpt_mode
 * "live" the hop session opens at `mail` and each recipient is put to
 * the hop at `rcpt_ok`, so the client learns the hop's verdict per
 * recipient.  Cancelling a pending hook closes the hop connection: a
 * half-done transaction is never reused.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "filter.h"
#include "smtpc.h"

#define MODE_TRANSACTION 0
#define MODE_LIVE 1
#define NOTE_LIVE "smtp_forward.live"

struct fwd_conf {
	const char *host;
	long long port;
	struct gh_strlist routes;
	int rcpt_mode;
	struct smtpc_timeouts to;
	long long max_connections;
	int tls;			/* enum smtpc_tls */
	const char *tls_ca;
	int tls_verify;
	const char *tls_verify_name;
};

static const char *const mode_choices[] = { "transaction", "live", NULL };

static const struct gh_directive fwd_directives[] = {
	{ "host", GH_DT_STRING, offsetof(struct fwd_conf, host),
	  "\"127.0.0.1\"", 0, 0, NULL,
	  "next hop: an IP address or a name resolved at start-up" },
	{ "port", GH_DT_INT, offsetof(struct fwd_conf, port), "25", 1, 65535,
	  NULL, "next hop's port" },
	{ "routes", GH_DT_STRLIST, offsetof(struct fwd_conf, routes), "[ ]",
	  0, 0, NULL, "per recipient domain: \"domain=host:port\"; "
	  "\".domain\" also matches its subdomains" },
	{ "rcpt_mode", GH_DT_ENUM, offsetof(struct fwd_conf, rcpt_mode),
	  "\"transaction\"", 0, 0, mode_choices,
	  "transaction: the whole envelope at queue time; live: MAIL and "
	  "each RCPT put to the hop as the client sends them" },
	SMTPC_TIMEOUT_DIRECTIVES(struct fwd_conf, to),
	{ "max_connections", GH_DT_INT,
	  offsetof(struct fwd_conf, max_connections), "20", 1, 10000, NULL,
	  "connections per next hop and worker; more transactions wait" },
	{ "tls", GH_DT_ENUM, offsetof(struct fwd_conf, tls),
	  "\"opportunistic\"", 0, 0, smtpc_tls_choices,
	  "STARTTLS to the next hop: off; opportunistic (when offered, "
	  "certificate not checked, clear text otherwise); required (no "
	  "TLS: 451 4.7.4 or 4.7.5, nothing sent); a route may say "
	  "\" tls=MODE\"" },
	{ "tls_ca", GH_DT_STRING, offsetof(struct fwd_conf, tls_ca), "\"\"",
	  0, 0, NULL, "PEM file of the CAs tls_verify trusts; \"\": the "
	  "system's" },
	{ "tls_verify", GH_DT_BOOL, offsetof(struct fwd_conf, tls_verify),
	  "false", 0, 0, NULL, "check the hop's certificate chain and name "
	  "(needs tls = \"required\"); a failed check is 451 4.7.5" },
	{ "tls_verify_name", GH_DT_STRING,
	  offsetof(struct fwd_conf, tls_verify_name), "\"\"", 0, 0, NULL,
	  "the name the certificate must carry; \"\": the hop's host (a "
	  "route's own host for a route)" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

struct route {
	const char *domain;		/* "example.test" or ".example.test" */
	char *host;
	struct smtpc_pool *pool;
};

struct fwd {
	struct smtpc_pool *def;
	struct route *routes;
	size_t nroutes;
};

/* One pending queue hook. */
struct fwd_queue {
	struct gh_call *call;
	struct smtpc_txn *x;
	const char *hop;
};

/* Live mode: the hop session that follows the client's transaction. */
struct fwd_live {
	struct fwd *fwd;
	struct gh_txn *t;
	struct smtpc_wait *wait;
	struct smtpc_conn *conn;
	struct gh_call *call;		/* the mail or rcpt_ok call pending */
	const char *from;		/* the sender the hop accepted */
	const char **rcpts;		/* the recipients the hop accepted */
	size_t nrcpts, cap;
	struct smtpc_reply lost;	/* why the session ended, if it did */
};

/* ------------------------------------------------------------------ */
/* Configuration.                                                      */

static struct smtpc_dest
dest_from(const struct fwd_conf *cf, const char *host, int port, int tls)
{
	struct smtpc_dest d;

	memset(&d, 0, sizeof(d));
	d.proto = SMTPC_SMTP;
	d.host = host;
	d.port = port;
	smtpc_dest_timeouts(&d, &cf->to);
	d.max_connections = cf->max_connections;
	d.tls = (enum smtpc_tls)tls;
	/* Verification belongs to required TLS; a route that relaxes the
	 * mode also drops the check (RFC 7435: opportunistic checks
	 * nothing). */
	d.tls_verify = cf->tls_verify && tls == SMTPC_TLS_REQUIRED;
	d.tls_ca = cf->tls_ca;
	d.tls_verify_name = cf->tls_verify_name;
	return d;
}

/* smtpc's start-up errors say what; this says whose. */
static void
pool_err(char *err, size_t errlen, const char *what)
{
	char why[512];

	snprintf(why, sizeof(why), "%s", err);
	snprintf(err, errlen, "smtp_forward: %s: %s", what, why);
}

/* A route's " tls=MODE" suffix, cut off buf; -1 when bad. */
static int
route_tls(char *buf, int dflt)
{
	char *sp = strchr(buf, ' ');
	int i;

	if (sp == NULL)
		return dflt;
	*sp++ = '\0';
	while (*sp == ' ')
		sp++;
	if (strncmp(sp, "tls=", 4) != 0)
		return -1;
	for (i = 0; smtpc_tls_choices[i] != NULL; i++)
		if (strcmp(sp + 4, smtpc_tls_choices[i]) == 0)
			return i;
	return -1;
}

/* "domain=host:port", "domain=[v6]:port" or "domain=host", each
 * optionally followed by " tls=off|opportunistic|required". */
static int
route_parse(struct gh_plugin *p, struct route *rt, const char *spec,
	    char *err, size_t errlen)
{
	const struct fwd_conf *cf = p->conf;
	struct smtpc_dest d;
	char buf[512], *eq, *host, *port = NULL, *end;
	long n = cf->port;
	int tls;

	snprintf(buf, sizeof(buf), "%s", spec);
	if ((tls = route_tls(buf, cf->tls)) < 0)
		goto bad;
	if ((eq = strchr(buf, '=')) == NULL || eq == buf)
		goto bad;
	*eq = '\0';
	host = eq + 1;
	if (!gh_domain_valid(buf[0] == '.' ? buf + 1 : buf))
		goto bad;
	if (host[0] == '[') {
		if ((end = strchr(host, ']')) == NULL)
			goto bad;
		*end = '\0';
		host++;
		if (end[1] == ':')
			port = end + 2;
		else if (end[1] != '\0')
			goto bad;
	} else if ((port = strrchr(host, ':')) != NULL) {
		*port++ = '\0';
	}
	if (host[0] == '\0')
		goto bad;
	if (port != NULL) {
		n = strtol(port, &end, 10);
		if (port[0] == '\0' || *end != '\0' || n < 1 || n > 65535)
			goto bad;
	}
	rt->domain = strdup(buf);
	/* The pool keeps the host: it must outlive buf. */
	if ((rt->host = strdup(host)) == NULL || rt->domain == NULL) {
		snprintf(err, errlen, "smtp_forward: out of memory");
		return -1;
	}
	d = dest_from(cf, rt->host, (int)n, tls);
	if ((rt->pool = smtpc_pool_new(p->base, &d, err, errlen)) == NULL) {
		pool_err(err, errlen, spec);
		return -1;
	}
	return 0;
bad:
	snprintf(err, errlen, "smtp_forward: routes: \"%s\": expected "
		 "\"domain=host:port\" and optionally \" tls=off|"
		 "opportunistic|required\"", spec);
	return -1;
}

static void
fwd_fini(struct gh_plugin *p)
{
	struct fwd *f = p->data;
	size_t i;

	if (f == NULL)
		return;
	for (i = 0; i < f->nroutes; i++) {
		smtpc_pool_free(f->routes[i].pool);
		free((char *)f->routes[i].domain);
		free(f->routes[i].host);
	}
	free(f->routes);
	smtpc_pool_free(f->def);
	free(f);
	p->data = NULL;
}

static int
fwd_init(struct gh_plugin *p, char *err, size_t errlen)
{
	const struct fwd_conf *cf = p->conf;
	struct smtpc_dest d = dest_from(cf, cf->host, (int)cf->port, cf->tls);
	struct fwd *f = calloc(1, sizeof(*f));
	size_t i;

	if (f == NULL) {
		snprintf(err, errlen, "smtp_forward: out of memory");
		return -1;
	}
	p->data = f;
	if (cf->rcpt_mode == MODE_LIVE && cf->routes.n > 0) {
		snprintf(err, errlen, "smtp_forward: rcpt_mode \"live\" talks "
			 "to one next hop from MAIL on: routes need rcpt_mode "
			 "\"transaction\"");
		return -1;
	}
	if (cf->tls_verify && cf->tls != SMTPC_TLS_REQUIRED) {
		snprintf(err, errlen, "smtp_forward: tls_verify needs tls = "
			 "\"required\" (opportunistic TLS checks no "
			 "certificate: RFC 7435)");
		return -1;
	}
	if ((f->def = smtpc_pool_new(p->base, &d, err, errlen)) == NULL) {
		pool_err(err, errlen, cf->host);
		return -1;
	}
	f->routes = calloc(cf->routes.n + 1, sizeof(*f->routes));
	if (f->routes == NULL) {
		snprintf(err, errlen, "smtp_forward: out of memory");
		return -1;
	}
	for (i = 0; i < cf->routes.n; i++, f->nroutes++)
		if (route_parse(p, &f->routes[i], cf->routes.v[i], err,
		    errlen) != 0)
			return -1;
	smtpc_plugin_timeout(p, &cf->to);
	return 0;
}

static struct smtpc_pool *
route_for(const struct fwd *f, const char *domain)
{
	size_t i, dl, rl;

	if (domain == NULL)
		return f->def;
	dl = strlen(domain);
	for (i = 0; i < f->nroutes; i++) {
		const char *r = f->routes[i].domain;

		if (r[0] != '.') {
			if (strcasecmp(r, domain) == 0)
				return f->routes[i].pool;
			continue;
		}
		rl = strlen(r);
		if (dl > rl && strcasecmp(domain + dl - rl, r) == 0)
			return f->routes[i].pool;
	}
	return f->def;
}

static const struct gh_rcpt *
first_rcpt(const struct gh_txn *t)
{
	const struct gh_rcpt *r;

	for (r = t->rcpts; r != NULL; r = r->next)
		if (!r->removed)
			return r;
	return NULL;
}

/* ------------------------------------------------------------------ */
/* queue.                                                              */

static void
queue_done(void *arg, const struct smtpc_result *res)
{
	struct fwd_queue *q = arg;
	struct gh_call *c = q->call;
	struct gh_txn *t = c->txn;
	const struct smtpc_reply *r = &res->reply;
	enum gh_verdict v;

	q->x = NULL;
	if (res->stage == SMTPC_ST_RCPT && !r->local)
		v = smtpc_rcpt_verdict(c, q->hop, res);
	else if (res->stage == SMTPC_ST_DOT && r->code / 100 == 2 &&
	    !r->local) {
		t->queue_reply = gh_psprintf(t->pool, "%s; next hop said: %s%s"
		    "%s", t->id, r->enh, r->enh[0] ? " " : "", r->text);
		gh_clog(c, GH_LOG_INFO, "forwarded %s to %s (%s%s): %d %s %s",
			t->id, q->hop, res->tls[0] ? "TLS " : "no TLS",
			res->tls, r->code, r->enh, r->text);
		gh_result(c, GH_PASS, "%s %d %s", q->hop, r->code, r->enh);
		v = GH_OK;
	} else {
		v = smtpc_verdict(c, q->hop, r, 0);
	}
	gh_resume(c, v);
}

static void
queue_cancel(void *arg)
{
	struct fwd_queue *q = arg;

	/* Abandoned (deadline or client gone): the hop connection is
	 * closed mid-transaction, so the hop delivers nothing. */
	smtpc_txn_cancel(q->x);
	q->x = NULL;
}

static enum gh_verdict
queue_start(struct gh_call *c, struct fwd_queue *q, struct smtpc_pool *pool)
{
	q->hop = smtpc_pool_name(pool);
	q->x = smtpc_txn_start(pool, c->conn->hostname, c->txn, queue_done, q);
	if (q->x == NULL) {
		gh_clog(c, GH_LOG_ERR, "out of memory");
		gh_reply(c, 451, "4.3.0", "Local error, try again later");
		return GH_DENYSOFT;
	}
	gh_on_cancel(c, queue_cancel, q);
	return GH_AGAIN;
}

static int
same_envelope(const struct fwd_live *lv, const struct gh_txn *t)
{
	const struct gh_rcpt *r;
	size_t i = 0;

	if (t->mail_from == NULL || lv->from == NULL ||
	    strcmp(t->mail_from->addr.mailbox, lv->from) != 0)
		return 0;
	for (r = t->rcpts; r != NULL; r = r->next) {
		if (r->removed)
			continue;
		if (i >= lv->nrcpts || strcmp(r->path.addr.mailbox,
		    lv->rcpts[i]) != 0)
			return 0;
		i++;
	}
	return i == lv->nrcpts;
}

static enum gh_verdict
fwd_queue(struct gh_call *c)
{
	const struct fwd_conf *cf = c->plugin->conf;
	struct fwd *f = c->plugin->data;
	struct gh_txn *t = c->txn;
	struct fwd_queue *q = gh_palloc(t->pool, sizeof(*q));
	struct fwd_live *lv = gh_note_getp(t->notes, NOTE_LIVE);
	const struct gh_rcpt *first = first_rcpt(t), *r;
	struct smtpc_pool *pool;
	struct smtpc_reply why;

	q->call = c;
	if (first == NULL) {
		/* Every recipient was removed by a plugin: nothing to do,
		 * and nobody to refuse it for. */
		gh_clog(c, GH_LOG_INFO, "no recipients left, nothing "
			"forwarded");
		gh_result(c, GH_SKIP, "no recipients");
		t->queue_reply = gh_psprintf(t->pool, "%s; no recipients "
		    "left", t->id);
		return GH_OK;
	}
	if (cf->rcpt_mode == MODE_LIVE && lv != NULL && lv->conn != NULL) {
		if (same_envelope(lv, t)) {
			struct smtpc_conn *conn = lv->conn;

			/* The hop holds exactly our envelope: DATA only;
			 * unless the headers need SMTPUTF8, which its MAIL
			 * could not know. */
			lv->conn = NULL;
			q->hop = smtpc_pool_name(f->def);
			if (smtpc_utf8_refused(conn, t, NULL, &why)) {
				smtpc_release(conn, 0);
				return smtpc_verdict(c, q->hop, &why, 0);
			}
			q->x = smtpc_txn_data(conn, t, lv->nrcpts, queue_done,
					      q);
			if (q->x == NULL) {
				smtpc_release(conn, 0);
				gh_reply(c, 451, "4.3.0", "Local error, try "
					 "again later");
				return GH_DENYSOFT;
			}
			gh_on_cancel(c, queue_cancel, q);
			return GH_AGAIN;
		}
		/* A later plugin refused or removed a recipient the hop
		 * took, or changed the sender: start over, whole. */
		gh_clog(c, GH_LOG_DEBUG, "envelope changed since the hop saw "
			"it: sending it again in one transaction");
		smtpc_release(lv->conn, 1);
		lv->conn = NULL;
	}
	pool = route_for(f, first->path.addr.domain);
	for (r = first; r != NULL; r = r->next)
		if (!r->removed && route_for(f, r->path.addr.domain) != pool) {
			/* Only a plugin adding recipients gets here: the
			 * rcpt_ok check keeps one next hop per message. */
			gh_clog(c, GH_LOG_WARN, "recipients <%s> and <%s> have "
				"different next hops", first->path.addr.mailbox,
				r->path.addr.mailbox);
			gh_reply(c, 451, "4.3.0", "Recipients have different "
				 "next hops");
			return GH_DENYSOFT;
		}
	return queue_start(c, q, pool);
}

/* ------------------------------------------------------------------ */
/* Live mode: mail and rcpt_ok go to the hop as they come.              */

static void
live_lost(void *arg, const struct smtpc_reply *err)
{
	struct fwd_live *lv = arg;
	struct gh_call *c = lv->call;

	lv->conn = NULL;
	lv->lost = *err;
	if (c == NULL)
		return;		/* the next rcpt_ok or queue learns it */
	lv->call = NULL;
	gh_resume(c, smtpc_verdict(c, smtpc_pool_name(lv->fwd->def), err, 1));
}

static void
live_cancel(void *arg)
{
	struct fwd_live *lv = arg;

	lv->call = NULL;
	smtpc_acquire_cancel(lv->wait);
	lv->wait = NULL;
	if (lv->conn != NULL)
		smtpc_release(lv->conn, 0);
	lv->conn = NULL;
	memset(&lv->lost, 0, sizeof(lv->lost));
	lv->lost.code = 451;
	lv->lost.local = 1;
	snprintf(lv->lost.enh, sizeof(lv->lost.enh), "4.4.2");
	snprintf(lv->lost.text, sizeof(lv->lost.text), "next hop session "
		 "abandoned");
}

/* The transaction's pool dies: give the hop connection back. */
static void
live_free(void *arg)
{
	struct fwd_live *lv = arg;

	smtpc_acquire_cancel(lv->wait);
	lv->wait = NULL;
	if (lv->conn != NULL)
		smtpc_release(lv->conn, lv->call == NULL);
	lv->conn = NULL;
	free(lv->rcpts);
}

static void
live_mail_reply(void *arg, struct smtpc_conn *conn, const struct smtpc_reply *r)
{
	struct fwd_live *lv = arg;
	struct gh_call *c = lv->call;

	lv->call = NULL;
	if (r->code / 100 == 2) {
		lv->from = gh_pstrdup(lv->t->pool, lv->t->mail_from ?
		    lv->t->mail_from->addr.mailbox : "");
		gh_result(c, GH_PASS, "%s took MAIL",
			  smtpc_pool_name(lv->fwd->def));
		gh_resume(c, GH_CONT);
		return;
	}
	/* After a 421 the hop closes: never back to the pool. */
	smtpc_release(conn, r->code != 421);
	lv->conn = NULL;
	lv->lost = *r;
	gh_resume(c, smtpc_verdict(c, smtpc_pool_name(lv->fwd->def), r, 1));
}

static void
live_conn(void *arg, struct smtpc_conn *conn, const struct smtpc_reply *err)
{
	struct fwd_live *lv = arg;
	struct gh_call *c = lv->call;
	const struct gh_path *f = lv->t->mail_from;
	struct smtpc_reply why;
	char params[256];

	lv->wait = NULL;
	if (conn == NULL) {
		lv->call = NULL;
		lv->lost = *err;
		gh_resume(c, smtpc_verdict(c, smtpc_pool_name(lv->fwd->def),
					 err, 1));
		return;
	}
	lv->conn = conn;
	smtpc_set_owner(conn, live_lost, lv);
	if (smtpc_mail_params(conn, lv->t, params, sizeof(params),
	    &why) != 0) {
		lv->call = NULL;
		smtpc_release(conn, 1);
		lv->conn = NULL;
		lv->lost = why;
		gh_resume(c, smtpc_verdict(c, smtpc_pool_name(lv->fwd->def),
					 &why, 1));
		return;
	}
	smtpc_send(conn, ((const struct fwd_conf *)c->plugin->conf)->
		   to.command, live_mail_reply, lv, "MAIL FROM:<%s>%s",
		   f == NULL || f->addr.is_null ? "" : f->addr.mailbox, params);
}

static enum gh_verdict
fwd_mail(struct gh_call *c)
{
	const struct fwd_conf *cf = c->plugin->conf;
	struct gh_txn *t = c->txn;
	struct fwd_live *lv;

	if (cf->rcpt_mode != MODE_LIVE || t == NULL)
		return GH_CONT;
	lv = gh_palloc(t->pool, sizeof(*lv));
	lv->fwd = c->plugin->data;
	lv->t = t;
	lv->call = c;
	gh_note_setp(t->notes, NOTE_LIVE, lv);
	gh_pool_cleanup(t->pool, live_free, lv);
	lv->wait = smtpc_acquire(lv->fwd->def, c->conn->hostname, live_conn,
				 lv);
	if (lv->wait == NULL) {
		lv->call = NULL;
		gh_reply(c, 451, "4.3.0", "Local error, try again later");
		return GH_DENYSOFT;
	}
	gh_on_cancel(c, live_cancel, lv);
	return GH_AGAIN;
}

static void
live_rcpt_reply(void *arg, struct smtpc_conn *conn, const struct smtpc_reply *r)
{
	struct fwd_live *lv = arg;
	struct gh_call *c = lv->call;

	(void)conn;
	lv->call = NULL;
	if (r->code / 100 != 2) {
		gh_resume(c, smtpc_verdict(c, smtpc_pool_name(lv->fwd->def), r,
					 1));
		return;
	}
	if (lv->nrcpts == lv->cap) {
		size_t cap = lv->cap ? lv->cap * 2 : 8;
		const char **v = realloc(lv->rcpts, cap * sizeof(*v));

		if (v == NULL) {
			/* The hop has it, we cannot record it: the envelope
			 * check at queue will start over. */
			gh_resume(c, GH_CONT);
			return;
		}
		lv->rcpts = v;
		lv->cap = cap;
	}
	lv->rcpts[lv->nrcpts++] = gh_pstrdup(lv->t->pool,
	    c->path->addr.mailbox);
	gh_resume(c, GH_CONT);
}

/* ------------------------------------------------------------------ */
/* rcpt_ok: one next hop per transaction; in live mode, the hop's word. */

static enum gh_verdict
fwd_rcpt_ok(struct gh_call *c)
{
	const struct fwd_conf *cf = c->plugin->conf;
	struct fwd *f = c->plugin->data;
	struct gh_txn *t = c->txn;
	struct fwd_live *lv;
	const struct gh_rcpt *first;
	struct smtpc_reply why;

	if (t == NULL || c->path == NULL)
		return GH_CONT;
	if (cf->rcpt_mode == MODE_TRANSACTION) {
		first = first_rcpt(t);
		if (first == NULL || route_for(f, first->path.addr.domain) ==
		    route_for(f, c->path->addr.domain))
			return GH_CONT;
		/* RFC 5321 4.5.3.1.10: a client retries the recipients
		 * refused with 452 in a later transaction. */
		gh_clog(c, GH_LOG_INFO, "<%s> goes to another next hop than "
			"<%s>: deferred to another transaction",
			c->path->addr.mailbox, first->path.addr.mailbox);
		gh_reply(c, 452, "4.5.3", "Send this recipient in another "
			 "transaction (different next hop)");
		return GH_DENYSOFT;
	}
	lv = gh_note_getp(t->notes, NOTE_LIVE);
	if (lv == NULL || lv->conn == NULL) {
		struct smtpc_reply none;

		memset(&none, 0, sizeof(none));
		none.code = 451;
		none.local = 1;
		snprintf(none.enh, sizeof(none.enh), "4.4.2");
		snprintf(none.text, sizeof(none.text), "no session with the "
			 "next hop");
		return smtpc_verdict(c, smtpc_pool_name(f->def),
				   lv != NULL && lv->lost.code ? &lv->lost :
				   &none, 1);
	}
	if (smtpc_utf8_refused(lv->conn, t, c->path->addr.mailbox, &why))
		return smtpc_verdict(c, smtpc_pool_name(f->def), &why, 1);
	lv->call = c;
	smtpc_send(lv->conn, cf->to.command, live_rcpt_reply, lv,
		   "RCPT TO:<%s>", c->path->addr.mailbox);
	gh_on_cancel(c, live_cancel, lv);
	return GH_AGAIN;
}

static const struct gh_hook_entry fwd_hooks[] = {
	{ GH_HOOK_MAIL, fwd_mail },
	{ GH_HOOK_RCPT_OK, fwd_rcpt_ok },
	{ GH_HOOK_QUEUE, fwd_queue },
	{ 0, NULL }
};

static const char fwd_doc[] =
"smtp_forward - forward each message over SMTP to the next hop.\n"
"\n"
"At the queue hook the transaction goes to the next hop (host:port, or\n"
"the route of the recipients' domain) and the client's reply waits for\n"
"the hop's reply to the final dot.  Nothing is acknowledged that the\n"
"hop did not take:\n"
"\n"
"  hop 250 to the dot       250 2.0.0 Message accepted: ID; next hop\n"
"                           said: <its reply, with its queue id>\n"
"  hop 5xx                  550, the hop's enhanced code (else 5.0.0),\n"
"                           \"next hop said: ...\"\n"
"  hop 4xx                  451, the hop's enhanced code (else 4.0.0)\n"
"  refused, no answer,      451 4.4.1 (connect refused, timed out, no\n"
"  timeout                  greeting)\n"
"  dropped connection,      451 4.4.2 (closed, or no reply in time once\n"
"  timeout mid-session      the session was up)\n"
"  greeting or EHLO refused 451 4.4.0\n"
"  tls = \"required\": no     451 4.7.4 (not offered, or refused)\n"
"  STARTTLS, or TLS failed  451 4.7.5 (handshake or certificate check)\n"
"\n"
"The plugin's `timeout` does not apply: a deadline over the whole\n"
"transaction could cut the wait for the final dot's reply (RFC 5321\n"
"4.5.3.2.6: 10 minutes) short, and a reply lost there makes a\n"
"duplicate.  Each step has its own timeout above, and a transaction\n"
"waits at most data_timeout for a free connection (then 451 4.4.1).\n"
"\n"
"Connections.  Each worker keeps up to max_connections connections per\n"
"next hop; a transaction beyond that waits for one.  A finished\n"
"connection stays idle for idle_timeout seconds; before it serves again\n"
"it must answer RSET (a dead one is dropped and another one, or a new\n"
"one, is used).  EHLO uses relayd's hostname; a hop that refuses EHLO\n"
"gets HELO.  With PIPELINING, MAIL, every RCPT and DATA go in one write\n"
"(RFC 2920).  SIZE, BODY=8BITMIME and SMTPUTF8 are passed on when the\n"
"client gave them and the hop offers them; a message that needs\n"
"SMTPUTF8 for a hop without it is refused 550 5.6.7 (RFC 6531 3.2).\n"
"The message is the edited one (with relayd's Received header),\n"
"dot-stuffed, with CRLF line ends, ending in CRLF . CRLF.  A hook that\n"
"is abandoned (deadline, client gone) closes its hop connection before\n"
"the final dot, so the hop delivers nothing.\n"
"\n"
"Recipients the hop refuses.  relayd answers once per message, so a\n"
"message cannot be 250 for some recipients and 550 for others.\n"
"\n"
"  rcpt_mode = \"transaction\" (default): MAIL, RCPT and DATA are sent at\n"
"    queue time.  If the hop refuses any recipient, the message is not\n"
"    sent at all (no final dot) and the client gets 451 if any refusal\n"
"    was temporary, 550 if all were permanent, naming the refused\n"
"    recipients.  Sending to the accepted ones only would lose the\n"
"    refused ones (the client would see 250); sending and answering 451\n"
"    would deliver twice on the retry.  So: no loss, no duplicates, at\n"
"    the price that one bad recipient holds back the message for all\n"
"    (the client's bounce or retry covers them all).\n"
"  rcpt_mode = \"live\": the hop session opens at MAIL (the hop's refusal\n"
"    of MAIL is the client's reply), and each recipient is put to the\n"
"    hop at rcpt_ok, after the rcpt plugins (host_list ...) accepted it:\n"
"    the client gets the hop's own reply per recipient, as with\n"
"    Haraka's smtp_proxy, and at queue only DATA is sent.  If a later\n"
"    plugin refused or removed a recipient the hop took, or changed the\n"
"    sender, the queue hook starts a fresh transaction instead (RSET,\n"
"    then as in transaction mode).  Live mode uses host:port only;\n"
"    `routes` with live mode is a configuration error.  List\n"
"    smtp_forward last so that its rcpt_ok runs after the others'.\n"
"\n"
"Routes.  In transaction mode every message goes to one next hop: a\n"
"recipient whose route differs from the first recipient's gets 452\n"
"4.5.3 at RCPT, and the client sends it in another transaction (RFC\n"
"5321 4.5.3.1.10).\n"
"\n"
"TLS (RFC 3207).  After EHLO the client sends STARTTLS as `tls` says:\n"
"\n"
"  tls = \"opportunistic\" (default): when the hop offers STARTTLS, TLS\n"
"    1.2 or 1.3 with forward secrecy, its certificate not checked (RFC\n"
"    7435: better than clear text, which is what an attacker who strips\n"
"    the offer gets anyway).  No STARTTLS offered, or a 4xx/5xx to it:\n"
"    the session goes on in clear.  A failed handshake: the message goes\n"
"    over a new connection in clear.  Each case is logged.\n"
"  tls = \"required\": no mail in clear.  No STARTTLS offered or refused:\n"
"    451 4.7.4; a failed handshake or certificate check: 451 4.7.5 (the\n"
"    client retries; nothing was sent).  With tls_verify = true the\n"
"    hop's certificate must chain to a CA of tls_ca (PEM; \"\": the\n"
"    system's) and carry tls_verify_name (\"\": host) as a DNS name (no\n"
"    partial wildcards) or, for an address, as an IP address.\n"
"  tls = \"off\": never.\n"
"\n"
"Whatever the hop sends after its 220 to STARTTLS and before the\n"
"handshake is discarded and logged (the CVE-2011-0411 class: it would\n"
"otherwise be read as said under TLS), and EHLO is sent again under TLS\n"
"with only the new capabilities used (RFC 3207 4.2).  SNI names\n"
"tls_verify_name or host when it is a name.  A pooled connection keeps\n"
"its TLS session; each new one logs its TLS version and cipher at info\n"
"level.  A route may choose its own mode with a \" tls=MODE\" suffix;\n"
"tls_ca and tls_verify_name apply to the routes that require TLS, the\n"
"name being the route's host unless tls_verify_name is set.\n"
"tls_verify with tls other than \"required\" is a configuration error.\n"
"\n"
"Example:\n"
"\n"
"  plugins = [ \"host_list\", \"smtp_forward\" ];\n"
"  smtp_forward = {\n"
"    host = \"127.0.0.1\"; port = 10025;\n"
"    routes = [ \"example.org=192.0.2.10:25\",\n"
"               \".example.net=[::1]:2526 tls=required\" ];\n"
"    tls = \"opportunistic\";\n"
"  };\n"
"\n"
"TLS required to a smart host whose certificate is checked:\n"
"\n"
"  smtp_forward = {\n"
"    host = \"192.0.2.25\"; port = 25;\n"
"    tls = \"required\"; tls_verify = true;\n"
"    tls_ca = \"/etc/gatehouse/smarthost-ca.pem\";\n"
"    tls_verify_name = \"smtp.example.org\";\n"
"  };\n";

const struct gh_module gh_module_smtp_forward = {
	.abi = GH_ABI_VERSION,
	.name = "smtp_forward",
	.description = "forward each message over SMTP; 250 only after the "
	    "next hop's 250",
	.doc = fwd_doc,
	.directives = fwd_directives,
	.conf_size = sizeof(struct fwd_conf),
	.hooks = fwd_hooks,
	.init = fwd_init,
	.fini = fwd_fini,
	.edits = GH_EDITS_NONE,
};
