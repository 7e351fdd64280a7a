/*
 * session.c - one SMTP session (RFC 5321), driven by a command table.
 *
 * Each row of the table names a command, the session state it needs and
 * a proceed function.  A command is checked for state and syntax here;
 * policy is the plugins' (one hook chain per stage); the effect follows
 * the chain's outcome.  Validation, policy and effect never mix.
 *
 * Input is processed one command at a time, in order (RFC 2920): while a
 * chain is pending the session is `busy` and pipelined input waits in
 * the buffer.  Replies go to the bufferevent's output and leave in as
 * few writes as the loop allows.  A client protocol error is a reply and
 * a state change, never a crash.
 */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "dataframe.h"
#include "proxy.h"
#include "relayd.h"
#include "sasl.h"

#define REPLY_LINE 600
#define REPLY_MAX 510		/* RFC 5321 4.5.3.1.5: 512 with the CRLF */
#define HELO_MAX 256
#define INPUT_MAX (256 * 1024)	/* input buffered while busy */
#define OUTPUT_MAX (64 * 1024)	/* replies queued before input pauses */

enum sstate { ST_CONNECT, ST_CMD, ST_DATA, ST_BDAT, ST_CLOSING };

/* Where an AUTH exchange is (RFC 4954 4): which response comes next. */
enum auth_step {
	AUTH_NONE, AUTH_PLAIN, AUTH_LOGIN_USER, AUTH_LOGIN_PASS, AUTH_CRAM
};

struct session {
	struct server *srv;
	const struct listener *lst;
	struct gh_conn *conn;
	struct bufferevent *bev;
	struct sockaddr_storage sa;
	enum sstate state;
	unsigned busy : 1;		/* a chain is running */
	unsigned processing : 1;	/* inside session_process() */
	unsigned helo_ok : 1;
	unsigned ehlo : 1;		/* the pending HELO is an EHLO */
	unsigned discard_line : 1;	/* skipping an over-long line */
	unsigned eof : 1;		/* the client closed its side */
	unsigned loop : 1;		/* connect rejected: loop_reply */
	unsigned bdat_used : 1;		/* this transaction uses BDAT */
	unsigned bdat_last : 1;
	unsigned bdat_discard : 1;	/* consume the chunk, then refuse */
	unsigned too_big : 1;
	unsigned counted : 1;		/* entered the connection table */
	unsigned tls_layer : 1;		/* TLS started (maybe handshaking) */
	unsigned tls_handshake : 1;	/* ... and not yet established */
	unsigned starttls : 1;		/* 220 sent, switch when written */
	unsigned relay_before_auth : 1;	/* conn->relaying before AUTH */
	unsigned xclient_ok : 1;	/* client in relayd.xclient_hosts */
	int fd;
	SSL *ssl;			/* STARTTLS: until the switch */
	enum auth_step auth_step;
	const char *auth_mech;		/* "PLAIN", "LOGIN" or "CRAM-MD5" */
	char auth_user[SASL_FIELD];
	/* The password; for CRAM-MD5 the client's hex digest.  Wiped once
	 * the chain is done. */
	char auth_pass[SASL_FIELD];
	char auth_challenge[SASL_CHALLENGE];	/* CRAM-MD5: what we sent */
	struct event *auth_timer;	/* a failure's delayed reply */
	char auth_reply[REPLY_LINE];
	int ticket;			/* ... with this ticket */
	struct gh_chain *chain;
	unsigned chain_gen;		/* run_chain() calls so far */
	struct event *close_ev;
	char *line;			/* max_line_length + 1 */
	char helo[HELO_MAX];
	char loop_reply[REPLY_LINE];
	char bdat_reply[REPLY_LINE];
	unsigned nunrecognized;
	struct gh_pool *scratch;	/* per command */
	struct gh_path *path;		/* MAIL/RCPT being decided */
	struct gh_strlist caps;
	struct dataframe df;
	uint64_t size;
	uint64_t bdat_left;
	uint64_t nmessages;
};

struct command {
	const char *name;
	unsigned flags;
	void (*proceed)(struct session *, char *);
};

#define NEED_HELO 0x01
#define NEED_MAIL 0x02
#define NO_ARGS 0x04

static void session_process(struct session *s);
static void session_close(struct session *s);
static int auth_offered(const struct session *s);
static int auth_cram_offered(const struct session *s);
static void run_chain(struct session *s, struct gh_call *proto,
		      gh_chain_done_fn done);

static const struct relayd_conf *
conf_of(const struct session *s)
{
	return s->srv->conf;
}

/* RFC 5321 4.5.3.2: the client has `secs` to send its next command or
 * data block, and as long to take our replies, so that a client that
 * stops reading cannot hold the session (and its replies) forever. */
static void
set_timeout(struct session *s, long long secs)
{
	struct timeval tv = { (time_t)secs, 0 };

	bufferevent_set_timeouts(s->bev, &tv, &tv);
}

/* A client may pipeline without reading its replies (RFC 2920 3.1 asks
 * it not to): past OUTPUT_MAX queued octets, input waits until the
 * replies are taken, and INPUT_MAX then bounds the unread input. */
static int
output_full(struct session *s)
{
	return evbuffer_get_length(bufferevent_get_output(s->bev)) >=
	    OUTPUT_MAX;
}

/* ------------------------------------------------------------------ */
/* Replies.                                                            */

/* Every reply line leaves through here, cut to the 512 octets with
 * its CRLF that RFC 5321 4.5.3.1.5 allows: a text may carry what the
 * client sent (an unknown parameter) or a plugin's long message.  The
 * cut falls between characters, so that UTF-8 (an SMTPUTF8 address
 * quoted back) stays well formed. */
static void
reply_raw(struct session *s, const char *line)
{
	struct evbuffer *out = bufferevent_get_output(s->bev);
	size_t n = strnlen(line, REPLY_MAX);

	if (line[n] != '\0')
		while (n > 0 && ((unsigned char)line[n] & 0xc0) == 0x80)
			n--;
	gh_log(GH_LOG_PROTO, "%s > %.*s", s->conn->id, (int)n, line);
	evbuffer_add(out, line, n);
	evbuffer_add(out, "\r\n", 2);
}

static void
reply_line(struct session *s, int code, char sep, const char *enh,
	   const char *text)
{
	char line[REPLY_LINE];

	if (enh != NULL && enh[0] != '\0')
		snprintf(line, sizeof(line), "%03d%c%s %s", code, sep, enh,
			 text);
	else
		snprintf(line, sizeof(line), "%03d%c%s", code, sep, text);
	reply_raw(s, line);
}

static void
reply(struct session *s, int code, const char *enh, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
reply(struct session *s, int code, const char *enh, const char *fmt, ...)
{
	char text[REPLY_LINE];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	reply_line(s, code, ' ', enh, text);
}

/* Log which plugin decided a refusal, and how. */
static void
outcome_log(struct session *s, const struct gh_outcome *o)
{
	if (o->verdict != GH_CONT && o->verdict != GH_OK && o->by != NULL)
		gh_log(GH_LOG_INFO, "%s %s at %s by %s: %d %s %s",
		       s->conn->id, gh_verdict_name(o->verdict),
		       s->conn->txn ? "transaction" : "session",
		       o->by->name, o->code, o->enh, o->text);
}

/* Send a chain's outcome; returns 1 if the session is now closing. */
static int
reply_outcome(struct session *s, const struct gh_outcome *o)
{
	if (o->code == 0)
		return 0;
	reply_line(s, o->code, ' ', o->enh, o->text);
	outcome_log(s, o);
	if (o->action == GH_WIRE_CLOSE) {
		session_close(s);
		return 1;
	}
	if (o->action == GH_WIRE_LOOP) {
		s->loop = 1;
		snprintf(s->loop_reply, sizeof(s->loop_reply), "%d %s %s",
			 o->code, o->enh, o->text);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Transactions and the decision trace.                                */

static void
log_trace(struct session *s, int code, const char *enh, const char *text)
{
	struct gh_txn *t = s->conn->txn;
	char results[1024], from[300];
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
	gh_log(GH_LOG_INFO, "%s trace: txn=%s client=%s from=<%s> rcpts=%zu "
	       "size=%" PRIu64 " result=\"%d %s %s\" plugins: %s",
	       s->conn->id, t->id, s->conn->remote_ip, from, nrcpt,
	       t->msg ? gh_msg_size(t->msg) : 0, code, enh, text,
	       results[0] ? results : "(none)");
}

static void
noop_done(void *arg, const struct gh_outcome *o)
{
	(void)arg;
	(void)o;
}

static void
txn_reset(struct session *s)
{
	struct gh_call proto;
	struct gh_chain *ch;

	if (s->conn->txn == NULL)
		return;
	memset(&proto, 0, sizeof(proto));
	proto.conn = s->conn;
	proto.txn = s->conn->txn;
	proto.hook = GH_HOOK_RESET_TRANSACTION;
	/* reset_transaction must not wait: the transaction dies now. */
	ch = gh_chain_run(s->srv->rt, &proto, noop_done, NULL);
	gh_chain_cancel(ch);
	gh_txn_free(s->conn);
	s->bdat_used = 0;
}


/* ------------------------------------------------------------------ */
/* Chains.                                                             */

static void
call_init(struct session *s, struct gh_call *c, enum gh_hook h)
{
	memset(c, 0, sizeof(*c));
	c->conn = s->conn;
	c->txn = s->conn->txn;
	c->hook = h;
}

static void
session_resume(struct session *s)
{
	if (s->state == ST_CLOSING)
		return;
	bufferevent_enable(s->bev, EV_READ);
	if (!s->processing)
		session_process(s);
}

/* Every chain's done() ends through here: the session is no longer busy
 * and pipelined input may go on. */
#define CHAIN_DONE(s) do { (s)->chain = NULL; (s)->busy = 0; } while (0)

static void
run_chain(struct session *s, struct gh_call *proto, gh_chain_done_fn done)
{
	struct gh_chain *ch;
	unsigned gen = ++s->chain_gen;

	s->busy = 1;
	ch = gh_chain_run(s->srv->rt, proto, done, s);
	/* If done() ran at once and started the next stage's chain, that
	 * chain is the pending one: keep its handle, not our NULL, so that
	 * session_free() can still cancel it. */
	if (s->chain_gen == gen)
		s->chain = ch;
}

/* ------------------------------------------------------------------ */
/* Connect: connect_init, lookup_rdns, connect, then the greeting.       */

static void
connect_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;

	CHAIN_DONE(s);
	s->state = ST_CMD;
	if (o->verdict == GH_CONT || o->verdict == GH_OK ||
	    o->verdict == GH_STOP)
		reply(s, 220, NULL, "%s %s", s->srv->hostname, o->text);
	else if (reply_outcome(s, o))
		return;
	session_resume(s);
}

static void
rdns_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;
	struct gh_call proto;

	CHAIN_DONE(s);
	if (gh_verdict_is_reject(o->verdict)) {
		connect_done(s, o);
		return;
	}
	call_init(s, &proto, GH_HOOK_CONNECT);
	run_chain(s, &proto, connect_done);
}

static void
rdns_found(void *arg)
{
	struct session *s = arg;
	struct gh_call proto;

	call_init(s, &proto, GH_HOOK_LOOKUP_RDNS);
	run_chain(s, &proto, rdns_done);
}

/* lookup: 0 when XCLIENT already said what conn->rdns is. */
static void
connect_start(struct session *s, int lookup)
{
	struct gh_call proto;
	struct gh_chain *ch;

	call_init(s, &proto, GH_HOOK_CONNECT_INIT);
	/* connect_init's verdicts mean nothing; it only prepares state. */
	ch = gh_chain_run(s->srv->rt, &proto, noop_done, NULL);
	gh_chain_cancel(ch);
	/* The core fills conn->rdns (forward-confirmed) first. */
	s->busy = 1;
	if (lookup)
		gh_conn_rdns(s->conn, rdns_found, s);
	else
		rdns_found(s);
}

/* ------------------------------------------------------------------ */
/* HELO and EHLO.                                                      */

static void
ehlo_reply(struct session *s)
{
	const struct relayd_conf *cf = conf_of(s);
	char size[64];
	size_t i;

	reply_line(s, 250, '-', NULL, s->srv->hostname);
	reply_line(s, 250, '-', NULL, "PIPELINING");
	snprintf(size, sizeof(size), "SIZE %lld", cf->max_message_size);
	reply_line(s, 250, '-', NULL, size);
	reply_line(s, 250, '-', NULL, "8BITMIME");
	reply_line(s, 250, '-', NULL, "ENHANCEDSTATUSCODES");
	reply_line(s, 250, '-', NULL, "SMTPUTF8");
	/* RFC 3207 4.2: never offered again once TLS is on. */
	if (s->lst->tls == LISTEN_TLS_STARTTLS && !s->tls_layer)
		reply_line(s, 250, '-', NULL, "STARTTLS");
	if (auth_offered(s))
		reply_line(s, 250, '-', NULL, auth_cram_offered(s) ?
			   "AUTH PLAIN LOGIN CRAM-MD5" : "AUTH PLAIN LOGIN");
	if (s->xclient_ok)
		reply_line(s, 250, '-', NULL, "XCLIENT NAME ADDR PORT PROTO HELO "
			   "LOGIN DESTADDR DESTPORT REVERSE_NAME");
	for (i = 0; i < s->caps.n; i++)
		reply_line(s, 250, '-', NULL, s->caps.v[i]);
	reply_line(s, 250, ' ', NULL, "CHUNKING");
}

static void
caps_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;

	(void)o;
	CHAIN_DONE(s);
	ehlo_reply(s);
	session_resume(s);
}

