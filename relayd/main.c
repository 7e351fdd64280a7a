/*
 * main.c - relayd's command line and master process.
 *
 * The master reads and checks the configuration, binds the listeners,
 * then forks the workers (one per core by default) and watches them: a
 * worker that dies is restarted, SIGTERM drains every session and exits,
 * SIGHUP reloads the configuration by starting a new generation of
 * workers and letting the old one drain, so no session is dropped.  The
 * master keeps its privileges (a reload may bind new ports); workers
 * drop theirs right after fork.  Whatever would only fail once running
 * (plugin start-up, the user, listen syntax) is checked by -t, at start
 * and before a reload is committed, so a bad file never replaces a good
 * one.
 */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "relayd.h"
#include "spoolq.h"

#ifndef GH_SYSCONFDIR
#define GH_SYSCONFDIR "/etc/gatehouse"
#endif
#ifndef GH_PLUGIN_DIR
#define GH_PLUGIN_DIR "/usr/local/lib/gatehouse/plugins"
#endif

#define MAX_WORKERS 256
#define AUTH_FAIL_SLOTS 8192	/* client addresses with recent failures */

static const char *const bare_choices[] = { "normalize", "reject", NULL };
static const char *const level_choices[] = {
	"error", "warning", "info", "debug", "protocol", NULL
};

#define RD(f) offsetof(struct relayd_conf, f)

