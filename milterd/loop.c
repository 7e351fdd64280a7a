/*
 * loop.c - milterd's loop threads: where the plugins run.
 *
 * Each loop thread owns an event loop, its own copy of the configuration
 * and its own gh_runtime (plugin init ran once per thread), so a plugin
 * sees one thread, as in a relayd worker.  Callbacks post jobs to the
 * queue of their session's thread and write one octet to its wake pipe;
 * the thread takes the whole queue and runs each job in order.
 *
 * A job is one milter callback: it runs the hooks of that stage (connect
 * runs connect_init, lookup_rdns and connect; envrcpt runs rcpt then
 * rcpt_ok), applies the stage's effect on the session (the recipient
 * joins the transaction, the transaction ends ...) and hands the verdict
 * back.  The waiter may have given up (reply_timeout): the effect then
 * follows fail_action, which is what the MTA was told, and a chain still
 * pending when the session's next job arrives is cancelled.
 *
 * Ordering: one session's jobs come from one callback at a time, and body
 * chunks and the header block are posted without waiting, so the queue's
 * order is the session's order.  The last job of a session (close) frees
 * it here.
 *
 * Running inline: handing a job over costs two thread switches and a
 * pipe round trip, more than most chains cost to run.  So the loop's
 * plugins are guarded by run_mu instead of by a thread: the loop thread
 * holds it at all times except while it sleeps in epoll_wait(2) (the
 * wrapper below; the executable's definition comes before libc's for
 * libevent), and a callback that finds run_mu free takes it, runs the
 * queued jobs and its own right there (loop_run), and answers the MTA at
 * once when the chain completed without waiting.  A chain that waits (DNS,
 * a plugin's own I/O), or events a plugin added or made active, wake the
 * loop thread, which carries on with them as before.  If the wrapper is
 * not in use (another libevent backend), every job is handed over.
 */
#include "config.h"

#include <arpa/inet.h>
#include <sys/epoll.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "milterd.h"

/* A recipient as the MTA gave it: smfi_delrcpt needs those exact octets. */
struct rorig {
	const char *mailbox;
	const char *raw;
	struct rorig *next;
};

static void job_start(struct loop *l, struct job *j);

/* The loop this thread runs (loop threads only). */
static __thread struct loop *this_loop;

int
epoll_wait(int epfd, struct epoll_event *events, int maxevents,
	   int timeout)
{
	struct loop *l = this_loop;
	int n, saved;

	/* The first call on a loop thread is its base's (dispatch waits
	 * before it runs any callback); only that one lets go of run_mu,
	 * not an epoll of a plugin's own. */
	if (l == NULL || (l->epfd >= 0 && epfd != l->epfd))
		return epoll_pwait(epfd, events, maxevents, timeout, NULL);
	if (l->epfd < 0) {
		l->epfd = epfd;
		__atomic_store_n(&l->inline_ok, 1, __ATOMIC_RELEASE);
	}
	pthread_mutex_unlock(&l->run_mu);
	n = epoll_pwait(epfd, events, maxevents, timeout, NULL);
	saved = errno;
	pthread_mutex_lock(&l->run_mu);
	errno = saved;
	return n;
}

enum gh_verdict
fail_verdict(const struct milterd_conf *conf)
{
	switch (conf->fail_action) {
	case FAIL_REJECT:
		return GH_DENY;
	case FAIL_ACCEPT:
		return GH_CONT;
	default:
		return GH_DENYSOFT;
	}
}

void
job_free(struct job *j)
{
	struct macro *m, *mn;
	struct xedit *e, *en;

	if (j == NULL)
		return;
	for (m = j->macros; m != NULL; m = mn) {
		mn = m->next;
		free(m->name);
		free(m->value);
		free(m);
	}
	for (e = j->edits; e != NULL; e = en) {
		en = e->next;
		free(e->name);
		free(e->value);
		free(e);
	}
	free(j->arg);
	free(j->raw);
	free(j->data);
	free(j->trace);
	free(j);
}

/* ------------------------------------------------------------------ */
/* Handing results back.                                               */

/* The loop thread takes the job's answer.  Returns 1 if someone still
 * waits for it (or nobody ever did), 0 if the waiter gave up. */
static int
job_claim(struct job *j)
{
	struct loop *l = j->s->loop;
	int alive;

	pthread_mutex_lock(&l->mu);
	alive = !j->abandoned;
	if (alive)
		j->claimed = 1;
	pthread_mutex_unlock(&l->mu);
	return alive;
}

static void
job_answer(struct job *j)
{
	struct loop *l = j->s->loop;

	pthread_mutex_lock(&l->mu);
	j->done = 1;
	pthread_cond_signal(&j->s->cv);
	pthread_mutex_unlock(&l->mu);
}

static void
outcome_copy(struct job *j, enum gh_verdict v, const struct gh_outcome *o)
{
	j->verdict = v;
	j->code = o != NULL ? o->code : 0;
	snprintf(j->enh, sizeof(j->enh), "%s", o != NULL ? o->enh : "");
	snprintf(j->text, sizeof(j->text), "%s", o != NULL ? o->text : "");
}

/* ------------------------------------------------------------------ */
/* Chains.                                                             */

static void
call_init(struct msess *s, struct gh_call *c, enum gh_hook h)
{
	memset(c, 0, sizeof(*c));
	c->conn = s->conn;
	c->txn = s->conn->txn;
	c->hook = h;
}

/* A chain's done() may start the next stage's chain before gh_chain_run
 * returns; the generation tells whose handle s->chain must hold. */
static void
run_stage(struct msess *s, struct gh_call *proto, gh_chain_done_fn done)
{
	unsigned gen = ++s->chain_gen;
	struct gh_chain *ch;

	ch = gh_chain_run(s->loop->rt, proto, done, s);
	if (s->chain_gen == gen)
		s->chain = ch;
}

