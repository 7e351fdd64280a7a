/*
 * filter.h - the one header a gatehouse plugin includes.
 *
 * A plugin is one C file that exports one constant `struct gh_module`:
 * its name, a one-line description, its documentation, a directive table
 * (the settings the core parses and validates for it), a hook table and
 * optional init/fini.  Everything else in the file is static.  The core
 * owns ordering, configuration and the run loop; plugins never call each
 * other.  Both hosts, relayd and milterd, run the same modules.
 *
 * A hook function gets a `struct gh_call` and returns a verdict.  It must
 * not block: work that waits (DNS, sockets, timers) returns GH_AGAIN and
 * finishes later with gh_resume().  Every pending call has a deadline (the
 * plugin's `timeout`, default 30 s); on expiry the call counts as
 * GH_DENYSOFT, the core logs the plugin's name and runs the plugin's
 * cancel handler so that a late answer is never delivered.
 */
#ifndef GATEHOUSE_FILTER_H
#define GATEHOUSE_FILTER_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>

/*
 * A plugin built for another version is refused at load time: the host
 * reads struct gh_module, which the plugin allocates, and fields were
 * added at its end.  2: gh_module.edits (and, host-allocated,
 * gh_plugin.auth_mechs and gh_call.challenge/digest for CRAM-MD5).
 */
#define GH_ABI_VERSION 2

struct event_base;

/* Verdicts, in Haraka's vocabulary.  The first verdict other than CONT
 * ends a hook's chain.  AGAIN means "pending": see gh_resume(). */
enum gh_verdict {
	GH_CONT = 0,
	GH_OK,
	GH_DENY,
	GH_DENYSOFT,
	GH_DENYDISCONNECT,
	GH_DENYSOFTDISCONNECT,
	GH_DISCONNECT,
	GH_STOP,
	GH_AGAIN,
	GH_VERDICT_COUNT
};

/* Hooks in session order, then the spool's delivery hooks.
 *
 * The delivery hooks run in relayd's spool plugin, on a transaction of
 * its own: txn->id is the queue id, txn->mail_from the sender,
 * conn->hostname ours.
 *
 *  get_mx     before the MX lookup of a destination domain (mail from a
 *             relaying client with the spool's outbound = "mx").  arg is
 *             the domain (lower case); the txn's recipients not removed
 *             are that domain's.  OK after
 *                 gh_note_set(c->txn->notes, "get_mx", "HOST[:PORT] ...")
 *             routes the domain to those hosts, tried in the order given
 *             (HOST a name, an IPv4 address or [IPv6]; PORT defaults to
 *             the spool's mx_port).  DENY bounces the domain's
 *             recipients (5.4.4), DENYSOFT defers them; CONT, or OK
 *             without the note, falls through to DNS (RFC 5321 5.1).
 *  deferred, bounce, delivered
 *             after each delivery attempt, once per recipient and its
 *             outcome: rcpt is the recipient, arg the reply it got
 *             ("250 2.0.0 Ok", or what the spool made up: "451 4.4.1
 *             ..."), the txn note "spool.hop" the host that answered (""
 *             when none).  Notifications: every plugin runs and the
 *             verdicts are only logged.
 */
enum gh_hook {
	GH_HOOK_CONNECT_INIT = 0,
	GH_HOOK_LOOKUP_RDNS,
	GH_HOOK_CONNECT,
	GH_HOOK_HELO,
	GH_HOOK_EHLO,
	GH_HOOK_CAPABILITIES,
	GH_HOOK_UNRECOGNIZED_COMMAND,
	GH_HOOK_AUTH,
	GH_HOOK_MAIL,
	GH_HOOK_RCPT,
	GH_HOOK_RCPT_OK,
	GH_HOOK_DATA,
	GH_HOOK_DATA_HEADERS,
	GH_HOOK_DATA_POST,
	GH_HOOK_MAX_DATA_EXCEEDED,
	GH_HOOK_QUEUE,
	GH_HOOK_QUEUE_OK,
	GH_HOOK_RESET_TRANSACTION,
	GH_HOOK_DISCONNECT,
	GH_HOOK_DENY,
	GH_HOOK_GET_MX,
	GH_HOOK_DEFERRED,
	GH_HOOK_BOUNCE,
	GH_HOOK_DELIVERED,
	GH_HOOK_COUNT
};

