/*
 * main.c - milterd's command line, configuration, generations and signals.
 *
 * milterd reads the same kind of file as relayd: its own `milterd` group,
 * `log`, `dns` (each loop thread gets its own resolver), `plugins`,
 * `plugin_dir` and the plugins' groups (the `relayd` group is skipped, so
 * one file can serve both hosts).  A generation (milterd.h) is one
 * reading of the file: `threads` loop threads, each with its own copy of
 * the configuration and its own plugin runtime.
 *
 * Threads: libmilter's smfi_main runs on a thread of its own; its signal
 * thread turns SIGTERM and SIGINT into a clean stop (smfi_main returns,
 * the loop threads finish their queued jobs, plugins' fini run, exit 0).
 * libmilter would stop on SIGHUP too, so SIGHUP is left unblocked in the
 * main thread only, with a handler: Linux hands a signal sent to the
 * process to its main thread when that thread does not block it, before
 * any thread waiting for it in sigwait(2).  SIGTERM and SIGINT come to the
 * main thread the same way, only to be passed on: it blocks them and
 * sends the signal again, now for libmilter's signal thread, and then
 * connects to its own socket until smfi_main has returned.  libmilter's
 * listener only looks at its stop flag between polls of five seconds;
 * the connection ends the poll at once.  The main thread then reloads:
 * it reads and checks the file and starts every plugin of a new
 * generation (as -t does); on any error it keeps the running one and logs
 * the reason with FILE:LINE.  New sessions go to the new generation,
 * sessions in progress finish on the old one, whose threads stop after its
 * last session closed.  The socket is opened once: a new `socket` or
 * `socket_mode` takes effect at the next start.
 */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <libmilter/mfapi.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "milterd.h"

#ifndef GH_SYSCONFDIR
#define GH_SYSCONFDIR "/etc/gatehouse"
#endif
#ifndef GH_PLUGIN_DIR
#define GH_PLUGIN_DIR "/usr/local/lib/gatehouse/plugins"
#endif

static const char *const fail_choices[] = {
	"tempfail", "reject", "accept", NULL
};
static const char *const level_choices[] = {
	"error", "warning", "info", "debug", "protocol", NULL
};

#define MD(f) offsetof(struct milterd_conf, f)