static void
helo_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;
	struct gh_call proto;

	CHAIN_DONE(s);
	if (gh_verdict_is_reject(o->verdict)) {
		/* Haraka: a refused HELO leaves the client un-greeted. */
		s->helo_ok = 0;
		s->conn->helo = NULL;
		if (!reply_outcome(s, o))
			session_resume(s);
		return;
	}
	s->helo_ok = 1;
	s->conn->helo = s->helo;
	s->conn->esmtp = s->ehlo;
	if (!s->ehlo) {
		reply(s, 250, NULL, "%s", s->srv->hostname);
		session_resume(s);
		return;
	}
	s->caps.n = 0;
	s->caps.v = NULL;
	call_init(s, &proto, GH_HOOK_CAPABILITIES);
	proto.caps = &s->caps;
	run_chain(s, &proto, caps_done);
}

static void
helo_start(struct session *s, char *arg, int ehlo)
{
	struct gh_call proto;

	if (arg[0] == '\0') {
		reply(s, 501, "5.5.4", "Syntax: %s hostname",
		      ehlo ? "EHLO" : "HELO");
		return;
	}
	if (strlen(arg) >= sizeof(s->helo)) {
		reply(s, 501, "5.5.4", "Host name too long");
		return;
	}
	/* RFC 5321 4.1.4: EHLO resets the state as RSET does. */
	txn_reset(s);
	snprintf(s->helo, sizeof(s->helo), "%s", arg);
	s->ehlo = ehlo;
	call_init(s, &proto, ehlo ? GH_HOOK_EHLO : GH_HOOK_HELO);
	proto.arg = s->helo;
	run_chain(s, &proto, helo_done);
}

static void
cmd_helo(struct session *s, char *arg)
{
	helo_start(s, arg, 0);
}

static void
cmd_ehlo(struct session *s, char *arg)
{
	helo_start(s, arg, 1);
}

/* ------------------------------------------------------------------ */
/* MAIL and RCPT.                                                      */

/* "FROM:" / "TO:" then the path, case-insensitive (RFC 5321 2.4). */
static char *
path_arg(char *arg, const char *keyword)
{
	size_t n = strlen(keyword);

	if (strncasecmp(arg, keyword, n) != 0)
		return NULL;
	return arg + n;
}

static const char *
parse_error_enh(const char *why)
{
	/* Parameter problems are syntax (5.5.4), the rest address (5.1.7
	 * for the sender, 5.1.3 for a recipient). */
	if (strstr(why, "arameter") != NULL)
		return "5.5.4";
	return NULL;
}

static struct gh_path *
path_copy(struct gh_pool *p, const struct gh_path *src)
{
	struct gh_path *d = gh_palloc(p, sizeof(*d));
	size_t i;

	*d = *src;
	d->addr.local = gh_pstrdup(p, src->addr.local);
	d->addr.domain = gh_pstrdup(p, src->addr.domain);
	d->addr.mailbox = gh_pstrdup(p, src->addr.mailbox);
	for (i = 0; i < src->nparams; i++) {
		d->params[i].key = gh_pstrdup(p, src->params[i].key);
		d->params[i].value = gh_pstrdup(p, src->params[i].value);
	}
	return d;
}

static struct gh_path *
parse_path(struct session *s, char *arg, const char *keyword,
	   enum gh_path_kind kind)
{
	struct gh_path *path;
	const struct gh_path *decl;
	const char *why = NULL, *enh;
	char *p = path_arg(arg, keyword);

	if (p == NULL) {
		reply(s, 501, "5.5.4", "Syntax: %s",
		      kind == GH_PATH_MAIL ? "MAIL FROM:<address>" :
		      "RCPT TO:<address>");
		return NULL;
	}
	gh_pool_destroy(s->scratch);
	s->scratch = gh_pool_create();
	path = gh_palloc(s->scratch, sizeof(*path));
	if (gh_path_parse(s->scratch, p, kind, path, &why) != 0) {
		enh = parse_error_enh(why);
		reply(s, 501, enh ? enh : kind == GH_PATH_MAIL ? "5.1.7" :
		      "5.1.3", "%s", why);
		return NULL;
	}
	/* RFC 6531 3.4: a non-ASCII address needs SMTPUTF8 on MAIL. */
	decl = kind == GH_PATH_MAIL ? path : s->conn->txn != NULL ?
	    s->conn->txn->mail_from : NULL;
	if (path->addr.utf8 && (decl == NULL ||
	    gh_path_param(decl, "SMTPUTF8") == NULL)) {
		reply(s, 553, "5.6.7", "Non-ASCII address requires SMTPUTF8");
		return NULL;
	}
	return path;
}

/* Check MAIL's ESMTP parameters; reply and return -1 on error. */

/* RFC 3461 4: xtext, "+" and two upper-case hex digits for the octets
 * that may not stand as they are. */
static int
xtext_ok(const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '+') {
			if (!isxdigit((unsigned char)v[1]) ||
			    !isxdigit((unsigned char)v[2]) ||
			    islower((unsigned char)v[1]) ||
			    islower((unsigned char)v[2]))
				return 0;
			v += 2;
		} else if (*v < '!' || *v > '~' || *v == '=') {
			return 0;
		}
	}
	return 1;
}

static int
mail_params_ok(struct session *s, const struct gh_path *path)
{
	const struct relayd_conf *cf = conf_of(s);
	size_t i;

	if (path->nparams > 0 && !s->conn->esmtp) {
		/* RFC 1869 6: parameters need EHLO. */
		reply(s, 555, "5.5.4", "ESMTP parameters need EHLO");
		return -1;
	}
	for (i = 0; i < path->nparams; i++) {
		const struct gh_param *p = &path->params[i];

		if (strcmp(p->key, "SIZE") == 0) {
			char *end;
			unsigned long long v;

			errno = 0;
			v = p->value ? strtoull(p->value, &end, 10) : 0;
			if (p->value == NULL || *end != '\0' || errno != 0 ||
			    !isdigit((unsigned char)p->value[0])) {
				reply(s, 501, "5.5.4", "Invalid SIZE value");
				return -1;
			}
			if (v > (unsigned long long)cf->max_message_size) {
				gh_log(GH_LOG_INFO, "%s SIZE=%llu over the "
				       "limit %lld", s->conn->id, v,
				       cf->max_message_size);
				reply(s, 552, "5.3.4", "Message size exceeds "
				      "fixed maximum message size");
				return -1;
			}
		} else if (strcmp(p->key, "BODY") == 0) {
			/* BINARYMIME is not offered: its content would need
			 * line ends left alone all the way (RFC 3030 3). */
			if (p->value != NULL &&
			    strcasecmp(p->value, "BINARYMIME") == 0) {
				reply(s, 555, "5.5.4", "BODY=BINARYMIME is not "
				      "supported");
				return -1;
			}
			if (p->value == NULL ||
			    (strcasecmp(p->value, "7BIT") != 0 &&
			     strcasecmp(p->value, "8BITMIME") != 0)) {
				reply(s, 501, "5.5.4", "Invalid BODY value");
				return -1;
			}
		} else if (strcmp(p->key, "AUTH") == 0 && auth_offered(s)) {
			/* RFC 4954 5: part of the AUTH extension.  The
			 * identity it asserts is not trusted, so it is taken
			 * as AUTH=<> and not passed on. */
			if (p->value == NULL || !xtext_ok(p->value)) {
				reply(s, 501, "5.5.4", "Invalid AUTH value");
				return -1;
			}
		} else if (strcmp(p->key, "SMTPUTF8") == 0) {
			if (p->value != NULL) {
				reply(s, 501, "5.5.4",
				      "SMTPUTF8 takes no value");
				return -1;
			}
		} else {
			reply(s, 555, "5.5.4", "Unsupported parameter %s",
			      p->key);
			return -1;
		}
	}
	return 0;
}

