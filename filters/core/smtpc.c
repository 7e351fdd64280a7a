/*
 * smtpc.c - the asynchronous SMTP/LMTP client behind smtp_forward and
 * lmtp: pools per next hop, connections, the transaction driver.
 *
 * Contract (see smtpc.h).  Every callback runs from the loop, never from
 * inside the call that asked for it, so a hook can return GH_AGAIN after
 * starting work.  A connection that fails is destroyed here and its
 * owner told once; the structure is freed on the next loop turn, so code
 * still on the stack may look at its state (C_DEAD) but nothing else.
 *
 * Replies are read line by line with a bound of SMTPC_LINE_MAX octets
 * and SMTPC_LINES_MAX lines (RFC 5321 4.2.1, 4.5.3.1.5); every line of a
 * multi-line reply must carry the same code.  Waits follow RFC 5321
 * 4.5.3.2: one timer per connection, armed for what it waits on.
 *
 * The message is streamed: gh_txn_output() writes into the bufferevent
 * until a window of output is queued, then stops; when the output has
 * drained below half the window, writing starts again from the top,
 * skipping what was sent.  At most a window (1 MiB, or an eighth of a
 * large message) sits in memory, at the price of re-reading the start of
 * a large message from its temporary file a few times.
 *
 * STARTTLS (RFC 3207) comes between the first EHLO and the connection
 * being ready: EHLO, STARTTLS, 220, handshake, EHLO again.  The plain
 * socket bufferevent does not own its socket, so that at the 220 it can
 * be freed and the socket handed to a TLS bufferevent (as relayd's
 * session does on the server side); octets already read behind the 220
 * are dropped, and later plaintext can only break the handshake.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <ctype.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core.h"
#include "smtpc.h"

#define WINDOW_MIN (1024 * 1024)
#define WINDOW_PARTS 8
#define CMD_MAX 1024
#define QUIT_WAIT 5
/*
 * TLS 1.2 suites with forward secrecy and no RC4, 3DES, MD5 or anonymous
 * key exchange; TLS 1.3 keeps OpenSSL's (all AEAD).  Wider than relayd's
 * server policy on purpose: the next hop is whatever the route says,
 * and with opportunistic TLS a suite it cannot do means clear text.
 */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:ECDHE+AES:" \
	"!aNULL:!eNULL:!kRSA:!PSK:!SRP:!MD5:!RC4:!3DES:!SHA1"

const char *const smtpc_tls_choices[] = {
	"off", "opportunistic", "required", NULL
};

struct pending {
	TAILQ_ENTRY(pending) entry;
	smtpc_reply_fn fn;
	void *arg;
	long long timeout;
	char verb[8];			/* for messages: "RCPT", "DATA" */
};

enum cstate {
	C_CONNECTING,
	C_GREETING,			/* waiting for 220 */
	C_HELLO,			/* EHLO, LHLO or HELO sent */
	C_STARTTLS,			/* STARTTLS sent, waiting for 220 */
	C_HANDSHAKE,			/* TLS handshake under way */
	C_READY,			/* commands and replies */
	C_STREAM,			/* writing the message */
	C_QUIT,				/* QUIT sent, closing */
	C_DEAD
};

struct stream {
	struct gh_txn *t;
	uint64_t sent;			/* output octets already queued */
	uint64_t pos;			/* position in the current pass */
	size_t window;
	int bol;			/* at the start of a line */
	char tail[2];			/* the last two octets queued */
	unsigned paused : 1;
	size_t nreplies;
	smtpc_reply_fn fn;
	void *arg;
};

struct smtpc_conn {
	struct smtpc_pool *pool;
	TAILQ_ENTRY(smtpc_conn) entry;	/* on the idle list */
	struct bufferevent *bev;
	struct event *timer;
	enum cstate state;
	int connect_errno;
	unsigned idle : 1;
	unsigned reused : 1;		/* readied with RSET, not opened */
	unsigned esmtp : 1;
	unsigned pipelining : 1;
	unsigned size : 1;
	unsigned eightbit : 1;
	unsigned smtputf8 : 1;
	unsigned starttls : 1;		/* offered in the EHLO reply */
	unsigned tls_layer : 1;		/* bev is a TLS one (owns the fd) */
	unsigned tls : 1;		/* handshake done */
	unsigned no_tls : 1;		/* opportunistic: the handshake failed
					 * once, this one stays in clear */
	char tls_desc[96];
	TAILQ_HEAD(, pending) pending;
	size_t npending;
	struct smtpc_reply cur;		/* the reply being read */
	size_t curlines;
	smtpc_fail_fn fail;
	void *fail_arg;
	struct smtpc_wait *wait;	/* an acquisition it is readied for */
	struct stream *stream;
	char helo[256];
};

struct smtpc_wait {
	struct smtpc_pool *pool;
	TAILQ_ENTRY(smtpc_wait) entry;
	struct smtpc_conn *conn;	/* being readied for it */
	unsigned queued : 1;		/* waiting for a free slot */
	unsigned clear : 1;		/* TLS failed: a new one in clear */
	struct event *qev;		/* bounds the wait for a slot */
	smtpc_acquire_fn fn;
	void *arg;
	char helo[256];
};

struct smtpc_pool {
	struct event_base *base;
	struct smtpc_dest dest;
	struct sockaddr_storage sa;
	socklen_t salen;
	char name[300];
	SSL_CTX *ssl_ctx;		/* made at the first STARTTLS offer */
	const char *tls_name;		/* SNI and the name checked */
	TAILQ_HEAD(, smtpc_conn) idle;
	TAILQ_HEAD(, smtpc_wait) waiters;
	long long nopen;
	unsigned long nconnects;
};

static void conn_destroy(struct smtpc_conn *c, int deferred);
static void pool_serve(struct smtpc_wait *w);
static void stream_fill(struct smtpc_conn *c);
static void tls_failed(struct smtpc_conn *c, const char *why);

/* ------------------------------------------------------------------ */
/* Replies.                                                            */

static void
reply_local(struct smtpc_reply *r, int code, const char *enh,
	    const char *fmt, va_list ap)
{
	memset(r, 0, sizeof(*r));
	r->code = code;
	r->local = 1;
	snprintf(r->enh, sizeof(r->enh), "%s", enh);
	vsnprintf(r->text, sizeof(r->text), fmt, ap);
}

