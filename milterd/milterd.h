/*
 * milterd.h - the libmilter bridge's shared declarations.
 *
 * milterd runs gatehouse's plugin chain inside an MTA's own SMTP session.
 * Two kinds of threads meet here:
 *
 *   - libmilter's threads call the callbacks (bridge.c).  Debian's
 *     libmilter runs a worker pool, so successive callbacks of one
 *     session may come on different threads: all per-session state lives
 *     in the struct msess kept with smfi_setpriv, never in thread-locals.
 *     A callback copies its arguments and macros into a job, posts it to
 *     the session's loop thread and waits for the verdict with a
 *     deadline.
 *
 *   - K loop threads (loop.c) each run a libevent loop and their own
 *     gh_runtime, so plugins are single-threaded and asynchronous exactly
 *     as in a relayd worker.  Every session is pinned to one loop thread;
 *     the gh_conn, its transaction and the message live on that thread
 *     and are only touched there.
 *
 * The loop thread's mutex guards its job queue and the hand-over of each
 * job's result.
 *
 * A generation (struct gen) is one reading of the configuration file with
 * its loop threads.  SIGHUP makes a new one (main.c): new sessions are
 * pinned to it at negotiation, sessions in progress finish on the loop
 * threads of theirs, and an old generation stops once its last session
 * closed.  gen_mu (main.c) guards the current generation and the session
 * counts; nothing else is shared.
 */
#ifndef GATEHOUSE_MILTERD_H
#define GATEHOUSE_MILTERD_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core.h"

#define MILTERD_MAX_THREADS 64

/* What a callback answers when its deadline passes (fail_action). */
enum fail_action { FAIL_TEMPFAIL = 0, FAIL_REJECT, FAIL_ACCEPT };

/* The `milterd` group of the configuration file. */
struct milterd_conf {
	const char *socket;
	const char *socket_mode;
	long long threads;
	long long reply_timeout;
	long long eom_timeout;
	int fail_action;		/* enum fail_action */
	long long body_max;
	long long max_header_size;
	long long spool_threshold;
	const char *tmp_dir;
	const char *hostname;
	const char *trace_header;
};

/* The `log` group. */
struct milterd_log_conf {
	int level;
	int syslog;
};

/* A macro value copied from libmilter at a callback. */
struct macro {
	char *name;
	char *value;
	struct macro *next;
};

/* An edit, copied off the transaction for the callback thread to replay
 * with smfi_* (the transaction stays on its loop thread). */
struct xedit {
	enum gh_edit_kind kind;
	char *name;		/* header name, mailbox, or reason */
	char *value;		/* header value; NULL deletes */
	size_t idx;
	struct xedit *next;
};

enum job_kind {
	JOB_CONNECT, JOB_HELO, JOB_MAIL, JOB_RCPT, JOB_DATA, JOB_UNKNOWN,
	JOB_EOH, JOB_BODY, JOB_EOM, JOB_ABORT, JOB_CLOSE, JOB_STOP
};

struct msess;

struct job {
	enum job_kind kind;
	struct msess *s;
	struct job *next;		/* the loop's queue */

	/* Input, owned by the job. */
	char *arg;			/* HELO name, path with parameters,
					   unknown command, connect host */
	char *raw;			/* RCPT: argv[0] exactly as received */
	char *data;			/* EOH: header block; BODY: a chunk */
	size_t len;
	int flag;			/* EOH: header block over the bound */
	unsigned noreply : 1;		/* EOH: nobody waits (SMFIP_NR_EOH);
					   its verdict comes at EOM */
	unsigned unanswered : 1;	/* waited for, but the MTA expects no
					   answer (SMFIP_NR_CONN, _HELO,
					   _MAIL): it goes on as if told
					   CONTINUE, whatever the wait */
	struct sockaddr_storage sa;	/* CONNECT */
	int have_sa;
	struct macro *macros;

	/* Result, written by the loop thread before `done`. */
	unsigned claimed : 1;		/* the loop thread is answering */
	unsigned done : 1;
	unsigned abandoned : 1;		/* the waiter gave up */
	enum gh_verdict verdict;
	int code;
	char enh[16];
	char text[512];
	struct xedit *edits;		/* EOM: to replay */
	char *trace;			/* EOM: trace header value */
};