static void
mail_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;

	CHAIN_DONE(s);
	if (gh_verdict_is_reject(o->verdict)) {
		log_trace(s, o->code, o->enh, o->text);
		txn_reset(s);
		if (reply_outcome(s, o))
			return;
	} else {
		reply_line(s, o->code, ' ', o->enh, o->text);
	}
	session_resume(s);
}

static void
cmd_mail(struct session *s, char *arg)
{
	struct gh_path *path;
	struct gh_txn *t;
	struct gh_call proto;

	if (s->conn->txn != NULL) {
		reply(s, 503, "5.5.1", "Error: nested MAIL command");
		return;
	}
	if (s->lst->submission && s->conn->auth_user == NULL) {
		/* RFC 6409 4.3: submission needs an authenticated client. */
		gh_log(GH_LOG_INFO, "%s MAIL refused: submission without AUTH "
		       "from %s", s->conn->id, s->conn->remote_ip);
		reply(s, 530, "5.7.0", "Authentication required");
		return;
	}
	if ((path = parse_path(s, arg, "FROM:", GH_PATH_MAIL)) == NULL)
		return;
	if (mail_params_ok(s, path) != 0)
		return;
	t = gh_txn_new(s->conn);
	t->mail_from = path_copy(t->pool, path);
	s->too_big = 0;
	call_init(s, &proto, GH_HOOK_MAIL);
	proto.path = t->mail_from;
	run_chain(s, &proto, mail_done);
}

static void
rcpt_ok_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;
	struct gh_txn *t = s->conn->txn;
	struct gh_rcpt *r, **tail;

	CHAIN_DONE(s);
	if (gh_verdict_is_reject(o->verdict)) {
		if (!reply_outcome(s, o))
			session_resume(s);
		return;
	}
	r = gh_palloc(t->pool, sizeof(*r));
	r->path = *s->path;
	for (tail = &t->rcpts; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = r;
	t->nrcpts++;
	reply_line(s, o->code, ' ', o->enh, o->text);
	session_resume(s);
}

static void
rcpt_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;
	struct gh_call proto;

	CHAIN_DONE(s);
	if (o->action != GH_WIRE_NEXT) {
		if (!reply_outcome(s, o))
			session_resume(s);
		return;
	}
	call_init(s, &proto, GH_HOOK_RCPT_OK);
	proto.path = s->path;
	run_chain(s, &proto, rcpt_ok_done);
}

static int
rcpt_params_ok(struct session *s, const struct gh_path *path)
{
	if (path->nparams == 0)
		return 0;
	if (!s->conn->esmtp) {
		reply(s, 555, "5.5.4", "ESMTP parameters need EHLO");
		return -1;
	}
	/* No DSN extension is advertised, so no RCPT parameter is known. */
	reply(s, 555, "5.5.4", "Unsupported parameter %s",
	      path->params[0].key);
	return -1;
}

static void
cmd_rcpt(struct session *s, char *arg)
{
	struct gh_txn *t = s->conn->txn;
	struct gh_path *path;
	struct gh_call proto;

	if ((path = parse_path(s, arg, "TO:", GH_PATH_RCPT)) == NULL)
		return;
	if (rcpt_params_ok(s, path) != 0)
		return;
	if (t->nrcpts >= (size_t)conf_of(s)->max_recipients) {
		/* RFC 5321 4.5.3.1.10: 452, so the client retries the
		 * rest in another transaction. */
		gh_log(GH_LOG_INFO, "%s recipient limit %lld reached",
		       s->conn->id, conf_of(s)->max_recipients);
		reply(s, 452, "4.5.3", "Too many recipients");
		return;
	}
	s->path = path_copy(t->pool, path);
	call_init(s, &proto, GH_HOOK_RCPT);
	proto.path = s->path;
	run_chain(s, &proto, rcpt_done);
}

/* ------------------------------------------------------------------ */
/* DATA and BDAT.                                                      */

static void message_end(struct session *s);

static void
content_emit(void *arg, const char *p, size_t n)
{
	struct session *s = arg;

	s->size += n;
	if (s->size > (uint64_t)conf_of(s)->max_message_size) {
		/* Keep counting, store nothing more: the message will be
		 * refused at its end (RFC 5321 4.5.3.1.10, 552). */
		s->too_big = 1;
		return;
	}
	gh_msg_write(s->conn->txn->msg, p, n);
}

static void
message_begin(struct session *s)
{
	const struct relayd_conf *cf = conf_of(s);
	struct gh_message_limits lim;

	lim.mem_threshold = (size_t)cf->spool_threshold;
	lim.max_header_line = (size_t)cf->max_header_line;
	lim.max_header_size = (size_t)cf->max_header_size;
	lim.tmpdir = cf->tmp_dir;
	s->conn->txn->msg = gh_msg_new(s->conn->txn->pool, &lim);
	s->size = 0;
	s->too_big = 0;
	df_init(&s->df);
	set_timeout(s, cf->timeout_data);
}

static int
txn_ready_for_data(struct session *s)
{
	if (s->conn->txn == NULL) {
		reply(s, 503, "5.5.1", "Error: need MAIL command");
		return 0;
	}
	if (s->conn->txn->nrcpts == 0) {
		reply(s, 554, "5.5.1", "Error: no valid recipients");
		return 0;
	}
	return 1;
}

static void
data_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;

	CHAIN_DONE(s);
	if (gh_verdict_is_reject(o->verdict)) {
		/* Nothing that follows is message content: the client's
		 * pipelined text will be read as commands (RFC 2920 3.1). */
		if (!reply_outcome(s, o))
			session_resume(s);
		return;
	}
	reply_line(s, o->code, ' ', NULL, o->text);
	message_begin(s);
	s->state = ST_DATA;
	session_resume(s);
}

static void
cmd_data(struct session *s, char *arg)
{
	struct gh_call proto;

	(void)arg;
	if (!txn_ready_for_data(s))
		return;
	if (s->bdat_used) {
		reply(s, 503, "5.5.1", "Error: DATA after BDAT");
		return;
	}
	call_init(s, &proto, GH_HOOK_DATA);
	run_chain(s, &proto, data_done);
}

/* Read DATA content from the input; returns 1 when the end was seen or
 * something was read (the input may hold more than the 16 chains looked
 * at: a pipelining client may have sent it all, and no read event will
 * come for it), 0 when nothing could be. */
static int
data_input(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v[16];
	size_t consumed = 0;
	int i, n, done = 0;

	n = evbuffer_peek(in, -1, NULL, v, 16);
	for (i = 0; i < n && i < 16 && !done; i++)
		consumed += df_feed_data(&s->df, v[i].iov_base, v[i].iov_len,
					 content_emit, s, &done);
	evbuffer_drain(in, consumed);
	if (!done)
		return consumed > 0;
	s->state = ST_CMD;
	message_end(s);
	return 1;
}

static void
bdat_chunk_start(struct session *s)
{
	s->state = ST_BDAT;
}

static void
bdat_data_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;

	CHAIN_DONE(s);
	if (gh_verdict_is_reject(o->verdict) && o->action == GH_WIRE_CLOSE) {
		/* Closing: the chunk will never be read anyway. */
		if (!reply_outcome(s, o))
			session_close(s);
		return;
	}
	if (gh_verdict_is_reject(o->verdict)) {
		/* The chunk still arrives: swallow it, then refuse. */
		outcome_log(s, o);
		s->bdat_discard = 1;
		snprintf(s->bdat_reply, sizeof(s->bdat_reply), "%d %s %s",
			 o->code, o->enh, o->text);
		txn_reset(s);
	} else {
		message_begin(s);
	}
	bdat_chunk_start(s);
	session_resume(s);
}

static int
bdat_parse(const char *arg, uint64_t *size, int *last)
{
	char *end;
	unsigned long long v;

	if (!isdigit((unsigned char)arg[0]))
		return -1;
	errno = 0;
	v = strtoull(arg, &end, 10);
	if (errno != 0 || v > INT64_MAX)
		return -1;
	*size = v;
	*last = 0;
	if (*end == '\0')
		return 0;
	if (*end == ' ' && strcasecmp(end + 1, "LAST") == 0) {
		*last = 1;
		return 0;
	}
	return -1;
}

static void
bdat_refuse(struct session *s, const char *fmt)
{
	s->bdat_discard = 1;
	snprintf(s->bdat_reply, sizeof(s->bdat_reply), "%s", fmt);
	bdat_chunk_start(s);
}

static void
cmd_bdat(struct session *s, char *arg)
{
	struct gh_call proto;
	uint64_t size;
	int last;

	if (bdat_parse(arg, &size, &last) != 0) {
		/* Without a valid size the chunk's end cannot be found, so
		 * the stream cannot be trusted any more. */
		reply(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
		session_close(s);
		return;
	}
	s->bdat_left = size;
	s->bdat_last = last;
	s->bdat_discard = 0;
	if (s->loop) {
		bdat_refuse(s, s->loop_reply);
		return;
	}
	if (!s->helo_ok) {
		bdat_refuse(s, "503 5.5.1 Error: send HELO/EHLO first");
		return;
	}
	if (s->conn->txn == NULL) {
		bdat_refuse(s, "503 5.5.1 Error: need MAIL command");
		return;
	}
	if (s->conn->txn->nrcpts == 0) {
		bdat_refuse(s, "554 5.5.1 Error: no valid recipients");
		return;
	}
	if (s->bdat_used) {
		bdat_chunk_start(s);
		return;
	}
	s->bdat_used = 1;
	call_init(s, &proto, GH_HOOK_DATA);
	run_chain(s, &proto, bdat_data_done);
}

static void
bdat_chunk_end(struct session *s)
{
	s->state = ST_CMD;
	if (s->bdat_discard) {
		reply_raw(s, s->bdat_reply);
		s->bdat_discard = 0;
		return;
	}
	if (!s->bdat_last) {
		reply(s, 250, "2.0.0", "%" PRIu64 " octets received",
		      s->size);
		return;
	}
	df_bdat_last(&s->df, content_emit, s);
	message_end(s);
}

/* Read BDAT chunk octets; returns 1 when the chunk is complete. */
static int
bdat_input(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	struct evbuffer_iovec v[16];
	int i, n;

	while (s->bdat_left > 0) {
		size_t taken = 0;

		/* An emptied buffer may keep an empty chain, which
		 * evbuffer_peek() reports as one vector of 0 octets: wait
		 * for input instead of spinning on it. */
		if (evbuffer_get_length(in) == 0)
			return 0;
		n = evbuffer_peek(in, (ev_ssize_t)(s->bdat_left > SSIZE_MAX ?
		    SSIZE_MAX : s->bdat_left), NULL, v, 16);
		if (n <= 0)
			return 0;
		for (i = 0; i < n && i < 16; i++) {
			size_t len = v[i].iov_len;

			if (len > s->bdat_left - taken)
				len = (size_t)(s->bdat_left - taken);
			if (!s->bdat_discard)
				df_feed_bdat(&s->df, v[i].iov_base, len,
					     content_emit, s);
			taken += len;
		}
		evbuffer_drain(in, taken);
		s->bdat_left -= taken;
	}
	bdat_chunk_end(s);
	return 1;
}

/* ------------------------------------------------------------------ */
/* End of message: checks, data_headers, data_post, queue, queue_ok.    */

static void
message_reply(struct session *s, int code, const char *enh, const char *text)
{
	log_trace(s, code, enh, text);
	reply(s, code, enh, "%s", text);
	txn_reset(s);
	set_timeout(s, conf_of(s)->timeout_command);
}

static void
message_outcome(struct session *s, const struct gh_outcome *o)
{
	log_trace(s, o->code, o->enh, o->text);
	txn_reset(s);
	set_timeout(s, conf_of(s)->timeout_command);
	if (!reply_outcome(s, o))
		session_resume(s);
}

static void
queue_ok_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;
	struct gh_txn *t = s->conn->txn;
	char text[REPLY_LINE];

	(void)o;
	CHAIN_DONE(s);
	s->nmessages++;
	if (t->queue_reply != NULL)
		snprintf(text, sizeof(text), "Message accepted: %s",
			 t->queue_reply);
	else
		snprintf(text, sizeof(text), "Message accepted as %s", t->id);
	message_reply(s, 250, "2.0.0", text);
	session_resume(s);
}