static const struct gh_directive milterd_directives[] = {
	{ "socket", GH_DT_STRING, MD(socket),
	  "\"unix:/run/gatehouse/milterd.sock\"", 0, 0, NULL,
	  "where the MTA connects: \"unix:/path\" or \"inet:port@host\" "
	  "(Postfix writes the latter inet:host:port)" },
	{ "socket_mode", GH_DT_STRING, MD(socket_mode), "\"\"", 0, 0, NULL,
	  "octal permissions for a Unix socket, e.g. \"0660\" (empty: as "
	  "the umask makes it)" },
	{ "threads", GH_DT_INT, MD(threads), "2", 1, MILTERD_MAX_THREADS,
	  NULL, "loop threads running the plugins; each session stays on "
	  "one" },
	{ "reply_timeout", GH_DT_INT, MD(reply_timeout), "20", 1, 3600,
	  NULL, "seconds a callback waits for the plugins; keep it below "
	  "the MTA's (Postfix milter_command_timeout, 30 s)" },
	{ "eom_timeout", GH_DT_INT, MD(eom_timeout), "120", 1, 3600, NULL,
	  "seconds end of message waits for the plugins, with progress "
	  "sent to the MTA every 10 s" },
	{ "fail_action", GH_DT_ENUM, MD(fail_action), "\"tempfail\"", 0, 0,
	  fail_choices, "the answer when the plugins miss a deadline: "
	  "tempfail (451 4.7.1), reject (550 5.7.1) or accept" },
	{ "body_max", GH_DT_INT, MD(body_max), "10485760", 0,
	  2147483647LL, NULL, "body octets kept for plugins; past it the "
	  "MTA is asked to skip the rest (SMFIS_SKIP)" },
	{ "max_header_size", GH_DT_INT, MD(max_header_size), "1048576",
	  1024, 16777216, NULL, "largest header block kept; larger is "
	  "refused with 552 5.3.4" },
	{ "spool_threshold", GH_DT_INT, MD(spool_threshold), "1048576",
	  4096, 1073741824LL, NULL,
	  "message octets held in memory before moving to a temporary file" },
	{ "tmp_dir", GH_DT_STRING, MD(tmp_dir), "\"/tmp\"", 0, 0, NULL,
	  "directory for temporary message files" },
	{ "hostname", GH_DT_STRING, MD(hostname), "\"\"", 0, 0, NULL,
	  "our name for plugins when the MTA sends no j macro (empty: the "
	  "system's host name)" },
	{ "trace_header", GH_DT_STRING, MD(trace_header), "\"\"", 0, 0, NULL,
	  "insert the decision trace at the top of each accepted message "
	  "in this header (empty: off), e.g. \"X-Gatehouse-Trace\"" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

static const struct gh_directive log_directives[] = {
	{ "level", GH_DT_ENUM, offsetof(struct milterd_log_conf, level),
	  "\"info\"", 0, 0, level_choices,
	  "least severe level logged" },
	{ "syslog", GH_DT_BOOL, offsetof(struct milterd_log_conf, syslog),
	  "false", 0, 0, NULL,
	  "log to syslog (mail facility) instead of stderr" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

/* The group that belongs to the other host. */
static const char *const other_hosts[] = { "relayd", NULL };

/* The current generation and the retired ones still draining. */
static pthread_mutex_t gen_mu = PTHREAD_MUTEX_INITIALIZER;
static struct gen *gen_cur;
static struct gen *gen_old;
static unsigned gen_count;

/* The signal handlers and the milter thread's end wake the main thread. */
static int ctl[2] = { -1, -1 };
static volatile sig_atomic_t hup;
static volatile sig_atomic_t term;	/* SIGTERM or SIGINT, to pass on */
/* The socket libmilter listens on: the first generation's, whatever a
 * reload's file says since (see reload()). */
static char listen_spec[512];
static volatile sig_atomic_t milter_done;
static int milter_rc;

static void
usage(void)
{
	fprintf(stderr,
	    "usage: milterd [-t] [-c file]\n"
	    "       milterd -l | -h plugin | -V\n"
	    "  -c file    configuration (default %s/milterd.conf)\n"
	    "  -t         check the configuration and exit (0 good, 2 bad)\n"
	    "  -l         list the plugins\n"
	    "  -h plugin  print a plugin's documentation and directives\n"
	    "             (a .so from the plugin_dir of -c's file)\n"
	    "             (-h milterd: the milterd group's directives)\n"
	    "  -V         print the version\n", GH_SYSCONFDIR);
	exit(2);
}

/* Read the file; g, when given, takes the host's own groups. */
static struct gh_config *
config_load(const char *path, struct gen *g, char *err, size_t errlen)
{
	struct milterd_conf c;
	struct milterd_log_conf lc;
	struct gh_dns_conf dc;
	struct gh_section sections[] = {
		{ "milterd", milterd_directives, &c },
		{ "log", log_directives, &lc },
		{ "dns", gh_dns_directives, &dc },
		{ NULL, NULL, NULL }
	};
	struct gh_config *cfg;

	memset(&c, 0, sizeof(c));
	memset(&lc, 0, sizeof(lc));
	memset(&dc, 0, sizeof(dc));
	if ((cfg = gh_config_load(path, sections, other_hosts, err, errlen)) ==
	    NULL)
		return NULL;
	if (g != NULL) {
		g->conf = c;
		g->log = lc;
		g->dns = dc;
	}
	return cfg;
}

static int
socket_spec_ok(const char *s, char *err, size_t errlen)
{
	if ((strncmp(s, "unix:/", 6) == 0 && s[6] != '\0') ||
	    (strncmp(s, "local:/", 7) == 0 && s[7] != '\0') ||
	    (strncmp(s, "inet:", 5) == 0 && strchr(s, '@') != NULL) ||
	    (strncmp(s, "inet6:", 6) == 0 && strchr(s, '@') != NULL))
		return 0;
	snprintf(err, errlen, "milterd.socket \"%s\": expected "
		 "\"unix:/path\" or \"inet:port@host\"", s);
	return -1;
}

static void
gen_hostname(struct gen *g)
{
	if (g->conf.hostname != NULL && g->conf.hostname[0] != '\0')
		snprintf(g->hostname, sizeof(g->hostname), "%s",
			 g->conf.hostname);
	else if (gethostname(g->hostname, sizeof(g->hostname)) != 0)
		snprintf(g->hostname, sizeof(g->hostname), "localhost");
	g->hostname[sizeof(g->hostname) - 1] = '\0';
}

/* Stop a generation's threads (after their queued jobs) and free it. */
static void
gen_free(struct gen *g)
{
	int i;

	if (g == NULL)
		return;
	for (i = 0; i < g->nloops; i++)
		loop_stop(&g->loops[i]);
	free(g);
}

/*
 * Read path into a new generation and start every plugin on each of its
 * loops (plugin init runs here, in order, so a failure names its
 * reason).  threads > 0 overrides the file's count (-t uses 1).  Returns
 * NULL with err filled; *config_error tells a bad file from a plugin that
 * cannot start.
 */
static struct gen *
gen_load(const char *path, int threads, int *config_error, char *err,
	 size_t errlen)
{
	struct gh_config *cfg;
	struct gen *g;
	int i, n;

	*config_error = 1;
	if ((g = calloc(1, sizeof(*g))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if ((cfg = config_load(path, g, err, errlen)) == NULL ||
	    socket_spec_ok(g->conf.socket, err, errlen) != 0 ||
	    gh_header_name_check(g->conf.trace_header, "milterd.trace_header",
				 path, err, errlen) != 0) {
		gh_config_free(cfg);
		free(g);
		return NULL;
	}
	*config_error = 0;
	gen_hostname(g);
	n = threads > 0 ? threads : (int)g->conf.threads;
	for (i = 0; i < n; i++) {
		/* The first copy holds the strings of g->conf. */
		if (i > 0 && (cfg = config_load(path, NULL, err, errlen)) ==
		    NULL)
			break;
		g->nloops = i + 1;
		if (loop_init(&g->loops[i], i, cfg, &g->conf, &g->dns,
			      g->hostname, err, errlen) != 0)
			break;
		g->loops[i].gen = g;
	}
	if (i < n) {
		gen_free(g);
		return NULL;
	}
	return g;
}

/* Start a generation's loop threads with the signals blocked that
 * belong to libmilter's signal thread and to the main thread. */
static int
gen_start(struct gen *g)
{
	sigset_t block, old;
	int i, rc = 0;

	sigemptyset(&block);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (i = 0; i < g->nloops && rc == 0; i++)
		if ((rc = loop_start(&g->loops[i])) != 0)
			gh_log(GH_LOG_ERR, "cannot start loop thread %d: %s",
			       i, strerror(rc));
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return rc;
}

/* A new session: pinned to a loop of the current generation (NULL
 * once stopping). */
struct loop *
gen_attach(void)
{
	struct loop *l;
	struct gen *g;

	pthread_mutex_lock(&gen_mu);
	if ((g = gen_cur) == NULL) {
		/* Stopping. */
		pthread_mutex_unlock(&gen_mu);
		return NULL;
	}
	l = &g->loops[g->next++ % (unsigned)g->nloops];
	g->nsess++;
	pthread_mutex_unlock(&gen_mu);
	return l;
}

/* A session ended (on its loop thread).  The last one of a retired
 * generation wakes the main thread to stop it. */
void
gen_detach(struct loop *l)
{
	struct gen *g = l->gen;
	int drained;

	pthread_mutex_lock(&gen_mu);
	g->nsess--;
	drained = g->retired && g->nsess == 0;
	pthread_mutex_unlock(&gen_mu);
	if (drained && write(ctl[1], "d", 1) < 0 && errno != EAGAIN)
		gh_log(GH_LOG_ERR, "wake the main thread: %s",
		       strerror(errno));
}

/* Stop the retired generations that have no session left. */
static void
gen_reap(void)
{
	struct gen **pp, *g, *done = NULL;

	pthread_mutex_lock(&gen_mu);
	for (pp = &gen_old; (g = *pp) != NULL;) {
		if (g->nsess == 0) {
			*pp = g->older;
			g->older = done;
			done = g;
		} else
			pp = &g->older;
	}
	pthread_mutex_unlock(&gen_mu);
	while ((g = done) != NULL) {
		done = g->older;
		gh_log(GH_LOG_INFO, "generation %u stopping: its sessions "
		       "ended", g->id);
		gen_free(g);
	}
}

static void
reload(const char *path)
{
	struct gen *g, *old;
	int config_error;
	char err[1024];

	gh_log(GH_LOG_INFO, "SIGHUP: reloading %s", path);
	if ((g = gen_load(path, 0, &config_error, err, sizeof(err))) ==
	    NULL) {
		gh_log(GH_LOG_ERR, "reload failed, keeping the running "
		       "configuration: %s", err);
		return;
	}
	if (gen_start(g) != 0) {
		gh_log(GH_LOG_ERR, "reload failed, keeping the running "
		       "configuration: cannot start its threads");
		gen_free(g);
		return;
	}
	pthread_mutex_lock(&gen_mu);
	old = gen_cur;
	if (strcmp(old->conf.socket, g->conf.socket) != 0 ||
	    strcmp(old->conf.socket_mode, g->conf.socket_mode) != 0)
		gh_log(GH_LOG_WARN, "milterd.socket and socket_mode changes "
		       "take effect at the next start (still on %s)",
		       old->conf.socket);
	g->id = ++gen_count;
	old->retired = 1;
	old->older = gen_old;
	gen_old = old;
	gen_cur = g;
	pthread_mutex_unlock(&gen_mu);
	gh_log_set_level(g->log.level);
	gh_log(GH_LOG_INFO, "configuration reloaded: generation %u, %d loop "
	       "threads, %zu plugins; generation %u finishes its sessions",
	       g->id, g->nloops, g->loops[0].cfg->nplugins, old->id);
	gen_reap();
}

static void
on_signal(int sig)
{
	int saved = errno;

	if (sig == SIGHUP)
		hup = 1;
	else
		term = sig;
	if (write(ctl[1], "h", 1) < 0) {
		/* The pipe is full: a wake-up is already there. */
	}
	errno = saved;
}

/* Address of the listening socket for a connect(2) from here: "unix:" and
 * "local:" paths; "inet:port@host" and "inet6:port@host" with a wildcard
 * host meaning loopback.  0, or -1 when it cannot be worked out. */
static int
listener_addr(const char *spec, struct sockaddr_storage *ss,
	      socklen_t *len)
{
	struct addrinfo hints, *res;
	const char *at, *path = NULL;
	char port[16], host[256];
	int family;

	memset(ss, 0, sizeof(*ss));
	if (strncmp(spec, "unix:", 5) == 0)
		path = spec + 5;
	else if (strncmp(spec, "local:", 6) == 0)
		path = spec + 6;
	if (path != NULL) {
		struct sockaddr_un *sun = (struct sockaddr_un *)ss;

		if (strlen(path) >= sizeof(sun->sun_path))
			return -1;
		sun->sun_family = AF_UNIX;
		memcpy(sun->sun_path, path, strlen(path) + 1);
		*len = (socklen_t)sizeof(*sun);
		return 0;
	}
	family = strncmp(spec, "inet6:", 6) == 0 ? AF_INET6 : AF_INET;
	spec = strchr(spec, ':') + 1;
	if ((at = strchr(spec, '@')) == NULL ||
	    (size_t)(at - spec) >= sizeof(port))
		return -1;
	memcpy(port, spec, (size_t)(at - spec));
	port[at - spec] = '\0';
	snprintf(host, sizeof(host), "%s", at + 1);
	if (host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 ||
	    strcmp(host, "::") == 0 || strcmp(host, "INADDR_ANY") == 0)
		snprintf(host, sizeof(host), "%s",
			 family == AF_INET6 ? "::1" : "127.0.0.1");
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = family;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if (getaddrinfo(host, port, &hints, &res) != 0)
		return -1;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* One connection to our own listener, closed at once: libmilter accepts
 * it (a session that ends before its first command) and, told to stop,
 * leaves its loop. */
static void
listener_wake(const struct sockaddr_storage *ss, socklen_t len)
{
	struct pollfd pfd;
	int fd;

	fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0)
		return;
	if (connect(fd, (const struct sockaddr *)ss, len) != 0 &&
	    errno == EINPROGRESS) {
		pfd.fd = fd;
		pfd.events = POLLOUT;
		(void)poll(&pfd, 1, 200);
	}
	close(fd);
}

static void *
milter_main(void *arg)
{
	(void)arg;
	milter_rc = smfi_main();
	milter_done = 1;
	if (write(ctl[1], "s", 1) < 0 && errno != EAGAIN)
		gh_log(GH_LOG_ERR, "wake the main thread: %s",
		       strerror(errno));
	return NULL;
}

/*
 * Run libmilter on its own thread and serve SIGHUP (and pass SIGTERM and
 * SIGINT on) on this one until smfi_main returns.  Returns smfi_main's
 * result.
 */
static int
serve(const char *path)
{
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	struct pollfd pfd;
	struct sigaction sa;
	sigset_t block, old;
	pthread_t tid;
	char buf[64];
	int rc, stopping = 0, pokes = 60;

	if (pipe2(ctl, O_NONBLOCK | O_CLOEXEC) != 0) {
		gh_log(GH_LOG_ERR, "pipe: %s", strerror(errno));
		return MI_FAILURE;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* The milter thread, and libmilter's threads after it, block all
	 * three; this thread takes them back once it runs. */
	sigemptyset(&block);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	if ((rc = pthread_create(&tid, NULL, milter_main, NULL)) != 0) {
		gh_log(GH_LOG_ERR, "cannot start the milter thread: %s",
		       strerror(rc));
		return MI_FAILURE;
	}
	pthread_sigmask(SIG_UNBLOCK, &block, NULL);
	pfd.fd = ctl[0];
	pfd.events = POLLIN;
	while (!milter_done) {
		/* A timeout too, should a wake-up ever be lost; while
		 * stopping, the listener is poked every tenth of a second
		 * (the first poke may come before libmilter's signal thread
		 * has raised the stop flag). */
		(void)poll(&pfd, 1, stopping ? 100 : 1000);
		while (read(ctl[0], buf, sizeof(buf)) > 0)
			;
		if (term && !stopping) {
			stopping = 1;
			pthread_sigmask(SIG_BLOCK, &block, NULL);
			gh_log(GH_LOG_INFO, "%s: stopping",
			       term == SIGINT ? "SIGINT" : "SIGTERM");
			kill(getpid(), term);
			if (listener_addr(listen_spec, &ss, &sslen) != 0)
				pokes = 0;
		}
		if (stopping && !milter_done && pokes > 0) {
			pokes--;
			listener_wake(&ss, sslen);
		}
		if (hup && !milter_done && !stopping) {
			hup = 0;
			reload(path);
		}
		gen_reap();
	}
	pthread_sigmask(SIG_BLOCK, &block, NULL);
	pthread_join(tid, NULL);
	return milter_rc;
}

int
main(int argc, char **argv)
{
	const char *path = GH_SYSCONFDIR "/milterd.conf", *help = NULL;
	int ch, test = 0, list = 0, rc, config_error, path_given = 0;
	struct gen *g;
	char err[1024];

	while ((ch = getopt(argc, argv, "c:th:lV")) != -1) {
		switch (ch) {
		case 'c': path = optarg; path_given = 1; break;
		case 't': test = 1; break;
		case 'h': help = optarg; break;
		case 'l': list = 1; break;
		case 'V': printf("milterd (gatehouse) %s\n", PACKAGE_VERSION);
			return 0;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	gh_log_init("milterd", GH_LOG_INFO, 0);
	if (list) {
		gh_module_print_list(stdout);
		return 0;
	}
	if (help != NULL && strcmp(help, "milterd") == 0) {
		/* The host's own group, in the plugins' format. */
		printf("milterd - the `milterd` group of milterd.conf\n\n");
		gh_directives_print(stdout, milterd_directives);
		return 0;
	}
	if (help != NULL) {
		return gh_module_help_command("milterd", help,
					      path_given ? path : NULL);
	}
	if (test) {
		/* One runtime proves every plugin initialises. */
		if ((g = gen_load(path, 1, &config_error, err, sizeof(err))) ==
		    NULL) {
			fprintf(stderr, "milterd: %s\n", err);
			return 2;
		}
		gen_free(g);
		printf("milterd: configuration %s is valid\n", path);
		return 0;
	}
	signal(SIGPIPE, SIG_IGN);
	if ((g = gen_load(path, 0, &config_error, err, sizeof(err))) == NULL) {
		if (config_error) {
			fprintf(stderr, "milterd: %s\n", err);
			return 2;
		}
		gh_log(GH_LOG_ERR, "%s", err);
		return 1;
	}
	gh_log_init("milterd", g->log.level, g->log.syslog);
	g->id = ++gen_count;
	gen_cur = g;
	if (bridge_register(&g->conf, err, sizeof(err)) != 0) {
		gh_log(GH_LOG_ERR, "%s", err);
		return 1;
	}
	snprintf(listen_spec, sizeof(listen_spec), "%s", g->conf.socket);
	if (gen_start(g) != 0)
		return 1;
	gh_log(GH_LOG_INFO, "milterd %s started: %d loop threads, %zu "
	       "plugins, on %s", PACKAGE_VERSION, g->nloops,
	       g->loops[0].cfg->nplugins, g->conf.socket);
	rc = serve(path);
	gh_log(GH_LOG_INFO, "stopping: finishing queued work");
	pthread_mutex_lock(&gen_mu);
	g = gen_cur;
	gen_cur = NULL;
	pthread_mutex_unlock(&gen_mu);
	gen_free(g);
	while ((g = gen_old) != NULL) {
		gen_old = g->older;
		gen_free(g);
	}
	gh_log(GH_LOG_INFO, "milterd stopped");
	return rc == MI_SUCCESS ? 0 : 1;
}
