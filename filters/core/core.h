/*
 * core.h - what the hosts (relayd, milterd) use of the filter core.
 *
 * Plugins include only filter.h.  The hosts also need to load the
 * configuration, build the plugin chain, feed messages and run hooks;
 * those entry points live here.
 */
#ifndef GATEHOUSE_CORE_H
#define GATEHOUSE_CORE_H

#include <libconfig.h>
#include <stdio.h>

#include "filter.h"

#define GH_VERSION_STRING PACKAGE_VERSION

/* ------------------------------------------------------------------ */
/* Configuration (config.c).                                           */

/* A settings group the host owns, validated with the same rules as a
 * plugin's: "relayd", "milterd", "dns", "log". */
struct gh_section {
	const char *name;
	const struct gh_directive *directives;
	void *conf;			/* filled by gh_config_load */
};

struct gh_config {
	char *path;
	struct gh_pool *pool;		/* everything below lives here */
	struct gh_plugin *plugins;	/* in `plugins = [...]` order */
	size_t nplugins;
	const char *plugin_dir;
};

/*
 * Read and validate a configuration file.  sections are the host's own
 * groups (NULL-name terminated); ignore lists groups that belong to the
 * other host and are skipped.  Every plugin in `plugins` must exist (built
 * in, or NAME.so in plugin_dir); its group is validated against its
 * directive table, and the common directives `mode` and `timeout` are
 * added to every plugin.  On error returns NULL with err filled as
 * "FILE:LINE: reason" (LINE omitted only when libconfig cannot tell).
 */
struct gh_config *gh_config_load(const char *path, struct gh_section *sections,
				 const char *const *ignore,
				 char *err, size_t errlen);
void gh_config_free(struct gh_config *cfg);
/* The plugin_dir the file at path sets (else the compiled-in one) into
 * dir; reads nothing else.  0, or -1 with err as gh_config_load's. */
int gh_config_plugin_dir(const char *path, char *dir, size_t dirlen,
			 char *err, size_t errlen);

/* Fill conf with the defaults of a directive table, then with the values
 * of group (which may be NULL).  Unknown keys, wrong types and values out
 * of range are errors naming file and line.  Returns 0 or -1. */
int gh_directives_apply(const struct gh_directive *dirs, void *conf,
			const config_setting_t *group, struct gh_pool *pool,
			const char *file, char *err, size_t errlen);
/* The common directives every plugin has (mode, timeout). */
extern const struct gh_directive gh_plugin_common_directives[];
/* Print a directive table as documentation: name, type, default, doc. */
void gh_directives_print(FILE *fp, const struct gh_directive *dirs);

/* ------------------------------------------------------------------ */
/* Module registry (registry.c).                                       */

extern const struct gh_module *const gh_builtin_modules[];
/* A built-in module, or one loaded from plugin_dir/NAME.so (which must
 * export `const struct gh_module gh_module` with the right ABI). */
const struct gh_module *gh_module_find(const char *name, const char *plugin_dir,
				       char *err, size_t errlen);
/* `-h NAME`: the manual, then the directives with their defaults. */
int gh_module_print_help(FILE *fp, const char *name, const char *plugin_dir);
/* What `PROG [-c conf] -h NAME` does: the manual on stdout and 0, or one
 * line on stderr and 2. */
int gh_module_help_command(const char *prog, const char *name,
			   const char *conf);
void gh_module_print_list(FILE *fp);

/* ------------------------------------------------------------------ */
/* Runtime: the configured plugins, initialised on one event loop.      */

struct gh_runtime {
	struct gh_config *cfg;
	struct event_base *base;
	/* For each hook, the plugins that have it, in configured order. */
	struct gh_bound {
		struct gh_plugin *plugin;
		gh_hook_fn fn;
	} *bound[GH_HOOK_COUNT];
	size_t nbound[GH_HOOK_COUNT];
	size_t ninit;			/* plugins whose init ran */
	unsigned long shadow_denials;	/* counted, for metrics */
	unsigned long timeouts;
};