const char *gh_verdict_name(enum gh_verdict v);
const char *gh_hook_name(enum gh_hook h);
/* Returns -1 for an unknown name. */
int gh_verdict_from_name(const char *name);
int gh_hook_from_name(const char *name);
/* DENY, DENYSOFT, their DISCONNECT forms, and DISCONNECT. */
int gh_verdict_is_reject(enum gh_verdict v);

/* ------------------------------------------------------------------ */
/* Memory pools: nothing a pool hands out is freed one by one.         */

struct gh_pool;

struct gh_pool *gh_pool_create(void);
void gh_pool_destroy(struct gh_pool *p);
void *gh_palloc(struct gh_pool *p, size_t n);		/* zeroed */
char *gh_pstrdup(struct gh_pool *p, const char *s);
char *gh_pstrndup(struct gh_pool *p, const char *s, size_t n);
char *gh_psprintf(struct gh_pool *p, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Run fn(arg) when the pool is destroyed, newest first: close files,
 * stop timers, cancel queries. */
void gh_pool_cleanup(struct gh_pool *p, void (*fn)(void *), void *arg);

/* ------------------------------------------------------------------ */
/* Notes: string key/value pairs on a connection or a transaction.     */

struct gh_notes;

void gh_note_set(struct gh_notes *n, const char *key, const char *value);
const char *gh_note_get(const struct gh_notes *n, const char *key);
/* Arbitrary pointer notes, for plugins that keep structured state. */
void gh_note_setp(struct gh_notes *n, const char *key, void *ptr);
void *gh_note_getp(const struct gh_notes *n, const char *key);

/* ------------------------------------------------------------------ */
/* Results store: each plugin records what it found.  The decision trace
 * (one log line per transaction) is built from it.                    */

enum gh_result_kind { GH_PASS, GH_FAIL, GH_SKIP, GH_ERR };

struct gh_result {
	const char *plugin;
	enum gh_result_kind kind;
	const char *msg;
	struct gh_result *next;
};

struct gh_results;

const struct gh_result *gh_results_first(const struct gh_results *r);
const struct gh_result *gh_results_get(const struct gh_results *r,
				       const char *plugin);

/* ------------------------------------------------------------------ */
/* Addresses (RFC 5321 section 4.1.2).                                 */

struct gh_addr {
	const char *local;	/* local part as written (quotes kept) */
	const char *domain;	/* NULL for <> and for <postmaster> */
	const char *mailbox;	/* "local@domain", "postmaster" or "" */
	unsigned is_null : 1;	/* <> */
	unsigned is_literal : 1;/* domain is an address literal [..] */
	unsigned is_quoted : 1;	/* local part is a quoted string */
	unsigned utf8 : 1;	/* has non-ASCII octets */
	unsigned had_route : 1;	/* a source route was given (ignored) */
};

#define GH_MAX_PARAMS 16

struct gh_param {
	const char *key;	/* upper-cased */
	const char *value;	/* NULL when the keyword has no "=" */
};

struct gh_path {
	struct gh_addr addr;
	struct gh_param params[GH_MAX_PARAMS];
	size_t nparams;
};

enum gh_path_kind { GH_PATH_MAIL, GH_PATH_RCPT };

/* Parse what follows "MAIL FROM:" or "RCPT TO:": "<path> [SP params]".
 * Returns 0 on success, else -1 with *why set to a static text fit for
 * a 501 reply.  Strings are allocated from pool p. */
int gh_path_parse(struct gh_pool *p, const char *s, enum gh_path_kind kind,
		  struct gh_path *out, const char **why);
const char *gh_path_param(const struct gh_path *path, const char *key);
/* Is s a syntactically valid domain name (RFC 5321 Domain)? */
int gh_domain_valid(const char *s);

/* ------------------------------------------------------------------ */
/* Networks: "192.0.2.0/24", "2001:db8::/32", or one address.           */

struct gh_net {
	int family;		/* AF_INET or AF_INET6 */
	unsigned char addr[16];	/* network order */
	int bits;		/* prefix length */
};

/* Returns 0, or -1 when s is no address or network. */
int gh_net_parse(const char *s, struct gh_net *n);
/* Is the client in n?  An IPv4-mapped IPv6 client counts as IPv4. */
struct gh_conn;
int gh_net_match(const struct gh_net *n, const struct gh_conn *conn);

/* ------------------------------------------------------------------ */
/* The message: header block parsed once, body read through a reader.  */

struct gh_header {
	const char *name;	/* as written */
	const char *value;	/* after the colon, folding kept, no CRLF */
};

struct gh_message;

size_t gh_msg_header_count(const struct gh_message *m);
const struct gh_header *gh_msg_header_at(const struct gh_message *m,
					 size_t i);
/* Number of headers called name (case-insensitive). */
size_t gh_msg_header_num(const struct gh_message *m, const char *name);
/* Value of the nth (0-based) header called name, or NULL. */
const char *gh_msg_header_get(const struct gh_message *m, const char *name,
			      size_t nth);
/* Size in octets of the message as received (CRLF line ends). */
uint64_t gh_msg_size(const struct gh_message *m);

/* Reads the received message from the start: header block and body,
 * CRLF line ends, no dot-stuffing.  Headers added by plugins are not
 * included; see gh_txn_added_headers(). */
struct gh_msg_reader;
struct gh_msg_reader *gh_msg_reader_open(struct gh_pool *p,
					 const struct gh_message *m);
ssize_t gh_msg_read(struct gh_msg_reader *r, void *buf, size_t n);

/* ------------------------------------------------------------------ */
/* Connections and transactions, as plugins see them.                   */

struct gh_rcpt {
	struct gh_path path;
	unsigned removed : 1;	/* dropped by a plugin (gh_rcpt_remove) */
	struct gh_rcpt *next;
};

struct gh_edit;			/* header and envelope edits, core-owned */

struct gh_txn {
	const char *id;		/* unique, printable */
	struct gh_pool *pool;	/* dies with the transaction */
	struct gh_notes *notes;
	struct gh_results *results;
	struct gh_path *mail_from;	/* NULL before MAIL */
	struct gh_rcpt *rcpts;		/* accepted recipients, in order */
	size_t nrcpts;
	struct gh_message *msg;		/* NULL before DATA */
	struct gh_edit *edits;
	const char *queue_reply;	/* next hop's words for 250 */
};

struct gh_conn {
	const char *id;
	struct gh_pool *pool;	/* dies with the connection */
	struct gh_notes *notes;
	struct gh_results *results;
	struct sockaddr_storage remote_sa;
	char remote_ip[64];
	int remote_port;
	char local_ip[64];
	int local_port;
	const char *rdns;	/* verified rDNS name, or NULL */
	const char *helo;	/* last HELO/EHLO argument, or NULL */
	const char *hostname;	/* our own name */
	const char *auth_user;	/* set after a successful AUTH */
	const char *listener_role;/* "mx", "submission", ... */
	unsigned esmtp : 1;
	unsigned tls : 1;
	unsigned relaying : 1;	/* client may relay to any domain */
	unsigned early_talker : 1;
	unsigned host_milter : 1;/* run inside milterd (no queue stage) */
	struct gh_txn *txn;	/* current transaction, or NULL */
	struct event_base *base;/* the loop this connection runs on */
	void *host;		/* host-private */
};

/* Edits a plugin asks for; relayd applies them to what it queues,
 * milterd hands them to the MTA at end of message. */
void gh_header_add(struct gh_txn *t, const char *name, const char *value);
/* Insert before the idx-th (0-based) header as received; an idx past
 * the last one appends, in both hosts. */
void gh_header_insert(struct gh_txn *t, size_t idx, const char *name,
		      const char *value);
/* Change (value != NULL) or delete (value == NULL) the nth (1-based)
 * header called name. */
void gh_header_change(struct gh_txn *t, const char *name, size_t nth,
		      const char *value);
void gh_rcpt_add(struct gh_txn *t, const char *mailbox);
void gh_rcpt_remove(struct gh_txn *t, struct gh_rcpt *r);
void gh_sender_change(struct gh_txn *t, const char *mailbox);
void gh_quarantine(struct gh_txn *t, const char *reason);

/* For queue plugins: write the message as it leaves us: inserted
 * headers first, then the header block with changes and additions
 * applied (the bytes as received when nothing changed there), then the
 * body.  Line ends are CRLF; out() returns 0, or -1 to stop.  Header
 * values in the edits above are given without the space after the
 * colon.  Returns 0 or -1. */
int gh_txn_output(struct gh_txn *t,
		  int (*out)(void *arg, const char *data, size_t n),
		  void *arg);

/* ------------------------------------------------------------------ */
/* Directives: the settings a plugin declares.                         */

enum gh_dtype {
	GH_DT_BOOL,	/* int */
	GH_DT_INT,	/* long long, bounded by min..max */
	GH_DT_STRING,	/* const char * */
	GH_DT_STRLIST,	/* struct gh_strlist */
	GH_DT_ENUM	/* int: index into choices */
};

struct gh_strlist {
	size_t n;
	const char **v;
};

struct gh_directive {
	const char *name;
	enum gh_dtype type;
	size_t offset;		/* offsetof(your conf struct, field) */
	const char *def;	/* default, in libconfig syntax: 30, true,
				   "text", [ "a", "b" ] */
	long long min, max;	/* GH_DT_INT bounds; list length otherwise
				   (max 0 = unbounded) */
	const char *const *choices; /* GH_DT_ENUM: NULL-terminated */
	const char *doc;	/* one line */
};

/* ------------------------------------------------------------------ */
/* Plugins.                                                            */

struct gh_call;
typedef enum gh_verdict (*gh_hook_fn)(struct gh_call *c);

struct gh_hook_entry {
	enum gh_hook hook;
	gh_hook_fn fn;
};

struct gh_plugin;
struct gh_runtime;

struct gh_module {
	unsigned abi;			/* GH_ABI_VERSION */
	const char *name;		/* no dots: it is a libconfig group */
	const char *description;	/* one line */
	const char *doc;		/* the manual, plain text */
	const struct gh_directive *directives;	/* { NULL } ends it */
	size_t conf_size;		/* the struct directives fill */
	const struct gh_hook_entry *hooks;	/* { 0, NULL } ends it */
	/* Once per worker, after configuration; return -1 and fill err to
	 * stop start-up. */
	int (*init)(struct gh_plugin *p, char *err, size_t errlen);
	void (*fini)(struct gh_plugin *p);
	/* The edits this plugin may ask for (gh_header_add ...
	 * gh_quarantine below): GH_EDITS_* flags or'ed, or GH_EDITS_NONE.
	 * milterd asks the MTA only for the actions its plugins declare;
	 * 0, what a module that predates this field leaves, means
	 * "unknown" and milterd then asks for all of them. */
	unsigned edits;
};

/* gh_module.edits */
#define GH_EDITS_ADDHDR		0x01u	/* gh_header_add, gh_header_insert */
#define GH_EDITS_CHGHDR		0x02u	/* gh_header_change */
#define GH_EDITS_ADDRCPT	0x04u	/* gh_rcpt_add */
#define GH_EDITS_DELRCPT	0x08u	/* gh_rcpt_remove */
#define GH_EDITS_CHGFROM	0x10u	/* gh_sender_change */
#define GH_EDITS_QUARANTINE	0x20u	/* gh_quarantine */
#define GH_EDITS_ALL		0x3fu
#define GH_EDITS_NONE		0x80000000u	/* declared: makes none */

/* A configured plugin: one per entry of `plugins = [...]`. */
struct gh_plugin {
	const struct gh_module *mod;
	const char *name;
	void *conf;		/* filled from the directive table */
	void *data;		/* the plugin's own runtime state */
	int shadow;		/* mode = "shadow" */
	long long timeout;	/* seconds */
	struct event_base *base;/* the loop init runs on */
	/* Core-private: the runtime running this plugin, for plugins
	 * built into relayd that run hook chains of their own (the
	 * spool's delivery hooks).  Set before init. */
	struct gh_runtime *rt;
	/* An auth hook plugin's init sets GH_AUTH_* flags for the SASL
	 * mechanisms beyond PLAIN and LOGIN it can verify; relayd offers
	 * one only when some plugin on the auth hook set it.  0 before
	 * init.  (Added at the end: the host allocates this struct.) */
	unsigned auth_mechs;
	/* init may set GH_HOOK_BIT(h) for each hook of the module its
	 * configuration leaves nothing to do at (access with no HELO
	 * list): the host then never calls it there, and milterd tells
	 * the MTA not to wait for an answer at a stage nobody checks.
	 * 0 before init.  (Added at the end, as auth_mechs.) */
	unsigned idle_hooks;
};

#define GH_HOOK_BIT(h)	(1u << (h))

/* gh_plugin.auth_mechs */
#define GH_AUTH_CRAM_MD5	0x01u	/* call->challenge and call->digest */

/* Host-supplied parameters of the hook being run. */
struct gh_call {
	struct gh_plugin *plugin;
	struct gh_conn *conn;
	struct gh_txn *txn;		/* may be NULL */
	enum gh_hook hook;
	const char *arg;		/* HELO/EHLO name; the command line
					   for unrecognized_command; the
					   AUTH mechanism */
	struct gh_path *path;		/* MAIL and RCPT */
	struct gh_rcpt *rcpt;		/* RCPT_OK */
	struct gh_strlist *caps;	/* capabilities: add with gh_cap_add */
	const struct gh_call *denied;	/* DENY hook: the denied call */
	enum gh_verdict denied_verdict;
	/* AUTH: the identity and the password the client gave (decoded,
	 * NUL-free).  Never log the password; it is wiped after the
	 * chain.  NULL for CRAM-MD5 (below). */
	const char *user;
	const char *password;
	void *core;			/* core-private */
	/* AUTH CRAM-MD5 (RFC 2195; arg is "CRAM-MD5", password NULL):
	 * the challenge relayd sent, "<random.time@host>" as it was hashed
	 * (not base64), and the client's HMAC-MD5 of it keyed with the
	 * password, 32 lower-case hex digits.  Compare in constant time.
	 * NULL for the other mechanisms.  Only a plugin that set
	 * GH_AUTH_CRAM_MD5 in its init should answer other than CONT. */
	const char *challenge;
	const char *digest;
};

/* Give your own reply for the verdict being returned.  code is 0 to
 * keep the default code; enh is "x.y.z" or NULL.  The core removes CR,
 * LF and NUL, bounds the length and fixes a code whose class does not
 * match the verdict. */
void gh_reply(struct gh_call *c, int code, const char *enh,
	      const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Finish a call that returned GH_AGAIN.  Must not be called after the
 * cancel handler ran. */
void gh_resume(struct gh_call *c, enum gh_verdict v);
/* Run fn(arg) if a pending call is abandoned (deadline, disconnect). */
void gh_on_cancel(struct gh_call *c, void (*fn)(void *), void *arg);
void gh_cap_add(struct gh_call *c, const char *capability);

/* Record a result for this plugin, on the transaction when there is one,
 * else on the connection. */
void gh_result(struct gh_call *c, enum gh_result_kind kind,
	       const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------ */
/* Logging.                                                            */

enum gh_loglevel {
	GH_LOG_ERR = 0, GH_LOG_WARN, GH_LOG_INFO, GH_LOG_DEBUG, GH_LOG_PROTO
};

void gh_log(enum gh_loglevel lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* A log line prefixed with the connection id and the plugin name. */
void gh_clog(struct gh_call *c, enum gh_loglevel lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Copy s into dst (size n) with CR, LF, NUL and other control octets
 * replaced: what goes into a log line or a header never carries raw
 * client bytes that could forge a new line. */
size_t gh_sanitize(char *dst, size_t n, const char *s, size_t len);

/* ------------------------------------------------------------------ */
/* DNS: the core resolver (c-ares on the connection's event loop).
 *
 * Queries never block.  The answer arrives later through cb, always
 * from the loop (never inside gh_dns_query, even for a cached answer),
 * exactly once unless the query is cancelled first.  Identical queries
 * in flight are merged; answers are cached within their TTL (negative
 * ones too).  A plugin maps GH_DNS_TEMPFAIL to DENYSOFT or to a skip,
 * never to a hard rejection.                                          */

enum gh_dns_type { GH_DNS_A, GH_DNS_AAAA, GH_DNS_MX, GH_DNS_TXT, GH_DNS_PTR };

enum gh_dns_status {
	GH_DNS_OK = 0,		/* records of the type asked for */
	GH_DNS_NXDOMAIN,	/* the name does not exist (or cannot) */
	GH_DNS_NODATA,		/* the name exists, no record of the type */
	GH_DNS_TEMPFAIL		/* SERVFAIL, REFUSED, timeout, no server */
};

struct gh_dns_rr {
	unsigned ttl;
	int family;		/* A, AAAA: AF_INET or AF_INET6 */
	unsigned char addr[16];	/* A, AAAA: network order */
	unsigned pref;		/* MX preference */
	/* A, AAAA: the address as text; MX: the exchange ("" for the
	 * null MX "."); PTR: the name; TXT: the record's strings joined
	 * (RFC 7208 3.3), NUL-terminated, raw octets (sanitise to log). */
	const char *data;
	size_t len;		/* strlen(data), or the TXT length */
};

struct gh_dns_answer {
	enum gh_dns_status status;
	enum gh_dns_type type;
	const char *name;	/* as queried, lower case, no final dot */
	const char *error;	/* why, for TEMPFAIL and NXDOMAIN: "timeout",
				   "SERVFAIL", ...; NULL otherwise */
	unsigned ttl;		/* seconds this answer stays cached */
	size_t n;
	const struct gh_dns_rr *rr;	/* MX sorted by preference */
};

/* The answer and its strings are valid only during the callback. */
typedef void (*gh_dns_cb)(void *arg, const struct gh_dns_answer *ans);
struct gh_dns_query;

/* Look name up on the resolver of loop base (a plugin passes
 * c->conn->base or p->base).  Returns a handle for gh_dns_cancel, or
 * NULL when no query could be started (no resolver on that loop, out of
 * memory): cb is then never called and the plugin should treat it as
 * GH_DNS_TEMPFAIL. */
struct gh_dns_query *gh_dns_query(struct event_base *base,
				  enum gh_dns_type type, const char *name,
				  gh_dns_cb cb, void *arg);
/* Forget a query whose callback has not run yet; cb will not be
 * called.  NULL is ignored. */
void gh_dns_cancel(struct gh_dns_query *q);

const char *gh_dns_status_name(enum gh_dns_status s);
const char *gh_dns_type_name(enum gh_dns_type t);

/* The reverse form of address ip under zone: "2.0.0.127.zone" for
 * IPv4 (an IPv4-mapped IPv6 address counts as IPv4), 32 nibbles for
 * IPv6 (RFC 3596 2.5, RFC 5782 2.4).  A NULL zone gives in-addr.arpa or
 * ip6.arpa.  Returns 0, or -1 when ip is not an address or buf is too
 * small. */
int gh_dns_reverse_name(const char *ip, const char *zone, char *buf,
			size_t n);

/* Forward-confirmed reverse DNS: the PTR names of ip, each looked up
 * forward (A for IPv4, AAAA for IPv6); a name that resolves back to ip
 * is confirmed.  The core does this for every connection before the
 * lookup_rdns hook (conn->rdns, notes "rdns.status" and "rdns.ptr");
 * plugins that need it elsewhere call it themselves. */
enum gh_rdns_status {
	GH_RDNS_CONFIRMED,	/* a PTR name resolves back to ip */
	GH_RDNS_UNCONFIRMED,	/* PTR names, none resolves back */
	GH_RDNS_NONE,		/* no PTR record */
	GH_RDNS_TEMPFAIL	/* a lookup failed temporarily */
};

#define GH_RDNS_MAX_NAMES 8	/* PTR names looked up forward */

struct gh_rdns_result {
	enum gh_rdns_status status;
	const char *ip;
	const char *name;	/* the confirmed name, or NULL */
	const char *ptr;	/* the first PTR name, or NULL */
	size_t nptr;		/* PTR names seen */
};

typedef void (*gh_rdns_cb)(void *arg, const struct gh_rdns_result *r);
struct gh_rdns_query;

/* As gh_dns_query: cb runs once from the loop, NULL means not
 * started.  The result is valid only during the callback. */
struct gh_rdns_query *gh_dns_rdns(struct event_base *base, const char *ip,
				  gh_rdns_cb cb, void *arg);
void gh_dns_rdns_cancel(struct gh_rdns_query *q);
const char *gh_rdns_status_name(enum gh_rdns_status s);

#endif