/* A reply made up here, for whoever reports the failure. */
static void reply_make(struct smtpc_reply *r, int code, const char *enh,
		       const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
reply_make(struct smtpc_reply *r, int code, const char *enh,
	   const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	reply_local(r, code, enh, fmt, ap);
	va_end(ap);
}

/* Reply text may be cut at the bound: it is a message to a person. */
static void text_printf(char *dst, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
text_printf(char *dst, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(dst, n, fmt, ap);
	va_end(ap);
}

/* "x.y.z" of RFC 3463 at the start of s, of class cls; its length. */
static size_t
enh_prefix(const char *s, size_t len, int cls)
{
	size_t i = 0, ndig;
	int part;

	if (len < 5 || s[0] != '0' + cls || s[1] != '.')
		return 0;
	i = 2;
	for (part = 0; part < 2; part++) {
		for (ndig = 0; i < len && isdigit((unsigned char)s[i]) &&
		    ndig < 3; i++)
			ndig++;
		if (ndig == 0)
			return 0;
		if (part == 0) {
			if (i >= len || s[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && s[i] != ' ')
		return 0;
	return i;
}

static void
text_append(struct smtpc_reply *r, const char *s, size_t len)
{
	size_t have = strlen(r->text);

	if (len == 0)
		return;
	if (have > 0 && have + 1 < sizeof(r->text))
		r->text[have++] = ' ';
	gh_sanitize(r->text + have, sizeof(r->text) - have, s, len);
}

static void
caps_line(struct smtpc_conn *c, const char *s, size_t len)
{
	char kw[32];
	size_t n = 0;

	while (n < len && n + 1 < sizeof(kw) && s[n] != ' ') {
		kw[n] = s[n];
		n++;
	}
	kw[n] = '\0';
	if (strcasecmp(kw, "PIPELINING") == 0)
		c->pipelining = 1;
	else if (strcasecmp(kw, "STARTTLS") == 0)
		c->starttls = 1;
	else if (strcasecmp(kw, "8BITMIME") == 0)
		c->eightbit = 1;
	else if (strcasecmp(kw, "SMTPUTF8") == 0)
		c->smtputf8 = 1;
	else if (strcasecmp(kw, "SIZE") == 0)
		c->size = 1;
}

/* One reply line: 1 when the reply is complete, 0 for more, -1 when it
 * is not a reply line (RFC 5321 4.2: three digits, then SP, "-" or the
 * end of the line). */
static int
line_take(struct smtpc_conn *c, const char *s, size_t len)
{
	int code, last;
	size_t e;

	if (len < 3 || !isdigit((unsigned char)s[0]) ||
	    !isdigit((unsigned char)s[1]) || !isdigit((unsigned char)s[2]))
		return -1;
	code = (s[0] - '0') * 100 + (s[1] - '0') * 10 + (s[2] - '0');
	if (code < 200 || code > 599 || (len > 3 && s[3] != ' ' &&
	    s[3] != '-'))
		return -1;
	last = len == 3 || s[3] == ' ';
	if (c->curlines == 0) {
		memset(&c->cur, 0, sizeof(c->cur));
		c->cur.code = code;
	} else if (code != c->cur.code)
		return -1;
	if (++c->curlines > SMTPC_LINES_MAX)
		return -1;
	e = len > 3 ? 4 : 3;
	s += e;
	len -= e;
	/* RFC 2034: every line repeats the enhanced code; keep the first. */
	if ((e = enh_prefix(s, len, code / 100)) > 0) {
		if (c->curlines == 1)
			snprintf(c->cur.enh, sizeof(c->cur.enh), "%.*s",
				 (int)e, s);
		if (e < len)
			e++;
		s += e;
		len -= e;
	}
	if (c->state == C_HELLO && c->curlines > 1)
		caps_line(c, s, len);
	else
		text_append(&c->cur, s, len);
	return last;
}

/* ------------------------------------------------------------------ */
/* Connections: timers, failure, writing.                               */

static void
conn_arm(struct smtpc_conn *c, long long secs)
{
	struct timeval tv;

	if (secs <= 0) {
		evtimer_del(c->timer);
		return;
	}
	tv.tv_sec = (time_t)secs;
	tv.tv_usec = 0;
	evtimer_add(c->timer, &tv);
}

static void
wait_finish(struct smtpc_wait *w, struct smtpc_conn *c,
	    const struct smtpc_reply *err)
{
	smtpc_acquire_fn fn = w->fn;
	void *arg = w->arg;

	if (c != NULL)
		c->wait = NULL;
	if (w->qev != NULL)
		event_free(w->qev);
	free(w);
	fn(arg, c, err);
}

/* Out of the queue for a slot, its timer stopped. */
static void
wait_dequeue(struct smtpc_wait *w)
{
	if (!w->queued)
		return;
	TAILQ_REMOVE(&w->pool->waiters, w, entry);
	w->queued = 0;
	if (w->qev != NULL)
		evtimer_del(w->qev);
}

static void
pool_kick(struct smtpc_pool *p)
{
	struct smtpc_wait *w;

	while ((w = TAILQ_FIRST(&p->waiters)) != NULL &&
	    (!TAILQ_EMPTY(&p->idle) || p->nopen < p->dest.max_connections)) {
		wait_dequeue(w);
		pool_serve(w);
	}
}

/* The connection is lost: tell whoever holds or waits for it. */
static void
conn_lost(struct smtpc_conn *c, const struct smtpc_reply *r)
{
	struct smtpc_pool *p = c->pool;
	struct smtpc_wait *w = c->wait;
	smtpc_fail_fn fn = c->fail;
	void *arg = c->fail_arg;
	int reused = c->reused;

	if (c->state == C_DEAD)
		return;
	gh_log(r->local ? GH_LOG_INFO : GH_LOG_DEBUG, "smtpc %s: %s%d %s %s",
	       p->name, c->idle ? "idle connection closed: " : "", r->code,
	       r->enh, r->text);
	conn_destroy(c, 1);
	if (w != NULL) {
		w->conn = NULL;
		/* A pooled connection that died while idle says nothing
		 * about the hop: try another one, or a fresh one. */
		if (reused)
			pool_serve(w);
		else
			wait_finish(w, NULL, r);
	} else if (fn != NULL) {
		fn(arg, r);
	}
	pool_kick(p);
}

static void conn_fail(struct smtpc_conn *c, int code, const char *enh,
		      const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
conn_fail(struct smtpc_conn *c, int code, const char *enh, const char *fmt,
	  ...)
{
	struct smtpc_reply r;
	va_list ap;

	va_start(ap, fmt);
	reply_local(&r, code, enh, fmt, ap);
	va_end(ap);
	conn_lost(c, &r);
}

static void
conn_quit(struct smtpc_conn *c)
{
	if (c->idle) {
		TAILQ_REMOVE(&c->pool->idle, c, entry);
		c->idle = 0;
	}
	c->state = C_QUIT;
	evbuffer_add(bufferevent_get_output(c->bev), "QUIT\r\n", 6);
	conn_arm(c, QUIT_WAIT);
}

static void
conn_write_line(struct smtpc_conn *c, const char *line)
{
	gh_log(GH_LOG_PROTO, "smtpc %s > %s", c->pool->name, line);
	evbuffer_add_printf(bufferevent_get_output(c->bev), "%s\r\n", line);
}

static void
conn_hello(struct smtpc_conn *c, const char *verb)
{
	char line[CMD_MAX];

	c->state = C_HELLO;
	c->esmtp = strcmp(verb, "HELO") != 0;
	/* RFC 3207 4.2: what the hop offered before TLS is forgotten; a
	 * HELO answer offers nothing. */
	c->pipelining = c->size = c->eightbit = c->smtputf8 = 0;
	c->starttls = 0;
	snprintf(line, sizeof(line), "%s %s", verb, c->helo);
	conn_write_line(c, line);
	conn_arm(c, c->pool->dest.command_timeout);
}

static void
conn_timeout(evutil_socket_t fd, short what, void *arg)
{
	struct smtpc_conn *c = arg;
	struct smtpc_pool *p = c->pool;
	struct pending *q = TAILQ_FIRST(&c->pending);

	(void)fd;
	(void)what;
	switch (c->state) {
	case C_CONNECTING:
		if (c->connect_errno != 0)
			conn_fail(c, 451, "4.4.1", "cannot connect to next "
			    "hop %s: %s", p->name, strerror(c->connect_errno));
		else
			conn_fail(c, 451, "4.4.1", "no answer from next hop "
			    "%s: connect timed out", p->name);
		break;
	case C_GREETING:
		conn_fail(c, 451, "4.4.1", "no greeting from next hop %s "
		    "in %llds", p->name, p->dest.command_timeout);
		break;
	case C_STARTTLS:
		conn_fail(c, 451, "4.4.2", "no reply to STARTTLS from next "
		    "hop %s in %llds", p->name, p->dest.command_timeout);
		break;
	case C_HANDSHAKE:
		tls_failed(c, "timed out");
		break;
	case C_STREAM:
		conn_fail(c, 451, "4.4.2", "next hop %s stopped taking the "
		    "message (%llds without progress)", p->name,
		    p->dest.data_block_timeout);
		break;
	case C_QUIT:
		conn_destroy(c, 1);
		pool_kick(p);
		break;
	default:
		if (c->idle) {
			conn_quit(c);
			break;
		}
		conn_fail(c, 451, "4.4.2", "no reply to %s from next hop %s "
		    "in %llds", q != NULL ? q->verb : "hello", p->name,
		    q != NULL ? q->timeout : p->dest.command_timeout);
		break;
	}
}

/* ------------------------------------------------------------------ */
/* TLS (RFC 3207).                                                     */

/* The oldest queued OpenSSL error as text. */
static const char *
ssl_error(unsigned long e, char *buf, size_t n)
{
	if (e == 0)
		e = ERR_peek_error();
	if (e == 0)
		snprintf(buf, n, "unknown error");
	else
		ERR_error_string_n(e, buf, n);
	ERR_clear_error();
	return buf;
}

static int
ip_literal(const char *s)
{
	unsigned char a[16];

	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* The pool's client context: policy, and with tls_verify the trust
 * anchors and the name to check (RFC 6125 through X509_check_host: no
 * partial wildcards). */
static SSL_CTX *
tls_client_ctx(const struct smtpc_pool *p, char *err, size_t errlen)
{
	const struct smtpc_dest *d = &p->dest;
	char ebuf[256];
	X509_VERIFY_PARAM *vp;
	SSL_CTX *ctx;
	FILE *fp;
	int ok;

	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		snprintf(err, errlen, "TLS: %s", ssl_error(0, ebuf,
		    sizeof(ebuf)));
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
	    SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1) {
		snprintf(err, errlen, "TLS policy: %s", ssl_error(0, ebuf,
		    sizeof(ebuf)));
		goto fail;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_NO_COMPRESSION);
	if (!d->tls_verify) {
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	if (d->tls_ca != NULL && d->tls_ca[0] != '\0') {
		/* fopen() first: OpenSSL's "system lib" says less. */
		if ((fp = fopen(d->tls_ca, "r")) == NULL) {
			snprintf(err, errlen, "tls_ca %s: %s", d->tls_ca,
			    strerror(errno));
			goto fail;
		}
		fclose(fp);
		ok = SSL_CTX_load_verify_locations(ctx, d->tls_ca, NULL);
	} else {
		ok = SSL_CTX_set_default_verify_paths(ctx);
	}
	if (ok != 1) {
		snprintf(err, errlen, "tls_ca %s: %s", d->tls_ca != NULL &&
		    d->tls_ca[0] != '\0' ? d->tls_ca : "(system)",
		    ssl_error(0, ebuf, sizeof(ebuf)));
		goto fail;
	}
	vp = SSL_CTX_get0_param(ctx);
	X509_VERIFY_PARAM_set_hostflags(vp,
	    X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	ok = ip_literal(p->tls_name) ?
	    X509_VERIFY_PARAM_set1_ip_asc(vp, p->tls_name) :
	    X509_VERIFY_PARAM_set1_host(vp, p->tls_name, 0);
	if (ok != 1) {
		snprintf(err, errlen, "tls_verify_name \"%s\": %s",
		    p->tls_name, ssl_error(0, ebuf, sizeof(ebuf)));
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

/*
 * The pool's client context, made when a next hop first offers STARTTLS:
 * setting OpenSSL up costs every worker megabytes that a hop without
 * STARTTLS never needs.  With tls_verify it is made at start-up instead
 * (smtpc_pool_new), so that a bad tls_ca stops relayd there.
 */
static int
pool_tls_ctx(struct smtpc_pool *p, char *err, size_t errlen)
{
	if (p->ssl_ctx == NULL)
		p->ssl_ctx = tls_client_ctx(p, err, errlen);
	return p->ssl_ctx != NULL ? 0 : -1;
}

/* The connection is ready for transactions: hand it to its waiter. */
static void
conn_ready(struct smtpc_conn *c)
{
	c->state = C_READY;
	conn_arm(c, 0);
	if (c->wait != NULL)
		wait_finish(c->wait, c, NULL);
}

/*
 * The handshake failed (or timed out).  Opportunistic: RFC 7435 prefers
 * clear text to no delivery, so the acquisition is served again by
 * another connection, a new one without STARTTLS if none is idle.
 * Required: the hop gets nothing, 451 4.7.5 (RFC 3463: cryptographic
 * failure).
 */
static void
tls_failed(struct smtpc_conn *c, const char *why)
{
	struct smtpc_pool *p = c->pool;
	struct smtpc_wait *w = c->wait;

	if (p->dest.tls == SMTPC_TLS_OPPORTUNISTIC && w != NULL) {
		gh_log(GH_LOG_INFO, "smtpc %s: TLS handshake failed: %s; "
		       "trying again in clear (tls = opportunistic)",
		       p->name, why);
		c->wait = NULL;
		w->conn = NULL;
		w->clear = 1;
		conn_destroy(c, 1);
		pool_serve(w);
		return;
	}
	conn_fail(c, 451, "4.7.5", "TLS handshake with next hop %s failed: "
	    "%s", p->name, why);
}

/* Why the TLS bufferevent failed during the handshake. */
static void
tls_event_failed(struct smtpc_conn *c, short what)
{
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	unsigned long e = bufferevent_get_openssl_error(c->bev);
	long vr = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	char why[300], ebuf[256];

	if (c->pool->dest.tls_verify && vr != X509_V_OK)
		snprintf(why, sizeof(why), "certificate not accepted "
		    "(name %s, CAs from %s): %s", c->pool->tls_name,
		    c->pool->dest.tls_ca != NULL &&
		    c->pool->dest.tls_ca[0] != '\0' ? c->pool->dest.tls_ca :
		    "the system", X509_verify_cert_error_string(vr));
	else if (e != 0)
		snprintf(why, sizeof(why), "%s", ssl_error(e, ebuf,
		    sizeof(ebuf)));
	else if (what & BEV_EVENT_EOF)
		snprintf(why, sizeof(why), "the hop closed the connection");
	else
		snprintf(why, sizeof(why), "%s", strerror(
		    EVUTIL_SOCKET_ERROR()));
	ERR_clear_error();
	tls_failed(c, why);
}

static void conn_read(struct bufferevent *bev, void *arg);
static void conn_write(struct bufferevent *bev, void *arg);
static void conn_event(struct bufferevent *bev, short what, void *arg);

/*
 * The hop said 220 to STARTTLS.  Whatever it sent behind the 220 came
 * before the handshake, in clear, and would be taken as said under TLS
 * (CVE-2011-0411, here on the client side): it is dropped with the plain
 * bufferevent.  The socket goes to a TLS bufferevent that connects.
 */
static void
starttls_switch(struct smtpc_conn *c)
{
	struct smtpc_pool *p = c->pool;
	struct evbuffer *in = bufferevent_get_input(c->bev);
	size_t junk = evbuffer_get_length(in);
	evutil_socket_t fd = bufferevent_getfd(c->bev);
	struct bufferevent *bev;
	char ebuf[256];
	SSL *ssl;

	if (junk > 0) {
		gh_log(GH_LOG_WARN, "smtpc %s: STARTTLS: discarded %zu octets "
		       "the next hop sent after its 220, before the handshake",
		       p->name, junk);
		evbuffer_drain(in, junk);
	}
	ERR_clear_error();
	if ((ssl = SSL_new(p->ssl_ctx)) == NULL) {
		conn_fail(c, 451, "4.7.5", "TLS with next hop %s: %s",
		    p->name, ssl_error(0, ebuf, sizeof(ebuf)));
		return;
	}
	/* RFC 6066 3: SNI carries a host name, never an address. */
	if (!ip_literal(p->tls_name))
		SSL_set_tlsext_host_name(ssl, p->tls_name);
	bev = bufferevent_openssl_socket_new(p->base, fd, ssl,
	    BUFFEREVENT_SSL_CONNECTING,
	    BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (bev == NULL) {
		SSL_free(ssl);
		conn_fail(c, 451, "4.7.5", "TLS with next hop %s: cannot "
		    "start the TLS layer", p->name);
		return;
	}
	/* The plain bufferevent does not close the socket it leaves. */
	bufferevent_free(c->bev);
	c->bev = bev;
	c->tls_layer = 1;
	c->state = C_HANDSHAKE;
	bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
	bufferevent_setcb(bev, conn_read, conn_write, conn_event, c);
	bufferevent_enable(bev, EV_READ | EV_WRITE);
	conn_arm(c, p->dest.command_timeout);
}

static void
tls_established(struct smtpc_conn *c)
{
	struct smtpc_pool *p = c->pool;
	SSL *ssl = bufferevent_openssl_get_ssl(c->bev);
	const SSL_CIPHER *ci = SSL_get_current_cipher(ssl);
	int bits = 0;

	if (ci != NULL)
		SSL_CIPHER_get_bits(ci, &bits);
	snprintf(c->tls_desc, sizeof(c->tls_desc), "%s %s %d",
		 SSL_get_version(ssl), ci != NULL ? SSL_CIPHER_get_name(ci) :
		 "unknown", bits);
	c->tls = 1;
	gh_log(GH_LOG_INFO, "smtpc %s: TLS established: %s, certificate %s%s",
	       p->name, c->tls_desc, p->dest.tls_verify ? "verified for " :
	       "not checked (tls_verify off)", p->dest.tls_verify ?
	       p->tls_name : "");
	/* RFC 3207 4.2: the client SHOULD send EHLO again and use only
	 * what the hop offers now. */
	conn_hello(c, p->dest.proto == SMTPC_LMTP ? "LHLO" : "EHLO");
}

static void
starttls_reply(struct smtpc_conn *c, const struct smtpc_reply *r)
{
	struct smtpc_pool *p = c->pool;

	if (r->code == 220) {
		starttls_switch(c);
		return;
	}
	if (p->dest.tls == SMTPC_TLS_REQUIRED) {
		conn_fail(c, 451, "4.7.4", "next hop %s refused STARTTLS "
		    "(tls = required): %d %s %s", p->name, r->code, r->enh,
		    r->text);
		return;
	}
	/* RFC 3207 4: after a refusal the session goes on as it was. */
	gh_log(GH_LOG_INFO, "smtpc %s: next hop refused STARTTLS: %d %s %s; "
	       "session in clear (tls = opportunistic)", p->name, r->code,
	       r->enh, r->text);
	conn_ready(c);
}

/* After EHLO (LHLO, HELO): STARTTLS, or ready, or no TLS where it is
 * required. */
static void
hello_done(struct smtpc_conn *c)
{
	struct smtpc_pool *p = c->pool;
	char err[256];

	if (p->dest.tls == SMTPC_TLS_OFF || c->tls || c->no_tls) {
		conn_ready(c);
		return;
	}
	if (c->starttls && pool_tls_ctx(p, err, sizeof(err)) != 0) {
		gh_log(GH_LOG_ERR, "smtpc %s: %s", p->name, err);
		if (p->dest.tls == SMTPC_TLS_REQUIRED) {
			conn_fail(c, 451, "4.7.5", "TLS with next hop %s: %s",
			    p->name, err);
			return;
		}
		gh_log(GH_LOG_INFO, "smtpc %s: no TLS context: session in "
		       "clear (tls = opportunistic)", p->name);
		conn_ready(c);
		return;
	}
	if (c->starttls) {
		c->state = C_STARTTLS;
		conn_write_line(c, "STARTTLS");
		conn_arm(c, p->dest.command_timeout);
		return;
	}
	if (p->dest.tls == SMTPC_TLS_REQUIRED) {
		/* RFC 3463: X.7.4, security features not supported. */
		conn_fail(c, 451, "4.7.4", "next hop %s does not offer "
		    "STARTTLS (tls = required)", p->name);
		return;
	}
	gh_log(GH_LOG_INFO, "smtpc %s: next hop does not offer STARTTLS: "
	       "session in clear (tls = opportunistic)", p->name);
	conn_ready(c);
}

/* ------------------------------------------------------------------ */
/* Reading.                                                            */

static void
hello_reply(struct smtpc_conn *c, const struct smtpc_reply *r)
{
	struct smtpc_reply f;

	if (r->code / 100 == 2) {
		hello_done(c);
		return;
	}
	/* RFC 5321 3.2: a server that refuses EHLO gets HELO. */
	if (c->esmtp && c->pool->dest.proto == SMTPC_SMTP &&
	    r->code / 100 == 5) {
		conn_hello(c, "HELO");
		return;
	}
	f = *r;
	f.local = 1;
	f.code = 451;
	snprintf(f.enh, sizeof(f.enh), "4.4.0");
	text_printf(f.text, sizeof(f.text), "next hop %s refused our "
	    "greeting: %d %s %s", c->pool->name, r->code, r->enh,
	    r->text);
	conn_lost(c, &f);
}

static void
greeting_reply(struct smtpc_conn *c, const struct smtpc_reply *r)
{
	struct smtpc_reply f;

	if (r->code == 220) {
		conn_hello(c, c->pool->dest.proto == SMTPC_LMTP ? "LHLO" :
			   "EHLO");
		return;
	}
	/* RFC 5321 3.1: 554 means no service here; treat any refusal of
	 * the session as the hop's temporary state, not as the message's
	 * fate. */
	f = *r;
	f.local = 1;
	f.code = 451;
	snprintf(f.enh, sizeof(f.enh), "4.4.0");
	text_printf(f.text, sizeof(f.text), "next hop %s refused the "
	    "session: %d %s %s", c->pool->name, r->code, r->enh,
	    r->text);
	conn_lost(c, &f);
}

static void
reply_done(struct smtpc_conn *c)
{
	struct smtpc_reply r = c->cur;
	struct pending *q;

	c->curlines = 0;
	switch (c->state) {
	case C_GREETING:
		greeting_reply(c, &r);
		return;
	case C_HELLO:
		hello_reply(c, &r);
		return;
	case C_STARTTLS:
		starttls_reply(c, &r);
		return;
	case C_QUIT:
		conn_destroy(c, 1);
		pool_kick(c->pool);
		return;
	default:
		break;
	}
	if ((q = TAILQ_FIRST(&c->pending)) == NULL) {
		/* Unasked: a 421 before closing, or a refusal in the middle
		 * of the message (the hop gave up on it).  An unasked 2xx
		 * accepts nothing: the final dot was not even sent. */
		if (c->idle || (c->fail == NULL && c->wait == NULL)) {
			conn_destroy(c, 1);
			pool_kick(c->pool);
		} else if (r.code < 400) {
			conn_fail(c, 451, "4.5.0", "unexpected reply from the "
				  "next hop: %d %s", r.code, r.text);
		} else {
			conn_lost(c, &r);
		}
		return;
	}
	TAILQ_REMOVE(&c->pending, q, entry);
	c->npending--;
	if (TAILQ_FIRST(&c->pending) != NULL)
		conn_arm(c, TAILQ_FIRST(&c->pending)->timeout);
	else
		conn_arm(c, 0);
	q->fn(q->arg, c, &r);
	free(q);
}

static void
conn_read(struct bufferevent *bev, void *arg)
{
	struct smtpc_conn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	char line[SMTPC_LINE_MAX + 1];
	struct evbuffer_ptr p;
	size_t eol;
	int r;

	/* After STARTTLS's 220 c->bev is another one: what is left in
	 * this one was dropped with it. */
	while (c->state != C_DEAD && c->bev == bev) {
		p = evbuffer_search_eol(in, NULL, &eol, EVBUFFER_EOL_CRLF);
		if (p.pos < 0) {
			if (evbuffer_get_length(in) > SMTPC_LINE_MAX)
				conn_fail(c, 451, "4.5.0", "next hop %s sent "
				    "an over-long reply line", c->pool->name);
			return;
		}
		if ((size_t)p.pos + eol > SMTPC_LINE_MAX) {
			conn_fail(c, 451, "4.5.0", "next hop %s sent an "
			    "over-long reply line", c->pool->name);
			return;
		}
		evbuffer_remove(in, line, (size_t)p.pos);
		evbuffer_drain(in, eol);
		line[p.pos] = '\0';
		if (gh_log_level() >= GH_LOG_PROTO) {
			char safe[SMTPC_LINE_MAX * 4];

			gh_sanitize(safe, sizeof(safe), line, (size_t)p.pos);
			gh_log(GH_LOG_PROTO, "smtpc %s < %s", c->pool->name,
			       safe);
		}
		if ((r = line_take(c, line, (size_t)p.pos)) < 0) {
			conn_fail(c, 451, "4.5.0", "next hop %s broke the "
			    "protocol (bad reply line)", c->pool->name);
			return;
		}
		if (r == 1)
			reply_done(c);
	}
}

static void
conn_event(struct bufferevent *bev, short what, void *arg)
{
	struct smtpc_conn *c = arg;
	struct smtpc_pool *p = c->pool;
	int err = EVUTIL_SOCKET_ERROR();

	(void)bev;
	if (c->state == C_HANDSHAKE) {
		if (what & BEV_EVENT_CONNECTED)
			tls_established(c);
		else
			tls_event_failed(c, what);
		return;
	}
	if (what & BEV_EVENT_CONNECTED) {
		c->state = C_GREETING;
		conn_arm(c, p->dest.command_timeout);
		return;
	}
	if (c->state == C_QUIT) {
		conn_destroy(c, 1);
		pool_kick(p);
		return;
	}
	if (c->state == C_CONNECTING)
		conn_fail(c, 451, "4.4.1", "cannot connect to next hop %s: %s",
		    p->name, err != 0 ? strerror(err) : "refused");
	else if (c->state == C_GREETING)
		conn_fail(c, 451, "4.4.1", "next hop %s closed the connection "
		    "before its greeting", p->name);
	else if (what & BEV_EVENT_EOF)
		conn_fail(c, 451, "4.4.2", "next hop %s closed the "
		    "connection", p->name);
	else
		conn_fail(c, 451, "4.4.2", "connection to next hop %s "
		    "failed: %s", p->name, strerror(err));
}

static void
conn_write(struct bufferevent *bev, void *arg)
{
	struct smtpc_conn *c = arg;

	(void)bev;
	if (c->state != C_STREAM)
		return;
	/* Progress: the data-block wait starts again. */
	conn_arm(c, c->pool->dest.data_block_timeout);
	stream_fill(c);
}

static void
conn_free_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	free(arg);
}

/* Close the socket and forget the connection; the structure goes on the
 * next loop turn when deferred (callers may still be on the stack). */
static void
conn_destroy(struct smtpc_conn *c, int deferred)
{
	struct smtpc_pool *p = c->pool;
	struct pending *q;
	evutil_socket_t fd = -1;

	if (c->state == C_DEAD)
		return;
	if (c->idle)
		TAILQ_REMOVE(&p->idle, c, entry);
	c->idle = 0;
	c->state = C_DEAD;
	if (!c->tls_layer) {
		/* The plain bufferevent does not own its socket. */
		fd = bufferevent_getfd(c->bev);
	} else if (c->tls && evbuffer_get_length(
	    bufferevent_get_output(c->bev)) == 0) {
		/* RFC 8446 6.1: close_notify, best effort; nothing of
		 * ours is waiting to be written, so no record is cut. */
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

		if (ssl != NULL && SSL_shutdown(ssl) < 0)
			ERR_clear_error();
	}
	bufferevent_free(c->bev);
	c->bev = NULL;
	if (fd >= 0)
		evutil_closesocket(fd);
	event_free(c->timer);
	c->timer = NULL;
	while ((q = TAILQ_FIRST(&c->pending)) != NULL) {
		TAILQ_REMOVE(&c->pending, q, entry);
		free(q);
	}
	free(c->stream);
	c->stream = NULL;
	c->fail = NULL;
	p->nopen--;
	if (!deferred || event_base_once(p->base, -1, EV_TIMEOUT,
	    conn_free_cb, c, &(struct timeval){ 0, 0 }) != 0)
		free(c);
}

static struct smtpc_conn *
conn_open(struct smtpc_pool *p, struct smtpc_wait *w)
{
	struct smtpc_conn *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->pool = p;
	TAILQ_INIT(&c->pending);
	c->state = C_CONNECTING;
	snprintf(c->helo, sizeof(c->helo), "%s", w->helo);
	c->no_tls = w->clear;
	/* Deferred callbacks: a callback never runs inside the call that
	 * caused it, so connect errors arrive from the loop too.  Not
	 * CLOSE_ON_FREE: STARTTLS hands the socket on (conn_destroy closes
	 * it). */
	c->bev = bufferevent_socket_new(p->base, -1, BEV_OPT_DEFER_CALLBACKS);
	c->timer = evtimer_new(p->base, conn_timeout, c);
	if (c->bev == NULL || c->timer == NULL) {
		if (c->bev != NULL)
			bufferevent_free(c->bev);
		if (c->timer != NULL)
			event_free(c->timer);
		free(c);
		return NULL;
	}
	p->nopen++;
	p->nconnects++;
	c->wait = w;
	w->conn = c;
	bufferevent_setcb(c->bev, conn_read, conn_write, conn_event, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	conn_arm(c, p->dest.connect_timeout);
	if (bufferevent_socket_connect(c->bev, (struct sockaddr *)&p->sa,
	    (int)p->salen) != 0) {
		/* Report from the loop, through the timer. */
		struct timeval now = { 0, 0 };

		c->connect_errno = errno != 0 ? errno : ECONNREFUSED;
		evtimer_add(c->timer, &now);
	}
	gh_log(GH_LOG_DEBUG, "smtpc %s: connecting", p->name);
	return c;
}

/* ------------------------------------------------------------------ */
/* Pools.                                                              */

static int
pool_resolve(struct smtpc_pool *p, char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	char port[16];
	int rc;

	if (p->dest.path != NULL) {
		struct sockaddr_un *un = (struct sockaddr_un *)&p->sa;

		if (strlen(p->dest.path) >= sizeof(un->sun_path)) {
			snprintf(err, errlen, "socket path too long: %s",
			    p->dest.path);
			return -1;
		}
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, p->dest.path, strlen(p->dest.path) + 1);
		p->salen = sizeof(*un);
		snprintf(p->name, sizeof(p->name), "unix:%s", p->dest.path);
		return 0;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", p->dest.port);
	if ((rc = getaddrinfo(p->dest.host, port, &hints, &res)) != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", p->dest.host,
		    gai_strerror(rc));
		return -1;
	}
	memcpy(&p->sa, res->ai_addr, res->ai_addrlen);
	p->salen = res->ai_addrlen;
	freeaddrinfo(res);
	snprintf(p->name, sizeof(p->name), strchr(p->dest.host, ':') ?
	    "[%s]:%d" : "%s:%d", p->dest.host, p->dest.port);
	return 0;
}

int
smtpc_dest_socket(struct smtpc_dest *d, const char *plugin, const char *spec,
		  char *err, size_t errlen)
{
	if (spec[0] == '\0')
		return 0;
	if (strncmp(spec, "unix:", 5) != 0 || spec[5] != '/') {
		snprintf(err, errlen, "%s: socket \"%s\": expected "
			 "\"unix:/path\"", plugin, spec);
		return -1;
	}
	d->path = spec + 5;
	return 0;
}

void
smtpc_dest_timeouts(struct smtpc_dest *d, const struct smtpc_timeouts *t)
{
	d->connect_timeout = t->connect;
	d->command_timeout = t->command;
	d->data_block_timeout = t->data_block;
	d->data_timeout = t->data;
	d->idle_timeout = t->idle;
}

/*
 * A deadline over a whole transaction could expire while the reply to
 * the final dot is awaited: the hop keeps the message, the client hears
 * 4xx and sends it again, a duplicate (RFC 5321 6.1).  No sum of the
 * timeouts bounds a transaction (one RCPT at a time to a hop without
 * PIPELINING, a long message in blocks), so the plugin gets none: each
 * step has its own timeout, and the wait for a free slot data_timeout.
 */
void
smtpc_plugin_timeout(struct gh_plugin *p, const struct smtpc_timeouts *t)
{
	(void)t;
	if (p->timeout != 0)
		gh_log(GH_LOG_DEBUG, "%s: timeout %llds not applied: the "
		       "next hop's own timeouts bound each step", p->name,
		       p->timeout);
	p->timeout = 0;
}

struct smtpc_pool *
smtpc_pool_new(struct event_base *base, const struct smtpc_dest *dest,
	       char *err, size_t errlen)
{
	struct smtpc_pool *p = calloc(1, sizeof(*p));

	if (p == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p->base = base;
	p->dest = *dest;
	if (p->dest.max_connections < 1)
		p->dest.max_connections = 1;
	TAILQ_INIT(&p->idle);
	TAILQ_INIT(&p->waiters);
	if (pool_resolve(p, err, errlen) != 0) {
		free(p);
		return NULL;
	}
	if (p->dest.path != NULL && p->dest.tls == SMTPC_TLS_REQUIRED) {
		snprintf(err, errlen, "tls \"required\" needs a TCP next hop, "
			 "not %s", p->name);
		free(p);
		return NULL;
	}
	/* A local socket has nothing on the way to protect. */
	if (p->dest.path != NULL)
		p->dest.tls = SMTPC_TLS_OFF;
	if (p->dest.tls_verify && p->dest.tls != SMTPC_TLS_REQUIRED) {
		snprintf(err, errlen, "tls_verify needs tls \"required\" for "
			 "%s (opportunistic TLS checks no certificate: RFC "
			 "7435)", p->name);
		free(p);
		return NULL;
	}
	p->tls_name = p->dest.tls_verify_name != NULL &&
	    p->dest.tls_verify_name[0] != '\0' ? p->dest.tls_verify_name :
	    p->dest.host;
	if (p->dest.tls_verify && pool_tls_ctx(p, err, errlen) != 0) {
		free(p);
		return NULL;
	}
	return p;
}

/*
 * An idle connection closed with its pool (relayd stopping, a reload
 * retiring the plugin) says QUIT first, so the hop logs an orderly end
 * rather than a lost connection.  Best effort: one non-blocking write,
 * straight to the socket (or through TLS, whose record goes out the same
 * way), and no wait for the 221, as the loop may not run again.
 */
static void
conn_quit_now(struct smtpc_conn *c)
{
	if (c->state != C_READY)
		return;
	gh_log(GH_LOG_PROTO, "smtpc %s > QUIT", c->pool->name);
	if (!c->tls_layer) {
		(void)send(bufferevent_getfd(c->bev), "QUIT\r\n", 6,
		    MSG_NOSIGNAL | MSG_DONTWAIT);
	} else if (c->tls) {
		SSL *ssl = bufferevent_openssl_get_ssl(c->bev);

		if (ssl != NULL && SSL_write(ssl, "QUIT\r\n", 6) <= 0)
			ERR_clear_error();
	}
}

void
smtpc_pool_free(struct smtpc_pool *p)
{
	struct smtpc_conn *c;

	if (p == NULL)
		return;
	while ((c = TAILQ_FIRST(&p->idle)) != NULL) {
		conn_quit_now(c);
		conn_destroy(c, 0);
	}
	SSL_CTX_free(p->ssl_ctx);
	free(p);
}

const char *
smtpc_pool_name(const struct smtpc_pool *p)
{
	return p->name;
}

unsigned long
smtpc_pool_connects(const struct smtpc_pool *p)
{
	return p->nconnects;
}

/* ------------------------------------------------------------------ */
/* Acquiring, commands, release.                                       */

static void
rset_reply(void *arg, struct smtpc_conn *c, const struct smtpc_reply *r)
{
	struct smtpc_wait *w = arg;

	if (r->code / 100 == 2) {
		wait_finish(w, c, NULL);
		return;
	}
	/* Not in a state to start a transaction: drop it, try again. */
	c->wait = NULL;
	w->conn = NULL;
	conn_destroy(c, 1);
	pool_serve(w);
}

/* No slot came free within data_timeout: the transaction waits no
 * longer (there is no deadline over the whole of it, see
 * smtpc_plugin_timeout). */
static void
wait_expired(evutil_socket_t fd, short what, void *arg)
{
	struct smtpc_wait *w = arg;
	struct smtpc_reply r;

	(void)fd;
	(void)what;
	wait_dequeue(w);
	reply_make(&r, 451, "4.4.1", "no free connection to next hop %s "
		   "within %llds", w->pool->name, w->pool->dest.data_timeout);
	wait_finish(w, NULL, &r);
}

static void
pool_serve(struct smtpc_wait *w)
{
	struct smtpc_pool *p = w->pool;
	struct smtpc_conn *c;

	if ((c = TAILQ_FIRST(&p->idle)) != NULL) {
		TAILQ_REMOVE(&p->idle, c, entry);
		c->idle = 0;
		c->reused = 1;
		c->wait = w;
		w->conn = c;
		/* RFC 5321 4.1.1.5: RSET proves the connection alive and
		 * leaves no state behind from the last transaction. */
		smtpc_send(c, p->dest.command_timeout, rset_reply, w, "RSET");
		return;
	}
	if (p->nopen < p->dest.max_connections) {
		if (conn_open(p, w) != NULL)
			return;
		/* Out of memory: wait for the next release or close. */
	}
	w->queued = 1;
	TAILQ_INSERT_TAIL(&p->waiters, w, entry);
	if (w->qev == NULL)
		w->qev = evtimer_new(p->base, wait_expired, w);
	if (w->qev != NULL) {
		struct timeval tv = { (time_t)p->dest.data_timeout, 0 };

		evtimer_add(w->qev, &tv);
	}
}

struct smtpc_wait *
smtpc_acquire(struct smtpc_pool *p, const char *helo, smtpc_acquire_fn fn,
	      void *arg)
{
	struct smtpc_wait *w = calloc(1, sizeof(*w));

	if (w == NULL)
		return NULL;
	w->pool = p;
	w->fn = fn;
	w->arg = arg;
	snprintf(w->helo, sizeof(w->helo), "%s", helo != NULL && helo[0] ?
	    helo : "localhost");
	pool_serve(w);
	return w;
}

void
smtpc_acquire_cancel(struct smtpc_wait *w)
{
	struct smtpc_pool *p;

	if (w == NULL)
		return;
	p = w->pool;
	wait_dequeue(w);
	if (w->qev != NULL)
		event_free(w->qev);
	if (w->conn != NULL) {
		/* Half-way through its greeting or RSET: not reusable. */
		w->conn->wait = NULL;
		conn_destroy(w->conn, 1);
	}
	free(w);
	pool_kick(p);
}

void
smtpc_set_owner(struct smtpc_conn *c, smtpc_fail_fn fn, void *arg)
{
	c->fail = fn;
	c->fail_arg = arg;
}

void
smtpc_send(struct smtpc_conn *c, long long timeout, smtpc_reply_fn fn,
	   void *arg, const char *fmt, ...)
{
	struct pending *q = calloc(1, sizeof(*q));
	char line[CMD_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (q == NULL) {
		conn_fail(c, 451, "4.3.0", "out of memory");
		return;
	}
	q->fn = fn;
	q->arg = arg;
	q->timeout = timeout;
	snprintf(q->verb, sizeof(q->verb), "%.*s", (int)strcspn(line, " "),
		 line);
	conn_write_line(c, line);
	if (c->npending++ == 0)
		conn_arm(c, timeout);
	TAILQ_INSERT_TAIL(&c->pending, q, entry);
}

void
smtpc_release(struct smtpc_conn *c, int reuse)
{
	struct smtpc_pool *p = c->pool;
	struct smtpc_wait *w;

	c->fail = NULL;
	c->fail_arg = NULL;
	if (!reuse || c->state != C_READY || c->npending > 0 ||
	    c->curlines > 0) {
		conn_destroy(c, 1);
		pool_kick(p);
		return;
	}
	/* No reuse wanted: a session at rest still ends with QUIT (RFC
	 * 5321 4.1.1.10); the slot frees at the 221. */
	if (p->dest.idle_timeout <= 0) {
		conn_quit(c);
		return;
	}
	if ((w = TAILQ_FIRST(&p->waiters)) != NULL) {
		wait_dequeue(w);
		c->reused = 1;
		c->wait = w;
		w->conn = c;
		smtpc_send(c, p->dest.command_timeout, rset_reply, w, "RSET");
		return;
	}
	/* Newest first: the connection used last is the likeliest alive. */
	c->idle = 1;
	TAILQ_INSERT_HEAD(&p->idle, c, entry);
	conn_arm(c, p->dest.idle_timeout);
}

int
smtpc_has_pipelining(const struct smtpc_conn *c)
{
	return c->pipelining;
}

int
smtpc_has_8bitmime(const struct smtpc_conn *c)
{
	return c->eightbit;
}

int
smtpc_has_smtputf8(const struct smtpc_conn *c)
{
	return c->smtputf8;
}

int
smtpc_has_size(const struct smtpc_conn *c)
{
	return c->size;
}

const char *
smtpc_tls_info(const struct smtpc_conn *c)
{
	return c->tls ? c->tls_desc : NULL;
}

static int
non_ascii(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return 1;
	return 0;
}

/* Does the message need SMTPUTF8: a non-ASCII address or header? */
static int
needs_utf8(const struct gh_txn *t)
{
	const struct gh_rcpt *r;
	size_t i, n;

	if (t->mail_from != NULL && non_ascii(t->mail_from->addr.mailbox))
		return 1;
	for (r = t->rcpts; r != NULL; r = r->next)
		if (!r->removed && non_ascii(r->path.addr.mailbox))
			return 1;
	if (t->msg == NULL)
		return 0;
	n = gh_msg_header_count(t->msg);
	for (i = 0; i < n; i++) {
		const struct gh_header *h = gh_msg_header_at(t->msg, i);

		if (non_ascii(h->name) || non_ascii(h->value))
			return 1;
	}
	return 0;
}

int
smtpc_mail_params(const struct smtpc_conn *c, const struct gh_txn *t,
		  char *buf, size_t n, struct smtpc_reply *why)
{
	const struct gh_path *f = t->mail_from;
	const char *size = gh_path_param(f, "SIZE");
	const char *body = gh_path_param(f, "BODY");
	size_t len = 0;

	buf[0] = '\0';
	if (size != NULL && size[0] != '\0' && c->size)
		len += (size_t)snprintf(buf + len, n - len, " SIZE=%s", size);
	/* BINARYMIME needs BDAT; what we send with DATA is 8-bit at most. */
	if (body != NULL && c->eightbit && len < n)
		len += (size_t)snprintf(buf + len, n - len, " BODY=%s",
		    strcasecmp(body, "7BIT") == 0 ? "7BIT" : "8BITMIME");
	if (gh_path_param(f, "SMTPUTF8") != NULL && len < n) {
		if (c->smtputf8)
			snprintf(buf + len, n - len, " SMTPUTF8");
		else if (smtpc_utf8_refused(c, t, NULL, why))
			return -1;
	}
	return 0;
}

int
smtpc_utf8_refused(const struct smtpc_conn *c, const struct gh_txn *t,
		   const char *mailbox, struct smtpc_reply *why)
{
	if (c->smtputf8 || t->mail_from == NULL ||
	    gh_path_param(t->mail_from, "SMTPUTF8") == NULL ||
	    !(mailbox != NULL ? non_ascii(mailbox) : needs_utf8(t)))
		return 0;
	/* RFC 6531 3.2: no SMTPUTF8 at the hop, so what needs it cannot
	 * go there. */
	reply_make(why, 550, "5.6.7", "next hop %s does not support SMTPUTF8",
		   c->pool->name);
	return 1;
}

/* ------------------------------------------------------------------ */
/* Streaming the message (RFC 5321 4.5.2: dot-stuffing; 4.1.1.4: the
 * data ends with CRLF . CRLF).                                        */

static void
tail_push(struct stream *s, const char *data, size_t n)
{
	if (n >= 2) {
		s->tail[0] = data[n - 2];
		s->tail[1] = data[n - 1];
	} else if (n == 1) {
		s->tail[0] = s->tail[1];
		s->tail[1] = data[0];
	}
}

static int
stream_out(void *arg, const char *data, size_t n)
{
	struct smtpc_conn *c = arg;
	struct stream *s = c->stream;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t i, start = 0;

	if (s->pos + n <= s->sent) {
		s->pos += n;
		return 0;
	}
	if (s->pos < s->sent) {
		size_t skip = (size_t)(s->sent - s->pos);

		data += skip;
		n -= skip;
		s->pos = s->sent;
	}
	if (evbuffer_get_length(out) >= s->window) {
		s->paused = 1;
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (s->bol && data[i] == '.') {
			evbuffer_add(out, data + start, i - start);
			evbuffer_add(out, ".", 1);
			start = i;
		}
		s->bol = data[i] == '\n';
	}
	evbuffer_add(out, data + start, n - start);
	tail_push(s, data, n);
	s->pos += n;
	s->sent = s->pos;
	return 0;
}

static void
stream_fill(struct smtpc_conn *c)
{
	struct stream *s = c->stream;
	struct evbuffer *out = bufferevent_get_output(c->bev);
	size_t i;
	int rc;

	s->pos = 0;
	s->paused = 0;
	rc = gh_txn_output(s->t, stream_out, c);
	if (s->paused)
		return;		/* conn_write() calls again */
	if (rc != 0) {
		conn_fail(c, 451, "4.3.0", "cannot read the message: %s",
		    strerror(errno));
		return;
	}
	if (s->tail[0] != '\r' || s->tail[1] != '\n')
		evbuffer_add(out, "\r\n", 2);
	evbuffer_add(out, ".\r\n", 3);
	gh_log(GH_LOG_PROTO, "smtpc %s > (%llu octets) .", c->pool->name,
	       (unsigned long long)s->sent);
	c->state = C_READY;
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	c->stream = NULL;
	/* LMTP (RFC 2033 4.2): one reply per accepted recipient. */
	for (i = 0; i < s->nreplies; i++) {
		struct pending *q = calloc(1, sizeof(*q));

		if (q == NULL) {
			free(s);
			conn_fail(c, 451, "4.3.0", "out of memory");
			return;
		}
		q->fn = s->fn;
		q->arg = s->arg;
		/* RFC 5321 4.5.3.2.6: at least 10 minutes for the reply to
		 * the final dot; giving up sooner makes duplicates. */
		q->timeout = c->pool->dest.data_timeout;
		snprintf(q->verb, sizeof(q->verb), "\".\"");
		TAILQ_INSERT_TAIL(&c->pending, q, entry);
		c->npending++;
	}
	conn_arm(c, c->pool->dest.data_timeout);
	free(s);
}

static void
stream_start(struct smtpc_conn *c, struct gh_txn *t, size_t nreplies,
	     smtpc_reply_fn fn, void *arg)
{
	struct stream *s = calloc(1, sizeof(*s));
	uint64_t size = t->msg != NULL ? gh_msg_size(t->msg) : 0;

	if (s == NULL) {
		conn_fail(c, 451, "4.3.0", "out of memory");
		return;
	}
	s->t = t;
	s->window = WINDOW_MIN;
	if (size / WINDOW_PARTS > s->window)
		s->window = (size_t)(size / WINDOW_PARTS);
	s->bol = 1;
	s->tail[0] = '\r';
	s->tail[1] = '\n';
	s->nreplies = nreplies;
	s->fn = fn;
	s->arg = arg;
	c->stream = s;
	c->state = C_STREAM;
	bufferevent_setwatermark(c->bev, EV_WRITE, s->window / 2, 0);
	conn_arm(c, c->pool->dest.data_block_timeout);
	stream_fill(c);
}

/* ------------------------------------------------------------------ */
/* The transaction driver.                                             */

struct smtpc_txn {
	struct smtpc_pool *pool;
	struct smtpc_wait *wait;
	struct smtpc_conn *conn;
	struct gh_txn *t;
	struct smtpc_result res;
	struct smtpc_reply mail;
	size_t next_rcpt;		/* next RCPT to send, one at a time */
	size_t nrcpt_replies;
	size_t naccepted;
	size_t nfinal;			/* LMTP replies to the final dot */
	unsigned pipelined : 1;
	smtpc_txn_done_fn done;
	void *arg;
};

static void
txn_finish(struct smtpc_txn *x, enum smtpc_stage stage,
	   const struct smtpc_reply *r)
{
	smtpc_txn_done_fn done = x->done;
	void *arg = x->arg;
	struct smtpc_result res;

	x->res.stage = stage;
	x->res.reply = *r;
	if (x->conn != NULL && x->conn->tls)
		snprintf(x->res.tls, sizeof(x->res.tls), "%s",
		    x->conn->tls_desc);
	if (x->conn != NULL)
		smtpc_release(x->conn, 1);
	res = x->res;
	free(x);
	done(arg, &res);
}

/* The connection is gone: what we were waiting for will not come. */
static void
txn_lost(void *arg, const struct smtpc_reply *err)
{
	struct smtpc_txn *x = arg;
	size_t i;

	x->conn = NULL;
	/* A refusal the hop gave before it closed (a pipelined MAIL or RCPT
	 * answered 5xx, then the connection dropped, as an Exim "drop" ACL
	 * does) is the verdict, not the closing: a 550 must not become a
	 * retry. */
	if (x->res.stage != SMTPC_ST_DOT && x->mail.code >= 400) {
		txn_finish(x, SMTPC_ST_MAIL, &x->mail);
		return;
	}
	if (x->res.stage != SMTPC_ST_DOT && x->res.nrefused > 0) {
		/* Each refused recipient keeps its reply; the others get
		 * the loss. */
		txn_finish(x, SMTPC_ST_RCPT, err);
		return;
	}
	if (x->res.stage == SMTPC_ST_DOT) {
		/* LMTP: recipients without a reply are not delivered. */
		for (i = 0; i < x->res.nrcpts; i++) {
			struct smtpc_rcpt *rc = &x->res.rcpts[i];

			if (!rc->refused && rc->final.code == 0) {
				rc->final = *err;
				rc->failed = 1;
				x->res.nfailed++;
			}
		}
	}
	txn_finish(x, x->res.stage, err);
}

static void
txn_dot(void *arg, struct smtpc_conn *c, const struct smtpc_reply *r)
{
	struct smtpc_txn *x = arg;
	struct smtpc_result *res = &x->res;
	const struct smtpc_reply *first_bad = NULL;
	size_t i, k = 0;

	(void)c;
	if (x->pool->dest.proto == SMTPC_SMTP) {
		txn_finish(x, SMTPC_ST_DOT, r);
		return;
	}
	/* LMTP: the replies come in the order of the accepted RCPTs. */
	for (i = 0; i < res->nrcpts; i++) {
		if (res->rcpts[i].refused)
			continue;
		if (k++ == x->nfinal) {
			res->rcpts[i].final = *r;
			if (r->code / 100 != 2) {
				res->rcpts[i].failed = 1;
				res->nfailed++;
			}
			break;
		}
	}
	if (++x->nfinal < x->naccepted)
		return;
	for (i = 0; i < res->nrcpts && first_bad == NULL; i++)
		if (res->rcpts[i].failed)
			first_bad = &res->rcpts[i].final;
	txn_finish(x, SMTPC_ST_DOT, first_bad != NULL ? first_bad : r);
}

static const struct smtpc_reply *
first_refused(const struct smtpc_txn *x)
{
	size_t i;

	for (i = 0; i < x->res.nrcpts; i++)
		if (x->res.rcpts[i].refused)
			return &x->res.rcpts[i].reply;
	return &x->mail;
}

/* The reply to DATA; with PIPELINING the last of the batch, so the
 * whole envelope's verdict is known here. */
static void
txn_data(void *arg, struct smtpc_conn *c, const struct smtpc_reply *r)
{
	struct smtpc_txn *x = arg;
	const struct smtpc_reply *why = r;
	enum smtpc_stage stage = SMTPC_ST_DATA;

	if (x->mail.code / 100 != 2) {
		why = &x->mail;
		stage = SMTPC_ST_MAIL;
	} else if (x->res.nrefused > 0) {
		why = first_refused(x);
		stage = SMTPC_ST_RCPT;
	} else if (r->code == 354) {
		x->res.stage = SMTPC_ST_DOT;
		stream_start(c, x->t, x->pool->dest.proto == SMTPC_LMTP ?
		    x->naccepted : 1, txn_dot, x);
		return;
	}
	if (r->code == 354) {
		/* Some recipients were refused but the hop waits for the
		 * message: close without the final dot, so it delivers
		 * nothing (RFC 5321 4.1.1.4: no dot, no transaction). */
		smtpc_release(c, 0);
		x->conn = NULL;
	}
	txn_finish(x, stage, why);
}

static void
txn_send_data(struct smtpc_txn *x)
{
	x->res.stage = SMTPC_ST_DATA;
	smtpc_send(x->conn, x->pool->dest.command_timeout, txn_data, x,
		   "DATA");
}

static void txn_rcpt(void *arg, struct smtpc_conn *c,
		     const struct smtpc_reply *r);

static void
txn_send_rcpt(struct smtpc_txn *x)
{
	smtpc_send(x->conn, x->pool->dest.command_timeout, txn_rcpt, x,
		   "RCPT TO:<%s>", x->res.rcpts[x->next_rcpt++].mailbox);
}

static void
txn_rcpt(void *arg, struct smtpc_conn *c, const struct smtpc_reply *r)
{
	struct smtpc_txn *x = arg;
	struct smtpc_rcpt *rc = &x->res.rcpts[x->nrcpt_replies++];

	(void)c;
	rc->reply = *r;
	if (r->code / 100 == 2) {
		x->naccepted++;
	} else {
		rc->refused = 1;
		x->res.nrefused++;
	}
	if (x->pipelined)
		return;
	if (x->next_rcpt < x->res.nrcpts)
		txn_send_rcpt(x);
	else if (x->res.nrefused > 0)
		txn_finish(x, SMTPC_ST_RCPT, first_refused(x));
	else
		txn_send_data(x);
}

static void
txn_mail(void *arg, struct smtpc_conn *c, const struct smtpc_reply *r)
{
	struct smtpc_txn *x = arg;

	(void)c;
	x->mail = *r;
	if (x->pipelined)
		return;
	if (r->code / 100 != 2)
		txn_finish(x, SMTPC_ST_MAIL, r);
	else {
		x->res.stage = SMTPC_ST_RCPT;
		txn_send_rcpt(x);
	}
}

static void
txn_conn(void *arg, struct smtpc_conn *c, const struct smtpc_reply *err)
{
	struct smtpc_txn *x = arg;
	struct smtpc_reply why;
	char params[256];
	const struct gh_path *f = x->t->mail_from;

	x->wait = NULL;
	if (c == NULL) {
		txn_finish(x, SMTPC_ST_CONNECT, err);
		return;
	}
	x->conn = c;
	smtpc_set_owner(c, txn_lost, x);
	x->res.stage = SMTPC_ST_MAIL;
	if (smtpc_mail_params(c, x->t, params, sizeof(params), &why) != 0) {
		txn_finish(x, SMTPC_ST_MAIL, &why);
		return;
	}
	x->pipelined = c->pipelining;
	smtpc_send(c, x->pool->dest.command_timeout, txn_mail, x,
		   "MAIL FROM:<%s>%s", f == NULL || f->addr.is_null ? "" :
		   f->addr.mailbox, params);
	if (!x->pipelined)
		return;
	/* RFC 2920 3.1: MAIL, the RCPTs and DATA in one write; the reply
	 * to DATA, last of the batch, decides. */
	while (x->next_rcpt < x->res.nrcpts)
		txn_send_rcpt(x);
	txn_send_data(x);
}

static struct smtpc_txn *
txn_new(struct smtpc_pool *p, struct gh_txn *t, smtpc_txn_done_fn done,
	void *arg)
{
	struct smtpc_txn *x = calloc(1, sizeof(*x));
	const struct gh_rcpt *r;
	size_t n = 0;

	if (x == NULL)
		return NULL;
	x->pool = p;
	x->t = t;
	x->done = done;
	x->arg = arg;
	for (r = t->rcpts; r != NULL; r = r->next)
		n += !r->removed;
	x->res.rcpts = gh_palloc(t->pool, (n ? n : 1) *
	    sizeof(*x->res.rcpts));
	for (r = t->rcpts; r != NULL; r = r->next)
		if (!r->removed)
			x->res.rcpts[x->res.nrcpts++].mailbox =
			    r->path.addr.mailbox;
	return x;
}

struct smtpc_txn *
smtpc_txn_start(struct smtpc_pool *p, const char *helo, struct gh_txn *t,
		smtpc_txn_done_fn done, void *arg)
{
	struct smtpc_txn *x = txn_new(p, t, done, arg);

	if (x == NULL)
		return NULL;
	x->res.stage = SMTPC_ST_CONNECT;
	if ((x->wait = smtpc_acquire(p, helo, txn_conn, x)) == NULL) {
		free(x);
		return NULL;
	}
	return x;
}

struct smtpc_txn *
smtpc_txn_data(struct smtpc_conn *c, struct gh_txn *t, size_t naccepted,
	       smtpc_txn_done_fn done, void *arg)
{
	struct smtpc_txn *x = txn_new(c->pool, t, done, arg);

	if (x == NULL)
		return NULL;
	x->conn = c;
	x->mail.code = 250;
	x->naccepted = naccepted;
	x->nrcpt_replies = x->next_rcpt = x->res.nrcpts;
	x->res.stage = SMTPC_ST_DATA;
	smtpc_set_owner(c, txn_lost, x);
	txn_send_data(x);
	return x;
}

void
smtpc_txn_cancel(struct smtpc_txn *x)
{
	if (x == NULL)
		return;
	if (x->wait != NULL)
		smtpc_acquire_cancel(x->wait);
	if (x->conn != NULL)
		smtpc_release(x->conn, 0);
	free(x);
}

/* ------------------------------------------------------------------ */
/* Verdicts for the queue plugins.                                    */

/*
 * The hop refused (or could not be reached): give the client a reply of
 * the same class.  exact keeps the hop's code (MAIL and RCPT in live
 * mode, where 452 and 550 mean different things to the client); at
 * queue it is 550 or 451, with the hop's words after it.
 */
enum gh_verdict
smtpc_verdict(struct gh_call *c, const char *hop, const struct smtpc_reply *r,
	      int exact)
{
	int perm = r->code / 100 == 5;
	const char *enh = r->enh[0] != '\0' ? r->enh : perm ? "5.0.0" :
	    "4.0.0";

	if (r->local) {
		gh_clog(c, GH_LOG_INFO, "%s: %d %s %s", perm ? "refused" :
			"deferred", r->code, r->enh, r->text);
		gh_reply(c, perm ? 550 : 451, enh, "%s", r->text);
	} else {
		gh_clog(c, GH_LOG_INFO, "%s by next hop %s at %s: %d %s %s",
			perm ? "refused" : "deferred", hop,
			gh_hook_name(c->hook), r->code, r->enh, r->text);
		/* A 421 closes the session that says it (RFC 5321 3.8):
		 * the hop's session, not this one, which goes on. */
		gh_reply(c, exact && r->code != 421 ? r->code : perm ? 550 :
			 451, enh, "next hop said: %d %s %s", r->code, r->enh,
			 r->text);
	}
	gh_result(c, perm ? GH_FAIL : GH_ERR, "%s %d %s", hop, r->code,
		  r->enh);
	return perm ? GH_DENY : GH_DENYSOFT;
}

/*
 * Some recipients were refused at RCPT, so nothing was sent:
 * a 250 would lose the refused ones and a partial send would make the
 * accepted ones receive it twice on the client's retry.  Any 4xx makes
 * the whole message 451 (a retry may succeed); only 5xx makes it 550.
 */
void
smtpc_rcpt_list_add(char *list, size_t size, size_t *len,
		    const char *mailbox, const struct smtpc_reply *r)
{
	int n;

	if (*len >= size)
		return;
	n = snprintf(list + *len, size - *len, "%s<%s> %d %s",
		     *len ? "; " : "", mailbox, r->code, r->enh);
	if (n > 0)
		*len += (size_t)n;
}

enum gh_verdict
smtpc_rcpt_verdict(struct gh_call *c, const char *hop,
		   const struct smtpc_result *res)
{
	char list[400] = "";
	const char *enh4 = NULL, *enh5 = NULL;
	size_t i, len = 0;
	int soft = 0;

	for (i = 0; i < res->nrcpts; i++) {
		const struct smtpc_rcpt *r = &res->rcpts[i];

		if (!r->refused)
			continue;
		if (r->reply.code / 100 == 4 || r->reply.local) {
			soft = 1;
			if (enh4 == NULL && r->reply.enh[0] == '4')
				enh4 = r->reply.enh;
		} else if (enh5 == NULL && r->reply.enh[0] == '5') {
			enh5 = r->reply.enh;
		}
		gh_clog(c, GH_LOG_INFO, "next hop %s refused <%s>: %d %s %s",
			hop, r->mailbox, r->reply.code, r->reply.enh,
			r->reply.text);
		smtpc_rcpt_list_add(list, sizeof(list), &len, r->mailbox,
				    &r->reply);
	}
	gh_result(c, soft ? GH_ERR : GH_FAIL, "%s refused %zu of %zu "
		  "recipients", hop, res->nrefused, res->nrcpts);
	gh_reply(c, soft ? 451 : 550, soft ? (enh4 ? enh4 : "4.0.0") :
		 (enh5 ? enh5 : "5.0.0"), "next hop refused %zu of %zu "
		 "recipients, nothing sent: %s", res->nrefused, res->nrcpts,
		 list);
	return soft ? GH_DENYSOFT : GH_DENY;
}