static void
queue_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;
	struct gh_call proto;

	CHAIN_DONE(s);
	if (o->action != GH_WIRE_NEXT) {
		message_outcome(s, o);
		return;
	}
	call_init(s, &proto, GH_HOOK_QUEUE_OK);
	run_chain(s, &proto, queue_ok_done);
}

/* Can the client's HELO text stand as the Received header's
 * From-domain (RFC 5321 4.4): a domain or an address literal? */
static int
helo_is_domain(const char *h)
{
	size_t n = strlen(h);

	if (n > 2 && h[0] == '[' && h[n - 1] == ']')
		return strcspn(h, " \t()\\\"[]") == 0 &&
		    strcspn(h + 1, " \t()\\\"[]") == n - 2;
	return gh_domain_valid(h);
}

/* Text for a comment: control octets escaped (gh_sanitize), and the
 * octets that would end or nest it quoted (RFC 5322 3.2.2). */
static void
comment_text(char *dst, size_t n, const char *src)
{
	char clean[HELO_MAX * 4 + 8];
	size_t i, o = 0;

	gh_sanitize(clean, sizeof(clean), src, strlen(src));
	for (i = 0; clean[i] != '\0' && o + 2 < n; i++) {
		if (clean[i] == '(' || clean[i] == ')' || clean[i] == '\\')
			dst[o++] = '\\';
		dst[o++] = clean[i];
	}
	dst[o] = '\0';
}

static void
add_received(struct session *s)
{
	struct gh_conn *c = s->conn;
	struct gh_txn *t = c->txn;
	char helo[HELO_MAX * 8 + 16], date[64], rcpt[600] = "", tls[1400];
	char from[HELO_MAX * 4 + 8];
	const char *proto;
	time_t now = time(NULL);
	struct tm tm;

	/* The HELO name is the client's text: the From-domain when it is a
	 * domain or a literal, else "unknown" with the text in the comment,
	 * where it cannot pass for another clause. */
	helo[0] = '\0';
	if (c->helo != NULL && helo_is_domain(c->helo)) {
		snprintf(from, sizeof(from), "%s", c->helo);
	} else {
		snprintf(from, sizeof(from), "unknown");
		if (c->helo != NULL) {
			char text[HELO_MAX * 8 + 8];

			comment_text(text, sizeof(text), c->helo);
			snprintf(helo, sizeof(helo), " helo=%s", text);
		}
	}
	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	if (t->nrcpts == 1)
		snprintf(rcpt, sizeof(rcpt), "\r\n\tfor <%s>",
			 t->rcpts->path.addr.mailbox);
	/* RFC 3848 protocol names. */
	proto = c->esmtp ? (c->tls ? (c->auth_user ? "ESMTPSA" : "ESMTPS") :
	    (c->auth_user ? "ESMTPA" : "ESMTP")) : "SMTP";
	tls_received(c->notes, tls, sizeof(tls));
	/* TCP-info: an IPv6 address literal is tagged (RFC 5321 4.1.3). */
	gh_header_insert(t, 0, "Received", gh_psprintf(t->pool,
	    "from %s (%s [%s%s]%s)%s\r\n\tby %s (gatehouse relayd) with %s id "
	    "%s%s;\r\n\t%s", from, c->rdns ? c->rdns : "unknown",
	    strchr(c->remote_ip, ':') != NULL ? "IPv6:" : "", c->remote_ip,
	    helo, tls, s->srv->hostname, proto, t->id, rcpt, date));
}

static void
data_post_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;
	struct gh_call proto;
	const char *trace = conf_of(s)->trace_header;

	CHAIN_DONE(s);
	if (o->action != GH_WIRE_NEXT) {
		message_outcome(s, o);
		return;
	}
	if (conf_of(s)->received_header)
		add_received(s);
	if (trace != NULL && trace[0] != '\0') {
		char results[1024];

		gh_results_format(s->conn->results, s->conn->txn->results,
				  results, sizeof(results));
		gh_header_insert(s->conn->txn, 0, trace, gh_psprintf(
		    s->conn->txn->pool, "%s", results[0] ? results : "none"));
	}
	call_init(s, &proto, GH_HOOK_QUEUE);
	run_chain(s, &proto, queue_done);
}

static void
data_headers_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;
	struct gh_call proto;

	CHAIN_DONE(s);
	if (o->action != GH_WIRE_NEXT) {
		message_outcome(s, o);
		return;
	}
	call_init(s, &proto, GH_HOOK_DATA_POST);
	run_chain(s, &proto, data_post_done);
}

static void
max_data_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;

	CHAIN_DONE(s);
	message_outcome(s, o);
}

static void
message_end(struct session *s)
{
	struct gh_txn *t = s->conn->txn;
	enum gh_msg_status st = gh_msg_finish(t->msg);
	struct gh_call proto;

	if (s->too_big) {
		gh_log(GH_LOG_INFO, "%s message of %" PRIu64 " octets over "
		       "the limit %lld", s->conn->id, s->size,
		       conf_of(s)->max_message_size);
		call_init(s, &proto, GH_HOOK_MAX_DATA_EXCEEDED);
		run_chain(s, &proto, max_data_done);
		return;
	}
	if ((s->df.bare_lf || s->df.bare_cr) && conf_of(s)->bare_line_ends) {
		/* DESIGN: bare CR or LF is refused when so configured, to
		 * close SMTP smuggling in both directions. */
		gh_log(GH_LOG_INFO, "%s message refused: %lu bare LF, %lu "
		       "bare CR", s->conn->id, s->df.bare_lf, s->df.bare_cr);
		message_reply(s, 550, "5.5.2",
			      "Message contains bare CR or LF line endings");
		return;
	}
	if (st == GH_MSG_HEADER_TOO_BIG) {
		gh_log(GH_LOG_INFO, "%s header block over the limits (%lld "
		       "octets, %lld a line)", s->conn->id,
		       conf_of(s)->max_header_size,
		       conf_of(s)->max_header_line);
		message_reply(s, 552, "5.3.4", "Message header size exceeds "
			      "limit");
		return;
	}
	if (st != GH_MSG_OK) {
		gh_log(GH_LOG_ERR, "%s cannot store the message: %s",
		       s->conn->id, strerror(errno));
		message_reply(s, 451, "4.3.0", "Local error in processing, "
			      "try again later");
		return;
	}
	call_init(s, &proto, GH_HOOK_DATA_HEADERS);
	run_chain(s, &proto, data_headers_done);
}

/* ------------------------------------------------------------------ */
/* The other commands.                                                 */

static void
cmd_rset(struct session *s, char *arg)
{
	(void)arg;
	txn_reset(s);
	reply(s, 250, "2.0.0", "Reset state");
}

static void
cmd_noop(struct session *s, char *arg)
{
	(void)arg;
	reply(s, 250, "2.0.0", "OK");
}

static void
cmd_quit(struct session *s, char *arg)
{
	(void)arg;
	reply(s, 221, "2.0.0", "%s closing connection", s->srv->hostname);
	session_close(s);
}

static void
cmd_vrfy(struct session *s, char *arg)
{
	if (arg[0] == '\0') {
		reply(s, 501, "5.5.4", "Syntax: VRFY address");
		return;
	}
	/* RFC 5321 3.5.3: 252 when we will not say. */
	reply(s, 252, "2.5.2", "Cannot VRFY user, but will accept message "
	      "and attempt delivery");
}

static void
cmd_help(struct session *s, char *arg)
{
	(void)arg;
	reply_line(s, 214, '-', "2.0.0", "Commands: HELO EHLO MAIL RCPT DATA "
		   "BDAT RSET NOOP QUIT VRFY HELP STARTTLS AUTH");
	reply(s, 214, "2.0.0", "See RFC 5321");
}

/* ------------------------------------------------------------------ */
/* TLS: STARTTLS (RFC 3207) and implicit TLS (RFC 8314).               */

static void read_cb(struct bufferevent *bev, void *arg);
static void write_cb(struct bufferevent *bev, void *arg);
static void event_cb(struct bufferevent *bev, short what, void *arg);

static void
bev_setup(struct session *s)
{
	bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
	set_timeout(s, conf_of(s)->timeout_command);
	/* Bound what a client can make us buffer while we are busy. */
	bufferevent_setwatermark(s->bev, EV_READ, 0, INPUT_MAX);
	bufferevent_enable(s->bev, EV_READ);
}

static void
tls_bev_setup(struct session *s)
{
	/* Most clients close without close_notify; that is an end of
	 * input like any other, not an error that loses their replies. */
	bufferevent_openssl_set_allow_dirty_shutdown(s->bev, 1);
	s->tls_layer = 1;
	s->tls_handshake = 1;
	bev_setup(s);
}

/*
 * RFC 3207 4.2: the server MUST discard any knowledge obtained from the
 * client which was not obtained from the TLS negotiation itself: the
 * EHLO argument and extensions, any transaction and any AUTH.
 */
static void
session_forget(struct session *s)
{
	txn_reset(s);
	s->helo_ok = 0;
	s->ehlo = 0;
	s->conn->helo = NULL;
	s->conn->esmtp = 0;
	s->caps.n = 0;
	s->caps.v = NULL;
	if (s->conn->auth_user != NULL) {
		s->conn->auth_user = NULL;
		s->conn->relaying = s->relay_before_auth;
	}
}