static void
noop_done(void *arg, const struct gh_outcome *o)
{
	(void)arg;
	(void)o;
}

/* Hooks whose verdicts mean nothing run to the end now and never wait. */
static void
run_all_now(struct msess *s, enum gh_hook h)
{
	struct gh_call proto;

	call_init(s, &proto, h);
	gh_chain_cancel(gh_chain_run(s->loop->rt, &proto, noop_done, NULL));
}

static void
log_refusal(struct msess *s, const char *stage, enum gh_verdict v,
	    const struct gh_outcome *o)
{
	if (o->by == NULL)
		return;
	gh_log(GH_LOG_INFO, "%s %s at %s by %s: %d %s %s", s->conn->id,
	       gh_verdict_name(v), stage, o->by->name, o->code, o->enh,
	       o->text);
}

/* The decision trace: one line per transaction, as relayd writes it. */
static void
log_trace(struct msess *s, enum gh_verdict v, const struct gh_outcome *o)
{
	struct gh_txn *t = s->conn->txn;
	char results[1024], from[300], result[600];
	const char *qid;
	size_t nrcpt = 0;
	struct gh_rcpt *r;

	if (t == NULL)
		return;
	for (r = t->rcpts; r != NULL; r = r->next)
		nrcpt += !r->removed;
	gh_results_format(s->conn->results, t->results, results,
			  sizeof(results));
	gh_sanitize(from, sizeof(from), t->mail_from ?
		    t->mail_from->addr.mailbox : "", t->mail_from ?
		    strlen(t->mail_from->addr.mailbox) : 0);
	qid = gh_note_get(t->notes, "milter.i");
	if (gh_verdict_is_reject(v) && o->code == 0)
		snprintf(result, sizeof(result), "no verdict in time: "
			 "fail_action");
	else if (gh_verdict_is_reject(v))
		snprintf(result, sizeof(result), "%d %s %s", o->code, o->enh,
			 o->text);
	else
		snprintf(result, sizeof(result), "accepted");
	gh_log(GH_LOG_INFO, "%s trace: txn=%s queue_id=%s client=%s "
	       "from=<%s> rcpts=%zu size=%" PRIu64 " result=\"%s\" "
	       "plugins: %s", s->conn->id, t->id, qid ? qid : "-",
	       s->conn->remote_ip, from, nrcpt,
	       t->msg ? gh_msg_size(t->msg) : 0, result,
	       results[0] ? results : "(none)");
}

static void
txn_reset(struct msess *s)
{
	if (s->conn == NULL || s->conn->txn == NULL)
		return;
	run_all_now(s, GH_HOOK_RESET_TRANSACTION);
	gh_txn_free(s->conn);
	s->rorig = NULL;
	s->rcpt = NULL;
	s->body_truncated = 0;
	s->hdrs_deferred = 0;
	s->hdrs_toobig = 0;
}

/* ------------------------------------------------------------------ */
/* Macros: copied into notes, and onto the fields plugins read.         */

static const char *
macro_get(const struct job *j, const char *name)
{
	const struct macro *m;

	for (m = j->macros; m != NULL; m = m->next)
		if (strcmp(m->name, name) == 0)
			return m->value;
	return NULL;
}

/* "{auth_authen}" is noted as "milter.auth_authen", "j" as "milter.j". */
static void
macros_note(struct gh_notes *n, const struct job *j)
{
	const struct macro *m;
	char key[80];
	size_t len;

	for (m = j->macros; m != NULL; m = m->next) {
		len = strlen(m->name);
		if (m->name[0] == '{' && len > 2 && m->name[len - 1] == '}')
			snprintf(key, sizeof(key), "milter.%.*s",
				 (int)(len - 2), m->name + 1);
		else
			snprintf(key, sizeof(key), "milter.%s", m->name);
		gh_note_set(n, key, m->value);
	}
}

static void
addr_fill(struct gh_conn *c, const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, c->remote_ip,
			  sizeof(c->remote_ip));
		c->remote_port = ntohs(s6->sin6_port);
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, c->remote_ip,
			  sizeof(c->remote_ip));
		c->remote_port = ntohs(s4->sin_port);
	}
}

/* The MTA's connect name: "[addr]" (Sendmail, Postfix) or "unknown"
 * (Postfix) when the address has no verified name. */
static int
hostname_verified(const char *h)
{
	return h != NULL && h[0] != '\0' && h[0] != '[' &&
	    strcmp(h, "unknown") != 0;
}

static void
conn_fill(struct msess *s, const struct job *j)
{
	struct gh_conn *c = s->conn;
	const char *v;

	if (j->have_sa) {
		memcpy(&c->remote_sa, &j->sa, sizeof(c->remote_sa));
		addr_fill(c, (const struct sockaddr *)&j->sa);
	}
	if (c->remote_ip[0] == '\0') {
		/* No address family the MTA could tell (a local pipe). */
		v = macro_get(j, "{client_addr}");
		snprintf(c->remote_ip, sizeof(c->remote_ip), "%s",
			 v ? v : "unknown");
	}
	if (c->remote_port == 0 && (v = macro_get(j, "{client_port}")))
		c->remote_port = atoi(v);
	if ((v = macro_get(j, "{daemon_addr}")) != NULL)
		snprintf(c->local_ip, sizeof(c->local_ip), "%s", v);
	if ((v = macro_get(j, "{daemon_port}")) != NULL)
		c->local_port = atoi(v);
	if (hostname_verified(j->arg))
		c->rdns = gh_pstrdup(c->pool, j->arg);
	v = macro_get(j, "j");
	c->hostname = v != NULL && v[0] != '\0' ? gh_pstrdup(c->pool, v) :
	    s->loop->hostname;
	c->listener_role = "mx";
	c->host_milter = 1;
	c->esmtp = 1;		/* milter does not say; modern MTAs are */
	c->host = s;
	macros_note(c->notes, j);
}

