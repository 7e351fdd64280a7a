/*
 * main.c - milterd's command line, configuration and threads.
 *
 * milterd reads the same kind of file as relayd: its own `milterd` group,
 * `log`, `dns` (each loop thread gets its own resolver), `plugins`,
 * `plugin_dir` and the plugins' groups (the `relayd` group is skipped, so
 * one file can serve both hosts).  It starts
 * `threads` loop threads, each with its own copy of the configuration and
 * its own plugin runtime, then hands the process to libmilter
 * (smfi_main), whose signal thread turns SIGTERM and SIGINT into a clean
 * stop: smfi_main returns, the loop threads finish their queued jobs,
 * plugins' fini run, and the process exits 0.
 */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <libmilter/mfapi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "milterd.h"

#ifndef GH_SYSCONFDIR
#define GH_SYSCONFDIR "/etc/gatehouse"
#endif
#ifndef GH_PLUGIN_DIR
#define GH_PLUGIN_DIR "/usr/local/lib/gatehouse/plugins"
#endif

struct loop *milterd_loops[MILTERD_MAX_THREADS];
int milterd_nloops;
const struct milterd_conf *milterd_conf;

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

static struct milterd_conf conf;
static struct milterd_log_conf logconf;
static struct gh_dns_conf dnsconf;
static struct loop loops[MILTERD_MAX_THREADS];

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
	    "             (-h milterd: the milterd group's directives)\n"
	    "  -V         print the version\n", GH_SYSCONFDIR);
	exit(2);
}

static struct gh_config *
config_load(const char *path, char *err, size_t errlen)
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
	/* The first load's settings rule; the copies only give each loop
	 * thread its own plugin state.  Strings live in the first cfg. */
	if (conf.socket == NULL) {
		conf = c;
		logconf = lc;
		dnsconf = dc;
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

static const char *
our_hostname(void)
{
	static char host[256];

	if (conf.hostname != NULL && conf.hostname[0] != '\0')
		return conf.hostname;
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	return host;
}

/* Build every loop thread's configuration and runtime (plugin init runs
 * here, in order, so a failure stops start-up with its reason). */
static int
loops_init(const char *path, struct gh_config *first, char *err,
	   size_t errlen)
{
	const char *host = our_hostname();
	struct gh_config *cfg;
	int i;

	for (i = 0; i < (int)conf.threads; i++) {
		cfg = i == 0 ? first : config_load(path, err, errlen);
		if (cfg == NULL)
			return -1;
		if (loop_init(&loops[i], i, cfg, &conf, &dnsconf, host, err,
			      errlen) != 0)
			return -1;
		milterd_loops[i] = &loops[i];
		milterd_nloops = i + 1;
	}
	return 0;
}

static int
loops_start(void)
{
	sigset_t block, old;
	int i, rc = 0;

	/* libmilter takes SIGHUP, SIGTERM and SIGINT in its own sigwait
	 * thread: threads started before smfi_main must block them. */
	sigemptyset(&block);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (i = 0; i < milterd_nloops && rc == 0; i++)
		if ((rc = loop_start(milterd_loops[i])) != 0)
			gh_log(GH_LOG_ERR, "cannot start loop thread %d: %s",
			       i, strerror(rc));
	if (rc != 0)
		milterd_nloops = i - 1;
	return rc;
}

static void
loops_stop(void)
{
	int i;

	for (i = 0; i < milterd_nloops; i++)
		loop_stop(milterd_loops[i]);
	milterd_nloops = 0;
}

int
main(int argc, char **argv)
{
	const char *path = GH_SYSCONFDIR "/milterd.conf", *help = NULL;
	int ch, test = 0, list = 0, rc;
	struct gh_config *cfg;
	char err[1024];

	while ((ch = getopt(argc, argv, "c:th:lV")) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
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
		if (gh_module_print_help(stdout, help, GH_PLUGIN_DIR) != 0) {
			fprintf(stderr, "milterd: no plugin called \"%s\" "
				"(milterd -l lists them)\n", help);
			return 2;
		}
		return 0;
	}
	if ((cfg = config_load(path, err, sizeof(err))) == NULL ||
	    socket_spec_ok(conf.socket, err, sizeof(err)) != 0) {
		fprintf(stderr, "milterd: %s\n", err);
		return 2;
	}
	milterd_conf = &conf;
	if (test) {
		/* One runtime proves every plugin initialises. */
		conf.threads = 1;
		rc = loops_init(path, cfg, err, sizeof(err));
		if (rc != 0) {
			fprintf(stderr, "milterd: %s\n", err);
			return 2;
		}
		printf("milterd: configuration %s is valid\n", path);
		return 0;
	}
	gh_log_init("milterd", logconf.level, logconf.syslog);
	signal(SIGPIPE, SIG_IGN);
	if (loops_init(path, cfg, err, sizeof(err)) != 0 ||
	    bridge_register(&conf, err, sizeof(err)) != 0) {
		gh_log(GH_LOG_ERR, "%s", err);
		return 1;
	}
	if (loops_start() != 0)
		return 1;
	gh_log(GH_LOG_INFO, "milterd %s started: %d loop threads, %zu "
	       "plugins, on %s", PACKAGE_VERSION, milterd_nloops,
	       cfg->nplugins, conf.socket);
	rc = smfi_main();
	gh_log(GH_LOG_INFO, "stopping: finishing queued work");
	loops_stop();
	gh_log(GH_LOG_INFO, "milterd stopped");
	return rc == MI_SUCCESS ? 0 : 1;
}