struct gen;

struct loop {
	int idx;
	struct gen *gen;
	int started;			/* its thread runs */
	pthread_t tid;
	struct event_base *base;
	struct gh_config *cfg;		/* this thread's own copy */
	struct gh_runtime *rt;
	const struct milterd_conf *conf;
	const char *hostname;
	struct event *wake_ev;
	int wake[2];			/* pipe: callbacks -> loop */
	pthread_mutex_t mu;		/* queue and job results */
	pthread_mutex_t run_mu;		/* the plugins: held by the loop
					   thread except in epoll_wait, or
					   by a callback running inline */
	int inline_ok;			/* the epoll_wait wrapper is used */
	int epfd;			/* the base's epoll, as it first
					   waits (loop thread only) */
	struct job *head, *tail;
	struct job *stop_job;
	int dns_started;
	unsigned long nsessions;
	unsigned long actions;		/* SMFIF_* to ask for (bridge_plan) */
	unsigned long steps;		/* SMFIP_* to ask for */
};

/* One milter session.  Fields are grouped by the thread that owns them. */
struct msess {
	struct loop *loop;
	pthread_cond_t cv;		/* with loop->mu: a job is done */
	char id[32];			/* the gh_conn's id, set at creation */

	/* Callback side (libmilter's threads, one at a time). */
	unsigned leadspc : 1;		/* SMFIP_HDR_LEADSPC negotiated */
	unsigned nr_hdr : 1;		/* SMFIP_NR_HDR negotiated */
	unsigned can_skip : 1;		/* SMFIP_SKIP negotiated */
	unsigned nr_eoh : 1;		/* SMFIP_NR_EOH negotiated */
	unsigned long nr_steps;		/* SMFIP_NR_CONN/HELO/MAIL
					   negotiated: nobody to answer */
	unsigned htoobig : 1;
	unsigned body_cut : 1;
	char *hbuf;			/* the header block being collected */
	size_t hlen, hcap;
	uint64_t body;			/* body octets seen this message */

	/* Loop side. */
	struct gh_conn *conn;
	struct gh_chain *chain;
	unsigned chain_gen;
	struct job *cur;		/* the job whose chains run */
	struct gh_rcpt *rcpt;		/* RCPT being decided */
	struct rorig *rorig;		/* recipients as received (txn pool) */
	int body_truncated;
	int hdrs_deferred;		/* data_headers runs at EOM */
	int hdrs_toobig;
	int mail_refused;		/* the sender's 501, kept for the
					   RCPTs when MAIL had no answer */
	struct gh_outcome mail_refusal;
	char helo[256];
};

/* One reading of the configuration and the loop threads built from it. */
struct gen {
	unsigned id;			/* 1, then one more per reload */
	struct milterd_conf conf;	/* strings live in loops[0].cfg */
	struct milterd_log_conf log;
	struct gh_dns_conf dns;
	char hostname[256];
	struct loop loops[MILTERD_MAX_THREADS];
	int nloops;			/* loops initialised */
	/* Under gen_mu. */
	unsigned long nsess;		/* sessions pinned to this generation */
	unsigned next;			/* round robin over the loops */
	int retired;			/* a newer generation took over */
	struct gen *older;		/* the list of retired generations */
};

/* main.c */
struct loop *gen_attach(void);
void gen_detach(struct loop *l);

/* loop.c */
int loop_init(struct loop *l, int idx, struct gh_config *cfg,
	      const struct milterd_conf *conf, const struct gh_dns_conf *dns,
	      const char *hostname, char *err, size_t errlen);
int loop_start(struct loop *l);
void loop_stop(struct loop *l);
void loop_destroy(struct loop *l);
void loop_post(struct loop *l, struct job *j);
void loop_run(struct loop *l, struct job *j);
void job_free(struct job *j);
enum gh_verdict fail_verdict(const struct milterd_conf *conf);

/* bridge.c */
void bridge_plan(struct loop *l);
int bridge_register(const struct milterd_conf *conf, char *err,
		    size_t errlen);

#endif