/* ------------------------------------------------------------------ */
/* Ending a job.                                                       */

/*
 * Every waited-for job ends here: v is the stage's verdict.  If the
 * waiter gave up, the MTA was told fail_action, so the effect follows
 * that instead; unless the MTA expected no answer at this stage (an
 * unanswered job), and went on as if told CONTINUE: then v stands.
 * effect() applies the stage's consequence on the loop thread before
 * the waiter may read the result.
 */
static void
job_end(struct msess *s, enum gh_verdict v, const struct gh_outcome *o,
	void (*effect)(struct msess *, struct job *, enum gh_verdict,
		       const struct gh_outcome *))
{
	struct job *j = s->cur;
	int alive;

	s->cur = NULL;
	s->chain = NULL;
	alive = job_claim(j);
	if (!alive && j->unanswered) {
		gh_log(GH_LOG_WARN, "%s verdict %s came after the wait; the "
		       "MTA expected no answer and went on",
		       s->conn != NULL ? s->conn->id : "-",
		       gh_verdict_name(v));
	} else if (!alive) {
		gh_log(GH_LOG_WARN, "%s verdict %s came after the reply "
		       "deadline; the MTA got the fail action",
		       s->conn != NULL ? s->conn->id : "-",
		       gh_verdict_name(v));
		v = fail_verdict(s->loop->conf);
		o = NULL;
	}
	outcome_copy(j, v, o);
	if (effect != NULL)
		effect(s, j, v, o);
	if (alive)
		job_answer(j);
	else
		job_free(j);
}

/* ------------------------------------------------------------------ */
/* connect: connect_init, lookup_rdns, connect.                         */

static void
connect_done(void *arg, const struct gh_outcome *o)
{
	struct msess *s = arg;

	s->chain = NULL;
	if (gh_verdict_is_reject(o->verdict))
		log_refusal(s, "connect", o->verdict, o);
	job_end(s, o->verdict, o, NULL);
}

static void
rdns_done(void *arg, const struct gh_outcome *o)
{
	struct msess *s = arg;
	struct gh_call proto;

	s->chain = NULL;
	if (gh_verdict_is_reject(o->verdict)) {
		connect_done(s, o);
		return;
	}
	call_init(s, &proto, GH_HOOK_CONNECT);
	run_stage(s, &proto, connect_done);
}

static void
rdns_found(void *arg)
{
	struct msess *s = arg;
	struct gh_call proto;

	/* The connect job may have been given up (reply_timeout) while the
	 * lookup ran; its answer then belongs to nobody. */
	if (s->cur == NULL || s->cur->kind != JOB_CONNECT)
		return;
	call_init(s, &proto, GH_HOOK_LOOKUP_RDNS);
	run_stage(s, &proto, rdns_done);
}

static void
do_connect(struct msess *s, struct job *j)
{
	struct gh_conn *c;

	s->conn = c = gh_conn_new(s->loop->base);
	/* One id in both threads' log lines. */
	c->id = gh_pstrdup(c->pool, s->id);
	conn_fill(s, j);
	s->loop->nsessions++;
	gh_log(GH_LOG_DEBUG, "%s connect from %s [%s] port %d (loop %d)",
	       c->id, c->rdns ? c->rdns : "unknown", c->remote_ip,
	       c->remote_port, s->loop->idx);
	run_all_now(s, GH_HOOK_CONNECT_INIT);
	if (c->rdns != NULL) {
		/* The MTA's name is forward-confirmed (Postfix says
		 * "unknown", Sendmail "[addr]", otherwise). */
		gh_note_set(c->notes, "rdns.status",
			    gh_rdns_status_name(GH_RDNS_CONFIRMED));
		rdns_found(s);
		return;
	}
	/* No name from the MTA: our own lookup fills the notes plugins
	 * read ("rdns.status", "rdns.ptr"), as in relayd. */
	gh_conn_rdns(c, rdns_found, s);
}

/* ------------------------------------------------------------------ */
/* helo.                                                               */

static void
helo_effect(struct msess *s, struct job *j, enum gh_verdict v,
	    const struct gh_outcome *o)
{
	(void)j;
	(void)o;
	/* Haraka: a refused HELO leaves the client un-greeted. */
	s->conn->helo = gh_verdict_is_reject(v) ? NULL : s->helo;
}

static void
helo_done(void *arg, const struct gh_outcome *o)
{
	struct msess *s = arg;

	s->chain = NULL;
	if (gh_verdict_is_reject(o->verdict))
		log_refusal(s, "helo", o->verdict, o);
	job_end(s, o->verdict, o, helo_effect);
}

static void
do_helo(struct msess *s, struct job *j)
{
	struct gh_call proto;

	macros_note(s->conn->notes, j);
	if (macro_get(j, "{tls_version}") != NULL)
		s->conn->tls = 1;
	/* RFC 5321 4.1.4: a new HELO ends any transaction. */
	txn_reset(s);
	snprintf(s->helo, sizeof(s->helo), "%s", j->arg ? j->arg : "");
	call_init(s, &proto, GH_HOOK_HELO);
	proto.arg = s->helo;
	run_stage(s, &proto, helo_done);
}

/* ------------------------------------------------------------------ */
/* envfrom and envrcpt.                                                */

/* Parse the MTA's "<addr> PARAM ..." into pool p; NULL on a syntax our
 * parser refuses (the job is then answered 501). */