static void
tls_established(struct session *s)
{
	SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
	char version[32], cipher[128];

	s->tls_handshake = 0;
	s->conn->tls = 1;
	tls_describe(ssl, version, sizeof(version), cipher, sizeof(cipher));
	gh_note_set(s->conn->notes, "tls.version", version);
	gh_note_set(s->conn->notes, "tls.cipher", cipher);
	gh_log(GH_LOG_INFO, "%s TLS established: %s %s", s->conn->id,
	       version, cipher);
	tls_client_record(ssl, s->conn);
}

static void
tls_failed(struct session *s, short what)
{
	unsigned long e = bufferevent_get_openssl_error(s->bev);
	char why[256];
	const char *cert = tls_verify_error(bufferevent_openssl_get_ssl(
	    s->bev));

	snprintf(why, sizeof(why), "%s", what & BEV_EVENT_TIMEOUT ?
		 "timeout" : "connection closed");
	if (e != 0)
		ERR_error_string_n(e, why, sizeof(why));
	gh_log(GH_LOG_INFO, "%s TLS handshake failed: %s%s%s", s->conn->id,
	       why, cert != NULL ? ": client certificate: " : "",
	       cert != NULL ? cert : "");
}

/* Anything that came with or after STARTTLS was sent in plain text
 * and would be taken as sent under TLS (CVE-2011-0411): RFC 3207 5
 * wants none of it. */
static void
starttls_discard(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t stale = evbuffer_get_length(in);

	if (stale == 0)
		return;
	gh_log(GH_LOG_INFO, "%s STARTTLS: discarded %zu octets sent after "
	       "the command in plain text", s->conn->id, stale);
	evbuffer_drain(in, stale);
}

/*
 * The 220 has left: the socket gets a new bufferevent that speaks TLS.
 * Input stayed off since STARTTLS, so whatever the client sent after
 * its packet is still in the socket and is read as the handshake.
 */
static void
starttls_switch(struct session *s)
{
	struct bufferevent *bev;

	s->starttls = 0;
	starttls_discard(s);
	bev = bufferevent_openssl_socket_new(s->srv->base, s->fd, s->ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL) {
		gh_log(GH_LOG_ERR, "%s STARTTLS: cannot start the TLS layer",
		       s->conn->id);
		SSL_free(s->ssl);
		s->ssl = NULL;
		s->state = ST_CLOSING;
		event_active(s->close_ev, 0, 0);
		return;
	}
	s->ssl = NULL;		/* the bufferevent owns it now */
	bufferevent_free(s->bev);
	s->bev = bev;
	session_forget(s);
	s->busy = 0;
	tls_bev_setup(s);
}

static void
cmd_starttls(struct session *s, char *arg)
{
	(void)arg;
	if (s->tls_layer) {
		reply(s, 503, "5.5.1", "Error: TLS already active");
		return;
	}
	if (s->lst->tls != LISTEN_TLS_STARTTLS) {
		reply(s, 502, "5.5.1", "Error: command not implemented");
		return;
	}
	if (s->conn->txn != NULL) {
		reply(s, 503, "5.5.1", "Error: MAIL transaction in progress");
		return;
	}
	if ((s->ssl = SSL_new(s->lst->ssl)) == NULL) {
		gh_log(GH_LOG_ERR, "%s STARTTLS: %s", s->conn->id,
		       tls_error());
		reply(s, 454, "4.7.0", "TLS not available due to temporary "
		      "reason");
		return;
	}
	reply(s, 220, "2.0.0", "Ready to start TLS");
	/* Nothing more is read in plain text; write_cb switches once the
	 * 220 is out. */
	s->starttls = 1;
	s->busy = 1;
	bufferevent_disable(s->bev, EV_READ);
	starttls_discard(s);
}

/* ------------------------------------------------------------------ */
/* AUTH (RFC 4954) with PLAIN (RFC 4616), LOGIN and CRAM-MD5 (RFC 2195).  */

/*
 * Offered when a plugin is bound to the auth hook, and only under TLS
 * unless the listener says auth_plaintext=yes: PLAIN and LOGIN send the
 * password as it is, and a CRAM-MD5 exchange seen in clear can be
 * attacked offline.  The responses are taken apart in sasl.c.
 */
static int
auth_offered(const struct session *s)
{
	return gh_runtime_has_hook(s->srv->rt, GH_HOOK_AUTH) &&
	    (s->conn->tls || s->lst->auth_plaintext);
}

/*
 * CRAM-MD5 needs the server to hold the password or its HMAC-MD5
 * states: offered (where AUTH is) only when a plugin on the auth hook
 * said in its init that it can verify it (gh_plugin.auth_mechs).
 */
static int
auth_cram_offered(const struct session *s)
{
	const struct gh_runtime *rt = s->srv->rt;
	size_t i;

	if (!auth_offered(s))
		return 0;
	for (i = 0; i < rt->nbound[GH_HOOK_AUTH]; i++)
		if (rt->bound[GH_HOOK_AUTH][i].plugin->auth_mechs &
		    GH_AUTH_CRAM_MD5)
			return 1;
	return 0;
}

static void
auth_wipe(struct session *s)
{
	explicit_bzero(s->auth_pass, sizeof(s->auth_pass));
	explicit_bzero(s->auth_user, sizeof(s->auth_user));
	s->auth_challenge[0] = '\0';
}

/* The exchange ends without a verdict: a protocol error or "*". */
static void
auth_abort(struct session *s, int code, const char *enh, const char *text)
{
	s->auth_step = AUTH_NONE;
	auth_wipe(s);
	reply(s, code, enh, "%s", text);
}

static void
auth_user_log(const struct session *s, char *buf, size_t n)
{
	gh_sanitize(buf, n, s->auth_user, strlen(s->auth_user));
}

static void
auth_delay_cb(evutil_socket_t fd, short what, void *arg)
{
	struct session *s = arg;

	(void)fd;
	(void)what;
	reply_line(s, atoi(s->auth_reply), ' ', NULL, s->auth_reply + 4);
	s->busy = 0;
	session_resume(s);
}

/*
 * A failure counts against the client's address for
 * auth_failure_window seconds, in every worker.  From the second one
 * the reply waits auth_failure_delay seconds (input waits too); at
 * auth_max_failures the answer is 421 and the connection closes.
 */
static int
auth_count_failure(struct session *s)
{
	const struct relayd_conf *cf = conf_of(s);
	int n = fail_table_add(s->srv->auth_fails,
			       (const struct sockaddr *)&s->sa,
			       cf->auth_failure_window);
	char user[SASL_FIELD * 4];

	auth_user_log(s, user, sizeof(user));
	gh_log(GH_LOG_INFO, "%s AUTH %s failed for user %s from %s (%d of %lld)",
	       s->conn->id, s->auth_mech, user, s->conn->remote_ip, n,
	       cf->auth_max_failures);
	auth_wipe(s);
	return n;
}

static void
auth_failed(struct session *s, int code, const char *enh, const char *text)
{
	const struct relayd_conf *cf = conf_of(s);
	struct timeval tv = { (time_t)cf->auth_failure_delay, 0 };
	int n = auth_count_failure(s);

	if (n >= cf->auth_max_failures) {
		reply(s, 421, "4.7.0", "%s Error: too many authentication "
		      "failures", s->srv->hostname);
		session_close(s);
		return;
	}
	if (n < 2 || cf->auth_failure_delay == 0) {
		reply(s, code, enh, "%s", text);
		return;
	}
	if (s->auth_timer == NULL)
		s->auth_timer = evtimer_new(s->srv->base, auth_delay_cb, s);
	snprintf(s->auth_reply, sizeof(s->auth_reply), "%03d %s %s", code,
		 enh, text);
	s->busy = 1;
	evtimer_add(s->auth_timer, &tv);
}

static void
auth_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;
	char user[SASL_FIELD * 4];

	CHAIN_DONE(s);
	explicit_bzero(s->auth_pass, sizeof(s->auth_pass));
	auth_user_log(s, user, sizeof(user));
	if (o->verdict == GH_OK) {
		gh_log(GH_LOG_INFO, "%s AUTH %s succeeded for user %s",
		       s->conn->id, s->auth_mech, user);
		s->conn->auth_user = gh_pstrdup(s->conn->pool, s->auth_user);
		s->relay_before_auth = s->conn->relaying;
		s->conn->relaying = 1;
		auth_wipe(s);
		reply_line(s, o->code, ' ', o->enh, o->text);
		session_resume(s);
		return;
	}
	if (o->code / 100 == 4 && o->action != GH_WIRE_CLOSE) {
		/* A backend could not answer: not the client's failure. */
		gh_log(GH_LOG_INFO, "%s AUTH %s for user %s: temporary "
		       "failure", s->conn->id, s->auth_mech, user);
		auth_wipe(s);
		if (!reply_outcome(s, o))
			session_resume(s);
		return;
	}
	if (o->action == GH_WIRE_CLOSE) {
		/* A plugin closes: the failure counts all the same. */
		auth_count_failure(s);
		reply_outcome(s, o);
		return;
	}
	auth_failed(s, o->code, o->enh[0] ? o->enh : "5.7.8", o->text);
	if (!s->busy)
		session_resume(s);
}

static void
auth_run(struct session *s)
{
	struct gh_call proto;

	s->auth_step = AUTH_NONE;
	call_init(s, &proto, GH_HOOK_AUTH);
	proto.arg = s->auth_mech;
	proto.user = s->auth_user;
	if (strcmp(s->auth_mech, "CRAM-MD5") == 0) {
		proto.challenge = s->auth_challenge;
		proto.digest = s->auth_pass;
	} else {
		proto.password = s->auth_pass;
	}
	run_chain(s, &proto, auth_done);
}

/* A response that sasl.c could not take: the exchange ends, or, when
 * it was well formed but can never succeed, a counted failure. */
static int
auth_bad(struct session *s, enum sasl_result r)
{
	char text[64];

	switch (r) {
	case SASL_OK:
		return 0;
	case SASL_BAD_BASE64:
		auth_abort(s, 501, "5.5.2", "Cannot decode response");
		break;
	case SASL_BAD_RESPONSE:
		snprintf(text, sizeof(text), "Invalid %s response",
			 s->auth_mech);
		auth_abort(s, 501, "5.5.2", text);
		break;
	case SASL_REFUSED:
		/* The 535 ends the exchange (RFC 4954 4): what follows is
		 * a command again, whatever step LOGIN was at. */
		s->auth_step = AUTH_NONE;
		auth_failed(s, 535, "5.7.8", "Authentication credentials "
			    "invalid");
		break;
	}
	return 1;
}