struct gh_runtime *gh_runtime_create(struct gh_config *cfg,
				     struct event_base *base,
				     char *err, size_t errlen);
void gh_runtime_free(struct gh_runtime *rt);
int gh_runtime_has_hook(const struct gh_runtime *rt, enum gh_hook h);

/* This process's share of work that the workers divide (the spool's
 * queue files): share in 0..nshares-1.  relayd's master gives each
 * worker its share before the runtime starts, and a dead worker's share
 * to its replacement; 0 of 1 (everything) otherwise. */
void gh_worker_share_set(int share, int nshares);
void gh_worker_share(int *share, int *nshares);

/* ------------------------------------------------------------------ */
/* Wire replies (replies.c): what each verdict means at each hook.       */

enum gh_wire_action {
	GH_WIRE_REPLY = 0,	/* send the reply, carry on */
	GH_WIRE_CLOSE,		/* send the reply, close the connection */
	GH_WIRE_LOOP,		/* connect: every later command gets this
				   reply, except QUIT */
	GH_WIRE_NEXT,		/* no reply: the host proceeds to the next
				   stage (rcpt OK -> rcpt_ok, data_post ->
				   queue, queue OK -> queue_ok) */
	GH_WIRE_NONE		/* the hook has no reply of its own */
};

struct gh_wire {
	int code;
	const char *enh;	/* NULL: no enhanced code (the greeting) */
	const char *text;
	enum gh_wire_action action;
};

/* The default reply of verdict v at hook h.  CONT, OK and STOP give the
 * hook's positive outcome; rcpt's CONT is a refusal unless the client
 * may relay (see relaying). */
const struct gh_wire *gh_wire_reply(enum gh_hook h, enum gh_verdict v,
				    int relaying);

/* ------------------------------------------------------------------ */
/* Running a hook's chain (chain.c).                                   */

struct gh_outcome {
	enum gh_verdict verdict;	/* never AGAIN */
	int code;			/* the reply to send */
	char enh[16];			/* "" when none */
	char text[512];
	enum gh_wire_action action;
	const struct gh_plugin *by;	/* NULL: nobody decided */
};

typedef void (*gh_chain_done_fn)(void *arg, const struct gh_outcome *o);
struct gh_chain;

/*
 * Run every plugin bound to proto->hook, in order, until one returns a
 * verdict other than CONT (connect_init, capabilities, queue_ok,
 * reset_transaction and disconnect run them all).  done() is called
 * exactly once, possibly before gh_chain_run returns, which then returns
 * NULL.  Otherwise the returned handle is valid until done() runs;
 * gh_chain_cancel() abandons it without calling done().
 */
struct gh_chain *gh_chain_run(struct gh_runtime *rt, const struct gh_call *proto,
			      gh_chain_done_fn done, void *arg);
void gh_chain_cancel(struct gh_chain *ch);

/* ------------------------------------------------------------------ */
/* Sessions, transactions and their state (session.c, notes.c).         */

struct gh_conn *gh_conn_new(struct event_base *base);
void gh_conn_free(struct gh_conn *c);
struct gh_txn *gh_txn_new(struct gh_conn *c);
void gh_txn_free(struct gh_conn *c);	/* frees c->txn */
struct gh_notes *gh_notes_new(struct gh_pool *p);
struct gh_results *gh_results_new(struct gh_pool *p);
void gh_results_add(struct gh_results *r, const char *plugin,
		    enum gh_result_kind kind, const char *msg);
/* "plugin=pass(msg) plugin=fail(msg) ..." into buf, sanitised. */
size_t gh_results_format(const struct gh_results *conn,
			 const struct gh_results *txn, char *buf, size_t n);
const char *gh_result_kind_name(enum gh_result_kind k);
/* Unique ids: 19 printable characters, time-ordered. */
void gh_make_id(char *buf, size_t n);

/* ------------------------------------------------------------------ */
/* Messages (message.c).  The host writes the received message in, the
 * plugins read it.                                                    */

struct gh_message_limits {
	size_t mem_threshold;	/* body to a temporary file past this */
	size_t max_header_line;	/* one header line, with its folding */
	size_t max_header_size;	/* the whole header block */
	const char *tmpdir;
};