static struct gh_path *
path_of(struct msess *s, struct gh_pool *p, const char *arg,
	enum gh_path_kind kind, struct job *j)
{
	struct gh_path *path = gh_palloc(p, sizeof(*path));
	const char *why = NULL;
	struct gh_outcome o;

	if (gh_path_parse(p, arg, kind, path, &why) == 0)
		return path;
	memset(&o, 0, sizeof(o));
	o.verdict = GH_DENY;
	o.code = 501;
	snprintf(o.enh, sizeof(o.enh), kind == GH_PATH_MAIL ? "5.1.7" :
		 "5.1.3");
	snprintf(o.text, sizeof(o.text), "%s", why ? why : "Bad address");
	gh_log(GH_LOG_INFO, "%s %s refused: %s", s->conn->id,
	       kind == GH_PATH_MAIL ? "sender" : "recipient", o.text);
	if (kind == GH_PATH_MAIL) {
		s->mail_refusal = o;
		s->mail_refused = 1;
	}
	(void)j;
	job_end(s, GH_DENY, &o, NULL);
	return NULL;
}

static void
mail_effect(struct msess *s, struct job *j, enum gh_verdict v,
	    const struct gh_outcome *o)
{
	(void)j;
	if (gh_verdict_is_reject(v)) {
		if (o != NULL)
			log_trace(s, v, o);
		txn_reset(s);
	}
}

static void
mail_done(void *arg, const struct gh_outcome *o)
{
	struct msess *s = arg;

	s->chain = NULL;
	if (gh_verdict_is_reject(o->verdict))
		log_refusal(s, "mail", o->verdict, o);
	job_end(s, o->verdict, o, mail_effect);
}

static void
do_mail(struct msess *s, struct job *j)
{
	struct gh_conn *c = s->conn;
	struct gh_call proto;
	struct gh_txn *t;
	const char *v;

	txn_reset(s);
	s->mail_refused = 0;
	t = gh_txn_new(c);
	macros_note(t->notes, j);
	/* {auth_authen}: the MTA authenticated the client (SASL), which
	 * is what relaying means to the plugins. */
	if ((v = macro_get(j, "{auth_authen}")) != NULL && v[0] != '\0') {
		c->auth_user = gh_pstrdup(c->pool, v);
		c->relaying = 1;
	}
	if ((t->mail_from = path_of(s, t->pool, j->arg, GH_PATH_MAIL, j)) ==
	    NULL) {
		txn_reset(s);
		return;
	}
	call_init(s, &proto, GH_HOOK_MAIL);
	proto.path = t->mail_from;
	run_stage(s, &proto, mail_done);
}