static void
auth_login(struct session *s, const char *b64)
{
	char *field = s->auth_step == AUTH_LOGIN_USER ? s->auth_user :
	    s->auth_pass;

	if (auth_bad(s, sasl_login(b64, field)))
		return;
	if (s->auth_step == AUTH_LOGIN_USER) {
		s->auth_step = AUTH_LOGIN_PASS;
		reply_line(s, 334, ' ', NULL, "UGFzc3dvcmQ6");	/* Password: */
		return;
	}
	if (s->auth_user[0] == '\0' || s->auth_pass[0] == '\0' ||
	    sasl_user_bad(s->auth_user)) {
		auth_bad(s, SASL_REFUSED);
		return;
	}
	auth_run(s);
}

/* A line of the exchange; RFC 4954 4: "*" cancels it with 501. */
static void
auth_response(struct session *s, const char *line)
{
	enum auth_step step = s->auth_step;
	enum sasl_result r;

	if (strcmp(line, "*") == 0) {
		gh_log(GH_LOG_INFO, "%s AUTH %s cancelled by the client",
		       s->conn->id, s->auth_mech);
		auth_abort(s, 501, "5.7.0", "Authentication cancelled");
		return;
	}
	if (step == AUTH_LOGIN_USER || step == AUTH_LOGIN_PASS) {
		auth_login(s, line);
		return;
	}
	s->auth_step = AUTH_NONE;
	if (step == AUTH_PLAIN)
		r = sasl_plain(line, s->auth_user, s->auth_pass);
	else
		r = sasl_cram_md5(line, s->auth_user, s->auth_pass);
	if (!auth_bad(s, r))
		auth_run(s);
}

/* RFC 2195 2: a challenge unique to this exchange, "<rnd.time@host>",
 * kept for the auth hook and sent in base64.  0, or -1 with the reply
 * sent. */
static int
auth_cram_start(struct session *s)
{
	char b64[SASL_CHALLENGE * 4 / 3 + 4];
	uint64_t rnd;

	if (RAND_bytes((unsigned char *)&rnd, sizeof(rnd)) != 1 ||
	    sasl_cram_challenge(s->auth_challenge, sizeof(s->auth_challenge),
	    rnd, (long long)time(NULL), s->srv->hostname) != 0 ||
	    sasl_b64_encode(s->auth_challenge, strlen(s->auth_challenge), b64,
	    sizeof(b64)) != 0) {
		gh_log(GH_LOG_WARN, "%s AUTH CRAM-MD5: cannot make a "
		       "challenge (hostname %s)", s->conn->id,
		       s->srv->hostname);
		s->auth_challenge[0] = '\0';
		reply(s, 454, "4.7.0", "Temporary authentication failure");
		return -1;
	}
	reply_line(s, 334, ' ', NULL, b64);
	return 0;
}

/* Why AUTH cannot start now (the reply is sent), or 0 if it can. */
static int
auth_refused(struct session *s)
{
	const struct relayd_conf *cf = conf_of(s);

	if (!gh_runtime_has_hook(s->srv->rt, GH_HOOK_AUTH)) {
		reply(s, 503, "5.5.1", "Error: authentication not enabled");
		return 1;
	}
	if (!auth_offered(s)) {
		/* RFC 4954 6: the mechanism needs TLS here. */
		reply(s, 538, "5.7.11", "Encryption required for requested "
		      "authentication mechanism");
		return 1;
	}
	if (!s->conn->esmtp) {
		reply(s, 503, "5.5.1", "Error: send EHLO first");
		return 1;
	}
	if (s->conn->auth_user != NULL) {
		/* RFC 4954 4: after a successful AUTH, 503. */
		reply(s, 503, "5.5.1", "Error: already authenticated");
		return 1;
	}
	if (s->conn->txn != NULL) {
		reply(s, 503, "5.5.1", "Error: AUTH not permitted during a "
		      "mail transaction");
		return 1;
	}
	if (fail_table_count(s->srv->auth_fails, (const struct sockaddr *)
	    &s->sa, cf->auth_failure_window) >= cf->auth_max_failures) {
		gh_log(GH_LOG_INFO, "%s AUTH refused: %s is over %lld "
		       "failures", s->conn->id, s->conn->remote_ip,
		       cf->auth_max_failures);
		reply(s, 421, "4.7.0", "%s Error: too many authentication "
		      "failures", s->srv->hostname);
		session_close(s);
		return 1;
	}
	return 0;
}

static void
cmd_auth(struct session *s, char *arg)
{
	char *ir = strchr(arg, ' ');

	if (auth_refused(s))
		return;
	if (ir != NULL)
		*ir++ = '\0';
	if (strcasecmp(arg, "PLAIN") == 0) {
		s->auth_mech = "PLAIN";
	} else if (strcasecmp(arg, "LOGIN") == 0) {
		s->auth_mech = "LOGIN";
	} else if (strcasecmp(arg, "CRAM-MD5") == 0 && auth_cram_offered(s)) {
		s->auth_mech = "CRAM-MD5";
	} else if (arg[0] == '\0') {
		reply(s, 501, "5.5.4", "Syntax: AUTH mechanism");
		return;
	} else {
		reply(s, 504, "5.5.4", "Unrecognized authentication type");
		return;
	}
	auth_wipe(s);
	if (s->auth_mech[0] == 'C') {
		/* RFC 4954 4: the server speaks first in CRAM-MD5, so an
		 * initial response is refused with 501. */
		if (ir != NULL) {
			reply(s, 501, "5.5.4", "CRAM-MD5 takes no initial "
			      "response");
			return;
		}
		if (auth_cram_start(s) == 0)
			s->auth_step = AUTH_CRAM;
		return;
	}
	s->auth_step = s->auth_mech[0] == 'P' ? AUTH_PLAIN : AUTH_LOGIN_USER;
	if (ir == NULL) {
		/* PLAIN: an empty challenge; LOGIN: "Username:". */
		reply_line(s, 334, ' ', NULL, s->auth_step == AUTH_PLAIN ? "" :
			   "VXNlcm5hbWU6");
		return;
	}
	/* RFC 4954 4: "=" is an empty initial response. */
	auth_response(s, strcmp(ir, "=") == 0 ? "" : ir);
}

/* ------------------------------------------------------------------ */
/* XCLIENT (Postfix's XCLIENT_README): a trusted front end or test      */
/* harness says who the client is.                                     */

/* Notes that describe the connection itself, not the client: they
 * survive XCLIENT, as TLS does (XCLIENT_README, "server response"),
 * and so does the result the TLS layer recorded. */
static const char *const xclient_kept_notes[] = {
	"tls.version", "tls.cipher", "tls.client_subject", "tls.client_issuer",
	"tls.client_fingerprint", "tls.client_verified", NULL
};

/* ADDR/PORT or DESTADDR/DESTPORT into the connection. */
static void
xclient_sockaddr(struct gh_conn *c, const struct xclient *xc, int dest)
{
	enum xclient_attr aa = dest ? XCLIENT_DESTADDR : XCLIENT_ADDR;
	enum xclient_attr pa = dest ? XCLIENT_DESTPORT : XCLIENT_PORT;
	int family = dest ? xc->destaddr_family : xc->addr_family;
	char *ip = dest ? c->local_ip : c->remote_ip;
	int *port = dest ? &c->local_port : &c->remote_port;
	struct sockaddr_storage local;
	struct sockaddr_storage *ss = dest ? &local : &c->remote_sa;
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	if (xc->attr[aa].state == XCLIENT_VALUE) {
		/* xclient_parse() checked the address: written back by
		 * inet_ntop(3), it reads as relayd writes any other. */
		memset(ss, 0, sizeof(*ss));
		if (family == AF_INET6) {
			s6->sin6_family = AF_INET6;
			inet_pton(AF_INET6, xc->attr[aa].value, &s6->sin6_addr);
			inet_ntop(AF_INET6, &s6->sin6_addr, ip,
				  sizeof(c->remote_ip));
		} else {
			s4->sin_family = AF_INET;
			inet_pton(AF_INET, xc->attr[aa].value, &s4->sin_addr);
			inet_ntop(AF_INET, &s4->sin_addr, ip,
				  sizeof(c->remote_ip));
		}
	}
	if (xc->attr[pa].state == XCLIENT_VALUE)
		*port = dest ? xc->destport : xc->port;
	else if (xc->attr[pa].state == XCLIENT_UNAVAILABLE)
		*port = 0;
	if (dest)
		return;
	if (c->remote_sa.ss_family == AF_INET6)
		s6->sin6_port = htons((uint16_t)*port);
	else
		s4->sin_port = htons((uint16_t)*port);
}

/* NAME and REVERSE_NAME: what the lookup_rdns stage would have found.
 * Returns 1 when the name must still be looked up (a new ADDR, no
 * NAME). */
static int
xclient_names(struct session *s, const struct xclient *xc,
	      const struct gh_notes *old)
{
	struct gh_conn *c = s->conn;
	const char *ptr;
	int lookup = 0;

	switch (xc->attr[XCLIENT_NAME].state) {
	case XCLIENT_VALUE:
		c->rdns = gh_pstrdup(c->pool, xc->attr[XCLIENT_NAME].value);
		gh_note_set(c->notes, "rdns.status", "confirmed");
		break;
	case XCLIENT_UNAVAILABLE:
		c->rdns = NULL;
		gh_note_set(c->notes, "rdns.status", "none");
		break;
	case XCLIENT_TEMPUNAVAIL:
		c->rdns = NULL;
		gh_note_set(c->notes, "rdns.status", "tempfail");
		break;
	default:
		if (xc->attr[XCLIENT_ADDR].state == XCLIENT_VALUE) {
			c->rdns = NULL;
			lookup = 1;
			break;
		}
		/* The same client: what was found for it stands. */
		if (gh_note_get(old, "rdns.status") != NULL)
			gh_note_set(c->notes, "rdns.status",
				    gh_note_get(old, "rdns.status"));
		if ((ptr = gh_note_get(old, "rdns.ptr")) != NULL &&
		    xc->attr[XCLIENT_REVERSE_NAME].state == XCLIENT_ABSENT)
			gh_note_set(c->notes, "rdns.ptr", ptr);
		break;
	}
	/* A lookup for a new ADDR may still find a PTR name of its own. */
	if (xc->attr[XCLIENT_REVERSE_NAME].state == XCLIENT_VALUE)
		gh_note_set(c->notes, "rdns.ptr",
			    xc->attr[XCLIENT_REVERSE_NAME].value);
	return lookup;
}

/* "ADDR=127.0.0.2 NAME=[UNAVAILABLE] ..." for the log: LOGIN as AUTH
 * logs its user; xclient_parse() let no control octet through. */