const struct gh_directive relayd_directives[] = {
	{ "hostname", GH_DT_STRING, RD(hostname), "\"\"", 0, 0, NULL,
	  "our name in the greeting and Received headers; empty: the "
	  "system's host name" },
	{ "listen", GH_DT_STRLIST, RD(listen), "[ \"127.0.0.1:2525\" ]", 1,
	  RELAYD_MAX_LISTEN, NULL,
	  "listeners: \"host:port\" or \"[v6]:port\", then options "
	  "tls=none|starttls|implicit, role=mx|submission, "
	  "auth_plaintext=yes|no, cert=FILE, key=FILE, proxy=yes|no (a "
	  "PROXY v1/v2 header from proxy_hosts before the greeting), "
	  "client_cert=none|optional|require (ask for a client certificate "
	  "verified against tls_ca; require: none or unverified, no TLS)" },
	{ "tls_cert", GH_DT_STRING, RD(tls_cert), "\"\"", 0, 0, NULL,
	  "PEM certificate chain for TLS; set, every listener offers "
	  "STARTTLS unless it says tls=none" },
	{ "tls_key", GH_DT_STRING, RD(tls_key), "\"\"", 0, 0, NULL,
	  "PEM private key of tls_cert (read before dropping privileges)" },
	{ "tls_sni", GH_DT_STRLIST, RD(tls_sni), "[ ]", 0, 64, NULL,
	  "certificates chosen by the name the client asks for (SNI): "
	  "\"NAME CERTFILE KEYFILE\" each, NAME a host name or "
	  "\"*.domain\" (one label); exact names win, no match serves the "
	  "listener's certificate" },
	{ "tls_ca", GH_DT_STRING, RD(tls_ca), "\"\"", 0, 0, NULL,
	  "PEM CA certificates that verify client certificates, for "
	  "listeners with client_cert=optional or require" },
	{ "auth_max_failures", GH_DT_INT, RD(auth_max_failures), "5", 1,
	  1000, NULL,
	  "AUTH failures from one address within auth_failure_window "
	  "before 421 4.7.0 and disconnect" },
	{ "auth_failure_delay", GH_DT_INT, RD(auth_failure_delay), "1", 0,
	  60, NULL,
	  "seconds each AUTH failure reply waits from the second failure on" },
	{ "auth_failure_window", GH_DT_INT, RD(auth_failure_window), "600",
	  1, 86400, NULL, "seconds an AUTH failure counts against an "
	  "address" },
	{ "proxy_hosts", GH_DT_STRLIST, RD(proxy_hosts), "[ ]", 0, 1000,
	  NULL, "load balancers (addresses or networks) whose PROXY header "
	  "a proxy=yes listener believes; anyone else is closed on at once" },
	{ "proxy_timeout", GH_DT_INT, RD(proxy_timeout), "10", 1, 300, NULL,
	  "seconds a proxy=yes listener waits for the whole PROXY header" },
	{ "xclient_hosts", GH_DT_STRLIST, RD(xclient_hosts), "[ ]", 0, 1000,
	  NULL, "clients (addresses or networks) offered Postfix's XCLIENT; "
	  "others get 550 5.7.0" },
	{ "workers", GH_DT_INT, RD(workers), "0", 0, MAX_WORKERS, NULL,
	  "worker processes; 0: one per core" },
	{ "user", GH_DT_STRING, RD(user), "\"\"", 0, 0, NULL,
	  "drop to this user after binding (empty: stay as started)" },
	{ "pid_file", GH_DT_STRING, RD(pid_file), "\"\"", 0, 0, NULL,
	  "write the master's pid here (empty: none)" },
	{ "max_message_size", GH_DT_INT, RD(max_message_size), "26214400",
	  65536, 2147483647LL, NULL,
	  "largest message in octets (SIZE, 552 5.3.4 above it)" },
	{ "max_recipients", GH_DT_INT, RD(max_recipients), "100", 1, 100000,
	  NULL, "recipients per message; more get 452 4.5.3" },
	{ "max_line_length", GH_DT_INT, RD(max_line_length), "512", 512,
	  65536, NULL, "longest command line; longer gets 500 5.5.2" },
	{ "max_header_size", GH_DT_INT, RD(max_header_size), "102400", 1024,
	  16777216, NULL,
	  "largest header block in octets; larger gets 552 5.3.4" },
	{ "max_header_line", GH_DT_INT, RD(max_header_line), "32768", 998,
	  16777216, NULL,
	  "longest header field with its folding; longer gets 552 5.3.4" },
	{ "max_connections", GH_DT_INT, RD(max_connections), "1000", 1,
	  1000000, NULL, "sessions at once for the host; more get 421 4.7.0" },
	{ "max_connections_per_ip", GH_DT_INT, RD(max_connections_per_ip),
	  "20", 0, 1000000, NULL,
	  "sessions at once from one client address; 0: no limit" },
	{ "max_unrecognized", GH_DT_INT, RD(max_unrecognized), "10", 1, 1000,
	  NULL, "unrecognized commands before 421 4.7.0 and disconnect" },
	{ "timeout_command", GH_DT_INT, RD(timeout_command), "300", 1, 3600,
	  NULL, "seconds to wait for a command (RFC 5321 4.5.3.2.7)" },
	{ "timeout_data", GH_DT_INT, RD(timeout_data), "180", 1, 3600, NULL,
	  "seconds to wait for each block of message data (4.5.3.2.6)" },
	{ "drain_timeout", GH_DT_INT, RD(drain_timeout), "60", 0, 86400,
	  NULL, "on SIGTERM or reload, seconds a worker waits for sessions" },
	{ "bare_line_ends", GH_DT_ENUM, RD(bare_line_ends), "\"normalize\"",
	  0, 0, bare_choices,
	  "bare CR or LF in a message: normalize to CRLF, or reject (550 "
	  "5.5.2)" },
	{ "spool_threshold", GH_DT_INT, RD(spool_threshold), "1048576", 4096,
	  1073741824LL, NULL,
	  "message octets held in memory before moving to a temporary file" },
	{ "tmp_dir", GH_DT_STRING, RD(tmp_dir), "\"/tmp\"", 0, 0, NULL,
	  "directory for temporary message files" },
	{ "received_header", GH_DT_BOOL, RD(received_header), "true", 0, 0,
	  NULL, "add a Received header (RFC 5321 4.4)" },
	{ "trace_header", GH_DT_STRING, RD(trace_header), "\"\"", 0, 0, NULL,
	  "stamp the decision trace on each message in this header (empty: "
	  "off), e.g. \"X-Gatehouse-Trace\"" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

const struct gh_directive log_directives[] = {
	{ "level", GH_DT_ENUM, offsetof(struct log_conf, level), "\"info\"",
	  0, 0, level_choices,
	  "least severe level logged; \"protocol\" logs the SMTP dialogue" },
	{ "syslog", GH_DT_BOOL, offsetof(struct log_conf, syslog), "false", 0,
	  0, NULL, "log to syslog (mail facility) instead of stderr" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

struct loaded {
	struct gh_config *cfg;
	struct relayd_conf conf;
	struct log_conf log;
	struct gh_dns_conf dns;
};

struct worker {
	pid_t pid;
	unsigned gen;
	time_t started;
	int share;		/* its share of the spool, 0..workers-1 */
};

static volatile sig_atomic_t got_term, got_hup, got_chld;

static const char *const other_hosts[] = { "milterd", NULL };

static void
usage(void)
{
	fprintf(stderr,
	    "usage: relayd [-dt] [-c file]\n"
	    "       relayd -l | -h plugin | -p name | -R | -V\n"
	    "       relayd [-c file] -q list | count | flush [domain] |\n"
	    "              hold ID | release ID | delete ID  (the spool)\n"
	    "  -c file    configuration (default %s/relayd.conf)\n"
	    "  -d         run in the background\n"
	    "  -t         check the configuration and exit (0 good, 2 bad)\n"
	    "  -l         list the plugins\n"
	    "  -h plugin  print a plugin's documentation and directives\n"
	    "             (a .so from the plugin_dir of -c's file)\n"
	    "  -p name    write a skeleton plugin called name to stdout\n"
	    "  -R         print the table of verdicts and wire replies\n"
	    "  -V         print the version\n", GH_SYSCONFDIR);
	exit(2);
}

static int
config_load(const char *path, struct loaded *l, char *err, size_t errlen)
{
	struct gh_section sections[] = {
		{ "relayd", relayd_directives, &l->conf },
		{ "log", log_directives, &l->log },
		{ "dns", gh_dns_directives, &l->dns },
		{ NULL, NULL, NULL }
	};

	memset(l, 0, sizeof(*l));
	l->cfg = gh_config_load(path, sections, other_hosts, err, errlen);
	return l->cfg != NULL ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Listeners.                                                          */

static int
split_hostport(const char *s, char *host, size_t hlen, char *port,
	       size_t plen)
{
	const char *colon;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (end == NULL || end[1] != ':')
			return -1;
		snprintf(host, hlen, "%.*s", (int)(end - s - 1), s + 1);
		snprintf(port, plen, "%s", end + 2);
		return 0;
	}
	if ((colon = strrchr(s, ':')) == NULL)
		return -1;
	snprintf(host, hlen, "%.*s", (int)(colon - s), s);
	snprintf(port, plen, "%s", colon + 1);
	return 0;
}

static int
listen_on(const char *spec, char *err, size_t errlen)
{
	char host[256], port[32];
	struct addrinfo hints, *res;
	int fd, one = 1, rc;

	if (split_hostport(spec, host, sizeof(host), port, sizeof(port)) != 0) {
		snprintf(err, errlen, "listen \"%s\": expected host:port",
			 spec);
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host[0] && strcmp(host, "*") != 0 ? host : NULL,
			 port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "listen \"%s\": %s", spec,
			 gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    0);
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
	    listen(fd, 1024) != 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", spec,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	return fd;
}

/* Open the listeners of l, reusing those of old that it shares. */
/*
 * A worker may hold max_connections sessions, each a descriptor (two
 * when it forwards), beside its plugins', DNS and spool files: the usual
 * soft limit of 1024 is below what the default 1000 needs.  Raised to
 * the hard limit; a warning when even that looks short.
 */
static void
nofile_raise(long long max_connections)
{
	struct rlimit rl;
	rlim_t want = (rlim_t)max_connections * 2 + 64;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
		gh_log(GH_LOG_WARN, "open files limit %llu is low for "
		       "max_connections %lld (about %llu wanted): raise it "
		       "(ulimit -n, LimitNOFILE=)",
		       (unsigned long long)rl.rlim_cur, max_connections,
		       (unsigned long long)want);
}

static int
listeners_open(struct server *srv, const struct relayd_conf *conf,
	       const struct server *old, char *err, size_t errlen)
{
	size_t i, j;

	srv->nlisten = 0;
	for (i = 0; i < conf->nlisteners; i++) {
		int fd = -1;

		for (j = 0; old != NULL && j < old->nlisten; j++)
			if (old->listen_fd[j] >= 0 &&
			    strcmp(old->conf->listeners[j].address,
				   conf->listeners[i].address) == 0)
				fd = old->listen_fd[j];
		if (fd < 0 && (fd = listen_on(conf->listeners[i].address,
					      err, errlen)) < 0)
			return -1;
		srv->listen_fd[srv->nlisten++] = fd;
	}
	return 0;
}

static void
listeners_close_unused(const struct server *old, const struct server *cur)
{
	size_t i, j;

	for (i = 0; i < old->nlisten; i++) {
		int used = 0;

		for (j = 0; j < cur->nlisten; j++)
			used |= cur->listen_fd[j] == old->listen_fd[i];
		if (!used)
			close(old->listen_fd[i]);
	}
}

/* ------------------------------------------------------------------ */
/* Checks beyond the directive tables.                                 */

/* "host:port" with a numeric port: a name is resolved only at bind. */
static int
address_valid(const char *addr)
{
	char host[256], port[32], *end;
	unsigned long n;

	if (split_hostport(addr, host, sizeof(host), port, sizeof(port)) != 0)
		return 0;
	n = strtoul(port, &end, 10);
	return port[0] >= '0' && port[0] <= '9' && *end == '\0' && n >= 1 &&
	    n <= 65535;
}

static int
yes_no(const char *v)
{
	if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0)
		return 1;
	if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0)
		return 0;
	return -1;
}

/* One "key=value" of a listener; returns a complaint or NULL. */
static const char *
listener_option(struct listener *ls, char *opt, int *tls_given,
		struct gh_pool *pool)
{
	char *v = strchr(opt, '=');

	if (v == NULL)
		return "expected key=value";
	*v++ = '\0';
	if (strcmp(opt, "tls") == 0) {
		*tls_given = 1;
		if (strcmp(v, "none") == 0)
			ls->tls = LISTEN_TLS_NONE;
		else if (strcmp(v, "starttls") == 0)
			ls->tls = LISTEN_TLS_STARTTLS;
		else if (strcmp(v, "implicit") == 0)
			ls->tls = LISTEN_TLS_IMPLICIT;
		else
			return "tls is none, starttls or implicit";
	} else if (strcmp(opt, "role") == 0) {
		if (strcmp(v, "mx") != 0 && strcmp(v, "submission") != 0)
			return "role is mx or submission";
		ls->submission = v[0] == 's';
	} else if (strcmp(opt, "auth_plaintext") == 0) {
		if ((ls->auth_plaintext = yes_no(v)) < 0)
			return "auth_plaintext is yes or no";
	} else if (strcmp(opt, "proxy") == 0) {
		if ((ls->proxy = yes_no(v)) < 0)
			return "proxy is yes or no";
	} else if (strcmp(opt, "cert") == 0 && v[0] != '\0') {
		ls->cert = gh_pstrdup(pool, v);
	} else if (strcmp(opt, "key") == 0 && v[0] != '\0') {
		ls->key = gh_pstrdup(pool, v);
	} else if (strcmp(opt, "client_cert") == 0) {
		if (strcmp(v, "none") == 0)
			ls->client_cert = CLIENT_CERT_NONE;
		else if (strcmp(v, "optional") == 0)
			ls->client_cert = CLIENT_CERT_OPTIONAL;
		else if (strcmp(v, "require") == 0)
			ls->client_cert = CLIENT_CERT_REQUIRE;
		else
			return "client_cert is none, optional or require";
	} else {
		return "unknown option (tls, role, auth_plaintext, cert, key, "
		    "proxy, client_cert)";
	}
	return NULL;
}

/*
 * "ADDRESS [key=value ...]".  Without tls=, a listener offers STARTTLS
 * when a certificate is configured (its own or relayd.tls_cert).
 */
static const char *
listener_parse(struct listener *ls, const char *spec,
	       const struct relayd_conf *c, struct gh_pool *pool)
{
	char *copy = gh_pstrdup(pool, spec), *tok, *save = NULL;
	const char *why;
	int tls_given = 0;

	memset(ls, 0, sizeof(*ls));
	ls->spec = spec;
	ls->cert = c->tls_cert;
	ls->key = c->tls_key;
	if ((tok = strtok_r(copy, " \t", &save)) == NULL ||
	    !address_valid(tok))
		return "expected host:port or [v6]:port, port 1..65535";
	ls->address = tok;
	while ((tok = strtok_r(NULL, " \t", &save)) != NULL)
		if ((why = listener_option(ls, tok, &tls_given, pool)) != NULL)
			return why;
	if (ls->proxy && c->proxy_hosts.n == 0)
		return "proxy=yes needs relayd.proxy_hosts (the load balancers "
		    "to believe)";
	if (!tls_given && ls->cert[0] != '\0')
		ls->tls = LISTEN_TLS_STARTTLS;
	if (ls->tls == LISTEN_TLS_NONE) {
		ls->cert = ls->key = "";
		return ls->client_cert != CLIENT_CERT_NONE ?
		    "client_cert needs TLS" : NULL;
	}
	if (ls->client_cert != CLIENT_CERT_NONE && c->tls_ca[0] == '\0')
		return "client_cert needs relayd.tls_ca";
	if (ls->cert[0] == '\0')
		return "TLS needs a certificate: relayd.tls_cert or cert=";
	if (ls->key[0] == '\0')
		return "TLS needs a key: relayd.tls_key or key=";
	return NULL;
}

static int
check_listen(struct loaded *l, const char *file, char *err, size_t errlen)
{
	struct relayd_conf *c = &l->conf;
	const char *why;
	size_t i, j;

	for (i = 0; i < c->listen.n; i++) {
		why = listener_parse(&c->listeners[i], c->listen.v[i], c,
				     l->cfg->pool);
		for (j = 0; why == NULL && j < i; j++)
			if (strcmp(c->listeners[j].address,
				   c->listeners[i].address) == 0)
				why = "address listed twice";
		if (why != NULL) {
			snprintf(err, errlen, "%s: relayd.listen: \"%s\": %s",
				 file, c->listen.v[i], why);
			return -1;
		}
	}
	c->nlisteners = c->listen.n;
	return 0;
}

/* proxy_hosts and xclient_hosts: each entry an address or a network,
 * parsed once here so that a typo stops start-up, not a session. */
static int
nets_parse(const struct gh_strlist *list, const char *name,
	   struct gh_pool *pool, struct gh_net **out, size_t *n,
	   const char *file, char *err, size_t errlen)
{
	size_t i;

	*out = gh_palloc(pool, (list->n ? list->n : 1) * sizeof(**out));
	*n = list->n;
	for (i = 0; i < list->n; i++)
		if (gh_net_parse(list->v[i], &(*out)[i]) != 0) {
			snprintf(err, errlen, "%s: relayd.%s: \"%s\": not an "
				 "address or network (ADDR or ADDR/BITS)",
				 file, name, list->v[i]);
			return -1;
		}
	return 0;
}

static int
check_nets(struct loaded *l, const char *file, char *err, size_t errlen)
{
	struct relayd_conf *c = &l->conf;

	return nets_parse(&c->proxy_hosts, "proxy_hosts", l->cfg->pool,
			  &c->proxy_nets, &c->nproxy_nets, file, err,
			  errlen) != 0 ||
	    nets_parse(&c->xclient_hosts, "xclient_hosts", l->cfg->pool,
		       &c->xclient_nets, &c->nxclient_nets, file, err,
		       errlen) != 0 ? -1 : 0;
}

static void
listeners_tls_free(struct relayd_conf *c)
{
	size_t i;

	for (i = 0; i < c->nlisteners; i++) {
		tls_ctx_free(c->listeners[i].ssl);
		c->listeners[i].ssl = NULL;
	}
}

/* Build each TLS listener's context now: a bad certificate or key is
 * a configuration error, not a failed handshake later. */
static int
listeners_tls_load(struct relayd_conf *c, const char *file, char *err,
		   size_t errlen)
{
	char why[768];
	size_t i;

	if (tls_conf_check(c, why, sizeof(why)) != 0) {
		snprintf(err, errlen, "%s: %s", file, why);
		return -1;
	}
	for (i = 0; i < c->nlisteners; i++) {
		struct listener *ls = &c->listeners[i];

		if (ls->tls == LISTEN_TLS_NONE)
			continue;
		if ((ls->ssl = tls_server_ctx(c, ls, why,
					      sizeof(why))) == NULL) {
			snprintf(err, errlen, "%s: %s", file, why);
			listeners_tls_free(c);
			return -1;
		}
	}
	return 0;
}

/* Workers switch to the user after fork; a name that does not exist
 * would have them die and be restarted forever. */
static int
check_user(const struct relayd_conf *c, const char *file, char *err,
	   size_t errlen)
{
	if (c->user[0] == '\0' || getpwnam(c->user) != NULL)
		return 0;
	snprintf(err, errlen, "%s: relayd.user: no user called \"%s\"", file,
		 c->user);
	return -1;
}

/* Start every plugin once, as a worker will, and throw it away. */
static int
check_runtime(const char *path, struct loaded *l, char *err, size_t errlen)
{
	struct event_base *base = event_base_new();
	struct gh_runtime *rt;
	char why[512];

	if (base == NULL) {
		snprintf(err, errlen, "cannot create an event loop");
		return -1;
	}
	/* Starting a resolver checks the dns servers. */
	if (gh_dns_start(base, &l->dns, why, sizeof(why)) != 0) {
		event_base_free(base);
		snprintf(err, errlen, "%s: %s", path, why);
		return -1;
	}
	rt = gh_runtime_create(l->cfg, base, why, sizeof(why));
	gh_runtime_free(rt);
	gh_dns_stop(base);
	event_base_free(base);
	if (rt != NULL)
		return 0;
	snprintf(err, errlen, "%s: %s", path, why);
	return -1;
}

static int
config_check(const char *path, struct loaded *l, char *err, size_t errlen)
{
	if (check_nets(l, path, err, errlen) != 0 ||
	    check_listen(l, path, err, errlen) != 0 ||
	    check_user(&l->conf, path, err, errlen) != 0 ||
	    /* The name goes into every message: a space or colon in it
	     * would turn the header block into body. */
	    gh_header_name_check(l->conf.trace_header, "relayd.trace_header",
				 path, err, errlen) != 0 ||
	    listeners_tls_load(&l->conf, path, err, errlen) != 0)
		return -1;
	if (check_runtime(path, l, err, errlen) != 0) {
		listeners_tls_free(&l->conf);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Workers.                                                            */

static int
drop_privileges(const char *user)
{
	struct passwd *pw;

	if (user == NULL || user[0] == '\0')
		return 0;
	if ((pw = getpwnam(user)) == NULL) {
		gh_log(GH_LOG_ERR, "user \"%s\" does not exist", user);
		return -1;
	}
	if (getuid() != 0) {
		gh_log(GH_LOG_WARN, "not root: cannot switch to user %s", user);
		return 0;
	}
	if (setgroups(1, &pw->pw_gid) != 0 || setgid(pw->pw_gid) != 0 ||
	    setuid(pw->pw_uid) != 0) {
		gh_log(GH_LOG_ERR, "cannot switch to user %s: %s", user,
		       strerror(errno));
		return -1;
	}
	return 0;
}

static void
worker_main(struct server *srv)
{
	sigset_t none;
	int rc;

	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_IGN);	/* the master decides */
	signal(SIGCHLD, SIG_DFL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	if (drop_privileges(srv->conf->user) != 0)
		_exit(1);
	gh_worker_share_set(srv->share, srv->nshares);
	rc = server_run(srv);
	_exit(rc);
}

static pid_t
worker_spawn(struct server *srv)
{
	pid_t pid = fork();

	if (pid == 0)
		worker_main(srv);
	if (pid < 0)
		gh_log(GH_LOG_ERR, "fork: %s", strerror(errno));
	return pid;
}

static void
on_signal(int sig)
{
	if (sig == SIGTERM || sig == SIGINT)
		got_term = 1;
	else if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGCHLD)
		got_chld = 1;
}

static int
nworkers(const struct relayd_conf *c)
{
	long n = c->workers > 0 ? (long)c->workers : sysconf(_SC_NPROCESSORS_ONLN);

	return n < 1 ? 1 : n > MAX_WORKERS ? MAX_WORKERS : (int)n;
}

struct master {
	const char *path;
	struct loaded cur;
	struct server srv;
	char hostname[256];	/* srv.hostname: outlives a reload */
	char pid_file[PATH_MAX];/* as written, removed at exit */
	struct worker w[MAX_WORKERS * 2];
	unsigned gen;
	int stopping;
	long long conn_capacity;	/* max_connections at start */
};

/* The name in our greeting: the configured one, else the system's. */
static void
master_hostname(struct master *m)
{
	if (m->cur.conf.hostname[0] != '\0')
		snprintf(m->hostname, sizeof(m->hostname), "%s",
			 m->cur.conf.hostname);
	else if (gethostname(m->hostname, sizeof(m->hostname)) != 0)
		snprintf(m->hostname, sizeof(m->hostname), "localhost");
	m->hostname[sizeof(m->hostname) - 1] = '\0';
	m->srv.hostname = m->hostname;
}

static int
master_free_share(const struct master *m, int want)
{
	int i, s;

	for (s = 0; s < want; s++) {
		for (i = 0; i < MAX_WORKERS * 2; i++)
			if (m->w[i].pid > 0 && m->w[i].gen == m->gen &&
			    m->w[i].share == s)
				break;
		if (i == MAX_WORKERS * 2)
			return s;
	}
	return 0;
}

static int
master_fill(struct master *m)
{
	int i, want = nworkers(&m->cur.conf), have = 0;
	pid_t pid;

	for (i = 0; i < MAX_WORKERS * 2; i++)
		if (m->w[i].pid > 0 && m->w[i].gen == m->gen)
			have++;
	for (i = 0; i < MAX_WORKERS * 2 && have < want; i++) {
		if (m->w[i].pid > 0)
			continue;
		/* A new worker takes over the slot's tickets: whatever a
		 * dead one left there was given back at reap time. */
		m->srv.worker = i;
		/* And the share of the spool no live worker of this
		 * generation has: a dead worker's queue files go to its
		 * replacement (the spool plugin, filters/spool.c). */
		m->srv.share = master_free_share(m, want);
		m->srv.nshares = want;
		/* A fork that fails (EAGAIN, ENOMEM) fails the same way for
		 * the next slot: master_run tries again in a second. */
		if ((pid = worker_spawn(&m->srv)) < 0)
			break;
		m->w[i].share = m->srv.share;
		m->w[i].pid = pid;
		m->w[i].gen = m->gen;
		m->w[i].started = time(NULL);
		have++;
	}
	return want - have;
}

static void
master_signal_old(struct master *m, int sig, int all)
{
	int i;

	for (i = 0; i < MAX_WORKERS * 2; i++)
		if (m->w[i].pid > 0 && (all || m->w[i].gen != m->gen))
			kill(m->w[i].pid, sig);
}

static int
master_reap(struct master *m)
{
	int status, i, alive = 0, crashed = 0;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		for (i = 0; i < MAX_WORKERS * 2; i++) {
			if (m->w[i].pid != pid)
				continue;
			m->w[i].pid = 0;
			conn_table_release(m->srv.conns, i);
			if (m->w[i].gen != m->gen || m->stopping)
				break;
			crashed = 1;
			if (WIFSIGNALED(status))
				gh_log(GH_LOG_ERR, "worker %d killed by signal "
				       "%d; restarting", (int)pid,
				       WTERMSIG(status));
			else
				gh_log(GH_LOG_ERR, "worker %d exited with %d; "
				       "restarting", (int)pid,
				       WEXITSTATUS(status));
			/* A worker that cannot start must not spin. */
			if (time(NULL) - m->w[i].started < 1)
				sleep(1);
		}
	}
	for (i = 0; i < MAX_WORKERS * 2; i++)
		alive += m->w[i].pid > 0;
	(void)crashed;
	return alive;
}

static void
master_reload(struct master *m)
{
	struct loaded next;
	struct server nsrv;
	char err[1024];

	/* Plugin start-up is checked here too: new workers that cannot
	 * start would replace old ones that can. */
	if (config_load(m->path, &next, err, sizeof(err)) != 0 ||
	    config_check(m->path, &next, err, sizeof(err)) != 0) {
		gh_log(GH_LOG_ERR, "reload failed, keeping the running "
		       "configuration: %s", err);
		gh_config_free(next.cfg);
		return;
	}
	memset(&nsrv, 0, sizeof(nsrv));
	nsrv.conns = m->srv.conns;
	nsrv.auth_fails = m->srv.auth_fails;
	if (listeners_open(&nsrv, &next.conf, &m->srv, err, sizeof(err)) != 0) {
		gh_log(GH_LOG_ERR, "reload failed, keeping the running "
		       "configuration: %s", err);
		listeners_close_unused(&nsrv, &m->srv);
		listeners_tls_free(&next.conf);
		gh_config_free(next.cfg);
		return;
	}
	listeners_close_unused(&m->srv, &nsrv);
	/* The old workers keep their own copies of the contexts. */
	listeners_tls_free(&m->cur.conf);
	gh_config_free(m->cur.cfg);
	m->cur = next;
	if (m->cur.conf.max_connections > m->conn_capacity)
		/* The shared table was sized at start. */
		gh_log(GH_LOG_WARN, "max_connections above %lld takes effect "
		       "at the next restart", m->conn_capacity);
	nsrv.conf = &m->cur.conf;
	nsrv.dns = &m->cur.dns;
	nsrv.cfg = m->cur.cfg;
	m->srv = nsrv;
	/* The old hostname pointed into the configuration just freed. */
	master_hostname(m);
	gh_log_set_level(m->cur.log.level);
	m->gen++;
	gh_log(GH_LOG_INFO, "configuration reloaded: generation %u", m->gen);
	master_fill(m);
	master_signal_old(m, SIGTERM, 0);
}

/*
 * Stopping: the workers close their copies as they start to drain; once
 * ours is closed too, the kernel refuses new connections instead of
 * queueing them where nobody will accept them.
 */
static void
master_close_listeners(struct master *m)
{
	size_t i;

	for (i = 0; i < m->srv.nlisten; i++) {
		close(m->srv.listen_fd[i]);
		m->srv.listen_fd[i] = -1;
	}
}

static int
master_run(struct master *m)
{
	struct sigaction sa;
	sigset_t block, old;
	struct timespec retry = { 1, 0 };
	int missing;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGCHLD);
	sigprocmask(SIG_BLOCK, &block, &old);
	missing = master_fill(m);
	gh_log(missing > 0 ? GH_LOG_WARN : GH_LOG_INFO, "relayd %s started: "
	       "%d of %d workers on %s%s", PACKAGE_VERSION,
	       nworkers(&m->cur.conf) - missing, nworkers(&m->cur.conf),
	       m->cur.conf.listen.v[0], m->cur.conf.listen.n > 1 ? ", ..." : "");
	for (;;) {
		/* Signals are only taken here, so the flags never race; with
		 * workers missing (a fork failed), a second at most. */
		if (!got_term && !got_hup && !got_chld)
			(void)ppoll(NULL, 0, missing > 0 && !m->stopping ?
			    &retry : NULL, &old);
		if (got_chld) {
			got_chld = 0;
			if (master_reap(m) == 0 && m->stopping)
				break;
		}
		if (!m->stopping)
			missing = master_fill(m);
		if (got_hup) {
			got_hup = 0;
			if (!m->stopping)
				master_reload(m);
		}
		if (got_term) {
			got_term = 0;
			if (m->stopping)
				continue;
			m->stopping = 1;
			gh_log(GH_LOG_INFO, "stopping: draining sessions");
			master_close_listeners(m);
			master_signal_old(m, SIGTERM, 1);
			if (master_reap(m) == 0)
				break;
		}
	}
	gh_log(GH_LOG_INFO, "relayd stopped");
	return 0;
}

/* ------------------------------------------------------------------ */

/* Written after daemon(), so it names the process that stays. */
static int
pid_file_write(struct master *m)
{
	const char *path = m->cur.conf.pid_file;
	FILE *fp;

	if (path[0] == '\0')
		return 0;
	if ((fp = fopen(path, "w")) == NULL) {
		gh_log(GH_LOG_ERR, "pid_file %s: %s", path, strerror(errno));
		return -1;
	}
	fprintf(fp, "%d\n", (int)getpid());
	if (fclose(fp) != 0) {
		gh_log(GH_LOG_ERR, "pid_file %s: %s", path, strerror(errno));
		return -1;
	}
	/* A reload may name another file; the one written is removed. */
	snprintf(m->pid_file, sizeof(m->pid_file), "%s", path);
	return 0;
}

static void
pid_file_remove(const struct master *m)
{
	if (m->pid_file[0] != '\0' && unlink(m->pid_file) != 0)
		gh_log(GH_LOG_WARN, "pid_file %s: %s", m->pid_file,
		       strerror(errno));
}

/* ------------------------------------------------------------------ */
/* -p NAME: a plugin to start from.  contrib/plugin-skeleton.c is the
 * output of `relayd -p skeleton` (a test keeps the two equal). */

static const char *const skeleton[] = {
	"/*",
	" * @NAME@.c - a gatehouse plugin: say in one line what it does.",
	" *",
	" * Written by `relayd -p @NAME@` as a starting point.  The",
	" * contract is filters/filter.h: a plugin is this one file, which",
	" * exports one constant module descriptor (name, description,",
	" * manual, directive table, hook table, init, fini); everything",
	" * else is static.  The core parses and checks the settings,",
	" * orders the chain and runs the loop.",
	" *",
	" * This example refuses the recipients listed in `refuse` at the",
	" * rcpt hook and leaves every other decision to the chain.",
	" *",
	" * Two ways to build it, from this same file:",
	" *  - built in: save it as filters/@NAME@.c and add @NAME@ to",
	" *    GH_PLUGINS in Makefile.am.  The generated filters/modules.c",
	" *    refers to the descriptor by its built-in name,",
	" *    gh_module_@NAME@: each built-in plugin needs a symbol of",
	" *    its own.",
	" *  - as a shared object:",
	" *      cc -shared -fPIC -I GATEHOUSE/filters \\",
	" *          -o @NAME@.so @NAME@.c",
	" *    then copy @NAME@.so into plugin_dir.  relayd dlopen()s",
	" *    PLUGIN_DIR/@NAME@.so and looks up `gh_module` (the name a",
	" *    loadable plugin exports), then gh_module_@NAME@, so this",
	" *    file needs no change.  The ABI version is checked before",
	" *    anything else is read.",
	" *",
	" * Then list it in `plugins = [ ..., \"@NAME@\" ];`, give it a",
	" * group `@NAME@ = { ... };` and check with `relayd -t`;",
	" * `relayd -h @NAME@` prints the manual below, then the",
	" * directive table.",
	" */",
	"#include <stddef.h>",
	"#include <stdio.h>",
	"#include <strings.h>",
	"",
	"#include \"filter.h\"",
	"",
	"/* The group `@NAME@ = { ... };`, filled from the directive table. */",
	"struct @NAME@_conf {",
	"\tstruct gh_strlist refuse;",
	"\tconst char *message;",
	"};",
	"",
	"static const struct gh_directive @NAME@_directives[] = {",
	"\t{ \"refuse\", GH_DT_STRLIST, offsetof(struct @NAME@_conf, refuse),",
	"\t  \"[ ]\", 0, 1000, NULL,",
	"\t  \"recipients to refuse with 550 5.1.1 (any case)\" },",
	"\t{ \"message\", GH_DT_STRING, offsetof(struct @NAME@_conf, message),",
	"\t  \"\\\"mailbox unavailable\\\"\", 0, 0, NULL,",
	"\t  \"the text of the refusal\" },",
	"\t{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }",
	"};",
	"",
	"/* Once per worker, after the configuration was checked: refuse",
	" * what the directive table cannot express, with a reason. */",
	"static int",
	"@NAME@_init(struct gh_plugin *p, char *err, size_t errlen)",
	"{",
	"\tconst struct @NAME@_conf *conf = p->conf;",
	"\tsize_t i;",
	"",
	"\tfor (i = 0; i < conf->refuse.n; i++) {",
	"\t\tif (conf->refuse.v[i][0] == '\\0') {",
	"\t\t\tsnprintf(err, errlen, \"%s.refuse: empty mailbox\",",
	"\t\t\t    p->name);",
	"\t\t\treturn -1;",
	"\t\t}",
	"\t}",
	"\treturn 0;",
	"}",
	"",
	"/* RFC 5321 3.3: a recipient we will not accept gets a 550. */",
	"static enum gh_verdict",
	"@NAME@_rcpt(struct gh_call *c)",
	"{",
	"\tconst struct @NAME@_conf *conf = c->plugin->conf;",
	"\tconst char *mailbox = c->path->addr.mailbox;",
	"\tsize_t i;",
	"",
	"\tfor (i = 0; i < conf->refuse.n; i++) {",
	"\t\tif (strcasecmp(mailbox, conf->refuse.v[i]) == 0) {",
	"\t\t\tgh_clog(c, GH_LOG_INFO, \"refused recipient <%s>\",",
	"\t\t\t    mailbox);",
	"\t\t\tgh_result(c, GH_FAIL, \"refused %s\", mailbox);",
	"\t\t\tgh_reply(c, 550, \"5.1.1\", \"%s\", conf->message);",
	"\t\t\treturn GH_DENY;",
	"\t\t}",
	"\t}",
	"\treturn GH_CONT;",
	"}",
	"",
	"static const struct gh_hook_entry @NAME@_hooks[] = {",
	"\t{ GH_HOOK_RCPT, @NAME@_rcpt },",
	"\t{ 0, NULL }",
	"};",
	"",
	"const struct gh_module gh_module_@NAME@ = {",
	"\t.abi = GH_ABI_VERSION,",
	"\t.name = \"@NAME@\",",
	"\t.description = \"refuses the recipients it is given\",",
	"\t.doc =",
	"\t    \"At the rcpt hook, @NAME@ refuses each recipient\\n\"",
	"\t    \"listed in `refuse` with 550 5.1.1 and the text\\n\"",
	"\t    \"of `message`; other recipients go on down the\\n\"",
	"\t    \"chain.\\n\"",
	"\t    \"\\n\"",
	"\t    \"Directives:\\n\"",
	"\t    \"  refuse = [ ];\\n\"",
	"\t    \"      mailboxes to refuse, in any case\\n\"",
	"\t    \"  message = \\\"mailbox unavailable\\\";\\n\"",
	"\t    \"      the text of the refusal\\n\"",
	"\t    \"\\n\"",
	"\t    \"Example:\\n\"",
	"\t    \"  plugins = [ \\\"@NAME@\\\" ];\\n\"",
	"\t    \"  @NAME@ = {\\n\"",
	"\t    \"    refuse = [ \\\"abuse@example.test\\\" ];\\n\"",
	"\t    \"  };\\n\",",
	"\t.directives = @NAME@_directives,",
	"\t.conf_size = sizeof(struct @NAME@_conf),",
	"\t.hooks = @NAME@_hooks,",
	"\t.init = @NAME@_init,",
	"};",
	NULL
};

/* The name becomes C identifiers and a libconfig group. */
static int
skeleton_name_valid(const char *s)
{
	size_t n;

	if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z')))
		return 0;
	for (n = 0; s[n] != '\0'; n++)
		if (!((s[n] >= 'a' && s[n] <= 'z') ||
		      (s[n] >= 'A' && s[n] <= 'Z') ||
		      (s[n] >= '0' && s[n] <= '9') || s[n] == '_'))
			return 0;
	return n <= 64;
}

static int
print_skeleton(const char *name)
{
	const char *line, *at;
	size_t i;

	if (!skeleton_name_valid(name)) {
		fprintf(stderr, "relayd: -p \"%s\": a plugin name is a letter "
			"then letters, digits or _ (at most 64)\n", name);
		return 2;
	}
	for (i = 0; skeleton[i] != NULL; i++) {
		for (line = skeleton[i];
		     (at = strstr(line, "@NAME@")) != NULL; line = at + 6)
			printf("%.*s%s", (int)(at - line), line, name);
		printf("%s\n", line);
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

static void
print_wire_table(void)
{
	static const enum gh_hook hooks[] = {
		GH_HOOK_CONNECT, GH_HOOK_HELO, GH_HOOK_UNRECOGNIZED_COMMAND,
		GH_HOOK_AUTH, GH_HOOK_MAIL, GH_HOOK_RCPT, GH_HOOK_RCPT_OK,
		GH_HOOK_DATA, GH_HOOK_DATA_POST, GH_HOOK_MAX_DATA_EXCEEDED,
		GH_HOOK_QUEUE
	};
	static const char *const actions[] = {
		"", " +close", " +loop", "next stage", ""
	};
	size_t i;
	int v;

	printf("| hook |");
	for (v = 0; v < GH_AGAIN; v++)
		printf(" %s |", gh_verdict_name(v));
	printf("\n|---|");
	for (v = 0; v < GH_AGAIN; v++)
		printf("---|");
	printf("\n");
	for (i = 0; i < sizeof(hooks) / sizeof(hooks[0]); i++) {
		printf("| %s%s |", gh_hook_name(hooks[i]),
		       hooks[i] == GH_HOOK_CONNECT ? ", lookup_rdns" :
		       hooks[i] == GH_HOOK_HELO ? ", ehlo" :
		       hooks[i] == GH_HOOK_DATA_POST ? ", data_headers" : "");
		for (v = 0; v < GH_AGAIN; v++) {
			const struct gh_wire *w = gh_wire_reply(hooks[i], v, 1);

			if (w->action == GH_WIRE_NEXT)
				printf(" %s |", hooks[i] == GH_HOOK_QUEUE ?
				       "queue_ok, 250 2.0.0" : "next stage");
			else
				printf(" %d%s%s%s |", w->code, w->enh ? " " : "",
				       w->enh ? w->enh : "", actions[w->action]);
		}
		printf("\n");
	}
	printf("\nrcpt: CONT and STOP from a client that may not relay: "
	       "%d %s.\n", gh_wire_reply(GH_HOOK_RCPT, GH_CONT, 0)->code,
	       gh_wire_reply(GH_HOOK_RCPT, GH_CONT, 0)->enh);
}

/*
 * `relayd -h relayd|log|dns`: the host's own groups, printed like a
 * plugin's directives so every setting of relayd.conf is documented by
 * the binary that reads it.
 */
static int
print_group_help(const char *name)
{
	static const struct {
		const char *name, *what;
		const struct gh_directive *dirs;
	} groups[] = {
		{ "relayd", "the SMTP server: listeners, TLS, AUTH limits, "
		  "processes, SMTP limits and timeouts", relayd_directives },
		{ "log", "logging to stderr or syslog", log_directives },
		{ "dns", "the resolver every DNS-based plugin uses (c-ares, "
		  "one per worker)", gh_dns_directives },
	};
	size_t i;

	for (i = 0; i < sizeof(groups) / sizeof(groups[0]); i++) {
		if (strcmp(name, groups[i].name) != 0)
			continue;
		printf("%s - %s\n\nDIRECTIVES (group \"%s\" in the "
		       "configuration file)\n\n", groups[i].name,
		       groups[i].what, groups[i].name);
		gh_directives_print(stdout, groups[i].dirs);
		return 0;
	}
	return -1;
}

int
main(int argc, char **argv)
{
	static struct master m;
	const char *path = GH_SYSCONFDIR "/relayd.conf", *help = NULL;
	const char *skel = NULL;
	int ch, test = 0, daemonize = 0, list = 0, queue = 0, rc;
	int path_given = 0;
	char err[1024], abspath[PATH_MAX];

	while ((ch = getopt(argc, argv, "c:dth:lp:qRV")) != -1) {
		switch (ch) {
		case 'c': path = optarg; path_given = 1; break;
		case 'd': daemonize = 1; break;
		case 't': test = 1; break;
		case 'h': help = optarg; break;
		case 'l': list = 1; break;
		case 'p': skel = optarg; break;
		case 'q': queue = 1; break;
		case 'R': print_wire_table(); return 0;
		case 'V': printf("relayd (gatehouse) %s\n", PACKAGE_VERSION);
			return 0;
		default: usage();
		}
	}
	if (optind != argc && !queue)
		usage();
	gh_log_init("relayd", GH_LOG_INFO, 0);
	if (skel != NULL)
		return print_skeleton(skel);
	if (list) {
		gh_module_print_list(stdout);
		return 0;
	}
	if (help != NULL) {
		if (print_group_help(help) == 0)
			return 0;
		return gh_module_help_command("relayd", help,
					      path_given ? path : NULL);
	}
	if (queue) {
		if (config_load(path, &m.cur, err, sizeof(err)) != 0) {
			fprintf(stderr, "relayd: %s\n", err);
			return 2;
		}
		return spoolq_command(m.cur.cfg, argc - optind, argv + optind);
	}
	if (config_load(path, &m.cur, err, sizeof(err)) != 0 ||
	    config_check(path, &m.cur, err, sizeof(err)) != 0) {
		fprintf(stderr, "relayd: %s\n", err);
		return 2;
	}
	if (test) {
		printf("relayd: configuration %s is valid\n", path);
		return 0;
	}
	/* daemon() moves to /: a reload must still find the file. */
	if (realpath(path, abspath) != NULL)
		path = abspath;
	gh_log_init("relayd", m.cur.log.level, m.cur.log.syslog);
	nofile_raise(m.cur.conf.max_connections);
	m.path = path;
	m.srv.conf = &m.cur.conf;
	m.srv.dns = &m.cur.dns;
	m.srv.cfg = m.cur.cfg;
	master_hostname(&m);
	/* Four slots per allowed connection keeps probe chains short. */
	m.srv.conns = conn_table_create((size_t)m.cur.conf.max_connections * 4
					+ 1024, MAX_WORKERS * 2,
					(size_t)m.cur.conf.max_connections);
	m.conn_capacity = m.cur.conf.max_connections;
	m.srv.auth_fails = fail_table_create(AUTH_FAIL_SLOTS);
	if (m.srv.conns == NULL || m.srv.auth_fails == NULL ||
	    listeners_open(&m.srv, &m.cur.conf, NULL, err, sizeof(err)) != 0) {
		fprintf(stderr, "relayd: %s\n", m.srv.conns &&
			m.srv.auth_fails ? err : "cannot map the connection "
			"tables");
		return 1;
	}
	if (daemonize && daemon(0, 0) != 0) {
		fprintf(stderr, "relayd: daemon: %s\n", strerror(errno));
		return 1;
	}
	if (pid_file_write(&m) != 0)
		return 1;
	rc = master_run(&m);
	pid_file_remove(&m);
	return rc;
}
