/*
 * smtpc.h - an asynchronous SMTP and LMTP client for the queue plugins
 * (smtp_forward, lmtp), on the worker's libevent loop.
 *
 * Three layers, each usable on its own:
 *
 *  - a pool per next hop (struct smtpc_pool): at most max_connections
 *    open connections per worker, idle ones kept for idle_timeout and
 *    checked with RSET before they serve another transaction;
 *  - a connection (struct smtpc_conn): pipelined commands whose replies
 *    come back in order (RFC 2920), multi-line replies parsed and bounded
 *    (RFC 5321 4.2.1), the message streamed with dot-stuffing;
 *  - a transaction driver (struct smtpc_txn): MAIL, RCPT, DATA, message,
 *    final dot, for the "no recipient left behind" rule: when the next
 *    hop refuses any recipient the message is not sent at all.
 *
 * Nothing here blocks except reading the message from its temporary
 * file (local disk).  A failure that is not the next hop's reply (refused
 * connection, timeout, dropped connection) is reported as a reply with
 * `local` set: 451 4.4.1 when the hop never answered, 451 4.4.2 when an
 * established connection broke, 451 4.5.0 for a protocol violation.
 *
 * TLS (RFC 3207).  A destination's `tls` mode says whether the client
 * sends STARTTLS after EHLO: off; opportunistic (when the hop offers it,
 * without checking the certificate: RFC 7435; a failed handshake is
 * tried again in clear on a new connection, once per acquisition); or
 * required (no STARTTLS offered, refused, or a failed handshake or
 * certificate check make the connection fail with 451 4.7.4 or 4.7.5,
 * so nothing goes out in clear).  TLS 1.2 and 1.3 only.  With
 * tls_verify the chain is checked against tls_ca (else the system's
 * CAs) and the name against tls_verify_name (else host).  Whatever the
 * hop sent after its 220 to STARTTLS and before the handshake is
 * discarded (the CVE-2011-0411 class), and EHLO is sent again under TLS
 * (RFC 3207 4.2).  A pooled connection keeps its TLS session.
 */
#ifndef GATEHOUSE_SMTPC_H
#define GATEHOUSE_SMTPC_H

#include "filter.h"

/* RFC 5321 4.5.3.1.5: a reply line is at most 512 octets with its CRLF. */
#define SMTPC_LINE_MAX 512
/* Lines of one multi-line reply: an EHLO answer has a dozen. */
#define SMTPC_LINES_MAX 64
#define SMTPC_TEXT_MAX 512

enum smtpc_proto { SMTPC_SMTP, SMTPC_LMTP };

/* A reply of the next hop, or a local failure dressed as one. */
struct smtpc_reply {
	int code;			/* 200..599 */
	char enh[16];			/* "x.y.z", or "" */
	char text[SMTPC_TEXT_MAX];	/* the lines' texts joined by SP */
	unsigned local : 1;		/* no reply: made up here */
};

/* STARTTLS to the next hop; 0 (off) is the zero value of a memset dest. */
enum smtpc_tls {
	SMTPC_TLS_OFF,
	SMTPC_TLS_OPPORTUNISTIC,	/* when offered; no checks (RFC 7435) */
	SMTPC_TLS_REQUIRED		/* no TLS, no mail: 451 4.7.x */
};
/* The modes' names in enum order, NULL-ended: choices of a GH_DT_ENUM
 * directive ("off", "opportunistic", "required"). */
extern const char *const smtpc_tls_choices[];

/*
 * The next-hop timeouts of a queue plugin's group (seconds): a member of
 * its conf struct, SMTPC_TIMEOUT_DIRECTIVES(conf struct, member) in its
 * directive table, so smtp_forward, lmtp and spool share the names,
 * defaults and limits.
 */
struct smtpc_timeouts {
	long long connect;
	long long command;
	long long data_block;
	long long data;
	long long idle;
};

#define SMTPC_TIMEOUT_DIRECTIVES(type, m)				\
	{ "connect_timeout", GH_DT_INT, offsetof(type, m.connect), "30",	\
	  1, 3600, NULL, "seconds to establish the connection" },	\
	{ "command_timeout", GH_DT_INT, offsetof(type, m.command), "300",	\
	  1, 3600, NULL, "seconds to wait for the greeting and each "	\
	  "command's reply (RFC 5321 4.5.3.2: 5 minutes)" },		\
	{ "data_block_timeout", GH_DT_INT, offsetof(type, m.data_block),	\
	  "180", 1, 3600, NULL, "seconds the next hop may stop reading "	\
	  "the message (RFC 5321 4.5.3.2.5: 3 minutes)" },		\
	{ "data_timeout", GH_DT_INT, offsetof(type, m.data), "600", 1,	\
	  3600, NULL, "seconds to wait for the reply to the final dot "	\
	  "(RFC 5321 4.5.3.2.6: at least 10 minutes)" },			\
	{ "idle_timeout", GH_DT_INT, offsetof(type, m.idle), "60", 0,	\
	  3600, NULL, "seconds an idle connection is kept for reuse (0: "	\
	  "no reuse)" }