static void
xclient_describe(const struct xclient *xc, char *buf, size_t n)
{
	size_t off = 0, i;
	int w;

	buf[0] = '\0';
	for (i = 0; i < XCLIENT_NATTRS && off < n; i++) {
		const char *v = xc->attr[i].value;

		if (xc->attr[i].state == XCLIENT_ABSENT)
			continue;
		if (xc->attr[i].state == XCLIENT_UNAVAILABLE)
			v = "[UNAVAILABLE]";
		else if (xc->attr[i].state == XCLIENT_TEMPUNAVAIL)
			v = "[TEMPUNAVAIL]";
		w = snprintf(buf + off, n - off, "%s%s=%s", off ? " " : "",
			     xclient_attr_name((enum xclient_attr)i), v);
		if (w < 0)
			break;
		off += (size_t)w;
	}
}

/*
 * Apply the attributes given and go back to the greeting stage, as for
 * a new connection: connect_init, lookup_rdns (unless NAME said it) and
 * connect run again with the new address, and their verdict is the
 * reply (220 greeting, or the refusal).  Attributes not given keep
 * their values; HELO and PROTO given here survive the reset, as
 * XCLIENT_README asks (the helo hook does not run for them).  Results
 * and notes start afresh, but for those of the TLS layer, which
 * XCLIENT cannot undo.  LOGIN counts as a successful AUTH.
 */
static void
xclient_apply(struct session *s, const struct xclient *xc)
{
	struct gh_conn *c = s->conn;
	struct gh_notes *old = c->notes;
	const struct gh_result *tls;
	const char *v;
	size_t i;
	int lookup;

	txn_reset(s);
	c->notes = gh_notes_new(c->pool);
	for (i = 0; xclient_kept_notes[i] != NULL; i++)
		if ((v = gh_note_get(old, xclient_kept_notes[i])) != NULL)
			gh_note_set(c->notes, xclient_kept_notes[i], v);
	tls = gh_results_get(c->results, "tls");
	c->results = gh_results_new(c->pool);
	if (tls != NULL)
		gh_results_add(c->results, tls->plugin, tls->kind, tls->msg);
	xclient_sockaddr(c, xc, 0);
	xclient_sockaddr(c, xc, 1);
	memcpy(&s->sa, &c->remote_sa, sizeof(s->sa));
	lookup = xclient_names(s, xc, old);
	s->helo_ok = 0;
	s->ehlo = 0;
	c->helo = NULL;
	c->esmtp = 0;
	s->caps.n = 0;
	s->caps.v = NULL;
	if (xc->attr[XCLIENT_HELO].state == XCLIENT_VALUE) {
		snprintf(s->helo, sizeof(s->helo), "%s",
			 xc->attr[XCLIENT_HELO].value);
		c->helo = s->helo;
		s->helo_ok = 1;
	}
	if (xc->attr[XCLIENT_PROTO].state == XCLIENT_VALUE)
		c->esmtp = s->ehlo = strcasecmp(xc->attr[XCLIENT_PROTO].value,
						"ESMTP") == 0;
	c->auth_user = NULL;
	c->relaying = 0;
	s->relay_before_auth = 0;
	if (xc->attr[XCLIENT_LOGIN].state == XCLIENT_VALUE) {
		c->auth_user = gh_pstrdup(c->pool,
					  xc->attr[XCLIENT_LOGIN].value);
		c->relaying = 1;
	}
	c->early_talker = 0;
	s->loop = 0;
	s->nunrecognized = 0;
	s->state = ST_CONNECT;
	connect_start(s, lookup);
}

static void
cmd_xclient(struct session *s, char *arg)
{
	struct xclient xc;
	char desc[1400];

	if (!s->xclient_ok) {
		gh_log(GH_LOG_INFO, "%s XCLIENT refused: %s is not in "
		       "relayd.xclient_hosts", s->conn->id, s->conn->remote_ip);
		reply(s, 550, "5.7.0", "Error: insufficient authorization");
		return;
	}
	if (s->conn->txn != NULL) {
		reply(s, 503, "5.5.1", "Error: MAIL transaction in progress");
		return;
	}
	if (xclient_parse(arg, &xc) != 0) {
		reply(s, 501, "5.5.4", "%s", xc.why);
		return;
	}
	if (xc.attr[XCLIENT_ADDR].state == XCLIENT_UNAVAILABLE ||
	    xc.attr[XCLIENT_DESTADDR].state == XCLIENT_UNAVAILABLE) {
		/* Plugins match, count and log client addresses: a session
		 * without one has no meaning here. */
		reply(s, 501, "5.5.4", "Bad XCLIENT address: [UNAVAILABLE] is "
		      "not supported");
		return;
	}
	xclient_describe(&xc, desc, sizeof(desc));
	gh_log(GH_LOG_INFO, "%s XCLIENT from %s: %s", s->conn->id,
	       s->conn->remote_ip, desc);
	xclient_apply(s, &xc);
}

static const struct command commands[] = {
	{ "HELO", 0, cmd_helo },
	{ "EHLO", 0, cmd_ehlo },
	{ "MAIL", NEED_HELO, cmd_mail },
	{ "RCPT", NEED_HELO | NEED_MAIL, cmd_rcpt },
	{ "DATA", NEED_HELO | NO_ARGS, cmd_data },
	{ "BDAT", 0, cmd_bdat },	/* its checks swallow the chunk */
	{ "RSET", NO_ARGS, cmd_rset },
	{ "NOOP", 0, cmd_noop },
	{ "QUIT", NO_ARGS, cmd_quit },
	{ "VRFY", 0, cmd_vrfy },
	{ "HELP", 0, cmd_help },
	{ "STARTTLS", NO_ARGS, cmd_starttls },
	{ "AUTH", NEED_HELO, cmd_auth },
	{ "XCLIENT", 0, cmd_xclient },
	{ NULL, 0, NULL }
};

static const struct command *
command_find(const char *verb)
{
	const struct command *c;

	for (c = commands; c->name != NULL; c++)
		if (strcasecmp(c->name, verb) == 0)
			return c;
	return NULL;
}

static void
unrecognized_done(void *arg, const struct gh_outcome *o)
{
	struct session *s = arg;

	CHAIN_DONE(s);
	/* At the limit the 421 is this command's only reply: a pipelining
	 * client pairs replies with commands (RFC 2920 3.1). */
	if (o->verdict != GH_OK && o->action != GH_WIRE_CLOSE &&
	    ++s->nunrecognized >= (unsigned)conf_of(s)->max_unrecognized) {
		gh_log(GH_LOG_INFO, "%s too many unrecognized commands (%u)",
		       s->conn->id, s->nunrecognized);
		reply(s, 421, "4.7.0", "%s Error: too many unrecognized "
		      "commands", s->srv->hostname);
		session_close(s);
		return;
	}
	if (!reply_outcome(s, o))
		session_resume(s);
}

static void
command_unrecognized(struct session *s, const char *line)
{
	struct gh_call proto;

	call_init(s, &proto, GH_HOOK_UNRECOGNIZED_COMMAND);
	proto.arg = line;
	run_chain(s, &proto, unrecognized_done);
}

/* Is the command allowed in this state?  Replies 503 when not. */
static int
command_state_ok(struct session *s, const struct command *c, const char *arg)
{
	if ((c->flags & NEED_HELO) && !s->helo_ok) {
		reply(s, 503, "5.5.1", "Error: send HELO/EHLO first");
		return 0;
	}
	if ((c->flags & NEED_MAIL) && s->conn->txn == NULL) {
		reply(s, 503, "5.5.1", "Error: need MAIL command");
		return 0;
	}
	if ((c->flags & NO_ARGS) && arg[0] != '\0') {
		reply(s, 501, "5.5.4", "Syntax: %s", c->name);
		return 0;
	}
	return 1;
}

static void
command_dispatch(struct session *s, char *line)
{
	const struct command *c;
	char clean[1024], *arg;
	size_t vlen = strcspn(line, " ");

	if (s->auth_step != AUTH_NONE) {
		/* Credentials never reach the log. */
		gh_log(GH_LOG_PROTO, "%s < (AUTH response)", s->conn->id);
		auth_response(s, line);
		return;
	}
	if (vlen == 4 && strncasecmp(line, "AUTH", 4) == 0 &&
	    line[4] == ' ' && strchr(line + 5, ' ') != NULL)
		gh_log(GH_LOG_PROTO, "%s < %.*s (initial response)",
		       s->conn->id, (int)strcspn(line + 5, " ") + 5, line);
	else {
		gh_sanitize(clean, sizeof(clean), line, strlen(line));
		gh_log(GH_LOG_PROTO, "%s < %s", s->conn->id, clean);
	}
	arg = line + vlen;
	if (*arg == ' ')
		*arg++ = '\0';
	c = command_find(line);
	/* BDAT answers the loop reply itself, after reading its chunk: the
	 * chunk's octets are never commands (RFC 3030 2). */
	if (s->loop && (c == NULL || (c->proceed != cmd_quit &&
	    c->proceed != cmd_bdat))) {
		reply_raw(s, s->loop_reply);
		return;
	}
	if (c == NULL) {
		if (arg > line + vlen)
			arg[-1] = ' ';	/* give plugins the whole line */
		command_unrecognized(s, line);
		return;
	}
	if (!command_state_ok(s, c, arg))
		return;
	c->proceed(s, arg);
}

/* RFC 5321 4.5.3.1.4: a command line is at most max_line_length octets
 * (512 by default), its CRLF included.  A longer one is answered once,
 * skipped to its end, and the session goes on. */
static void
line_too_long(struct session *s)
{
	gh_log(GH_LOG_INFO, "%s command line over %lld octets", s->conn->id,
	       conf_of(s)->max_line_length);
	if (s->auth_step != AUTH_NONE) {
		/* RFC 4954 4: the exchange ends with the error. */
		auth_abort(s, 500, "5.5.2", "Error: line too long");
		return;
	}
	reply(s, 500, "5.5.2", "Error: line too long");
}

/* Take one command line from the input; returns 0 if none is complete. */
static int
command_input(struct session *s)
{
	struct evbuffer *in = bufferevent_get_input(s->bev);
	size_t max = (size_t)conf_of(s)->max_line_length, len;
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL,
						      EVBUFFER_EOL_LF);

	if (eol.pos < 0) {
		/* max octets and no LF yet: the line is already too long. */
		if (evbuffer_get_length(in) < max)
			return 0;
		evbuffer_drain(in, evbuffer_get_length(in));
		if (!s->discard_line) {
			s->discard_line = 1;
			line_too_long(s);
		}
		return 0;
	}
	len = (size_t)eol.pos;
	if (s->discard_line || len + 1 > max) {
		evbuffer_drain(in, len + 1);
		if (!s->discard_line)
			line_too_long(s);
		s->discard_line = 0;
		return 1;
	}
	evbuffer_remove(in, s->line, len + 1);
	s->line[len] = '\0';
	if (len > 0 && s->line[len - 1] == '\r')
		s->line[--len] = '\0';
	if (memchr(s->line, '\0', len) != NULL) {
		if (s->auth_step != AUTH_NONE)
			auth_abort(s, 500, "5.5.2", "Error: NUL in command "
				   "line");
		else
			reply(s, 500, "5.5.2", "Error: NUL in command line");
		explicit_bzero(s->line, len);
		return 1;
	}
	command_dispatch(s, s->line);
	/* The line may have held a password, base64 or not. */
	explicit_bzero(s->line, len);
	return 1;
}

