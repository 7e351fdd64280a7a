/*
 * spool.c - the durable queue: relayd answers 250 only once the message
 * and its envelope are on stable storage, then delivers it to the next
 * hop with retries and bounces (RFC 5321 4.5.4.1, 6.1; RFC 3464).
 *
 * Contract.  At `queue` the message (as gh_txn_output writes it) and its
 * envelope go into a queue file (filters/core/spoolq.h: it carries its
 * length, an end marker and a CRC-32) written in DIR/tmp (or over a
 * delivered file kept in DIR/free: see file_reuse), and the hook returns
 * GH_AGAIN.  A commit thread makes the file durable and moves it into
 * DIR/queue: fdatasync, rename, fsync of the directory; only then is the
 * hook resumed with OK and the client told 250.  A write, sync or rename
 * failure is DENYSOFT: 452 4.3.1 when the disk is full (ENOSPC, EDQUOT,
 * EFBIG), else 451 4.3.0.
 *
 * Group commit.  Transactions that wait for durability while the thread
 * commits the previous batch are taken as the next batch: the write-back
 * of all its files is started at once, each file gets its fdatasync (by
 * then mostly a wait for writes already under way), then their renames,
 * then one fsync of the queue directory serves them all.  The event loop
 * never waits on the disk; the thread wakes it through a pipe and the
 * pending hooks are resumed from there.
 *
 * Delivery.  Each worker scans DIR/queue at start, every scan_interval
 * seconds, and when `relayd -q flush` writes DIR/flush (an inotify watch
 * on DIR), in the order of the ids (the order of arrival),
 * and delivers the files of its share whose next attempt is due through
 * the shared SMTP/LMTP client (filters/core/smtpc.c).  A fresh message
 * is delivered at once by the worker that accepted it.  Ownership:
 * relayd's master gives each worker a share of the queue (ids by hash,
 * gh_worker_share) and a dead worker's share to its replacement, whose
 * start-up scan takes those files at once; and a worker holds an
 * exclusive flock() on the queue file from its creation (or from the
 * scan that picked it) until the file is removed or replaced, so each
 * file has one owner even while two generations overlap (reload); a
 * worker that dies loses its locks with its descriptors.
 * Per recipient: 2xx done; 5xx bounced; 4xx (or no answer) retried: the
 * file is replaced by one holding the recipients left, the attempt count
 * and the next attempt time (the `retry` schedule).  Past max_lifetime
 * the recipients left bounce.
 *
 * Bounces are RFC 3464 multipart/report messages from the null sender to
 * the original sender, queued here like any message (durable first, then
 * the original is rewritten or removed).  None is made for a message
 * from the null sender.  A bounce that cannot be delivered goes to the
 * `postmaster` address once; after that it is dropped with a log line.
 *
 * A torn queue file (crash mid-write on a disk that reorders, a damaged
 * disk) is detected when it is read and moved to DIR/corrupt with a log
 * line: never delivered half.  This is a relayd-side plugin (it makes
 * transactions of its own to deliver), built in only.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/queue.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "smtpc.h"
#include "spoolq.h"

#define DSN_HEADERS_MAX (64 * 1024)	/* original headers in a bounce */
/* Transactions per attempt and destination: each one the hop ends at
 * RCPT settles at least the recipient it refused, so the recipients'
 * number bounds them; this bounds a hop that refuses none yet still
 * ends the transaction there. */
#define MAX_ROUNDS_EXTRA 2
#define TMP_MIN_AGE 600			/* seconds: see clean_dir */
#define FRESH_MAX 10000			/* names remembered: see fresh_add */
#define FREE_MAX 256			/* delivered files kept for reuse */
#define FREE_SIZE_MAX (64 * 1024)	/* ... when no larger than this */
#define PROTO_SMTP 0
#define PROTO_LMTP 1

struct spool_conf {
	const char *dir;
	int protocol;
	const char *host;
	long long port;
	const char *socket;
	struct gh_strlist retry;
	long long max_lifetime;
	long long scan_interval;
	long long max_deliveries;
	const char *postmaster;
	struct smtpc_timeouts to;
	long long max_connections;
	int outbound;
	long long mx_port;
	long long max_per_destination;
	int tls;			/* enum smtpc_tls */
	const char *tls_ca;
	int tls_verify;
	const char *tls_verify_name;
	int mx_tls;
	int mx_tls_verify;
};

static const char *const proto_choices[] = { "smtp", "lmtp", NULL };
#define OUT_HOP 0
#define OUT_MX 1
static const char *const outbound_choices[] = { "next_hop", "mx", NULL };