/* A header field name from the configuration (what: "relayd.trace_header"
 * and the like): "" or 1*ftext, printable ASCII but ':' (RFC 5322 3.6.8).
 * 0, or -1 with err "FILE: WHAT: ... is not a header field name". */
int gh_header_name_check(const char *name, const char *what,
			 const char *file, char *err, size_t errlen);

enum gh_msg_status {
	GH_MSG_OK = 0,
	GH_MSG_HEADER_TOO_BIG,	/* a bound of the header block was hit */
	GH_MSG_IO_ERROR		/* the temporary file failed */
};

struct gh_message *gh_msg_new(struct gh_pool *p,
			      const struct gh_message_limits *lim);
/* Append message octets: unstuffed, CRLF line ends.  Lines may arrive in
 * any pieces.  The header block is parsed as it arrives; once the empty
 * line ending it has been seen, gh_msg_headers_done() is true.  Returns
 * the message's status (sticky: once not OK, later data is counted but
 * not stored). */
enum gh_msg_status gh_msg_write(struct gh_message *m, const char *data,
				size_t n);
/* The message is complete: a header block with no empty line after it
 * (a message with no body) is parsed now. */
enum gh_msg_status gh_msg_finish(struct gh_message *m);
int gh_msg_headers_done(const struct gh_message *m);
/* Offset of the body's first octet in the stored message (after the
 * empty line ending the header block); valid once headers are done. */
uint64_t gh_msg_body_offset(const struct gh_message *m);

enum gh_msg_status gh_msg_status(const struct gh_message *m);

/* Edits of the envelope and the header block (edits.c).  relayd uses the
 * edited view to queue; milterd walks the list to call smfi_*. */
enum gh_edit_kind {
	GH_EDIT_HDR_ADD, GH_EDIT_HDR_INSERT, GH_EDIT_HDR_CHANGE,
	GH_EDIT_RCPT_ADD, GH_EDIT_RCPT_DEL, GH_EDIT_FROM, GH_EDIT_QUARANTINE
};

struct gh_edit {
	enum gh_edit_kind kind;
	const char *name;	/* header name, or mailbox */
	const char *value;
	size_t idx;
	struct gh_edit *next;
};

/* ------------------------------------------------------------------ */
/* Logging (log.c).                                                    */

void gh_log_init(const char *ident, enum gh_loglevel level, int to_syslog);
void gh_log_set_level(enum gh_loglevel level);
enum gh_loglevel gh_log_level(void);
int gh_loglevel_from_name(const char *name);

/* ------------------------------------------------------------------ */
/* The resolver (dns.c): one per event loop, owned by its thread.       */

/* The `dns` group. */
struct gh_dns_conf {
	struct gh_strlist servers;	/* "ip", "ip:port", "[v6]:port";
					   empty: /etc/resolv.conf */
	long long timeout;		/* seconds per query, all tries */
	long long tries;
	long long cache_size;		/* answers kept */
	long long max_ttl;		/* cap on a positive answer's TTL */
	long long negative_ttl;		/* cap on a negative answer's TTL,
					   and the TTL when there is no SOA */
	long long failure_ttl;		/* TEMPFAIL answers (RFC 9520) */
	int rdns;			/* look up each client's rDNS */
};

extern const struct gh_directive gh_dns_directives[];

/* Start a resolver on base (the loop's thread owns it) / stop it.
 * Outstanding handles die with it.  Returns 0 or -1 with err. */
int gh_dns_start(struct event_base *base, const struct gh_dns_conf *conf,
		 char *err, size_t errlen);
void gh_dns_stop(struct event_base *base);

/* Fill c->rdns (forward-confirmed) and the notes "rdns.status" and
 * "rdns.ptr", then call done(arg): from the loop, or at once when the
 * lookup is off or there is no resolver.  If the connection's pool
 * goes first, the lookup is cancelled and done never runs. */
void gh_conn_rdns(struct gh_conn *c, void (*done)(void *arg), void *arg);

#endif