static void
session_process(struct session *s)
{
	int progress = 1;

	s->processing = 1;
	while (progress && !s->busy && s->state != ST_CLOSING &&
	    !output_full(s)) {
		switch (s->state) {
		case ST_DATA:
			progress = data_input(s);
			break;
		case ST_BDAT:
			progress = bdat_input(s);
			break;
		default:
			progress = command_input(s);
			break;
		}
	}
	s->processing = 0;
	if (s->eof && !s->busy && s->state != ST_CLOSING && !output_full(s))
		session_close(s);
}

/* ------------------------------------------------------------------ */
/* Lifetime.                                                           */

static void
session_free(struct session *s)
{
	struct gh_call proto;
	struct gh_chain *ch;

	gh_chain_cancel(s->chain);
	s->chain = NULL;
	txn_reset(s);
	call_init(s, &proto, GH_HOOK_DISCONNECT);
	ch = gh_chain_run(s->srv->rt, &proto, noop_done, NULL);
	gh_chain_cancel(ch);
	gh_log(GH_LOG_DEBUG, "%s closed: %" PRIu64 " messages", s->conn->id,
	       s->nmessages);
	if (s->counted)
		conn_table_leave(s->srv->conns, s->srv->worker, s->ticket);
	if (s->tls_layer && !s->tls_handshake) {
		/* close_notify, as far as the socket takes it now. */
		SSL *ssl = bufferevent_openssl_get_ssl(s->bev);

		if (SSL_shutdown(ssl) < 0)
			ERR_clear_error();
	}
	if (s->ssl != NULL)
		SSL_free(s->ssl);
	if (s->auth_timer != NULL)
		event_free(s->auth_timer);
	auth_wipe(s);
	/* A TLS bufferevent closes the socket; the plain one leaves it,
	 * so that STARTTLS can hand it over. */
	bufferevent_free(s->bev);
	if (!s->tls_layer)
		close(s->fd);
	event_free(s->close_ev);
	gh_pool_destroy(s->scratch);
	gh_conn_free(s->conn);
	free(s->line);
	server_session_closed(s->srv);
	free(s);
}

static void
close_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	session_free(arg);
}

/* Close once the pending replies are written; never free from inside
 * the call stack that asked for it. */
static void
session_close(struct session *s)
{
	if (s->state == ST_CLOSING)
		return;
	s->state = ST_CLOSING;
	bufferevent_disable(s->bev, EV_READ);
	if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
		event_active(s->close_ev, 0, 0);
}

static void
read_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (s->state == ST_CONNECT) {
		/* Talking before the greeting: an early talker. */
		if (!s->conn->early_talker)
			gh_log(GH_LOG_INFO, "%s early talker: input before "
			       "the greeting", s->conn->id);
		s->conn->early_talker = 1;
		return;
	}
	if (!s->processing)
		session_process(s);
}

static void
write_cb(struct bufferevent *bev, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (s->state == ST_CLOSING) {
		event_active(s->close_ev, 0, 0);
		return;
	}
	if (s->starttls) {
		starttls_switch(s);
		return;
	}
	/* The replies are taken: pipelined input held back by
	 * output_full() goes on. */
	if (!s->busy && !s->processing && s->state != ST_CONNECT)
		session_process(s);
}

static void
event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct session *s = arg;

	(void)bev;
	if (s->state == ST_CLOSING) {
		event_active(s->close_ev, 0, 0);
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		tls_established(s);
		return;
	}
	if (s->tls_handshake && (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF |
	    BEV_EVENT_TIMEOUT))) {
		/* Nothing of the session can be said without TLS. */
		tls_failed(s, what);
		s->state = ST_CLOSING;
		event_active(s->close_ev, 0, 0);
		return;
	}
	if ((what & BEV_EVENT_TIMEOUT) && (what & BEV_EVENT_WRITING)) {
		/* The client does not read: nothing more can be said. */
		gh_log(GH_LOG_INFO, "%s timeout writing to the client, %zu "
		       "octets unsent", s->conn->id, evbuffer_get_length(
		       bufferevent_get_output(s->bev)));
		s->state = ST_CLOSING;
		event_active(s->close_ev, 0, 0);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT) {
		if (s->busy || output_full(s)) {
			/* Waiting on a plugin, or on the client to take
			 * its replies, not on it to send: the plugin's
			 * deadline or the write timeout applies. */
			bufferevent_enable(s->bev, EV_READ);
			return;
		}
		/* RFC 5321 4.5.3.2 */
		gh_log(GH_LOG_INFO, "%s timeout in %s", s->conn->id,
		       s->state == ST_CMD ? "command" : "data");
		reply(s, 421, "4.4.2", "%s Error: timeout exceeded",
		      s->srv->hostname);
		session_close(s);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		/* What the client sent before its close is still answered:
		 * session_process() closes once the input is used up (or
		 * later, when a chain or the replies held it up). */
		s->eof = 1;
		if (!s->busy && !s->processing)
			session_process(s);
		return;
	}
	/* A socket error: nothing can be written any more. */
	gh_log(GH_LOG_DEBUG, "%s connection error: %s", s->conn->id,
	       strerror(errno));
	s->state = ST_CLOSING;
	event_active(s->close_ev, 0, 0);
}

static void
addr_fill(struct gh_conn *c, const struct sockaddr *sa, int local)
{
	char *ip = local ? c->local_ip : c->remote_ip;
	int *port = local ? &c->local_port : &c->remote_port;

	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		/* An IPv4 client on a dual-stack listener is written as
		 * IPv4, as Postfix does: plugins match and log it so. */
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr))
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], ip,
				  sizeof(c->remote_ip));
		else
			inet_ntop(AF_INET6, &s6->sin6_addr, ip,
				  sizeof(c->remote_ip));
		*port = ntohs(s6->sin6_port);
	} else if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof(c->remote_ip));
		*port = ntohs(s4->sin_port);
	}
}

/* The socket's bufferevent, under TLS at once on an implicit TLS
 * listener (RFC 8314 3.3). */
static struct bufferevent *
session_bev(struct session *s, int fd)
{
	struct bufferevent *bev;
	SSL *ssl;

	if (s->lst->tls != LISTEN_TLS_IMPLICIT)
		return bufferevent_socket_new(s->srv->base, fd, 0);
	if ((ssl = SSL_new(s->lst->ssl)) == NULL) {
		gh_log(GH_LOG_ERR, "%s TLS: %s", s->conn->id, tls_error());
		return NULL;
	}
	bev = bufferevent_openssl_socket_new(s->srv->base, fd, ssl,
	    BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
	if (bev == NULL)
		SSL_free(ssl);
	s->tls_layer = bev != NULL;
	return bev;
}

/* A session that never got its socket going: closed and freed, no
 * reply. */
static void
session_abandon(struct session *s)
{
	struct server *srv = s->srv;

	close(s->fd);
	event_free(s->close_ev);
	gh_pool_destroy(s->scratch);
	gh_conn_free(s->conn);
	free(s->line);
	server_session_closed(srv);
	free(s);
}

void
session_start(struct server *srv, const struct listener *lst, int fd,
	      const struct sockaddr *sa, socklen_t salen,
	      const struct sockaddr *proxy_local, const char *via)
{
	const struct relayd_conf *cf = srv->conf;
	struct session *s = calloc(1, sizeof(*s));
	struct sockaddr_storage local;
	socklen_t llen = sizeof(local);

	if (s == NULL || (s->line = malloc((size_t)cf->max_line_length + 2))
	    == NULL) {
		free(s);
		close(fd);
		return;
	}
	srv->nsessions++;
	s->srv = srv;
	s->lst = lst;
	s->fd = fd;
	memcpy(&s->sa, sa, salen);
	s->conn = gh_conn_new(srv->base);
	s->conn->hostname = srv->hostname;
	s->conn->listener_role = lst->submission ? "submission" : "mx";
	memcpy(&s->conn->remote_sa, sa, salen);
	/* Decided once, on the address the connection came from (after
	 * PROXY, the client's): XCLIENT cannot grant itself more. */
	s->xclient_ok = nets_match(cf->xclient_nets, cf->nxclient_nets, sa);
	addr_fill(s->conn, sa, 0);
	if (proxy_local != NULL)
		addr_fill(s->conn, proxy_local, 1);
	else if (getsockname(fd, (struct sockaddr *)&local, &llen) == 0)
		addr_fill(s->conn, (struct sockaddr *)&local, 1);
	s->scratch = gh_pool_create();
	s->close_ev = event_new(srv->base, -1, 0, close_cb, s);
	gh_log(via != NULL ? GH_LOG_INFO : GH_LOG_DEBUG, "%s connect from %s "
	       "port %d%s%s", s->conn->id, s->conn->remote_ip,
	       s->conn->remote_port, via != NULL ? " via " : "",
	       via != NULL ? via : "");
	s->ticket = conn_table_enter(srv->conns, srv->worker, sa,
				     cf->max_connections,
				     cf->max_connections_per_ip);
	/* Over the limit on an implicit TLS port: a 421 would wait for a
	 * handshake the client may never finish, holding the socket the
	 * limit is there to spare.  Closed at once, unread. */
	if (s->ticket < 0 && lst->tls == LISTEN_TLS_IMPLICIT) {
		gh_log(GH_LOG_INFO, "%s refused %s: too many connections "
		       "(TLS port: closed without a reply)", s->conn->id,
		       s->conn->remote_ip);
		session_abandon(s);
		return;
	}
	if ((s->bev = session_bev(s, fd)) == NULL) {
		/* Nothing can be said: TLS was promised on this port. */
		if (s->ticket >= 0)
			conn_table_leave(srv->conns, srv->worker, s->ticket);
		session_abandon(s);
		return;
	}
	if (s->tls_layer)
		tls_bev_setup(s);
	else
		bev_setup(s);
	if (s->ticket < 0) {
		gh_log(GH_LOG_INFO, "%s refused %s: too many connections",
		       s->conn->id, s->conn->remote_ip);
		reply(s, 421, "4.7.0", "%s Error: too many connections",
		      srv->hostname);
		session_close(s);
		return;
	}
	s->counted = 1;
	s->state = ST_CONNECT;
	connect_start(s, 1);
}