static const struct gh_directive spool_directives[] = {
	{ "dir", GH_DT_STRING, offsetof(struct spool_conf, dir),
	  "\"/var/spool/gatehouse\"", 0, 0, NULL,
	  "spool directory (tmp/, queue/, free/ and corrupt/ are made in "
	  "it); must be writable by relayd's user" },
	{ "protocol", GH_DT_ENUM, offsetof(struct spool_conf, protocol),
	  "\"smtp\"", 0, 0, proto_choices, "how to talk to the next hop" },
	{ "host", GH_DT_STRING, offsetof(struct spool_conf, host),
	  "\"127.0.0.1\"", 0, 0, NULL,
	  "next hop: an IP address or a name resolved at start-up" },
	{ "port", GH_DT_INT, offsetof(struct spool_conf, port), "25", 1,
	  65535, NULL, "next hop's port" },
	{ "socket", GH_DT_STRING, offsetof(struct spool_conf, socket), "\"\"",
	  0, 0, NULL, "\"unix:/path\": the next hop on a Unix socket "
	  "instead of host and port (usually with protocol \"lmtp\")" },
	{ "retry", GH_DT_STRLIST, offsetof(struct spool_conf, retry),
	  "[ \"300\", \"600\", \"1200\", \"2400\", \"3600\" ]", 0, 64, NULL,
	  "waits before each retry, in seconds (suffix s, m, h or d "
	  "allowed); the last one repeats" },
	{ "max_lifetime", GH_DT_INT, offsetof(struct spool_conf, max_lifetime),
	  "432000", 0, 100LL * 86400, NULL, "seconds after arrival when the "
	  "recipients still deferred bounce (RFC 5321 4.5.4.1: 4-5 days)" },
	{ "scan_interval", GH_DT_INT,
	  offsetof(struct spool_conf, scan_interval), "60", 1, 3600, NULL,
	  "seconds between scans of the queue for due messages" },
	{ "max_deliveries", GH_DT_INT,
	  offsetof(struct spool_conf, max_deliveries), "50", 1, 10000, NULL,
	  "messages one worker delivers at the same time" },
	{ "postmaster", GH_DT_STRING, offsetof(struct spool_conf, postmaster),
	  "\"\"", 0, 0, NULL, "where a bounce that cannot be delivered goes, "
	  "once (empty: it is dropped with a log line)" },
	SMTPC_TIMEOUT_DIRECTIVES(struct spool_conf, to),
	{ "max_connections", GH_DT_INT,
	  offsetof(struct spool_conf, max_connections), "20", 1, 10000, NULL,
	  "connections to the next hop per worker" },
	{ "outbound", GH_DT_ENUM, offsetof(struct spool_conf, outbound),
	  "\"next_hop\"", 0, 0, outbound_choices, "mail from relaying "
	  "clients (relay's clients, authenticated users): \"next_hop\" "
	  "like all mail, or \"mx\": to each recipient domain's MX hosts "
	  "(RFC 5321 5.1; get_mx hook first)" },
	{ "mx_port", GH_DT_INT, offsetof(struct spool_conf, mx_port), "25",
	  1, 65535, NULL, "port of MX delivery" },
	{ "max_per_destination", GH_DT_INT,
	  offsetof(struct spool_conf, max_per_destination), "10", 1, 10000,
	  NULL, "connections per worker to one MX host address (idle ones "
	  "reused for idle_timeout)" },
	{ "tls", GH_DT_ENUM, offsetof(struct spool_conf, tls),
	  "\"opportunistic\"", 0, 0, smtpc_tls_choices, "STARTTLS to the "
	  "next hop (RFC 3207): \"off\", \"opportunistic\" (when offered, "
	  "no checks: RFC 7435) or \"required\" (else 451 4.7.x, retried)" },
	{ "tls_ca", GH_DT_STRING, offsetof(struct spool_conf, tls_ca), "\"\"",
	  0, 0, NULL, "PEM file of the CAs tls_verify and mx_tls_verify "
	  "trust; \"\": the system's" },
	{ "tls_verify", GH_DT_BOOL, offsetof(struct spool_conf, tls_verify),
	  "false", 0, 0, NULL, "check the next hop's certificate chain and "
	  "name (needs tls = \"required\"); a failed check is 451 4.7.5" },
	{ "tls_verify_name", GH_DT_STRING,
	  offsetof(struct spool_conf, tls_verify_name), "\"\"", 0, 0, NULL,
	  "the name the next hop's certificate must carry (and SNI); \"\": "
	  "host" },
	{ "mx_tls", GH_DT_ENUM, offsetof(struct spool_conf, mx_tls),
	  "\"opportunistic\"", 0, 0, smtpc_tls_choices, "STARTTLS to MX "
	  "hosts, as tls; with \"required\" a host without TLS is skipped "
	  "for the next MX" },
	{ "mx_tls_verify", GH_DT_BOOL,
	  offsetof(struct spool_conf, mx_tls_verify), "false", 0, 0, NULL,
	  "check each MX host's certificate against tls_ca and the MX name "
	  "(needs mx_tls = \"required\")" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

struct spool;

/* A file waiting for the commit thread. */
struct job {
	TAILQ_ENTRY(job) entry;
	int fd;
	char tmp[PATH_MAX];
	char dst[PATH_MAX];
	int err;			/* errno, 0 when durable in dst */
	unsigned renamed : 1;
	void (*done)(struct spool *, struct job *);
	void *arg;
};
TAILQ_HEAD(jobq, job);

enum rstate { R_PENDING = 0, R_DONE, R_BOUNCE, R_DEFER };

struct rcpt_state {
	enum rstate state;
	struct smtpc_reply reply;
	size_t leg;			/* index into dlv.legs */
	char hop[80];			/* "ip:port" that answered */
	char mta[256];			/* its name (DSN Remote-MTA) */
};

/* The recipients of one destination domain ("" for the next hop). */
struct leg {
	char domain[256];
};

#define MX_HOSTS_MAX 16			/* MX hosts tried per domain */
#define MX_ADDRS_MAX 8			/* addresses tried per host */

struct mxhost {
	char name[256];			/* a name, or an address */
	int port;
	unsigned pref;			/* MX preference */
};

/* A queue file being delivered; it holds the file's lock. */
struct dlv {
	TAILQ_ENTRY(dlv) entry;
	struct spool *sp;
	int fd;
	char path[PATH_MAX];
	struct spoolq_env env;
	struct rcpt_state *rs;
	struct gh_conn *gc;
	struct gh_txn *t;
	struct smtpc_txn *x;
	int round;
	struct job *job;		/* a bounce or rewrite being committed */
	struct smtpc_reply last;	/* for the error line */
	/* Routing, one destination (leg) at a time. */
	struct leg *legs;
	size_t nlegs, cur;
	struct mxhost hosts[MX_HOSTS_MAX];
	size_t nhosts, hi;		/* hi: the next host to try */
	int implicit;			/* no MX: the domain itself */
	char addrs[MX_ADDRS_MAX][64];
	size_t naddrs, ai;
	struct gh_dns_query *dq;
	struct gh_chain *ch;		/* get_mx */
	struct smtpc_pool *pool;	/* of the attempt under way */
	char hop[80], mta[256];
	struct smtpc_reply fail;	/* the last host's failure */
	/* The file could not take the attempt's outcome (disk full): the
	 * outcome stays here, with the file's lock, and is written again
	 * later; the old file would deliver to everyone once more. */
	struct event *save_ev;
	int keep_bounced;
};

/* An MX host address's pool, made on first use and kept for the
 * worker's life: its idle connections close after idle_timeout. */
struct mxpool {
	LIST_ENTRY(mxpool) entry;
	char ip[64];
	int port;
	char name[256];			/* MX name: SNI, certificate */
	struct smtpc_pool *pool;
};

/* The delivery notifications of one attempt, run one by one. */
struct ntf_item {
	enum gh_hook hook;
	struct gh_rcpt *rcpt;
	const char *reply;
	const char *hop;
};

struct ntf {
	TAILQ_ENTRY(ntf) entry;
	struct spool *sp;
	struct gh_conn *gc;
	struct ntf_item *items;
	size_t n, k;
	struct gh_chain *ch;
	int in_run, fired;
};

/* A message this worker accepted while its delivery slots were full:
 * it is delivered here as soon as one is free (whatever its share), not
 * left to a scan. */
struct fresh {
	TAILQ_ENTRY(fresh) entry;
	char name[64];
};

/* A pending queue hook. */
struct acc {
	struct spool *sp;
	struct gh_call *call;
	struct spoolq_env env;
	int cancelled;
};

struct spool {
	struct gh_plugin *p;
	const struct spool_conf *cf;
	char qdir[PATH_MAX], tdir[PATH_MAX], cdir[PATH_MAX], fdir[PATH_MAX];
	int qdirfd;
	long long *retry;
	size_t nretry;
	struct smtpc_pool *pool;
	/* Commit thread. */
	pthread_t thr;
	int thr_started;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct jobq todo, done;
	int stop;
	int wake[2];
	struct event *wake_ev;
	/* Delivery. */
	struct event *scan_ev;
	int ino;			/* inotify on DIR: DIR/flush */
	struct event *ino_ev;
	TAILQ_HEAD(, dlv) dlvs;
	size_t ndlv;
	int scanned_once;
	int starved;			/* a due message waits for a slot */
	TAILQ_HEAD(, fresh) fresh;	/* accepted, waiting for a slot */
	size_t nfresh;
	struct event *fresh_ev;
	/* Delivered files kept in DIR/free to hold the next messages: see
	 * file_reuse. */
	char freel[FREE_MAX][48];
	size_t nfree;
	unsigned free_tag, free_seq;	/* names unique per instance */
	struct timespec started;	/* files older than this are due */
	int closing;
	LIST_HEAD(, mxpool) mxpools;
	TAILQ_HEAD(, ntf) ntfs;
	int share, nshares;		/* of the queue: see my_share */
	uint32_t rng;			/* xorshift: equal MX prefs */
};

static void dlv_start(struct spool *sp, int fd, const char *path,
		      struct spoolq_env *env);
static void dlv_free(struct dlv *d);
static void scan_soon(struct spool *sp);
static void scan_file(struct spool *sp, const char *name, time_t now,
		      int any_share);
static void leg_next(struct dlv *d);
static void addr_set(struct gh_pool *pool, struct gh_addr *a,
		     const char *mailbox);
static void addr_next(struct dlv *d);
static void host_next(struct dlv *d);

/* dir/name into dst; -1 (and an empty dst) when it does not fit. */
static int
path_join(char *dst, size_t n, const char *dir, const char *name)
{
	int r = snprintf(dst, n, "%s/%s", dir, name);

	if (r < 0 || (size_t)r >= n) {
		dst[0] = '\0';
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* The commit thread: group commit of queue files.                      */

static void
batch_commit(struct spool *sp, struct jobq *b)
{
	struct job *j;
	int err, renamed = 0;

	/*
	 * Start the write-back of every file of the batch at once, so the
	 * disk takes their blocks together instead of one file's per
	 * fdatasync.  Only a hint: what makes each file durable is its own
	 * fdatasync below (a write-back error started here is reported by
	 * it too), never this.
	 */
	TAILQ_FOREACH(j, b, entry)
		(void)sync_file_range(j->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	TAILQ_FOREACH(j, b, entry) {
		if (fdatasync(j->fd) != 0) {
			j->err = errno;
			continue;
		}
		if (rename(j->tmp, j->dst) != 0) {
			j->err = errno;
			continue;
		}
		j->renamed = 1;
		renamed++;
	}
	/* The new names are durable once the directory is: one fsync of
	 * DIR/queue for the whole batch.  (DIR/tmp needs none: a name left
	 * there by a crash is removed at start-up, never delivered.) */
	if (renamed > 0 && fsync(sp->qdirfd) != 0) {
		err = errno;
		TAILQ_FOREACH(j, b, entry)
			if (j->renamed)
				j->err = err;
	}
}

static void *
committer(void *arg)
{
	struct spool *sp = arg;
	struct jobq b;
	struct job *j;
	sigset_t all;
	char x = 1;

	/* Signals are the event loop's. */
	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	for (;;) {
		pthread_mutex_lock(&sp->mu);
		while (TAILQ_EMPTY(&sp->todo) && !sp->stop)
			pthread_cond_wait(&sp->cv, &sp->mu);
		if (TAILQ_EMPTY(&sp->todo) && sp->stop) {
			pthread_mutex_unlock(&sp->mu);
			break;
		}
		TAILQ_INIT(&b);
		while ((j = TAILQ_FIRST(&sp->todo)) != NULL) {
			TAILQ_REMOVE(&sp->todo, j, entry);
			TAILQ_INSERT_TAIL(&b, j, entry);
		}
		pthread_mutex_unlock(&sp->mu);
		batch_commit(sp, &b);
		pthread_mutex_lock(&sp->mu);
		while ((j = TAILQ_FIRST(&b)) != NULL) {
			TAILQ_REMOVE(&b, j, entry);
			TAILQ_INSERT_TAIL(&sp->done, j, entry);
		}
		pthread_mutex_unlock(&sp->mu);
		while (write(sp->wake[1], &x, 1) < 0 && errno == EINTR)
			;
	}
	return NULL;
}

static void
job_submit(struct spool *sp, struct job *j)
{
	pthread_mutex_lock(&sp->mu);
	TAILQ_INSERT_TAIL(&sp->todo, j, entry);
	pthread_cond_signal(&sp->cv);
	pthread_mutex_unlock(&sp->mu);
}

static void
jobs_done(struct spool *sp)
{
	struct jobq q;
	struct job *j;

	TAILQ_INIT(&q);
	pthread_mutex_lock(&sp->mu);
	while ((j = TAILQ_FIRST(&sp->done)) != NULL) {
		TAILQ_REMOVE(&sp->done, j, entry);
		TAILQ_INSERT_TAIL(&q, j, entry);
	}
	pthread_mutex_unlock(&sp->mu);
	while ((j = TAILQ_FIRST(&q)) != NULL) {
		TAILQ_REMOVE(&q, j, entry);
		j->done(sp, j);
	}
}

static void
wake_read(evutil_socket_t fd, short what, void *arg)
{
	char buf[256];

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	jobs_done(arg);
}

static struct job *
job_new(const char *tmp, const char *dst, int fd,
	void (*done)(struct spool *, struct job *), void *arg)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return NULL;
	memcpy(j->tmp, tmp, strnlen(tmp, sizeof(j->tmp) - 1));
	memcpy(j->dst, dst, strnlen(dst, sizeof(j->dst) - 1));
	j->fd = fd;
	j->done = done;
	j->arg = arg;
	return j;
}

static int
no_space(int err)
{
	return err == ENOSPC || err == EDQUOT || err == EFBIG;
}

/* ------------------------------------------------------------------ */
/* Reusing queue files.                                                 */

/*
 * Creating a file and removing it after delivery cost more than writing
 * the message: a new inode is searched for in the inode bitmap (on ext4
 * without a journal past every inode freed in the last minutes, under
 * the directory's lock) and the last close of a removed file frees its
 * blocks (a discard on a disk mounted with it), both on the event loop.
 * So a delivered file that is small is not removed but renamed out of
 * DIR/queue into DIR/free (as PID.TAG.N), and the next message accepted
 * overwrites it.  Nothing changes for durability: the reused file is
 * written, truncated to its new length, fdatasynced and renamed into
 * DIR/queue like a new one; a crash leaves it in DIR/free, which is
 * never delivered from.  Start-up empties DIR/free of what nobody holds,
 * later scans remove files idle there for TMP_MIN_AGE, a worker that
 * stops removes its own: a delivered message's octets stay on disk at
 * most that long.  Whoever opens a queue file by name checks, once it
 * holds the lock, that the name still leads to the same file
 * (same_file), since a retired file keeps its link.
 */

/* Does path still name the file open on fd (whose stat is st)? */
static int
same_file(const char *path, const struct stat *st)
{
	struct stat ps;

	return st->st_nlink > 0 && stat(path, &ps) == 0 &&
	    ps.st_ino == st->st_ino && ps.st_dev == st->st_dev;
}

/* Move the delivered file at path (open and locked on fd) aside for
 * reuse: 0, or -1 when it is to be removed instead. */
static int
file_retire(struct spool *sp, int fd, const char *path)
{
	struct stat st;
	char name[sizeof(sp->freel[0])], dst[PATH_MAX];

	if (sp->closing || sp->nfree >= FREE_MAX || fstat(fd, &st) != 0 ||
	    st.st_size > FREE_SIZE_MAX)
		return -1;
	snprintf(name, sizeof(name), "%ld.%08x.%u", (long)getpid(),
		 sp->free_tag, sp->free_seq++);
	if (path_join(dst, sizeof(dst), sp->fdir, name) != 0 ||
	    rename(path, dst) != 0)
		return -1;
	memcpy(sp->freel[sp->nfree++], name, sizeof(name));
	return 0;
}

/* Open a retired file for a new message, locked, into path: its fd and
 * old size, or -1 when there is none (or it went: clean_dir at another
 * worker's start removes what nobody holds). */
static int
file_reuse(struct spool *sp, char *path, size_t n, off_t *size)
{
	struct stat st;
	int fd;

	while (sp->nfree > 0) {
		if (path_join(path, n, sp->fdir,
		    sp->freel[--sp->nfree]) != 0)
			continue;
		if ((fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW)) < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0 && fstat(fd, &st) == 0 &&
		    S_ISREG(st.st_mode) && same_file(path, &st)) {
			*size = st.st_size;
			return fd;
		}
		close(fd);
	}
	return -1;
}

/* At the end: the retired files are removed, as nobody will use them. */
static void
files_drop(struct spool *sp)
{
	char path[PATH_MAX];

	while (sp->nfree > 0)
		if (path_join(path, sizeof(path), sp->fdir,
		    sp->freel[--sp->nfree]) == 0)
			unlink(path);
}

/* ------------------------------------------------------------------ */
/* Accepting: the queue hook.                                           */

static int
out_put(void *arg, const char *data, size_t n)
{
	return spoolq_w_put(arg, data, n);
}

static void
acc_free(struct acc *a)
{
	spoolq_env_free(&a->env);
	free(a);
}

/* No delivery slot for the message just accepted: remember its name
 * (not its descriptor: the backlog may be long) for the next free slot.
 * Past FRESH_MAX (a next hop that hangs), or without memory, it waits
 * for a scan like any file of the queue. */
static void
fresh_add(struct spool *sp, const char *id, int fd, struct spoolq_env *env)
{
	struct fresh *f = sp->nfresh < FRESH_MAX ? malloc(sizeof(*f)) : NULL;

	close(fd);
	spoolq_env_free(env);
	if (f == NULL) {
		sp->starved = 1;
		return;
	}
	snprintf(f->name, sizeof(f->name), "%s", id);
	TAILQ_INSERT_TAIL(&sp->fresh, f, entry);
	sp->nfresh++;
}

static void
accept_done(struct spool *sp, struct job *j)
{
	struct acc *a = j->arg;
	struct gh_call *c = a->call;

	if (j->err != 0 && !j->renamed)
		unlink(j->tmp);
	if (a->cancelled || sp->closing) {
		/* The client was never told 250: the message must not be
		 * delivered, or its retry would make a duplicate. */
		if (j->renamed) {
			unlink(j->dst);
			gh_log(GH_LOG_INFO, "spool: %s removed: the client went "
			       "before it was acknowledged", a->env.id);
		}
		close(j->fd);
		acc_free(a);
		free(j);
		return;
	}
	if (j->err != 0) {
		if (j->renamed)
			unlink(j->dst);
		gh_clog(c, GH_LOG_ERR, "cannot store %s: %s", a->env.id,
			strerror(j->err));
		gh_result(c, GH_ERR, "sync: %s", strerror(j->err));
		if (no_space(j->err))
			gh_reply(c, 452, "4.3.1", "Insufficient system storage");
		else
			gh_reply(c, 451, "4.3.0", "Local error storing the "
				 "message, try again later");
		close(j->fd);
		acc_free(a);
		free(j);
		gh_resume(c, GH_DENYSOFT);
		return;
	}
	c->txn->queue_reply = gh_psprintf(c->txn->pool, "%s queued",
	    a->env.id);
	gh_clog(c, GH_LOG_INFO, "queued %s from <%s> for %zu recipients%s",
		a->env.id, a->env.from, a->env.nrcpts,
		a->env.route == SPOOLQ_ROUTE_MX ? " (by MX)" : "");
	gh_result(c, GH_PASS, "queued %s", a->env.id);
	gh_resume(c, GH_OK);
	if (sp->ndlv >= (size_t)sp->cf->max_deliveries)
		fresh_add(sp, a->env.id, j->fd, &a->env);
	else	/* Deliver it now, under the lock taken when it was created. */
		dlv_start(sp, j->fd, j->dst, &a->env);
	free(a);
	free(j);
}

static void
accept_cancel(void *arg)
{
	struct acc *a = arg;

	a->cancelled = 1;
}

/* MAIL parameters worth keeping for the next hop (SIZE is recomputed). */
static char *
keep_params(const struct gh_path *f)
{
	const char *body = gh_path_param(f, "BODY");
	char buf[64];

	snprintf(buf, sizeof(buf), "%s%s%s", body != NULL ? "BODY=" : "",
		 body != NULL ? (strcasecmp(body, "7BIT") == 0 ? "7BIT" :
		 "8BITMIME") : "", gh_path_param(f, "SMTPUTF8") != NULL ?
		 (body != NULL ? " SMTPUTF8" : "SMTPUTF8") : "");
	return strdup(buf);
}

static enum gh_verdict
store_failed(struct gh_call *c, int err, const char *what)
{
	gh_clog(c, GH_LOG_ERR, "cannot store the message: %s: %s", what,
		strerror(err));
	gh_result(c, GH_ERR, "%s: %s", what, strerror(err));
	if (no_space(err))
		gh_reply(c, 452, "4.3.1", "Insufficient system storage");
	else
		gh_reply(c, 451, "4.3.0", "Local error storing the message, "
			 "try again later");
	return GH_DENYSOFT;
}

static enum gh_verdict
spool_queue(struct gh_call *c)
{
	struct spool *sp = c->plugin->data;
	struct gh_txn *t = c->txn;
	const struct gh_rcpt *r;
	struct spoolq_w *w;
	struct acc *a;
	struct job *j;
	char tmp[PATH_MAX], dst[PATH_MAX];
	int fd, err;
	off_t hdr, old = 0, end;

	if (t == NULL)
		return GH_CONT;
	for (r = t->rcpts; r != NULL; r = r->next)
		if (!r->removed)
			break;
	if (r == NULL) {
		gh_clog(c, GH_LOG_INFO, "no recipients left, nothing queued");
		gh_result(c, GH_SKIP, "no recipients");
		t->queue_reply = gh_psprintf(t->pool, "%s; no recipients "
		    "left", t->id);
		return GH_OK;
	}
	if ((a = calloc(1, sizeof(*a))) == NULL ||
	    (w = malloc(sizeof(*w))) == NULL) {
		free(a);
		return store_failed(c, ENOMEM, "memory");
	}
	a->sp = sp;
	a->call = c;
	snprintf(a->env.id, sizeof(a->env.id), "%s", t->id);
	snprintf(a->env.host, sizeof(a->env.host), "%s",
		 c->conn->hostname != NULL ? c->conn->hostname : "localhost");
	a->env.kind = SPOOLQ_MSG;
	/* Mail from a client that may relay leaves by MX when so set;
	 * everything else goes to the next hop (the MTA behind). */
	a->env.route = sp->cf->outbound == OUT_MX && c->conn->relaying ?
	    SPOOLQ_ROUTE_MX : SPOOLQ_ROUTE_HOP;
	a->env.arrival = a->env.next = (long long)time(NULL);
	a->env.from = strdup(t->mail_from != NULL ?
	    t->mail_from->addr.mailbox : "");
	a->env.params = keep_params(t->mail_from);
	a->env.error = strdup("");
	for (r = t->rcpts; r != NULL; r = r->next)
		if (!r->removed && spoolq_env_add_rcpt(&a->env,
		    r->path.addr.mailbox) != 0)
			break;
	if (r != NULL || a->env.from == NULL || a->env.params == NULL ||
	    a->env.error == NULL) {
		free(w);
		acc_free(a);
		return store_failed(c, ENOMEM, "memory");
	}
	path_join(dst, sizeof(dst), sp->qdir, t->id);
	if ((fd = file_reuse(sp, tmp, sizeof(tmp), &old)) < 0) {
		path_join(tmp, sizeof(tmp), sp->tdir, t->id);
		fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0) {
			err = errno;
			free(w);
			acc_free(a);
			return store_failed(c, err, "open");
		}
		/* Ours from now until delivered: see "Ownership" above. */
		flock(fd, LOCK_EX | LOCK_NB);
	}
	spoolq_w_init(w, fd);
	if (spoolq_w_env(w, &a->env) != 0)
		goto wfail;
	hdr = (off_t)w->len;
	if (gh_txn_output(t, out_put, w) != 0) {
		if (w->err == 0)
			w->err = errno != 0 ? errno : EIO;
		goto wfail;
	}
	if (spoolq_w_finish(w) != 0)
		goto wfail;
	/* A reused file ends where this message's trailer does (its
	 * length is checked when it is read). */
	if (old > 0 && ((end = lseek(fd, 0, SEEK_CUR)) < 0 ||
	    (old > end && ftruncate(fd, end) != 0))) {
		w->err = errno;
		goto wfail;
	}
	a->env.msg_off = hdr;
	a->env.msg_len = (off_t)w->len - hdr;
	free(w);
	if ((j = job_new(tmp, dst, fd, accept_done, a)) == NULL) {
		close(fd);
		unlink(tmp);
		acc_free(a);
		return store_failed(c, ENOMEM, "memory");
	}
	job_submit(sp, j);
	gh_on_cancel(c, accept_cancel, a);
	return GH_AGAIN;
wfail:
	err = w->err != 0 ? w->err : EIO;
	free(w);
	close(fd);
	unlink(tmp);
	acc_free(a);
	return store_failed(c, err, "write");
}

/* ------------------------------------------------------------------ */
/* Bounces (RFC 3464).                                                  */

static void
rfc5322_date(char *buf, size_t n, time_t when)
{
	struct tm tm;

	localtime_r(&when, &tm);
	strftime(buf, n, "%a, %d %b %Y %H:%M:%S %z", &tm);
}

static int w_fmt(struct spoolq_w *w, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int
w_fmt(struct spoolq_w *w, const char *fmt, ...)
{
	char buf[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	return spoolq_w_put(w, buf, (size_t)n < sizeof(buf) ? (size_t)n :
	    sizeof(buf) - 1);
}

/* Status of a recipient given up on: the hop's enhanced code, else one
 * of its class (RFC 3463); 4.4.7 when it expired while deferred. */
static void
dsn_status(const struct rcpt_state *r, char *buf, size_t n)
{
	if (r->state == R_DEFER || r->reply.code / 100 != 5)
		snprintf(buf, n, "4.4.7");
	else if (r->reply.enh[0] == '5')
		snprintf(buf, n, "%s", r->reply.enh);
	else
		snprintf(buf, n, "5.0.0");
}

/* The original's header block, up to DSN_HEADERS_MAX, whole lines. */
static int
put_orig_headers(struct spoolq_w *w, const struct dlv *d)
{
	char *buf, *end;
	size_t want = DSN_HEADERS_MAX;
	ssize_t n;
	int rc;

	if ((off_t)want > d->env.msg_len)
		want = (size_t)d->env.msg_len;
	if ((buf = malloc(want + 1)) == NULL)
		return -1;
	n = pread(d->fd, buf, want, d->env.msg_off);
	if (n < 0) {
		free(buf);
		return -1;
	}
	buf[n] = '\0';
	if ((end = strstr(buf, "\r\n\r\n")) != NULL)
		n = end - buf + 2;
	else {
		/* Cut at the last whole line. */
		while (n > 0 && buf[n - 1] != '\n')
			n--;
	}
	rc = spoolq_w_put(w, buf, (size_t)n);
	free(buf);
	return rc;
}

/* Write the bounce for d's recipients in state R_BOUNCE (given up). */
static int
dsn_write(struct spoolq_w *w, const struct dlv *d, const char *id,
	  time_t now)
{
	const struct spoolq_env *e = &d->env;
	char date[64], arrival[64], boundary[128], status[16];
	size_t i;

	rfc5322_date(date, sizeof(date), now);
	rfc5322_date(arrival, sizeof(arrival), (time_t)e->arrival);
	if (path_join(boundary, sizeof(boundary), id, e->host) != 0)
		snprintf(boundary, sizeof(boundary), "%s", id);
	if (w_fmt(w, "From: Mail Delivery System <MAILER-DAEMON@%s>\r\n"
	    "To: <%s>\r\nSubject: Undelivered Mail Returned to Sender\r\n"
	    "Date: %s\r\nMessage-ID: <%s@%s>\r\n"
	    "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\n"
	    "Content-Type: multipart/report; report-type=delivery-status;"
	    "\r\n\tboundary=\"%s\"\r\n\r\n"
	    "This is a MIME-encapsulated message.\r\n\r\n--%s\r\n"
	    "Content-Description: Notification\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
	    "This is the mail system at host %s.\r\n\r\n"
	    "Your message %s could not be delivered to one or more\r\n"
	    "recipients.  The details are below; the headers of your\r\n"
	    "message are attached.\r\n\r\n", e->host, e->from, date, id,
	    e->host, boundary, boundary, e->host, e->id) != 0)
		return -1;
	for (i = 0; i < e->nrcpts; i++) {
		const struct rcpt_state *r = &d->rs[i];

		if (r->state != R_BOUNCE)
			continue;
		if (w_fmt(w, "<%s>: %s%d %s %s\r\n", e->rcpts[i],
		    r->reply.local ? "" : "host said: ", r->reply.code,
		    r->reply.enh, r->reply.text) != 0)
			return -1;
	}
	if (w_fmt(w, "\r\n--%s\r\nContent-Description: Delivery report\r\n"
	    "Content-Type: message/delivery-status\r\n\r\n"
	    "Reporting-MTA: dns; %s\r\nX-Gatehouse-Queue-ID: %s\r\n"
	    "Arrival-Date: %s\r\n", boundary, e->host, e->id, arrival) != 0)
		return -1;
	for (i = 0; i < e->nrcpts; i++) {
		const struct rcpt_state *r = &d->rs[i];

		if (r->state != R_BOUNCE)
			continue;
		dsn_status(r, status, sizeof(status));
		if (w_fmt(w, "\r\nFinal-Recipient: rfc822; %s\r\n"
		    "Action: failed\r\nStatus: %s\r\n", e->rcpts[i],
		    status) != 0)
			return -1;
		if (!r->reply.local && r->mta[0] != '\0' &&
		    w_fmt(w, "Remote-MTA: dns; %s\r\n", r->mta) != 0)
			return -1;
		if (w_fmt(w, "Diagnostic-Code: %s; %d %s %s\r\n",
		    r->reply.local ? "X-gatehouse" : "smtp", r->reply.code,
		    r->reply.enh, r->reply.text) != 0)
			return -1;
	}
	if (w_fmt(w, "\r\n--%s\r\nContent-Description: Undelivered message "
	    "headers\r\nContent-Type: text/rfc822-headers\r\n\r\n",
	    boundary) != 0 || put_orig_headers(w, d) != 0 ||
	    w_fmt(w, "\r\n--%s--\r\n", boundary) != 0)
		return -1;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Delivery.                                                           */

static long long
retry_delay(const struct spool *sp, long long attempts)
{
	size_t i;

	if (sp->nretry == 0)
		return 3600;
	i = attempts < 0 ? 0 : (size_t)attempts;
	if (i >= sp->nretry)
		i = sp->nretry - 1;
	return sp->retry[i];
}

static void
dlv_free(struct dlv *d)
{
	struct spool *sp = d->sp;

	if (d->x != NULL)
		smtpc_txn_cancel(d->x);
	if (d->save_ev != NULL) {
		event_free(d->save_ev);
		if (sp->closing)
			gh_log(GH_LOG_WARN, "spool: %s: stopping with the "
			       "attempt's outcome unsaved: the next start "
			       "delivers to all its recipients again",
			       d->env.id);
	}
	gh_dns_cancel(d->dq);
	gh_chain_cancel(d->ch);
	free(d->legs);
	if (d->gc != NULL)
		gh_conn_free(d->gc);
	if (d->fd >= 0)
		close(d->fd);
	spoolq_env_free(&d->env);
	free(d->rs);
	TAILQ_REMOVE(&sp->dlvs, d, entry);
	sp->ndlv--;
	free(d);
	if (sp->closing)
		return;
	if (!TAILQ_EMPTY(&sp->fresh))
		event_active(sp->fresh_ev, EV_TIMEOUT, 0);
	if (sp->starved) {
		sp->starved = 0;
		scan_soon(sp);
	}
}

static void
move_corrupt(struct spool *sp, const char *path, const char *name,
	     const char *why)
{
	char dst[PATH_MAX];

	path_join(dst, sizeof(dst), sp->cdir, name);
	if (rename(path, dst) == 0)
		gh_log(GH_LOG_ERR, "spool: queue file %s is damaged (%s): "
		       "moved to %s, not delivered", name, why, dst);
	else
		gh_log(GH_LOG_ERR, "spool: queue file %s is damaged (%s) and "
		       "cannot be moved to %s: %s", name, why, dst,
		       strerror(errno));
}

static void dlv_conclude(struct dlv *d, int keep_bounced);

static void
save_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dlv *d = arg;

	(void)fd;
	(void)what;
	dlv_conclude(d, d->keep_bounced);
}

/* The recipients left could not be written (err): keep the delivery,
 * its lock on the file and what each recipient got, and write them
 * again after the retry interval.  Freed, the delivery would leave the
 * old file, due at once and naming every recipient: each scan would
 * deliver again to those that already have the message. */
static void
save_later(struct dlv *d, int err)
{
	struct spool *sp = d->sp;
	struct timeval tv = { retry_delay(sp, d->env.attempts), 0 };

	if (sp->closing || (d->save_ev == NULL &&
	    (d->save_ev = evtimer_new(sp->p->base, save_retry_cb, d)) == NULL)) {
		gh_log(GH_LOG_ERR, "spool: %s: cannot save the recipients "
		       "left: %s (retried from the old file)", d->env.id,
		       strerror(err));
		dlv_free(d);
		return;
	}
	gh_log(GH_LOG_ERR, "spool: %s: cannot save the recipients left: %s "
	       "(kept in memory, saved again in %llds)", d->env.id,
	       strerror(err), (long long)tv.tv_sec);
	evtimer_add(d->save_ev, &tv);
}

static void
rewrite_done(struct spool *sp, struct job *j)
{
	struct dlv *d = j->arg;
	int err = j->err;

	(void)sp;
	d->job = NULL;
	if (err != 0 && !j->renamed)
		unlink(j->tmp);
	close(j->fd);
	free(j);
	if (err != 0)
		save_later(d, err);
	else
		dlv_free(d);
}

/* After the attempt (and its bounce): keep the recipients left, or
 * remove the file. */
static void
dlv_conclude(struct dlv *d, int keep_bounced)
{
	struct spool *sp = d->sp;
	struct spoolq_env ne;
	struct job *j;
	char tmp[PATH_MAX], err[SMTPC_TEXT_MAX + 64], name[128];
	size_t i;
	int nfd;
	time_t now = time(NULL);

	d->keep_bounced = keep_bounced;
	memset(&ne, 0, sizeof(ne));
	ne = d->env;
	ne.rcpts = NULL;
	ne.nrcpts = 0;
	for (i = 0; i < d->env.nrcpts; i++)
		if (d->rs[i].state == R_DEFER || (keep_bounced &&
		    d->rs[i].state == R_BOUNCE))
			if (spoolq_env_add_rcpt(&ne, d->env.rcpts[i]) != 0)
				break;
	if (ne.nrcpts == 0 && i == d->env.nrcpts) {
		free(ne.rcpts);
		if (file_retire(sp, d->fd, d->path) == 0)
			gh_log(GH_LOG_DEBUG, "spool: %s done", d->env.id);
		else if (unlink(d->path) != 0)
			gh_log(GH_LOG_ERR, "spool: %s: unlink: %s", d->path,
			       strerror(errno));
		else
			gh_log(GH_LOG_DEBUG, "spool: %s done", d->env.id);
		dlv_free(d);
		return;
	}
	ne.attempts = d->env.attempts + 1;
	ne.next = (long long)now + retry_delay(sp, d->env.attempts);
	snprintf(err, sizeof(err), "%d %s %s", d->last.code, d->last.enh,
		 d->last.text);
	ne.error = err;
	snprintf(name, sizeof(name), "%s.r%lld", d->env.id, ne.attempts);
	path_join(tmp, sizeof(tmp), sp->tdir, name);
	unlink(tmp);
	if (i < d->env.nrcpts || spoolq_rewrite(tmp, &ne, d->fd, &nfd) != 0) {
		int saved = errno;

		for (i = 0; i < ne.nrcpts; i++)
			free(ne.rcpts[i]);
		free(ne.rcpts);
		save_later(d, saved);
		return;
	}
	gh_log(GH_LOG_INFO, "spool: %s deferred for %zu recipients, attempt "
	       "%lld, next in %llds", d->env.id, ne.nrcpts, ne.attempts,
	       ne.next - (long long)now);
	for (i = 0; i < ne.nrcpts; i++)
		free(ne.rcpts[i]);
	free(ne.rcpts);
	if ((j = job_new(tmp, d->path, nfd, rewrite_done, d)) == NULL) {
		close(nfd);
		unlink(tmp);
		save_later(d, ENOMEM);
		return;
	}
	d->job = j;
	job_submit(sp, j);
}

static void
dsn_done(struct spool *sp, struct job *j)
{
	struct dlv *d = j->arg;
	struct spoolq_env *ne = (struct spoolq_env *)(j + 1);
	int ok = j->err == 0;

	d->job = NULL;
	if (!ok) {
		if (!j->renamed)
			unlink(j->tmp);
		gh_log(GH_LOG_ERR, "spool: %s: cannot store the bounce: %s "
		       "(recipients kept for a retry)", d->env.id,
		       strerror(j->err));
		close(j->fd);
		spoolq_env_free(ne);
	} else if (sp->closing) {
		close(j->fd);
		spoolq_env_free(ne);
	} else {
		dlv_start(sp, j->fd, j->dst, ne);
	}
	free(j);
	if (sp->closing) {
		dlv_free(d);
		return;
	}
	dlv_conclude(d, !ok);
}

/* Queue a bounce (or pass a failed bounce to the postmaster).  Returns
 * 1 when a job was started (dlv_conclude follows), 0 when there is no
 * bounce to send. */
static int
dlv_bounce(struct dlv *d)
{
	struct spool *sp = d->sp;
	const struct spool_conf *cf = sp->cf;
	struct spoolq_env *ne;
	struct spoolq_w *w = NULL;
	struct job *j;
	char id[32], tmp[PATH_MAX], dst[PATH_MAX];
	time_t now = time(NULL);
	int fd = -1;

	if (d->env.kind == SPOOLQ_MSG && d->env.from[0] == '\0') {
		gh_log(GH_LOG_INFO, "spool: %s: no bounce for a message from "
		       "the null sender (RFC 5321 4.5.5)", d->env.id);
		return 0;
	}
	if (d->env.kind == SPOOLQ_DSN_PM || (d->env.kind == SPOOLQ_DSN &&
	    cf->postmaster[0] == '\0')) {
		gh_log(GH_LOG_WARN, "spool: %s: undeliverable bounce dropped",
		       d->env.id);
		return 0;
	}
	if ((j = calloc(1, sizeof(*j) + sizeof(*ne))) == NULL)
		goto fail;
	ne = (struct spoolq_env *)(j + 1);
	gh_make_id(id, sizeof(id));
	snprintf(ne->id, sizeof(ne->id), "%s", id);
	snprintf(ne->host, sizeof(ne->host), "%s", d->env.host);
	ne->arrival = ne->next = (long long)now;
	/* The report carries the original's headers and goes to its
	 * sender: the same BODY and SMTPUTF8 (RFC 6152, RFC 6531 3.4). */
	if ((ne->from = strdup("")) == NULL ||
	    (ne->params = strdup(d->env.params)) == NULL ||
	    (ne->error = strdup("")) == NULL)
		goto fail;
	path_join(tmp, sizeof(tmp), sp->tdir, id);
	path_join(dst, sizeof(dst), sp->qdir, id);
	if (d->env.kind == SPOOLQ_DSN) {
		/* A bounce that bounced: the same report to the
		 * postmaster, once. */
		ne->kind = SPOOLQ_DSN_PM;
		if (spoolq_env_add_rcpt(ne, cf->postmaster) != 0)
			goto fail;
		ne->msg_off = d->env.msg_off;
		ne->msg_len = d->env.msg_len;
		if (spoolq_rewrite(tmp, ne, d->fd, &fd) != 0)
			goto fail;
		{
			/* Same octets, new envelope: where they are now. */
			struct spoolq_env chk;
			char why[128];

			if (spoolq_load(fd, &chk, 0, why, sizeof(why)) != 0)
				goto fail;
			ne->msg_off = chk.msg_off;
			spoolq_env_free(&chk);
		}
		gh_log(GH_LOG_INFO, "spool: bounce %s undeliverable: sent to "
		       "the postmaster <%s> as %s", d->env.id, cf->postmaster,
		       id);
	} else {
		off_t hdr;

		ne->kind = SPOOLQ_DSN;
		if (spoolq_env_add_rcpt(ne, d->env.from) != 0 ||
		    (w = malloc(sizeof(*w))) == NULL)
			goto fail;
		fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0)
			goto fail;
		flock(fd, LOCK_EX | LOCK_NB);
		spoolq_w_init(w, fd);
		if (spoolq_w_env(w, ne) != 0)
			goto fail;
		hdr = (off_t)w->len;
		if (dsn_write(w, d, id, now) != 0 || spoolq_w_finish(w) != 0)
			goto fail;
		ne->msg_off = hdr;
		ne->msg_len = (off_t)w->len - hdr;
		free(w);
		w = NULL;
		gh_log(GH_LOG_INFO, "spool: %s: bounce %s to <%s>", d->env.id,
		       id, d->env.from);
	}
	memcpy(j->tmp, tmp, strnlen(tmp, sizeof(j->tmp) - 1));
	memcpy(j->dst, dst, strnlen(dst, sizeof(j->dst) - 1));
	j->fd = fd;
	j->done = dsn_done;
	j->arg = d;
	d->job = j;
	job_submit(sp, j);
	return 1;
fail:
	gh_log(GH_LOG_ERR, "spool: %s: cannot write the bounce: %s "
	       "(recipients kept for a retry)", d->env.id, strerror(errno));
	if (fd >= 0) {
		close(fd);
		unlink(tmp);
	}
	free(w);
	if (j != NULL) {
		spoolq_env_free(ne);
		free(j);
	}
	return -1;
}

static const char *
state_name(enum rstate s)
{
	switch (s) {
	case R_DONE:
		return "delivered";
	case R_BOUNCE:
		return "bounced";
	case R_DEFER:
		return "deferred";
	default:
		return "pending";
	}
}

/* ------------------------------------------------------------------ */
/* Delivery notifications: the deferred, bounce and delivered hooks.    */

static void ntf_step(struct ntf *n);

static void
ntf_free(struct ntf *n)
{
	TAILQ_REMOVE(&n->sp->ntfs, n, entry);
	gh_chain_cancel(n->ch);
	gh_conn_free(n->gc);
	free(n);
}

static void
ntf_done(void *arg, const struct gh_outcome *o)
{
	struct ntf *n = arg;

	(void)o;		/* every plugin runs; verdicts mean nothing */
	n->fired = 1;
	n->ch = NULL;
	n->k++;
	if (!n->in_run)
		ntf_step(n);
}

static void
ntf_step(struct ntf *n)
{
	struct gh_runtime *rt = n->sp->p->rt;
	struct gh_chain *ch;

	while (n->k < n->n) {
		const struct ntf_item *it = &n->items[n->k];
		struct gh_call proto;

		if (!gh_runtime_has_hook(rt, it->hook)) {
			n->k++;
			continue;
		}
		memset(&proto, 0, sizeof(proto));
		proto.conn = n->gc;
		proto.txn = n->gc->txn;
		proto.hook = it->hook;
		proto.rcpt = it->rcpt;
		proto.path = &it->rcpt->path;
		proto.arg = it->reply;
		gh_note_set(n->gc->txn->notes, "spool.hop", it->hop);
		n->in_run = 1;
		n->fired = 0;
		ch = gh_chain_run(rt, &proto, ntf_done, n);
		n->in_run = 0;
		if (!n->fired) {
			/* A plugin is pending: ntf_done goes on. */
			n->ch = ch;
			return;
		}
	}
	ntf_free(n);
}

/* Tell the plugins what this attempt did to each recipient.  They get a
 * transaction of their own, so a pending one may outlive the delivery. */
static void
notify(struct dlv *d)
{
	struct spool *sp = d->sp;
	struct gh_runtime *rt = sp->p->rt;
	struct gh_rcpt **tail;
	struct gh_txn *t;
	struct ntf *n;
	size_t i;

	if (rt == NULL || (!gh_runtime_has_hook(rt, GH_HOOK_DELIVERED) &&
	    !gh_runtime_has_hook(rt, GH_HOOK_DEFERRED) &&
	    !gh_runtime_has_hook(rt, GH_HOOK_BOUNCE)))
		return;
	if ((n = calloc(1, sizeof(*n))) == NULL)
		return;
	if ((n->gc = gh_conn_new(sp->p->base)) == NULL) {
		free(n);
		return;
	}
	n->sp = sp;
	n->gc->hostname = gh_pstrdup(n->gc->pool, d->env.host);
	t = gh_txn_new(n->gc);
	t->id = gh_pstrdup(t->pool, d->env.id);
	t->mail_from = gh_palloc(t->pool, sizeof(*t->mail_from));
	addr_set(t->pool, &t->mail_from->addr, d->env.from);
	n->items = gh_palloc(t->pool, (d->env.nrcpts + 1) *
	    sizeof(*n->items));
	tail = &t->rcpts;
	for (i = 0; i < d->env.nrcpts; i++) {
		const struct rcpt_state *r = &d->rs[i];
		struct ntf_item *it = &n->items[n->n];
		struct gh_rcpt *gr;

		if (r->state == R_PENDING)
			continue;
		gr = gh_palloc(t->pool, sizeof(*gr));
		addr_set(t->pool, &gr->path.addr, d->env.rcpts[i]);
		*tail = gr;
		tail = &gr->next;
		t->nrcpts++;
		it->hook = r->state == R_DONE ? GH_HOOK_DELIVERED :
		    r->state == R_BOUNCE ? GH_HOOK_BOUNCE : GH_HOOK_DEFERRED;
		it->rcpt = gr;
		it->reply = gh_psprintf(t->pool, "%d%s%s %s", r->reply.code,
		    r->reply.enh[0] ? " " : "", r->reply.enh, r->reply.text);
		it->hop = gh_pstrdup(t->pool, r->hop);
		n->n++;
	}
	TAILQ_INSERT_TAIL(&sp->ntfs, n, entry);
	ntf_step(n);
}

static int
differs(const char *name, const char *hop)
{
	return name[0] != '\0' && strcmp(name, hop) != 0;
}

/* The attempt is over: log, notify, bounce, then keep or remove. */
static void
dlv_finish(struct dlv *d)
{
	struct spool *sp = d->sp;
	time_t now = time(NULL);
	int expired = now - (time_t)d->env.arrival >=
	    (time_t)sp->cf->max_lifetime;
	size_t i, nbounce = 0;
	int rc;

	for (i = 0; i < d->env.nrcpts; i++) {
		struct rcpt_state *r = &d->rs[i];

		if (r->state == R_PENDING)
			r->state = R_DEFER;	/* not tried: cannot happen */
		if (r->state == R_DEFER && expired) {
			r->state = R_BOUNCE;
			gh_log(GH_LOG_INFO, "spool: %s to <%s>: expired after "
			       "%llds in the queue", d->env.id, d->env.rcpts[i],
			       (long long)(now - (time_t)d->env.arrival));
		}
		if (r->state == R_BOUNCE)
			nbounce++;
		if (r->state != R_DONE)
			d->last = r->reply;
		gh_log(GH_LOG_INFO, "spool: %s to <%s> %s via %s%s%s%s: %d %s "
		       "%s", d->env.id, d->env.rcpts[i], state_name(r->state),
		       r->hop[0] ? r->hop : "-", differs(r->mta, r->hop) ?
		       " (" : "", differs(r->mta, r->hop) ? r->mta : "",
		       differs(r->mta, r->hop) ? ")" : "", r->reply.code,
		       r->reply.enh, r->reply.text);
	}
	notify(d);
	if (nbounce > 0) {
		rc = dlv_bounce(d);
		if (rc == 1)
			return;		/* dsn_done concludes */
		dlv_conclude(d, rc < 0);
		return;
	}
	dlv_conclude(d, 0);
}

/* Recipient i's outcome, from the host of the attempt under way. */
static void
set_state(struct dlv *d, size_t i, const struct smtpc_reply *rep)
{
	struct rcpt_state *r = &d->rs[i];

	r->reply = *rep;
	snprintf(r->hop, sizeof(r->hop), "%s", d->hop);
	snprintf(r->mta, sizeof(r->mta), "%s", d->mta);
	if (rep->code / 100 == 2)
		r->state = R_DONE;
	else if (rep->code / 100 == 5)
		r->state = R_BOUNCE;
	else
		r->state = R_DEFER;
}

static void leg_fail(struct dlv *d, int code, const char *enh,
		     const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Every recipient of the current leg still pending gets rep. */
static void
leg_fail_reply(struct dlv *d, const struct smtpc_reply *rep)
{
	size_t i;

	for (i = 0; i < d->env.nrcpts; i++)
		if (d->rs[i].leg == d->cur && d->rs[i].state == R_PENDING)
			set_state(d, i, rep);
	d->cur++;
	leg_next(d);
}

/* A failure made up here (DNS, routing) for the current leg. */
static void
leg_fail(struct dlv *d, int code, const char *enh, const char *fmt, ...)
{
	struct smtpc_reply rep;
	va_list ap;

	memset(&rep, 0, sizeof(rep));
	rep.code = code;
	rep.local = 1;
	snprintf(rep.enh, sizeof(rep.enh), "%s", enh);
	va_start(ap, fmt);
	vsnprintf(rep.text, sizeof(rep.text), fmt, ap);
	va_end(ap);
	d->hop[0] = d->mta[0] = '\0';
	leg_fail_reply(d, &rep);
}

static void dlv_done(void *arg, const struct smtpc_result *res);

static void
dlv_send(struct dlv *d)
{
	d->x = smtpc_txn_start(d->pool, d->env.host, d->t, dlv_done, d);
	if (d->x == NULL)
		leg_fail(d, 451, "4.3.0", "out of memory");
}

static void
dlv_done(void *arg, const struct smtpc_result *res)
{
	struct dlv *d = arg;
	struct gh_rcpt *gr;
	size_t i, k = 0, again = 0;

	d->x = NULL;
	/* RFC 5321 5.1: a host that cannot be reached, or refuses the
	 * session, is skipped for the next address or MX host. */
	if (res->stage == SMTPC_ST_CONNECT && d->nhosts > 0) {
		gh_log(GH_LOG_INFO, "spool: %s: %s (%s): %d %s %s", d->env.id,
		       d->mta, d->hop, res->reply.code, res->reply.enh,
		       res->reply.text);
		d->fail = res->reply;
		addr_next(d);
		return;
	}
	/* The recipients of this round, in order, are the txn's ones not
	 * removed; the same order as res->rcpts. */
	for (i = 0, gr = d->t->rcpts; i < d->env.nrcpts && gr != NULL;
	    i++, gr = gr->next) {
		const struct smtpc_rcpt *rr;

		if (gr->removed)
			continue;
		if (k >= res->nrcpts)
			break;
		rr = &res->rcpts[k++];
		switch (res->stage) {
		case SMTPC_ST_RCPT:
			if (rr->refused)
				set_state(d, i, &rr->reply);
			else if (rr->reply.code == 0)
				set_state(d, i, &res->reply);
			else {
				again++;
				continue;
			}
			gh_rcpt_remove(d->t, gr);
			break;
		case SMTPC_ST_DOT:
			if (d->sp->cf->protocol == PROTO_LMTP &&
			    d->pool == d->sp->pool)
				set_state(d, i, rr->failed ?
				    &rr->final : rr->final.code ? &rr->final :
				    &res->reply);
			else
				set_state(d, i, &res->reply);
			break;
		default:
			set_state(d, i, &res->reply);
			break;
		}
	}
	/* The hop refused some recipients, so nothing was sent (smtpc's
	 * all-or-nothing rule): send again to those it took. */
	if (again > 0 && (size_t)++d->round < d->env.nrcpts +
	    MAX_ROUNDS_EXTRA) {
		dlv_send(d);
		return;
	}
	/* Those the hop took are not refused: the reply in res is another
	 * recipient's, never theirs to bounce with. */
	if (again > 0) {
		leg_fail(d, 451, "4.5.0", "Not sent: %s ended %d transactions "
			 "at RCPT", d->hop, d->round);
		return;
	}
	leg_fail_reply(d, &res->reply);
}

/* ------------------------------------------------------------------ */
/* Routing (RFC 5321 5.1): get_mx hook, MX records, implicit MX.         */

static struct smtpc_pool *
mxpool_get(struct spool *sp, const char *ip, int port, const char *name)
{
	const struct spool_conf *cf = sp->cf;
	struct smtpc_dest dst;
	struct mxpool *m;
	char err[256];

	LIST_FOREACH(m, &sp->mxpools, entry)
		if (m->port == port && strcmp(m->ip, ip) == 0 &&
		    strcmp(m->name, name) == 0)
			return m->pool;
	if ((m = calloc(1, sizeof(*m))) == NULL)
		return NULL;
	snprintf(m->ip, sizeof(m->ip), "%s", ip);
	snprintf(m->name, sizeof(m->name), "%s", name);
	m->port = port;
	memset(&dst, 0, sizeof(dst));
	dst.proto = SMTPC_SMTP;
	dst.host = m->ip;		/* an address: no lookup */
	dst.port = port;
	smtpc_dest_timeouts(&dst, &cf->to);
	dst.max_connections = cf->max_per_destination;
	dst.tls = (enum smtpc_tls)cf->mx_tls;
	dst.tls_verify = cf->mx_tls_verify;
	dst.tls_ca = cf->tls_ca;
	/* The name the MX record gave (RFC 7672 would want DANE to trust
	 * it; here it is what the certificate must carry). */
	dst.tls_verify_name = m->name;
	if ((m->pool = smtpc_pool_new(sp->p->base, &dst, err,
	    sizeof(err))) == NULL) {
		gh_log(GH_LOG_ERR, "spool: MX host %s: %s", ip, err);
		free(m);
		return NULL;
	}
	LIST_INSERT_HEAD(&sp->mxpools, m, entry);
	return m->pool;
}

/* Is s an address?  Then its text, without brackets, into out. */
static int
ip_text(const char *s, char *out, size_t n)
{
	unsigned char a[16];
	char buf[64];
	size_t len = strlen(s);

	if (len >= sizeof(buf))
		return 0;
	memcpy(buf, s, len + 1);
	if (buf[0] == '[' && len > 2 && buf[len - 1] == ']') {
		buf[len - 1] = '\0';
		memmove(buf, buf + 1, len - 1);
		/* RFC 5321 4.1.3: IPv6 literals are tagged. */
		if (strncasecmp(buf, "IPv6:", 5) == 0)
			memmove(buf, buf + 5, strlen(buf + 5) + 1);
	}
	if (inet_pton(AF_INET, buf, a) != 1 &&
	    inet_pton(AF_INET6, buf, a) != 1)
		return 0;
	snprintf(out, n, "%s", buf);
	return 1;
}

/* The next address of the current host, or the next host. */
static void
addr_next(struct dlv *d)
{
	const struct mxhost *h = &d->hosts[d->hi - 1];

	while (d->ai < d->naddrs) {
		const char *ip = d->addrs[d->ai++];

		if ((d->pool = mxpool_get(d->sp, ip, h->port,
		    h->name)) == NULL)
			continue;
		snprintf(d->hop, sizeof(d->hop), "%s",
			 smtpc_pool_name(d->pool));
		snprintf(d->mta, sizeof(d->mta), "%s", h->name);
		gh_log(GH_LOG_DEBUG, "spool: %s: %s via %s (%s)", d->env.id,
		       d->legs[d->cur].domain, h->name, d->hop);
		dlv_send(d);
		return;
	}
	host_next(d);
}

static void
addr_answer(void *arg, const struct gh_dns_answer *ans)
{
	struct dlv *d = arg;
	const struct mxhost *h = &d->hosts[d->hi - 1];
	size_t i;

	d->dq = NULL;
	if (ans->status == GH_DNS_OK)
		for (i = 0; i < ans->n && d->naddrs < MX_ADDRS_MAX; i++)
			snprintf(d->addrs[d->naddrs++], sizeof(d->addrs[0]),
				 "%s", ans->rr[i].data);
	if (d->naddrs == 0 && ans->type == GH_DNS_A &&
	    ans->status == GH_DNS_NODATA) {
		/* IPv6 only, perhaps. */
		d->dq = gh_dns_query(d->sp->p->base, GH_DNS_AAAA, h->name,
				     addr_answer, d);
		if (d->dq != NULL)
			return;
	}
	if (d->naddrs > 0) {
		addr_next(d);
		return;
	}
	if (ans->status == GH_DNS_TEMPFAIL) {
		memset(&d->fail, 0, sizeof(d->fail));
		d->fail.code = 451;
		d->fail.local = 1;
		snprintf(d->fail.enh, sizeof(d->fail.enh), "4.4.3");
		snprintf(d->fail.text, sizeof(d->fail.text), "DNS lookup of "
			 "%s failed: %s", h->name, ans->error ? ans->error :
			 "temporary failure");
	} else if (d->implicit) {
		leg_fail(d, 550, "5.1.2", "Domain %s has no MX or address "
			 "record", d->legs[d->cur].domain);
		return;
	} else {
		memset(&d->fail, 0, sizeof(d->fail));
		d->fail.code = 451;
		d->fail.local = 1;
		snprintf(d->fail.enh, sizeof(d->fail.enh), "4.4.4");
		snprintf(d->fail.text, sizeof(d->fail.text), "MX host %s of "
			 "%s has no address", h->name, d->legs[d->cur].domain);
	}
	gh_log(GH_LOG_INFO, "spool: %s: %s", d->env.id, d->fail.text);
	host_next(d);
}

/* The next MX host (in preference order), or the leg's failure. */
static void
host_next(struct dlv *d)
{
	const struct mxhost *h;

	if (d->hi >= d->nhosts) {
		if (d->fail.code == 0) {
			leg_fail(d, 451, "4.4.4", "no MX host of %s could be "
				 "reached", d->legs[d->cur].domain);
			return;
		}
		/* The last failure, for the retry: the hosts are tried
		 * again at the next attempt. */
		d->hop[0] = d->mta[0] = '\0';
		leg_fail_reply(d, &d->fail);
		return;
	}
	h = &d->hosts[d->hi++];
	d->naddrs = d->ai = 0;
	if (ip_text(h->name, d->addrs[0], sizeof(d->addrs[0]))) {
		d->naddrs = 1;
		addr_next(d);
		return;
	}
	d->dq = gh_dns_query(d->sp->p->base, GH_DNS_A, h->name, addr_answer,
			     d);
	if (d->dq == NULL) {
		memset(&d->fail, 0, sizeof(d->fail));
		d->fail.code = 451;
		d->fail.local = 1;
		snprintf(d->fail.enh, sizeof(d->fail.enh), "4.4.3");
		snprintf(d->fail.text, sizeof(d->fail.text), "no resolver "
			 "to look up %s", h->name);
		host_next(d);
	}
}

static void
host_add(struct dlv *d, const char *name, size_t len, int port,
	 unsigned pref)
{
	struct mxhost *h;

	if (d->nhosts >= MX_HOSTS_MAX || len == 0 ||
	    len >= sizeof(h->name))
		return;
	h = &d->hosts[d->nhosts++];
	memcpy(h->name, name, len);
	h->name[len] = '\0';
	h->port = port;
	h->pref = pref;
}

static uint32_t
rng_next(struct spool *sp)
{
	uint32_t x = sp->rng;

	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	return sp->rng = x;
}

/* RFC 5321 5.1: hosts of equal preference are tried in random order,
 * to spread the load. */
static void
hosts_shuffle(struct dlv *d)
{
	size_t a, b, i, j;
	struct mxhost tmp;

	for (a = 0; a < d->nhosts; a = b) {
		for (b = a + 1; b < d->nhosts &&
		    d->hosts[b].pref == d->hosts[a].pref; b++)
			;
		for (i = b - 1; i > a; i--) {
			j = a + rng_next(d->sp) % (i - a + 1);
			tmp = d->hosts[i];
			d->hosts[i] = d->hosts[j];
			d->hosts[j] = tmp;
		}
	}
}

static void
mx_answer(void *arg, const struct gh_dns_answer *ans)
{
	struct dlv *d = arg;
	const char *dom = d->legs[d->cur].domain;
	unsigned cut = UINT_MAX;
	size_t i;

	d->dq = NULL;
	switch (ans->status) {
	case GH_DNS_OK:
		/* RFC 7505 3: a lone MX "." says the domain takes no
		 * mail: fail at once, no retry. */
		if (ans->n == 1 && ans->rr[0].data[0] == '\0') {
			leg_fail(d, 556, "5.1.10", "Domain %s accepts no "
				 "mail (null MX, RFC 7505)", dom);
			return;
		}
		/* RFC 5321 5.1: our own name ends the list (it and every
		 * host not more preferred), or the mail would come back. */
		for (i = 0; i < ans->n; i++)
			if (strcasecmp(ans->rr[i].data, d->env.host) == 0 &&
			    ans->rr[i].pref < cut)
				cut = ans->rr[i].pref;
		/* Sorted by preference (dns.c). */
		for (i = 0; i < ans->n; i++)
			if (ans->rr[i].data[0] != '\0' && ans->rr[i].pref < cut)
				host_add(d, ans->rr[i].data,
					 strlen(ans->rr[i].data),
					 (int)d->sp->cf->mx_port,
					 ans->rr[i].pref);
		if (d->nhosts == 0 && cut != UINT_MAX) {
			leg_fail(d, 550, "5.4.6", "Mail for %s loops back to "
				 "myself: %s is its best MX", dom, d->env.host);
			return;
		}
		hosts_shuffle(d);
		break;
	case GH_DNS_NODATA:
		/* RFC 5321 5.1: no MX, the domain itself is the host. */
		d->implicit = 1;
		host_add(d, dom, strlen(dom), (int)d->sp->cf->mx_port, 0);
		break;
	case GH_DNS_NXDOMAIN:
		leg_fail(d, 550, "5.1.2", "Domain %s does not exist", dom);
		return;
	default:
		leg_fail(d, 451, "4.4.3", "DNS lookup of %s MX failed: %s",
			 dom, ans->error ? ans->error : "temporary failure");
		return;
	}
	if (d->nhosts == 0) {
		leg_fail(d, 451, "4.4.4", "Domain %s has no usable MX "
			 "record", dom);
		return;
	}
	host_next(d);
}

static void
mx_lookup(struct dlv *d)
{
	const char *dom = d->legs[d->cur].domain;

	d->dq = gh_dns_query(d->sp->p->base, GH_DNS_MX, dom, mx_answer, d);
	if (d->dq == NULL)
		leg_fail(d, 451, "4.4.3", "no resolver to look up %s MX",
			 dom);
}

/* A get_mx answer: "HOST[:PORT] ..." (spaces or commas between),
 * HOST a name, an IPv4 address or [IPv6]. */
static void
hosts_parse(struct dlv *d, const char *spec)
{
	const char *s = spec, *end, *colon, *hend;
	int port;

	while (*s != '\0') {
		s += strspn(s, " ,\t");
		if (*s == '\0')
			break;
		end = s + strcspn(s, " ,\t");
		port = (int)d->sp->cf->mx_port;
		if (*s == '[') {
			hend = memchr(s, ']', (size_t)(end - s));
			if (hend == NULL) {
				s = end;
				continue;
			}
			colon = hend + 1 < end && hend[1] == ':' ? hend + 1 :
			    NULL;
			s++;
		} else {
			colon = memchr(s, ':', (size_t)(end - s));
			hend = colon != NULL ? colon : end;
		}
		if (colon != NULL) {
			char num[8];
			size_t n = (size_t)(end - colon - 1);
			long v;

			if (n == 0 || n >= sizeof(num)) {
				s = end;
				continue;
			}
			memcpy(num, colon + 1, n);
			num[n] = '\0';
			v = strtol(num, NULL, 10);
			if (v < 1 || v > 65535) {
				s = end;
				continue;
			}
			port = (int)v;
		}
		/* In the order given: each its own preference. */
		host_add(d, s, (size_t)(hend - s), port,
			 (unsigned)d->nhosts);
		s = end;
	}
}

/* A get_mx DENY (code 550) or DENYSOFT (451) for the current leg: the
 * plugin's reason, when it gave one, is the bounce's or the deferral's;
 * else ours names the domain and the plugin. */
static void
getmx_refused(struct dlv *d, const struct gh_outcome *o, int code,
	      const char *enh, const char *dom, const char *by)
{
	if (o->text[0] != '\0')
		leg_fail(d, code, o->enh[0] ? o->enh : enh, "%s", o->text);
	else
		leg_fail(d, code, enh, code >= 500 ?
			 "Delivery to %s refused by %s" :
			 "Routing of %s deferred by %s", dom, by);
}

static void
getmx_done(void *arg, const struct gh_outcome *o)
{
	struct dlv *d = arg;
	const char *dom = d->legs[d->cur].domain;
	const char *route = gh_note_get(d->t->notes, "get_mx");
	const char *by = o->by != NULL ? o->by->name : "get_mx";

	d->ch = NULL;
	switch (o->verdict) {
	case GH_OK:
		if (route != NULL && route[0] != '\0') {
			hosts_parse(d, route);
			if (d->nhosts > 0) {
				gh_log(GH_LOG_INFO, "spool: %s: %s routed by "
				       "%s to %s", d->env.id, dom, by, route);
				host_next(d);
				return;
			}
			gh_log(GH_LOG_WARN, "spool: %s: %s: get_mx answer "
			       "\"%s\" names no host: DNS decides", d->env.id,
			       by, route);
		}
		break;
	case GH_DENY:
	case GH_DENYDISCONNECT:
		getmx_refused(d, o, 550, "5.4.4", dom, by);
		return;
	case GH_DENYSOFT:
	case GH_DENYSOFTDISCONNECT:
	case GH_DISCONNECT:
		getmx_refused(d, o, 451, "4.4.3", dom, by);
		return;
	default:
		break;
	}
	mx_lookup(d);
}

static void
route_start(struct dlv *d)
{
	struct gh_runtime *rt = d->sp->p->rt;
	const char *dom = d->legs[d->cur].domain;
	struct gh_call proto;
	struct gh_chain *ch;

	d->nhosts = d->hi = 0;
	d->implicit = 0;
	memset(&d->fail, 0, sizeof(d->fail));
	/* An address literal is its own host (RFC 5321 5.1). */
	if (dom[0] == '[') {
		char ip[64];

		if (!ip_text(dom, ip, sizeof(ip))) {
			leg_fail(d, 550, "5.1.2", "Bad address literal %s",
				 dom);
			return;
		}
		host_add(d, ip, strlen(ip), (int)d->sp->cf->mx_port, 0);
		host_next(d);
		return;
	}
	if (rt == NULL || !gh_runtime_has_hook(rt, GH_HOOK_GET_MX)) {
		mx_lookup(d);
		return;
	}
	gh_note_set(d->t->notes, "get_mx", "");
	memset(&proto, 0, sizeof(proto));
	proto.conn = d->gc;
	proto.txn = d->t;
	proto.hook = GH_HOOK_GET_MX;
	proto.arg = dom;
	/* done may run (and free d) before this returns: only a pending
	 * chain's handle is kept. */
	if ((ch = gh_chain_run(rt, &proto, getmx_done, d)) != NULL)
		d->ch = ch;
}

/* The next destination with recipients to do, or the end. */
/* The next hop as a DSN's Remote-MTA names it (RFC 3464 2.3.5, "dns;"
 * and a host): its name, or its address as a literal (RFC 5321 4.1.3),
 * no port; nothing for a Unix socket, which has no such name. */
static void
mta_name(char *dst, size_t n, const struct spool_conf *cf)
{
	unsigned char a[16];

	if (cf->socket != NULL && cf->socket[0] != '\0')
		dst[0] = '\0';
	else if (inet_pton(AF_INET, cf->host, a) == 1)
		snprintf(dst, n, "[%s]", cf->host);
	else if (inet_pton(AF_INET6, cf->host, a) == 1)
		snprintf(dst, n, "[IPv6:%s]", cf->host);
	else
		snprintf(dst, n, "%s", cf->host);
}

static void
leg_next(struct dlv *d)
{
	struct gh_rcpt *gr;
	size_t i, n = 0;

	for (; d->cur < d->nlegs; d->cur++) {
		n = 0;
		for (i = 0, gr = d->t->rcpts; i < d->env.nrcpts &&
		    gr != NULL; i++, gr = gr->next) {
			gr->removed = d->rs[i].leg != d->cur ||
			    d->rs[i].state != R_PENDING;
			n += !gr->removed;
		}
		if (n > 0)
			break;
	}
	if (d->cur >= d->nlegs) {
		dlv_finish(d);
		return;
	}
	d->round = 0;
	if (d->legs[d->cur].domain[0] == '\0') {
		d->pool = d->sp->pool;
		d->nhosts = 0;
		snprintf(d->hop, sizeof(d->hop), "%s",
			 smtpc_pool_name(d->pool));
		mta_name(d->mta, sizeof(d->mta), d->sp->cf);
		dlv_send(d);
		return;
	}
	route_start(d);
}

/* Group the recipients by destination: one leg for the next hop, or
 * one per domain (lower case) for MX delivery.  0 or -1. */
static int
legs_make(struct dlv *d)
{
	size_t i, j, k;

	if ((d->legs = calloc(d->env.nrcpts, sizeof(*d->legs))) == NULL)
		return -1;
	if (d->env.route != SPOOLQ_ROUTE_MX) {
		d->nlegs = 1;
		return 0;
	}
	for (i = 0; i < d->env.nrcpts; i++) {
		const char *at = strrchr(d->env.rcpts[i], '@');
		char dom[256];

		/* <postmaster> has no domain: it is the next hop's. */
		k = 0;
		if (at != NULL && strlen(at + 1) < sizeof(dom))
			for (; at[k + 1] != '\0'; k++)
				dom[k] = (char)tolower(
				    (unsigned char)at[k + 1]);
		dom[k] = '\0';
		for (j = 0; j < d->nlegs; j++)
			if (strcmp(d->legs[j].domain, dom) == 0)
				break;
		if (j == d->nlegs)
			snprintf(d->legs[d->nlegs++].domain,
				 sizeof(d->legs[0].domain), "%s", dom);
		d->rs[i].leg = j;
	}
	return 0;
}

static void
fill_params(struct gh_path *p, char *params, off_t size)
{
	char *tok, *save = NULL, *eq;

	for (tok = strtok_r(params, " ", &save); tok != NULL &&
	    p->nparams < GH_MAX_PARAMS - 1; tok = strtok_r(NULL, " ", &save)) {
		if ((eq = strchr(tok, '=')) != NULL)
			*eq++ = '\0';
		p->params[p->nparams].key = tok;
		p->params[p->nparams++].value = eq;
	}
	(void)size;
}

static void
addr_set(struct gh_pool *pool, struct gh_addr *a, const char *mailbox)
{
	const char *at = strrchr(mailbox, '@');

	a->mailbox = gh_pstrdup(pool, mailbox);
	a->local = at != NULL ? gh_pstrndup(pool, mailbox,
	    (size_t)(at - mailbox)) : a->mailbox;
	a->domain = at != NULL ? gh_pstrdup(pool, at + 1) : NULL;
	a->is_null = mailbox[0] == '\0';
}

/* The transaction smtpc sends: envelope and octets from the file. */
static int
dlv_build(struct dlv *d)
{
	struct gh_message_limits lim;
	struct gh_txn *t;
	struct gh_rcpt **tail;
	char buf[65536];
	off_t pos = d->env.msg_off, end = d->env.msg_off + d->env.msg_len;
	ssize_t n;
	size_t i, want;

	if ((d->gc = gh_conn_new(d->sp->p->base)) == NULL)
		return -1;
	d->gc->hostname = gh_pstrdup(d->gc->pool, d->env.host);
	t = d->t = gh_txn_new(d->gc);
	/* Plugins (get_mx) see the queue id. */
	t->id = gh_pstrdup(t->pool, d->env.id);
	t->mail_from = gh_palloc(t->pool, sizeof(*t->mail_from));
	addr_set(t->pool, &t->mail_from->addr, d->env.from);
	fill_params(t->mail_from, gh_pstrdup(t->pool, d->env.params),
		    d->env.msg_len);
	t->mail_from->params[t->mail_from->nparams].key = "SIZE";
	t->mail_from->params[t->mail_from->nparams++].value =
	    gh_psprintf(t->pool, "%lld", (long long)d->env.msg_len);
	tail = &t->rcpts;
	for (i = 0; i < d->env.nrcpts; i++) {
		struct gh_rcpt *r = gh_palloc(t->pool, sizeof(*r));

		addr_set(t->pool, &r->path.addr, d->env.rcpts[i]);
		*tail = r;
		tail = &r->next;
		t->nrcpts++;
	}
	memset(&lim, 0, sizeof(lim));
	lim.mem_threshold = 1024 * 1024;
	/* What relayd stored is what goes out: no header bound may cut
	 * it (past a bound the message store stops keeping octets). */
	lim.max_header_line = lim.max_header_size = 256 * 1024 * 1024;
	lim.tmpdir = d->sp->tdir;
	t->msg = gh_msg_new(t->pool, &lim);
	while (pos < end) {
		want = sizeof(buf);
		if ((off_t)want > end - pos)
			want = (size_t)(end - pos);
		if ((n = pread(d->fd, buf, want, pos)) <= 0)
			return -1;
		if (gh_msg_write(t->msg, buf, (size_t)n) != GH_MSG_OK)
			return -1;
		pos += n;
	}
	return gh_msg_finish(t->msg) == GH_MSG_OK ? 0 : -1;
}

/* Deliver the queue file open (and locked) on fd; takes fd and env. */
static void
dlv_start(struct spool *sp, int fd, const char *path, struct spoolq_env *env)
{
	struct dlv *d;

	if (sp->closing || sp->ndlv >= (size_t)sp->cf->max_deliveries ||
	    (d = calloc(1, sizeof(*d))) == NULL) {
		/* A scan takes it when a slot is free. */
		close(fd);
		spoolq_env_free(env);
		sp->starved = 1;
		return;
	}
	d->sp = sp;
	d->fd = fd;
	memcpy(d->path, path, strnlen(path, sizeof(d->path) - 1));
	d->env = *env;
	memset(env, 0, sizeof(*env));
	TAILQ_INSERT_TAIL(&sp->dlvs, d, entry);
	sp->ndlv++;
	if (d->env.nrcpts == 0) {
		unlink(d->path);
		dlv_free(d);
		return;
	}
	if ((d->rs = calloc(d->env.nrcpts, sizeof(*d->rs))) == NULL ||
	    dlv_build(d) != 0 || legs_make(d) != 0) {
		gh_log(GH_LOG_ERR, "spool: %s: cannot read the message: %s",
		       d->env.id, strerror(errno));
		dlv_free(d);
		return;
	}
	gh_log(GH_LOG_DEBUG, "spool: delivering %s (attempt %lld) to %s",
	       d->env.id, d->env.attempts + 1, d->env.route ==
	       SPOOLQ_ROUTE_MX ? "the recipients' MX hosts" :
	       smtpc_pool_name(sp->pool));
	leg_next(d);
}

/* ------------------------------------------------------------------ */
/* The scanner.                                                        */

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
owned_here(const struct spool *sp, const char *path)
{
	const struct dlv *d;

	TAILQ_FOREACH(d, &sp->dlvs, entry)
		if (strcmp(d->path, path) == 0)
			return 1;
	return 0;
}

/* Temporary files nobody holds are what a crash left: never
 * acknowledged, so removed (and files kept for reuse in DIR/free, which
 * are no news: quiet).  At start-up all of them; later only those
 * older than min_age seconds, since a file is created a moment before
 * its writer locks it (and a worker killed inside a sync may hold its
 * files past the next one's start). */
static void
clean_dir(const char *dir, time_t min_age, int quiet)
{
	DIR *dp = opendir(dir);
	struct dirent *de;
	struct stat st;
	char path[PATH_MAX];
	time_t now = time(NULL);
	int fd;

	if (dp == NULL)
		return;
	while ((de = readdir(dp)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (path_join(path, sizeof(path), dir, de->d_name) != 0)
			continue;
		if (min_age > 0 && (stat(path, &st) != 0 ||
		    now - st.st_mtime < min_age))
			continue;
		if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			continue;
		if (flock(fd, LOCK_EX | LOCK_NB) == 0) {
			if (!quiet)
				gh_log(GH_LOG_INFO, "spool: removing "
				       "unfinished %s", path);
			unlink(path);
		}
		close(fd);
	}
	closedir(dp);
}

/* FNV-1a, 32 bits: spreads the ids over the shares. */
static uint32_t
name_hash(const char *s)
{
	uint32_t h = 2166136261u;

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

/*
 * Is this queue file ours to scan?  relayd's master gives each worker a
 * share of the queue (gh_worker_share: share s of n takes the ids whose
 * hash is s modulo n) and a dead worker's share to its replacement, so
 * a message has one owner and a crash hands its files on at once.  The
 * flock stays the guarantee (generations overlap during a reload, and a
 * fresh message is delivered first by the worker that took it).  A
 * file untouched for longer than the longest retry wait and a few scans
 * is taken by anyone: its owner cannot be running.
 */
static int
my_share(const struct spool *sp, const char *name, const char *path,
	 time_t now)
{
	struct stat st;
	long long longest = sp->nretry == 0 ? 3600 : 0, stale;
	size_t i;

	if (sp->nshares <= 1 ||
	    name_hash(name) % (uint32_t)sp->nshares == (uint32_t)sp->share)
		return 1;
	for (i = 0; i < sp->nretry; i++)
		if (sp->retry[i] > longest)
			longest = sp->retry[i];
	stale = longest + 3 * sp->cf->scan_interval + 60;
	return stat(path, &st) == 0 && (long long)(now - st.st_mtime) > stale;
}

static void
scan_file(struct spool *sp, const char *name, time_t now, int any_share)
{
	struct spoolq_env env;
	struct stat st;
	char path[PATH_MAX], why[256];
	int fd;

	if (path_join(path, sizeof(path), sp->qdir, name) != 0)
		return;
	if (owned_here(sp, path) ||
	    (!any_share && !my_share(sp, name, path, now)))
		return;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		return;
	if (flock(fd, LOCK_EX | LOCK_NB) != 0 || fstat(fd, &st) != 0 ||
	    !same_file(path, &st)) {
		/* Another worker owns it, or it is gone since (removed,
		 * replaced, or retired for reuse). */
		close(fd);
		return;
	}
	if (spoolq_load(fd, &env, !sp->scanned_once, why, sizeof(why)) != 0) {
		move_corrupt(sp, path, name, why);
		close(fd);
		return;
	}
	/* Every writer names a file after its envelope's id.  A file that
	 * says otherwise is a reused one (file_reuse) whose new message was
	 * written, but whose renames a crash undid: the old name came back
	 * over a message never acknowledged, which its client sends again. */
	if (strcmp(env.id, name) != 0) {
		snprintf(why, sizeof(why), "it holds message %s", env.id);
		spoolq_env_free(&env);
		move_corrupt(sp, path, name, why);
		close(fd);
		return;
	}
	/* A worker tries every message not held that was last written
	 * before it started: new workers start at relayd's start and on
	 * SIGHUP, which so flushes the queue.  What it wrote itself since
	 * follows the retry schedule. */
	if (env.hold || (env.next > (long long)now &&
	    (st.st_mtim.tv_sec > sp->started.tv_sec ||
	    (st.st_mtim.tv_sec == sp->started.tv_sec &&
	    st.st_mtim.tv_nsec >= sp->started.tv_nsec)))) {
		spoolq_env_free(&env);
		close(fd);
		return;
	}
	if (sp->scanned_once) {
		spoolq_env_free(&env);
		if (spoolq_load(fd, &env, 1, why, sizeof(why)) != 0) {
			move_corrupt(sp, path, name, why);
			close(fd);
			return;
		}
	}
	dlv_start(sp, fd, path, &env);
}

static void
scan(evutil_socket_t fd, short what, void *arg)
{
	struct spool *sp = arg;
	struct timeval tv = { (time_t)sp->cf->scan_interval, 0 };
	DIR *dp;
	struct dirent *de;
	char **names = NULL;
	size_t n = 0, cap = 0, i;
	time_t now = time(NULL);

	(void)fd;
	(void)what;
	evtimer_add(sp->scan_ev, &tv);
	clean_dir(sp->tdir, sp->scanned_once ? TMP_MIN_AGE : 0, 0);
	/* Files kept for reuse (file_retire) are no news. */
	clean_dir(sp->fdir, sp->scanned_once ? TMP_MIN_AGE : 0, 1);
	if ((dp = opendir(sp->qdir)) == NULL) {
		gh_log(GH_LOG_ERR, "spool: %s: %s", sp->qdir, strerror(errno));
		return;
	}
	while ((de = readdir(dp)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (n == cap) {
			char **v = realloc(names, (cap ? cap * 2 : 64) *
			    sizeof(*v));

			if (v == NULL)
				break;
			names = v;
			cap = cap ? cap * 2 : 64;
		}
		if ((names[n] = strdup(de->d_name)) == NULL)
			break;
		n++;
	}
	closedir(dp);
	/* Ids sort by arrival: the oldest go first.  (An empty queue has
	 * no array at all, and qsort must not see a NULL.) */
	if (n > 1)
		qsort(names, n, sizeof(*names), name_cmp);
	for (i = 0; i < n; i++) {
		if (sp->ndlv < (size_t)sp->cf->max_deliveries ||
		    !sp->scanned_once)
			scan_file(sp, names[i], now, 0);
		else
			sp->starved = 1;
		free(names[i]);
	}
	free(names);
	sp->scanned_once = 1;
}

/* Delivery slots came free: the messages accepted meanwhile first,
 * oldest first.  (An event, not a call from dlv_free, which runs deep
 * in delivery callbacks.)  A file gone, or locked by a worker that
 * took it from the queue since, is skipped by scan_file. */
static void
fresh_run(evutil_socket_t fd, short what, void *arg)
{
	struct spool *sp = arg;
	struct fresh *f;
	time_t now = time(NULL);

	(void)fd;
	(void)what;
	while (!sp->closing && sp->ndlv < (size_t)sp->cf->max_deliveries &&
	    (f = TAILQ_FIRST(&sp->fresh)) != NULL) {
		TAILQ_REMOVE(&sp->fresh, f, entry);
		sp->nfresh--;
		scan_file(sp, f->name, now, 1);
		free(f);
	}
}

/* A delivery slot came free, or a message could not be taken now. */
static void
scan_soon(struct spool *sp)
{
	struct timeval tv = { 1, 0 };
	struct timeval left;

	if (sp->scan_ev == NULL)
		return;
	/* Within a second, not in a tight loop over a busy queue. */
	if (evtimer_pending(sp->scan_ev, &left)) {
		struct timeval now;

		evutil_gettimeofday(&now, NULL);
		if (left.tv_sec - now.tv_sec <= 1)
			return;
	}
	evtimer_add(sp->scan_ev, &tv);
}

/* `relayd -q flush` wrote DIR/flush: scan now, not at scan_interval. */
static void
flush_read(evutil_socket_t fd, short what, void *arg)
{
	struct spool *sp = arg;
	char buf[4096]
	    __attribute__((aligned(__alignof__(struct inotify_event))));
	const struct inotify_event *ev;
	ssize_t n;
	size_t off;
	int flush = 0;

	(void)what;
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (off = 0; off + sizeof(*ev) <= (size_t)n;
		     off += sizeof(*ev) + ev->len) {
			ev = (const struct inotify_event *)(buf + off);
			if (ev->len > 0 && strcmp(ev->name, "flush") == 0)
				flush = 1;
		}
	if (flush && !sp->closing) {
		struct timeval now = { 0, 0 };

		gh_log(GH_LOG_INFO, "spool: flush requested: scanning the "
		       "queue");
		evtimer_add(sp->scan_ev, &now);
	}
}

/* Without the watch, flushed mail waits for scan_interval: not fatal. */
static void
flush_watch(struct spool *sp)
{
	sp->ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (sp->ino < 0 || inotify_add_watch(sp->ino, sp->cf->dir,
	    IN_CLOSE_WRITE | IN_MOVED_TO) < 0 ||
	    (sp->ino_ev = event_new(sp->p->base, sp->ino, EV_READ |
	    EV_PERSIST, flush_read, sp)) == NULL ||
	    event_add(sp->ino_ev, NULL) != 0)
		gh_log(GH_LOG_WARN, "spool: cannot watch %s/flush (%s): "
		       "relayd -q flush waits for scan_interval",
		       sp->cf->dir, strerror(errno));
}

/* ------------------------------------------------------------------ */
/* Start and stop.                                                     */

static int
parse_duration(const char *s, long long *out)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || errno != 0 || v < 0)
		return -1;
	switch (*end) {
	case '\0':
	case 's':
		break;
	case 'm':
		v *= 60;
		break;
	case 'h':
		v *= 3600;
		break;
	case 'd':
		v *= 86400;
		break;
	default:
		return -1;
	}
	if (*end != '\0' && end[1] != '\0')
		return -1;
	*out = v;
	return 0;
}

static int
mkdir_p(const char *path, char *err, size_t errlen)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		snprintf(err, errlen, "spool: %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

static void
spool_fini(struct gh_plugin *p)
{
	struct spool *sp = p->data;
	struct dlv *d;
	struct ntf *n;
	struct mxpool *m;
	struct fresh *f;

	if (sp == NULL)
		return;
	sp->closing = 1;
	if (sp->thr_started) {
		pthread_mutex_lock(&sp->mu);
		sp->stop = 1;
		pthread_cond_signal(&sp->cv);
		pthread_mutex_unlock(&sp->mu);
		pthread_join(sp->thr, NULL);
		jobs_done(sp);
	}
	while ((d = TAILQ_FIRST(&sp->dlvs)) != NULL)
		dlv_free(d);
	while ((n = TAILQ_FIRST(&sp->ntfs)) != NULL)
		ntf_free(n);
	while ((m = LIST_FIRST(&sp->mxpools)) != NULL) {
		LIST_REMOVE(m, entry);
		smtpc_pool_free(m->pool);
		free(m);
	}
	while ((f = TAILQ_FIRST(&sp->fresh)) != NULL) {
		TAILQ_REMOVE(&sp->fresh, f, entry);
		free(f);
	}
	if (sp->fresh_ev != NULL)
		event_free(sp->fresh_ev);
	if (sp->scan_ev != NULL)
		event_free(sp->scan_ev);
	if (sp->ino_ev != NULL)
		event_free(sp->ino_ev);
	if (sp->ino >= 0)
		close(sp->ino);
	if (sp->wake_ev != NULL)
		event_free(sp->wake_ev);
	if (sp->wake[0] >= 0)
		close(sp->wake[0]);
	if (sp->wake[1] >= 0)
		close(sp->wake[1]);
	if (sp->pool != NULL)
		smtpc_pool_free(sp->pool);
	if (sp->qdirfd >= 0)
		close(sp->qdirfd);
	if (sp->thr_started) {
		pthread_mutex_destroy(&sp->mu);
		pthread_cond_destroy(&sp->cv);
	}
	files_drop(sp);
	free(sp->retry);
	free(sp);
	p->data = NULL;
}

static int
spool_init(struct gh_plugin *p, char *err, size_t errlen)
{
	const struct spool_conf *cf = p->conf;
	struct spool *sp = calloc(1, sizeof(*sp));
	struct smtpc_dest d;
	struct timeval now = { 0, 0 };
	size_t i;

	if (sp == NULL) {
		snprintf(err, errlen, "spool: out of memory");
		return -1;
	}
	p->data = sp;
	sp->p = p;
	sp->cf = cf;
	clock_gettime(CLOCK_REALTIME, &sp->started);
	gh_worker_share(&sp->share, &sp->nshares);
	if (sp->nshares > 1)
		gh_log(GH_LOG_INFO, "spool: this worker delivers share %d of "
		       "%d of the queue", sp->share, sp->nshares);
	sp->rng = (uint32_t)sp->started.tv_nsec ^ (uint32_t)getpid() ^
	    (uint32_t)sp->started.tv_sec;
	if (sp->rng == 0)
		sp->rng = 1;
	sp->free_tag = rng_next(sp);
	sp->qdirfd = sp->wake[0] = sp->wake[1] = sp->ino = -1;
	TAILQ_INIT(&sp->todo);
	TAILQ_INIT(&sp->done);
	TAILQ_INIT(&sp->dlvs);
	TAILQ_INIT(&sp->fresh);
	TAILQ_INIT(&sp->ntfs);
	LIST_INIT(&sp->mxpools);
	if ((sp->retry = calloc(cf->retry.n + 1, sizeof(*sp->retry))) == NULL)
		goto oom;
	for (i = 0; i < cf->retry.n; i++)
		if (parse_duration(cf->retry.v[i], &sp->retry[i]) != 0) {
			snprintf(err, errlen, "spool: retry: \"%s\" is not a "
				 "duration (seconds, or with s, m, h, d)",
				 cf->retry.v[i]);
			return -1;
		}
	sp->nretry = cf->retry.n;
	if (cf->dir[0] != '/') {
		snprintf(err, errlen, "spool: dir \"%s\" must be an absolute "
			 "path", cf->dir);
		return -1;
	}
	snprintf(sp->qdir, sizeof(sp->qdir), "%s/queue", cf->dir);
	snprintf(sp->tdir, sizeof(sp->tdir), "%s/tmp", cf->dir);
	snprintf(sp->cdir, sizeof(sp->cdir), "%s/corrupt", cf->dir);
	snprintf(sp->fdir, sizeof(sp->fdir), "%s/free", cf->dir);
	if (mkdir_p(cf->dir, err, errlen) != 0 ||
	    mkdir_p(sp->qdir, err, errlen) != 0 ||
	    mkdir_p(sp->tdir, err, errlen) != 0 ||
	    mkdir_p(sp->cdir, err, errlen) != 0 ||
	    mkdir_p(sp->fdir, err, errlen) != 0)
		return -1;
	if ((sp->qdirfd = open(sp->qdir, O_RDONLY | O_DIRECTORY |
	    O_CLOEXEC)) < 0) {
		snprintf(err, errlen, "spool: %s: %s", sp->qdir,
			 strerror(errno));
		return -1;
	}
	memset(&d, 0, sizeof(d));
	d.proto = cf->protocol == PROTO_LMTP ? SMTPC_LMTP : SMTPC_SMTP;
	d.host = cf->host;
	d.port = (int)cf->port;
	if (smtpc_dest_socket(&d, "spool", cf->socket, err, errlen) != 0)
		return -1;
	smtpc_dest_timeouts(&d, &cf->to);
	d.max_connections = cf->max_connections;
	/* As smtp_forward: a certificate check means something only when
	 * failing it stops the mail (RFC 7435). */
	if ((cf->tls_verify && cf->tls != SMTPC_TLS_REQUIRED) ||
	    (cf->mx_tls_verify && cf->mx_tls != SMTPC_TLS_REQUIRED)) {
		snprintf(err, errlen, "spool: %s needs %s = \"required\" "
			 "(opportunistic TLS checks no certificate: RFC 7435)",
			 cf->tls_verify && cf->tls != SMTPC_TLS_REQUIRED ?
			 "tls_verify" : "mx_tls_verify",
			 cf->tls_verify && cf->tls != SMTPC_TLS_REQUIRED ?
			 "tls" : "mx_tls");
		return -1;
	}
	/* No TLS on a Unix socket: the hop is this machine. */
	d.tls = d.path != NULL ? SMTPC_TLS_OFF : (enum smtpc_tls)cf->tls;
	d.tls_verify = cf->tls_verify;
	d.tls_ca = cf->tls_ca;
	d.tls_verify_name = cf->tls_verify_name;
	if ((sp->pool = smtpc_pool_new(p->base, &d, err, errlen)) == NULL)
		return -1;
	if (pipe2(sp->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		snprintf(err, errlen, "spool: pipe: %s", strerror(errno));
		return -1;
	}
	if ((sp->wake_ev = event_new(p->base, sp->wake[0], EV_READ |
	    EV_PERSIST, wake_read, sp)) == NULL ||
	    event_add(sp->wake_ev, NULL) != 0 ||
	    (sp->scan_ev = evtimer_new(p->base, scan, sp)) == NULL ||
	    (sp->fresh_ev = evtimer_new(p->base, fresh_run, sp)) == NULL)
		goto oom;
	/* A full disk under `prlimit --fsize` must be an error we answer
	 * (EFBIG, 452), not a signal that kills the worker. */
	signal(SIGXFSZ, SIG_IGN);
	pthread_mutex_init(&sp->mu, NULL);
	pthread_cond_init(&sp->cv, NULL);
	if (pthread_create(&sp->thr, NULL, committer, sp) != 0) {
		pthread_mutex_destroy(&sp->mu);
		pthread_cond_destroy(&sp->cv);
		snprintf(err, errlen, "spool: cannot start the commit thread");
		return -1;
	}
	sp->thr_started = 1;
	flush_watch(sp);
	/* The first scan runs once the loop does: it checks every queue
	 * file and removes what a crash left in tmp/. */
	evtimer_add(sp->scan_ev, &now);
	return 0;
oom:
	snprintf(err, errlen, "spool: out of memory");
	return -1;
}

static const struct gh_hook_entry spool_hooks[] = {
	{ GH_HOOK_QUEUE, spool_queue },
	{ 0, NULL }
};

static const char spool_doc[] =
"spool - queue each message durably, then deliver it with retries.\n"
"\n"
"At the queue hook the message and its envelope are written to a queue\n"
"file in DIR/tmp, made durable (fdatasync), renamed into DIR/queue and\n"
"the directory fsynced (one fsync for all the transactions committing\n"
"at the same time); only then does the client get\n"
"\n"
"  250 2.0.0 Message accepted: ID queued\n"
"\n"
"A failure to write or sync answers 452 4.3.1 when the disk is full\n"
"(ENOSPC, EDQUOT, EFBIG), else 451 4.3.0: never 250 for a message that\n"
"is not stored.  The syncs run in a thread, so the event loop never\n"
"waits for the disk.\n"
"\n"
"A queue file carries its length, an end marker and a CRC-32: a file\n"
"torn by a crash or a bad disk is moved to DIR/corrupt with a log line\n"
"when it is read (every file is checked at start-up), never delivered\n"
"half.  Temporary files left by a crash were never acknowledged and are\n"
"removed.  A delivered file of up to 64 KB is moved to DIR/free and\n"
"overwritten by a later message (cheaper than a new file and removing\n"
"the old); files idle there for 10 minutes, and a stopping worker's, are\n"
"removed.\n"
"\n"
"Delivery.  The worker that accepted a message delivers it at once to\n"
"the next hop (host:port or socket, SMTP or LMTP) through the pooled\n"
"client shared with smtp_forward.  The master gives each worker a\n"
"share of the queue (the ids whose hash falls to it); every worker\n"
"scans DIR/queue every scan_interval seconds, oldest first, for the\n"
"messages of its share whose next attempt is due.  A worker started at\n"
"start-up or by SIGHUP also tries every message of its share not held\n"
"that it did not write itself: a flush.  When a worker dies the master\n"
"starts a replacement with the same share, so its files are taken at\n"
"once.  A worker holds an exclusive flock() on a queue file while it\n"
"owns it, so each message has one owner even while an old generation\n"
"drains after a reload; a file nobody touched for the longest retry\n"
"wait and a few scans is taken by any worker.  Per recipient:\n"
"\n"
"  2xx                 delivered, done\n"
"  5xx                 bounced (a delivery status notification)\n"
"  4xx, no answer      retried after the next wait of `retry`; the\n"
"                      file is replaced by one with the recipients left\n"
"  still 4xx after     bounced with Status 4.4.7\n"
"  max_lifetime\n"
"\n"
"A recipient refused at RCPT does not hold back the others: the message\n"
"is sent again at once to the recipients the hop took.\n"
"\n"
"Bounces are RFC 3464 reports (multipart/report;\n"
"report-type=delivery-status) from the null sender to the sender, with\n"
"Reporting-MTA, Final-Recipient, Action: failed, Status and\n"
"Diagnostic-Code per recipient and the original headers\n"
"(text/rfc822-headers).  They are queued here, durably, before the\n"
"original is changed.  A message from the null sender never bounces\n"
"(RFC 5321 4.5.5).  A bounce that cannot be delivered goes to\n"
"`postmaster` once; if that fails too, or no postmaster is set, it is\n"
"dropped with a log line.\n"
"\n"
"Operating the queue (the configuration's spool dir):\n"
"\n"
"  relayd -q list [-c file]          id, age, size, attempts, next\n"
"                                    attempt, sender, recipients, last\n"
"                                    error\n"
"  relayd -q count                   messages, recipients, deferred,\n"
"                                    held\n"
"  relayd -q flush [domain]          due now (\".domain\": subdomains\n"
"                                    too); writes DIR/flush, which the\n"
"                                    workers watch: they scan at once\n"
"  relayd -q hold ID | release ID    stop / resume delivering it\n"
"  relayd -q delete ID               remove it, no bounce\n"
"\n"
"MX routing.  With outbound = \"mx\", mail from a client that may relay\n"
"(relay's clients, authenticated users: conn->relaying when it was\n"
"queued) is delivered to each recipient domain's mail exchangers\n"
"(RFC 5321 5.1); all other mail, and every bounce, goes to the next\n"
"hop.  The recipients are grouped by domain, one transaction per\n"
"domain, each recipient with its own outcome.  Per domain:\n"
"\n"
"  get_mx hook         runs first: a plugin may answer OK with the note\n"
"                      \"get_mx\" = \"HOST[:PORT] ...\" (tried in that\n"
"                      order), DENY (bounce 5.4.4) or DENYSOFT (retry,\n"
"                      4.4.3), with the plugin's own reply text and\n"
"                      enhanced code, when it gives them, as the\n"
"                      bounce's reason; CONT leaves it to DNS\n"
"  MX records          tried by preference (equal ones in random order);\n"
"                      a host that refuses the connection, does not\n"
"                      answer or greets with 4xx/5xx is skipped for the\n"
"                      next address, then the next MX; our own name\n"
"                      (relayd's hostname) and every host not more\n"
"                      preferred are dropped, 550 5.4.6 if none is left\n"
"  no MX record        the domain's own A (or AAAA) address\n"
"  null MX \".\"         bounced at once, 556 5.1.10 (RFC 7505), no retry\n"
"  no such domain      bounced, 550 5.1.2\n"
"  DNS failure         retried (451 4.4.3)\n"
"  [address literal]   that address\n"
"\n"
"MX hosts are reached on mx_port (25).  Each MX host address has its\n"
"own pool of at most max_per_destination connections per worker; idle\n"
"ones serve the next message for idle_timeout seconds.\n"
"\n"
"Hooks.  After every attempt the deferred, bounce and delivered hooks\n"
"run once per recipient (every plugin, verdicts ignored) with the\n"
"queue id as txn->id, the recipient as rcpt, the reply as arg and the\n"
"txn note \"spool.hop\" naming the host that answered (see filter.h).\n"
"\n"
"TLS.  STARTTLS (RFC 3207) to the next hop follows `tls`, to MX hosts\n"
"`mx_tls`: opportunistic by default (used when offered, nothing\n"
"checked, RFC 7435; a failed handshake is retried in clear).  With\n"
"\"required\" nothing goes out in clear: 451 4.7.x, the next MX host,\n"
"then a retry.  tls_verify (next hop: tls_verify_name or host) and\n"
"mx_tls_verify (the name in the MX record) also check the certificate\n"
"against tls_ca, 451 4.7.5 when it fails; no DANE or MTA-STS yet.\n"
"\n"
"Not done yet: DSN parameters of RFC 3461 (NOTIFY, RET, ORCPT, ENVID).\n"
"\n"
"Example:\n"
"\n"
"  plugins = [ \"host_list\", \"spool\" ];\n"
"  spool = {\n"
"    dir = \"/var/spool/gatehouse\";\n"
"    host = \"127.0.0.1\"; port = 25;\n"
"    retry = [ \"5m\", \"10m\", \"20m\", \"40m\", \"1h\" ];\n"
"    postmaster = \"postmaster@example.org\";\n"
"    outbound = \"mx\";   # relay's clients and AUTH users go direct\n"
"  };\n";

const struct gh_module gh_module_spool = {
	.abi = GH_ABI_VERSION,
	.name = "spool",
	.description = "durable queue: 250 only once stored and synced; "
	    "delivery with retries and RFC 3464 bounces",
	.doc = spool_doc,
	.directives = spool_directives,
	.conf_size = sizeof(struct spool_conf),
	.hooks = spool_hooks,
	.init = spool_init,
	.fini = spool_fini,
	.edits = GH_EDITS_DELRCPT,
};