static void
rcpt_effect(struct msess *s, struct job *j, enum gh_verdict v,
	    const struct gh_outcome *o)
{
	struct gh_txn *t = s->conn->txn;
	struct gh_rcpt *r = s->rcpt, **tail;
	struct rorig *ro;

	(void)o;
	s->rcpt = NULL;
	if (gh_verdict_is_reject(v) || t == NULL || r == NULL)
		return;
	for (tail = &t->rcpts; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = r;
	t->nrcpts++;
	ro = gh_palloc(t->pool, sizeof(*ro));
	ro->mailbox = r->path.addr.mailbox;
	ro->raw = gh_pstrdup(t->pool, j->raw);
	ro->next = s->rorig;
	s->rorig = ro;
}

static void
rcpt_ok_done(void *arg, const struct gh_outcome *o)
{
	struct msess *s = arg;

	s->chain = NULL;
	if (gh_verdict_is_reject(o->verdict))
		log_refusal(s, "rcpt_ok", o->verdict, o);
	job_end(s, o->verdict, o, rcpt_effect);
}

/*
 * Inside an MTA the MTA decides relaying (Postfix's
 * smtpd_relay_restrictions ran before us), so rcpt's CONT accepts the
 * recipient here, where relayd would answer 550 to a client that may
 * not relay.  Only a refusing verdict refuses.
 */
static void
rcpt_done(void *arg, const struct gh_outcome *o)
{
	struct msess *s = arg;
	struct gh_call proto;

	s->chain = NULL;
	if (gh_verdict_is_reject(o->verdict)) {
		log_refusal(s, "rcpt", o->verdict, o);
		job_end(s, o->verdict, o, rcpt_effect);
		return;
	}
	call_init(s, &proto, GH_HOOK_RCPT_OK);
	proto.path = &s->rcpt->path;
	proto.rcpt = s->rcpt;
	run_stage(s, &proto, rcpt_ok_done);
}

static void
do_rcpt(struct msess *s, struct job *j)
{
	struct gh_txn *t = s->conn->txn;
	struct gh_call proto;
	struct gh_path *path;

	if (t == NULL && s->mail_refused) {
		/* The MTA did not wait for our answer to MAIL
		 * (SMFIP_NR_MAIL): the sender's refusal lands here. */
		gh_log(GH_LOG_INFO, "%s recipient refused: %d %s %s (the "
		       "sender, at MAIL)", s->conn->id, s->mail_refusal.code,
		       s->mail_refusal.enh, s->mail_refusal.text);
		job_end(s, GH_DENY, &s->mail_refusal, NULL);
		return;
	}
	if (t == NULL) {
		/* RCPT without MAIL: the MTA never does this. */
		struct gh_outcome o;

		memset(&o, 0, sizeof(o));
		o.code = 503;
		snprintf(o.enh, sizeof(o.enh), "5.5.1");
		snprintf(o.text, sizeof(o.text), "Error: need MAIL command");
		job_end(s, GH_DENY, &o, NULL);
		return;
	}
	macros_note(t->notes, j);
	if ((path = path_of(s, t->pool, j->arg, GH_PATH_RCPT, j)) == NULL)
		return;
	s->rcpt = gh_palloc(t->pool, sizeof(*s->rcpt));
	s->rcpt->path = *path;
	call_init(s, &proto, GH_HOOK_RCPT);
	proto.path = &s->rcpt->path;
	run_stage(s, &proto, rcpt_done);
}

/* ------------------------------------------------------------------ */
/* data, the message, end of message.                                  */

static struct gh_message *
msg_ensure(struct msess *s)
{
	const struct milterd_conf *cf = s->loop->conf;
	struct gh_txn *t = s->conn->txn;
	struct gh_message_limits lim;

	if (t == NULL)
		return NULL;
	if (t->msg != NULL)
		return t->msg;
	lim.mem_threshold = (size_t)cf->spool_threshold;
	lim.max_header_line = (size_t)cf->max_header_size;
	lim.max_header_size = (size_t)cf->max_header_size;
	lim.tmpdir = cf->tmp_dir;
	t->msg = gh_msg_new(t->pool, &lim);
	return t->msg;
}

static void
message_effect(struct msess *s, struct job *j, enum gh_verdict v,
	       const struct gh_outcome *o)
{
	(void)j;
	if (gh_verdict_is_reject(v)) {
		if (o != NULL)
			log_trace(s, v, o);
		txn_reset(s);
	}
}

static void
data_done(void *arg, const struct gh_outcome *o)
{
	struct msess *s = arg;

	s->chain = NULL;
	if (gh_verdict_is_reject(o->verdict))
		log_refusal(s, "data", o->verdict, o);
	job_end(s, o->verdict, o, message_effect);
}

/*
 * A stage with nothing to decide on: before connect, or a message stage
 * outside a transaction (the MTA does not send those, but a transaction
 * we dropped after a deadline may still be the MTA's).  A message is
 * never let through unfiltered: it gets fail_action.
 */
static void
no_txn(struct msess *s)
{
	enum job_kind k = s->cur->kind;
	enum gh_verdict v = GH_CONT;
	struct gh_outcome o;

	memset(&o, 0, sizeof(o));
	if (k == JOB_DATA || k == JOB_EOH || k == JOB_EOM)
		v = fail_verdict(s->loop->conf);
	if (v != GH_CONT) {
		gh_log(GH_LOG_WARN, "%s message stage without a transaction: "
		       "answering the fail action", s->id);
		o.code = v == GH_DENY ? 550 : 451;
		snprintf(o.enh, sizeof(o.enh), v == GH_DENY ? "5.7.1" :
			 "4.7.1");
		snprintf(o.text, sizeof(o.text), "%s", v == GH_DENY ?
			 "Message refused: mail filter unavailable" :
			 "Temporary failure in mail filter, try again later");
	}
	job_end(s, v, &o, NULL);
}

static void
do_data(struct msess *s, struct job *j)
{
	struct gh_call proto;

	if (s->conn->txn == NULL) {
		no_txn(s);
		return;
	}
	macros_note(s->conn->txn->notes, j);
	msg_ensure(s);
	call_init(s, &proto, GH_HOOK_DATA);
	run_stage(s, &proto, data_done);
}

static void
reply_fixed(struct msess *s, enum gh_verdict v, int code, const char *enh,
	    const char *text)
{
	struct gh_outcome o;

	memset(&o, 0, sizeof(o));
	o.verdict = v;
	o.code = code;
	snprintf(o.enh, sizeof(o.enh), "%s", enh);
	snprintf(o.text, sizeof(o.text), "%s", text);
	job_end(s, v, &o, message_effect);
}

static void
data_headers_done(void *arg, const struct gh_outcome *o)
{
	struct msess *s = arg;

	s->chain = NULL;
	if (gh_verdict_is_reject(o->verdict))
		log_refusal(s, "data_headers", o->verdict, o);
	job_end(s, o->verdict, o, message_effect);
}

static void
do_eoh(struct msess *s, struct job *j)
{
	struct gh_message *m;
	struct gh_call proto;

	if (s->conn->txn == NULL) {
		no_txn(s);
		return;
	}
	macros_note(s->conn->txn->notes, j);
	m = msg_ensure(s);
	if (j->len > 0)
		gh_msg_write(m, j->data, j->len);
	gh_msg_write(m, "\r\n", 2);
	if (j->flag || gh_msg_status(m) == GH_MSG_HEADER_TOO_BIG) {
		gh_log(GH_LOG_INFO, "%s header block over the limit (%lld "
		       "octets)", s->conn->id,
		       s->loop->conf->max_header_size);
		reply_fixed(s, GH_DENY, 552, "5.3.4",
			    "Message header size exceeds limit");
		return;
	}
	call_init(s, &proto, GH_HOOK_DATA_HEADERS);
	run_stage(s, &proto, data_headers_done);
}

/* EOH under SMFIP_NR_EOH: store the header block now, run data_headers
 * at end of message (the MTA's reply to DATA waits for the dot anyway). */
static void
eoh_store(struct msess *s, struct job *j)
{
	struct gh_message *m;

	if (s->conn->txn == NULL || (m = msg_ensure(s)) == NULL)
		return;
	macros_note(s->conn->txn->notes, j);
	if (j->len > 0)
		gh_msg_write(m, j->data, j->len);
	gh_msg_write(m, "\r\n", 2);
	s->hdrs_deferred = 1;
	if (j->flag || gh_msg_status(m) == GH_MSG_HEADER_TOO_BIG)
		s->hdrs_toobig = 1;
}

static void
do_body(struct msess *s, struct job *j)
{
	struct gh_message *m;

	if (s->conn->txn == NULL || (m = msg_ensure(s)) == NULL)
		return;
	if (j->flag)
		s->body_truncated = 1;
	if (j->len > 0)
		gh_msg_write(m, j->data, j->len);
}

/* Header values for the MTA: line breaks as LF before folding white
 * space (libmilter's convention), anything else that would break a line
 * becomes a space. */
static char *
milter_value(const char *v)
{
	size_t i, o = 0, n = strlen(v);
	char *out = malloc(n + 1);

	if (out == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if (v[i] == '\r' && v[i + 1] == '\n' &&
		    (v[i + 2] == ' ' || v[i + 2] == '\t')) {
			out[o++] = '\n';
			i++;
		} else if (v[i] == '\n' && (v[i + 1] == ' ' ||
			   v[i + 1] == '\t')) {
			out[o++] = '\n';
		} else {
			out[o++] = (v[i] == '\r' || v[i] == '\n') ? ' ' : v[i];
		}
	}
	out[o] = '\0';
	return out;
}

static const char *
rcpt_raw(struct msess *s, const char *mailbox)
{
	const struct rorig *ro;

	for (ro = s->rorig; ro != NULL; ro = ro->next)
		if (strcmp(ro->mailbox, mailbox) == 0)
			return ro->raw;
	return NULL;
}

/* Copy the transaction's edits for the callback thread, in order. */
static int
edits_copy(struct msess *s, struct job *j)
{
	const struct gh_edit *e;
	struct xedit **tail = &j->edits, *x;
	const char *name;

	for (e = s->conn->txn->edits; e != NULL; e = e->next) {
		name = e->name;
		if (e->kind == GH_EDIT_RCPT_DEL) {
			/* Only a recipient the MTA gave us can go. */
			if ((name = rcpt_raw(s, e->name)) == NULL) {
				gh_log(GH_LOG_WARN, "%s cannot remove "
				       "recipient <%s>: not one of this "
				       "message's", s->conn->id, e->name);
				continue;
			}
		}
		if ((x = calloc(1, sizeof(*x))) == NULL)
			return -1;
		x->kind = e->kind;
		x->idx = e->idx;
		x->name = strdup(name ? name : "");
		x->value = e->value != NULL ? milter_value(e->value) : NULL;
		*tail = x;
		tail = &x->next;
		if (x->name == NULL || (e->value != NULL && x->value == NULL))
			return -1;
	}
	return 0;
}

static void
eom_effect(struct msess *s, struct job *j, enum gh_verdict v,
	   const struct gh_outcome *o)
{
	const char *trace = s->loop->conf->trace_header;
	char results[1024];
	struct gh_outcome none;

	if (o == NULL) {
		memset(&none, 0, sizeof(none));
		o = &none;
	}
	/* A waiter that gave up replays nothing. */
	if (!gh_verdict_is_reject(v) && s->conn->txn != NULL &&
	    !j->abandoned) {
		if (edits_copy(s, j) != 0) {
			gh_log(GH_LOG_ERR, "%s out of memory copying edits",
			       s->conn->id);
			outcome_copy(j, GH_DENYSOFT, NULL);
			j->code = 451;
			snprintf(j->enh, sizeof(j->enh), "4.3.0");
			snprintf(j->text, sizeof(j->text), "Local error");
		} else if (trace != NULL && trace[0] != '\0') {
			gh_results_format(s->conn->results,
					  s->conn->txn->results, results,
					  sizeof(results));
			j->trace = strdup(results[0] ? results : "none");
		}
	}
	log_trace(s, v, o);
	txn_reset(s);
}

static void
data_post_done(void *arg, const struct gh_outcome *o)
{
	struct msess *s = arg;

	s->chain = NULL;
	if (gh_verdict_is_reject(o->verdict))
		log_refusal(s, "data_post", o->verdict, o);
	job_end(s, o->verdict, o, eom_effect);
}

/* The deferred data_headers chain of an EOM job: a refusal answers end
 * of message, anything else goes on to data_post. */
static void
eom_headers_done(void *arg, const struct gh_outcome *o)
{
	struct msess *s = arg;
	struct gh_call proto;

	s->chain = NULL;
	if (gh_verdict_is_reject(o->verdict)) {
		log_refusal(s, "data_headers", o->verdict, o);
		job_end(s, o->verdict, o, eom_effect);
		return;
	}
	call_init(s, &proto, GH_HOOK_DATA_POST);
	run_stage(s, &proto, data_post_done);
}

static void
do_eom(struct msess *s, struct job *j)
{
	struct gh_call proto;
	struct gh_message *m;
	enum gh_msg_status st;

	if (s->conn->txn == NULL) {
		no_txn(s);
		return;
	}
	macros_note(s->conn->txn->notes, j);
	m = msg_ensure(s);
	st = gh_msg_finish(m);
	if (s->body_truncated)
		gh_note_set(s->conn->txn->notes, "milter.body_truncated",
			    "1");
	if (st == GH_MSG_HEADER_TOO_BIG || s->hdrs_toobig) {
		if (s->hdrs_toobig)
			gh_log(GH_LOG_INFO, "%s header block over the limit "
			       "(%lld octets)", s->conn->id,
			       s->loop->conf->max_header_size);
		reply_fixed(s, GH_DENY, 552, "5.3.4",
			    "Message header size exceeds limit");
		return;
	}
	if (st != GH_MSG_OK) {
		gh_log(GH_LOG_ERR, "%s cannot store the message: %s",
		       s->conn->id, strerror(errno));
		reply_fixed(s, GH_DENYSOFT, 451, "4.3.0",
			    "Local error in processing, try again later");
		return;
	}
	if (s->hdrs_deferred) {
		s->hdrs_deferred = 0;
		call_init(s, &proto, GH_HOOK_DATA_HEADERS);
		run_stage(s, &proto, eom_headers_done);
		return;
	}
	call_init(s, &proto, GH_HOOK_DATA_POST);
	run_stage(s, &proto, data_post_done);
}

/* ------------------------------------------------------------------ */
/* unknown, abort, close.                                              */

static void
unknown_done(void *arg, const struct gh_outcome *o)
{
	struct msess *s = arg;

	s->chain = NULL;
	if (gh_verdict_is_reject(o->verdict))
		log_refusal(s, "unrecognized_command", o->verdict, o);
	job_end(s, o->verdict, o, NULL);
}

static void
do_unknown(struct msess *s, struct job *j)
{
	struct gh_call proto;
	char clean[600];

	gh_sanitize(clean, sizeof(clean), j->arg ? j->arg : "",
		    j->arg ? strlen(j->arg) : 0);
	gh_log(GH_LOG_DEBUG, "%s unknown command: %s", s->conn->id, clean);
	call_init(s, &proto, GH_HOOK_UNRECOGNIZED_COMMAND);
	proto.arg = j->arg ? j->arg : "";
	run_stage(s, &proto, unknown_done);
}

static void
session_free(struct msess *s)
{
	if (s->conn != NULL) {
		txn_reset(s);
		run_all_now(s, GH_HOOK_DISCONNECT);
		gh_log(GH_LOG_DEBUG, "%s closed", s->conn->id);
		gh_conn_free(s->conn);
	}
	gen_detach(s->loop);
	pthread_cond_destroy(&s->cv);
	free(s->hbuf);
	free(s);
}

/* A chain still pending belongs to a job whose waiter gave up (the next
 * callback only comes after the previous one returned). */
static void
preempt(struct msess *s)
{
	struct gh_outcome o;

	if (s->cur == NULL)
		return;
	gh_chain_cancel(s->chain);
	s->chain = NULL;
	memset(&o, 0, sizeof(o));
	/* Cut short: the MTA got (or will get) the fail action, except at a
	 * stage where it expects no answer and goes on. */
	o.verdict = s->cur->unanswered ? GH_CONT : fail_verdict(s->loop->conf);
	switch (s->cur->kind) {
	case JOB_MAIL:
		job_end(s, o.verdict, &o, mail_effect);
		break;
	case JOB_RCPT:
		job_end(s, o.verdict, &o, rcpt_effect);
		break;
	case JOB_EOM:
		job_end(s, o.verdict, &o, eom_effect);
		break;
	case JOB_DATA:
	case JOB_EOH:
		job_end(s, o.verdict, &o, message_effect);
		break;
	case JOB_HELO:
		job_end(s, o.verdict, &o, helo_effect);
		break;
	default:
		job_end(s, o.verdict, &o, NULL);
		break;
	}
}

static void
job_start(struct loop *l, struct job *j)
{
	struct msess *s = j->s;

	(void)l;
	preempt(s);
	if (s->conn == NULL && j->kind != JOB_CONNECT && j->kind != JOB_CLOSE) {
		/* Nothing before connect: answer "no opinion". */
		s->cur = j;
		no_txn(s);
		return;
	}
	switch (j->kind) {
	case JOB_BODY:
		do_body(s, j);
		job_free(j);
		return;
	case JOB_EOH:
		if (!j->noreply)
			break;
		eoh_store(s, j);
		job_free(j);
		return;
	case JOB_ABORT:
		txn_reset(s);
		job_free(j);
		return;
	case JOB_CLOSE:
		session_free(s);
		job_free(j);
		return;
	default:
		break;
	}
	s->cur = j;
	switch (j->kind) {
	case JOB_CONNECT: do_connect(s, j); break;
	case JOB_HELO: do_helo(s, j); break;
	case JOB_MAIL: do_mail(s, j); break;
	case JOB_RCPT: do_rcpt(s, j); break;
	case JOB_DATA: do_data(s, j); break;
	case JOB_EOH: do_eoh(s, j); break;
	case JOB_EOM: do_eom(s, j); break;
	case JOB_UNKNOWN: do_unknown(s, j); break;
	default: no_txn(s); break;
	}
}

/* ------------------------------------------------------------------ */
/* The thread.                                                         */

void
loop_post(struct loop *l, struct job *j)
{
	int wake, idx, err = 0;

	j->next = NULL;
	pthread_mutex_lock(&l->mu);
	wake = l->head == NULL;
	if (l->tail != NULL)
		l->tail->next = j;
	else
		l->head = j;
	l->tail = j;
	/* One octet per empty-to-busy edge; a full pipe already wakes.
	 * Written before the unlock: once j is queued, whoever runs it (the
	 * loop thread, or another session's inline run) may close the last
	 * session of a retired generation, and the loop, pipe and all, can
	 * be freed as soon as l->mu is let go. */
	if (wake && write(l->wake[1], "", 1) < 0 && errno != EAGAIN)
		err = errno;
	idx = l->idx;
	pthread_mutex_unlock(&l->mu);
	if (err != 0)
		gh_log(GH_LOG_ERR, "loop %d: wake: %s", idx, strerror(err));
}

/*
 * Post j and, when the loop is idle, run it here (see the top of the
 * file).  On return j may be done already; the caller waits for it as
 * usual either way.
 */
void
loop_run(struct loop *l, struct job *j)
{
	struct job *q, *next;
	int kick = 0, added;

	if (!__atomic_load_n(&l->inline_ok, __ATOMIC_ACQUIRE) ||
	    pthread_mutex_trylock(&l->run_mu) != 0) {
		loop_post(l, j);
		return;
	}
	added = event_base_get_num_events(l->base, EVENT_BASE_COUNT_ADDED);
	/* What was queued before j goes first, in order. */
	j->next = NULL;
	pthread_mutex_lock(&l->mu);
	q = l->head;
	l->head = l->tail = NULL;
	pthread_mutex_unlock(&l->mu);
	for (; q != NULL; q = next) {
		next = q->next;
		if (q->kind == JOB_STOP) {
			/* Stopping is the loop thread's. */
			loop_post(l, q);
			continue;
		}
		job_start(l, q);
	}
	job_start(l, j);
	/* j may be freed by now (a job nobody waits for, or a waiter that
	 * gave up); a waiter reads it under l->mu. */
	if (event_base_get_num_events(l->base, EVENT_BASE_COUNT_ACTIVE) > 0 ||
	    event_base_get_num_events(l->base, EVENT_BASE_COUNT_ADDED) >
	    added)
		kick = 1;
	/* The loop thread sleeps with the timeout it computed before: new
	 * timers and events need it to look again.  Written before the
	 * unlock: once a closed session let its retired generation go,
	 * the loop may be freed as soon as its thread gets run_mu. */
	if (kick && write(l->wake[1], "", 1) < 0 && errno != EAGAIN)
		gh_log(GH_LOG_ERR, "loop %d: wake: %s", l->idx,
		       strerror(errno));
	pthread_mutex_unlock(&l->run_mu);
}

static void
wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loop *l = arg;
	struct job *q, *next;
	char buf[64];

	(void)what;
	/* Usually one octet: posts write on the empty-to-busy edge. */
	while (read(fd, buf, sizeof(buf)) == (ssize_t)sizeof(buf))
		;
	pthread_mutex_lock(&l->mu);
	q = l->head;
	l->head = l->tail = NULL;
	pthread_mutex_unlock(&l->mu);
	for (; q != NULL; q = next) {
		next = q->next;
		if (q->kind == JOB_STOP) {
			/* l->stop_job: loop_stop frees it. */
			event_base_loopbreak(l->base);
			continue;
		}
		job_start(l, q);
	}
}