/* Where a pool connects and how long it waits (seconds). */
struct smtpc_dest {
	enum smtpc_proto proto;
	const char *host;		/* IP address or name (resolved once) */
	int port;
	const char *path;		/* Unix socket, instead of host */
	long long connect_timeout;	/* TCP connect */
	long long command_timeout;	/* greeting, EHLO, MAIL, RCPT, DATA */
	long long data_block_timeout;	/* no progress writing the message */
	long long data_timeout;		/* reply to the final dot */
	long long idle_timeout;		/* an idle pooled connection */
	long long max_connections;	/* per worker */
	/* TLS: a Unix socket (path) never uses it; required there is an
	 * error.  tls_verify needs SMTPC_TLS_REQUIRED: checking a
	 * certificate makes sense only when failing the check stops the
	 * mail. */
	enum smtpc_tls tls;
	int tls_verify;			/* check the chain and the name */
	const char *tls_ca;		/* PEM file of trusted CAs; NULL or
					 * "": the system's */
	const char *tls_verify_name;	/* NULL or "": host; also the SNI
					 * name (sent when not an address),
					 * so set it to the MX name even
					 * without tls_verify */
};

struct smtpc_pool;
struct smtpc_conn;
struct smtpc_wait;
struct smtpc_txn;

/* Point d at the Unix socket named by spec ("unix:/path", as the
 * plugins' `socket` directives write it); "" leaves d on host:port.
 * Returns 0, or -1 with err naming the plugin. */
int smtpc_dest_socket(struct smtpc_dest *d, const char *plugin,
		      const char *spec, char *err, size_t errlen);
/* Copy the configured timeouts into d. */
void smtpc_dest_timeouts(struct smtpc_dest *d, const struct smtpc_timeouts *t);
/* The queue hook's deadline must not cut the wait for the final dot's
 * reply short: a reply lost there makes a duplicate (RFC 5321
 * 4.5.3.2.6).  Raises p->timeout (unless 0: none) to cover a connection,
 * a command and the final dot. */
void smtpc_plugin_timeout(struct gh_plugin *p, const struct smtpc_timeouts *t);
/* Resolve dest (getaddrinfo: numeric or from the hosts file and DNS,
 * once, at start-up) and make its pool, with its TLS context when dest
 * uses TLS (an unreadable tls_ca is an error here).  NULL with err
 * filled. */
struct smtpc_pool *smtpc_pool_new(struct event_base *base,
				  const struct smtpc_dest *dest,
				  char *err, size_t errlen);
/* Close every connection; pending acquisitions must be gone. */
void smtpc_pool_free(struct smtpc_pool *p);
/* "host:port" or "unix:/path", for logs and replies. */
const char *smtpc_pool_name(const struct smtpc_pool *p);
/* Connections opened since the pool was made (for tests and logs). */
unsigned long smtpc_pool_connects(const struct smtpc_pool *p);

/* ------------------------------------------------------------------ */
/* Connections.                                                        */

typedef void (*smtpc_acquire_fn)(void *arg, struct smtpc_conn *c,
				 const struct smtpc_reply *err);
typedef void (*smtpc_reply_fn)(void *arg, struct smtpc_conn *c,
			       const struct smtpc_reply *r);
/* The connection is gone (err says why: local, or the hop's unasked
 * reply such as 421); the owner must forget it. */
typedef void (*smtpc_fail_fn)(void *arg, const struct smtpc_reply *err);

/*
 * Get a connection that has greeted us and answered EHLO (LHLO), or
 * an idle one that answered RSET.  fn runs later, from the loop, with
 * the connection, or with NULL and the reason.  helo is our name.
 * The returned handle is valid until fn runs.
 */
struct smtpc_wait *smtpc_acquire(struct smtpc_pool *p, const char *helo,
				 smtpc_acquire_fn fn, void *arg);
void smtpc_acquire_cancel(struct smtpc_wait *w);

/* Who hears of a failure while the connection is held. */
void smtpc_set_owner(struct smtpc_conn *c, smtpc_fail_fn fn, void *arg);
/* Send a command line (CRLF added) and wait for its reply, at most
 * timeout seconds; commands may be sent before earlier replies came. */
void smtpc_send(struct smtpc_conn *c, long long timeout, smtpc_reply_fn fn,
		void *arg, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
/* Give the connection back: reuse keeps it for the next transaction if
 * it is between transactions' commands (nothing pending, not inside
 * DATA); otherwise, or with reuse 0, it is closed. */
void smtpc_release(struct smtpc_conn *c, int reuse);

/* What the hop offered in its EHLO reply. */
int smtpc_has_pipelining(const struct smtpc_conn *c);
int smtpc_has_8bitmime(const struct smtpc_conn *c);
int smtpc_has_smtputf8(const struct smtpc_conn *c);
int smtpc_has_size(const struct smtpc_conn *c);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384 256" when the connection is under
 * TLS, else NULL. */
const char *smtpc_tls_info(const struct smtpc_conn *c);

/*
 * The MAIL FROM parameters to pass on for t's sender (SIZE, BODY,
 * SMTPUTF8: each only when the client gave it and the hop offers it),
 * into buf with a leading SP each.  Returns 0, or -1 with *why filled
 * when the message cannot go to this hop: it needs SMTPUTF8 (a non-ASCII
 * address or header) and the hop does not offer it (RFC 6531 3.2).
 */
int smtpc_mail_params(const struct smtpc_conn *c, const struct gh_txn *t,
		      char *buf, size_t n, struct smtpc_reply *why);

/*
 * The same check for a session whose MAIL went out before the rest was
 * known (smtp_forward's live mode): one recipient (mailbox), or, with
 * mailbox NULL, the whole transaction.  1 with why set (5.6.7) when it
 * needs SMTPUTF8, which the client asked for and the hop lacks; else 0.
 */
int smtpc_utf8_refused(const struct smtpc_conn *c, const struct gh_txn *t,
		       const char *mailbox, struct smtpc_reply *why);

/* ------------------------------------------------------------------ */
/* Transactions.                                                       */

enum smtpc_stage {
	SMTPC_ST_CONNECT,	/* no usable connection */
	SMTPC_ST_MAIL,
	SMTPC_ST_RCPT,		/* some recipient was refused */
	SMTPC_ST_DATA,		/* DATA was refused, or the message failed */
	SMTPC_ST_DOT		/* the reply(ies) to the final dot came */
};

struct smtpc_rcpt {
	const char *mailbox;
	struct smtpc_reply reply;	/* to RCPT */
	struct smtpc_reply final;	/* LMTP: to the final dot */
	unsigned refused : 1;		/* RCPT not 2xx */
	unsigned failed : 1;		/* LMTP: final reply not 2xx */
};

struct smtpc_result {
	enum smtpc_stage stage;
	/* The deciding reply: the failure at stage, or (SMTP) the reply to
	 * the final dot.  LMTP's per-recipient replies are in rcpts. */
	struct smtpc_reply reply;
	struct smtpc_rcpt *rcpts;
	size_t nrcpts;
	size_t nrefused;		/* RCPT refusals */
	size_t nfailed;			/* LMTP final refusals */
	char tls[96];			/* the connection's TLS, as
					 * smtpc_tls_info(), or "" */
};

typedef void (*smtpc_txn_done_fn)(void *arg, const struct smtpc_result *r);

/*
 * Send t (its current sender, its recipients that are not removed, the
 * message as gh_txn_output() writes it) to the pool's next hop.  With
 * PIPELINING, MAIL, every RCPT and DATA go in one write.  If the hop
 * refuses MAIL or any RCPT, the message is not sent (a connection that
 * already got 354 is closed without the final dot, so nothing is
 * delivered) and done() reports the stage.  done() runs exactly once,
 * from the loop, unless smtpc_txn_cancel() ran first (which closes the
 * connection, never reused).
 */
struct smtpc_txn *smtpc_txn_start(struct smtpc_pool *p, const char *helo,
				  struct gh_txn *t, smtpc_txn_done_fn done,
				  void *arg);
/* The same from DATA on, over a connection that already holds MAIL and
 * naccepted accepted recipients (smtp_forward's live mode). */
struct smtpc_txn *smtpc_txn_data(struct smtpc_conn *c, struct gh_txn *t,
				 size_t naccepted, smtpc_txn_done_fn done,
				 void *arg);
void smtpc_txn_cancel(struct smtpc_txn *x);

/* ------------------------------------------------------------------ */
/* Verdicts for the queue plugins (logged, recorded, replied).          */

/* A refusal or failure r: DENY for 5xx, DENYSOFT for 4xx and local
 * failures.  exact keeps the hop's own code (live MAIL and RCPT);
 * otherwise the reply is 550 or 451 with "next hop said: ...". */
enum gh_verdict smtpc_verdict(struct gh_call *c, const char *hop,
			      const struct smtpc_reply *r, int exact);
/* res.stage is SMTPC_ST_RCPT: the message was not sent because some
 * recipients were refused; 451 if any refusal was temporary, else 550,
 * naming them. */
enum gh_verdict smtpc_rcpt_verdict(struct gh_call *c, const char *hop,
				   const struct smtpc_result *res);
/* Add "<mailbox> CODE ENH" to *len octets of list (size octets, "; "
 * between entries) for a reply naming the recipients that failed; what
 * does not fit is left out (the log line of each has it). */
void smtpc_rcpt_list_add(char *list, size_t size, size_t *len,
			 const char *mailbox, const struct smtpc_reply *r);

#endif