int
loop_init(struct loop *l, int idx, struct gh_config *cfg,
	  const struct milterd_conf *conf, const struct gh_dns_conf *dns,
	  const char *hostname, char *err, size_t errlen)
{
	memset(l, 0, sizeof(*l));
	l->idx = idx;
	l->cfg = cfg;
	l->conf = conf;
	l->hostname = hostname;
	l->wake[0] = l->wake[1] = -1;
	l->epfd = -1;
	pthread_mutex_init(&l->mu, NULL);
	pthread_mutex_init(&l->run_mu, NULL);
	/* Made now so that stopping never depends on a malloc. */
	if ((l->stop_job = calloc(1, sizeof(*l->stop_job))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	l->stop_job->kind = JOB_STOP;
	if ((l->base = event_base_new()) == NULL) {
		snprintf(err, errlen, "cannot create an event loop");
		return -1;
	}
	if (pipe2(l->wake, O_NONBLOCK | O_CLOEXEC) != 0) {
		snprintf(err, errlen, "pipe: %s", strerror(errno));
		return -1;
	}
	l->wake_ev = event_new(l->base, l->wake[0], EV_READ | EV_PERSIST,
			       wake_cb, l);
	if (l->wake_ev == NULL || event_add(l->wake_ev, NULL) != 0) {
		snprintf(err, errlen, "cannot watch the wake pipe");
		return -1;
	}
	/* This thread's resolver first: plugins may query at init. */
	if (gh_dns_start(l->base, dns, err, errlen) != 0)
		return -1;
	l->dns_started = 1;
	/* Plugin init runs here, once per loop thread, on this base. */
	if ((l->rt = gh_runtime_create(cfg, l->base, err, errlen)) == NULL)
		return -1;
	bridge_plan(l);
	return 0;
}

static void *
loop_main(void *arg)
{
	struct loop *l = arg;

	this_loop = l;
	pthread_mutex_lock(&l->run_mu);
	event_base_dispatch(l->base);
	pthread_mutex_unlock(&l->run_mu);
	return NULL;
}

int
loop_start(struct loop *l)
{
	pthread_attr_t attr;
	int rc;

	pthread_attr_init(&attr);
	/* Plugins keep buffers on the stack (reply texts, header lines);
	 * 2 MB is plenty and far below an 8 MB RLIMIT_STACK default. */
	pthread_attr_setstacksize(&attr, 2 * 1024 * 1024);
	rc = pthread_create(&l->tid, &attr, loop_main, l);
	pthread_attr_destroy(&attr);
	l->started = rc == 0;
	return rc;
}

/* Stop after the jobs already queued, then free everything. */
void
loop_stop(struct loop *l)
{
	if (l->started) {
		loop_post(l, l->stop_job);
		pthread_join(l->tid, NULL);
		l->started = 0;
	}
	loop_destroy(l);
}

/* Free a loop whose thread is not running (never started, or joined),
 * however far loop_init got: plugin fini runs on its behalf, nothing
 * else touches it. */
void
loop_destroy(struct loop *l)
{
	if (l->rt != NULL)
		gh_runtime_free(l->rt);
	l->rt = NULL;
	if (l->dns_started)
		gh_dns_stop(l->base);
	l->dns_started = 0;
	if (l->wake_ev != NULL)
		event_free(l->wake_ev);
	l->wake_ev = NULL;
	if (l->base != NULL)
		event_base_free(l->base);
	l->base = NULL;
	if (l->wake[0] >= 0)
		close(l->wake[0]);
	if (l->wake[1] >= 0)
		close(l->wake[1]);
	l->wake[0] = l->wake[1] = -1;
	if (l->cfg != NULL)
		gh_config_free(l->cfg);
	l->cfg = NULL;
	job_free(l->stop_job);
	l->stop_job = NULL;
	pthread_mutex_destroy(&l->mu);
	pthread_mutex_destroy(&l->run_mu);
}
