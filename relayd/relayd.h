/*
 * relayd.h - the SMTP server's shared declarations.
 *
 * main.c is the master (options, configuration, listeners, workers),
 * server.c a worker's accept loop and connection limits, session.c one
 * SMTP session: a command table, then check, chain, proceed.
 */
#ifndef GATEHOUSE_RELAYD_H
#define GATEHOUSE_RELAYD_H

#include <stdint.h>
#include <sys/types.h>

#include "core.h"

#define RELAYD_MAX_LISTEN 32

/* ssl.h stays out of the files that do not speak TLS. */
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;

enum listen_tls {
	LISTEN_TLS_NONE = 0,
	LISTEN_TLS_STARTTLS,		/* RFC 3207, on ports 25 and 587 */
	LISTEN_TLS_IMPLICIT		/* RFC 8314, port 465 */
};

/* client_cert= of a listener: ask for a client certificate or not. */
enum client_cert {
	CLIENT_CERT_NONE = 0,
	CLIENT_CERT_OPTIONAL,		/* asked for, verified, not needed */
	CLIENT_CERT_REQUIRE		/* no verified certificate: no TLS */
};

/* One entry of relayd.listen: "ADDRESS [tls=..] [role=..] ...", parsed
 * by main.c; the strings live in the configuration's pool. */
struct listener {
	const char *spec;		/* as written, for messages */
	const char *address;		/* "host:port" or "[v6]:port" */
	enum listen_tls tls;
	int submission;			/* role=submission: AUTH before MAIL */
	int auth_plaintext;		/* AUTH offered without TLS */
	const char *cert, *key;		/* "" without TLS */
	enum client_cert client_cert;
	int proxy;			/* proxy=yes: a PROXY header first */
	SSL_CTX *ssl;			/* built by the master; NULL: no TLS */
};

/* The `relayd` group of the configuration file. */
struct relayd_conf {
	const char *hostname;
	struct gh_strlist listen;
	const char *tls_cert;
	const char *tls_key;
	struct gh_strlist tls_sni;	/* "NAME CERTFILE KEYFILE" */
	const char *tls_ca;		/* verifies client certificates */
	long long auth_max_failures;
	long long auth_failure_delay;
	long long auth_failure_window;
	struct gh_strlist proxy_hosts;	/* who may send a PROXY header */
	long long proxy_timeout;
	struct gh_strlist xclient_hosts;	/* who may send XCLIENT */
	long long workers;
	const char *user;
	const char *pid_file;
	long long max_message_size;
	long long max_recipients;
	long long max_line_length;
	long long max_header_size;
	long long max_header_line;
	long long max_connections;
	long long max_connections_per_ip;
	long long max_unrecognized;
	long long timeout_command;
	long long timeout_data;
	long long drain_timeout;
	int bare_line_ends;		/* 0 normalize, 1 reject */
	long long spool_threshold;
	const char *tmp_dir;
	int received_header;
	const char *trace_header;
	/* Not directives: relayd.listen parsed, one per entry. */
	struct listener listeners[RELAYD_MAX_LISTEN];
	size_t nlisteners;
	/* proxy_hosts and xclient_hosts parsed, in the config's pool. */
	struct gh_net *proxy_nets, *xclient_nets;
	size_t nproxy_nets, nxclient_nets;
};

/* The `log` group. */
struct log_conf {
	int level;			/* enum gh_loglevel */
	int syslog;
};

extern const struct gh_directive relayd_directives[];
extern const struct gh_directive log_directives[];

/* Connection counts shared by all workers (an anonymous shared mapping
 * made by the master before fork), so the limits hold per host. */
struct conn_table;
struct conn_table *conn_table_create(size_t slots, size_t nworkers,
				     size_t per_worker);
/* Returns a ticket for conn_table_leave, or -1 when over a limit. */
int conn_table_enter(struct conn_table *t, int worker,
		     const struct sockaddr *sa, long long max_total,
		     long long max_per_ip);
void conn_table_leave(struct conn_table *t, int worker, int ticket);
/* Give back every count a (dead) worker held. */
void conn_table_release(struct conn_table *t, int worker);

/* AUTH failures per client address, shared by all workers like the
 * connection counts: a failure counts for auth_failure_window seconds.
 * fail_table_add returns the count including this one. */
struct fail_table;
struct fail_table *fail_table_create(size_t slots);
int fail_table_count(struct fail_table *t, const struct sockaddr *sa,
		     long long window);
int fail_table_add(struct fail_table *t, const struct sockaddr *sa,
		   long long window);
void fail_table_clear(struct fail_table *t, const struct sockaddr *sa);

/* A worker. */
struct server {
	struct relayd_conf *conf;
	const struct gh_dns_conf *dns;
	struct gh_config *cfg;
	struct gh_runtime *rt;
	struct event_base *base;
	struct conn_table *conns;
	struct fail_table *auth_fails;
	int worker;			/* index of this worker's tickets */
	int share, nshares;		/* its share of the spool */
	struct event *listen_ev[RELAYD_MAX_LISTEN];
	int listen_fd[RELAYD_MAX_LISTEN];
	size_t nlisten;
	const char *hostname;
	unsigned long nsessions;
	int draining;
	struct event *drain_timer;
	struct event *accept_pause;	/* out of descriptors: accept later */
};

int server_run(struct server *srv);
void server_session_closed(struct server *srv);
/* Is the address sa in one of nets[0..n)? */
int nets_match(const struct gh_net *nets, size_t n, const struct sockaddr *sa);

/* session.c.  sa is the client; local the address it connected to
 * (NULL: the socket's own); via, when not NULL, says for the log how
 * relayd learned them (a PROXY header). */
void session_start(struct server *srv, const struct listener *lst, int fd,
		   const struct sockaddr *sa, socklen_t salen,
		   const struct sockaddr *local, const char *via);

/* tls.c */
/* relayd.tls_sni syntax; errors name the directive and the entry. */
int tls_conf_check(const struct relayd_conf *c, char *err, size_t errlen);
/* A TLS listener's context with its SNI contexts; errors name the
 * directive and the file. */
SSL_CTX *tls_server_ctx(const struct relayd_conf *c,
			const struct listener *ls, char *err, size_t errlen);
/* After the handshake: the client's certificate, if it sent one, as
 * conn notes tls.client_subject, tls.client_issuer,
 * tls.client_fingerprint, tls.client_verified, a "tls" result and a
 * log line. */
void tls_client_record(SSL *ssl, struct gh_conn *c);
/* Why the client's certificate did not verify, or NULL. */
const char *tls_verify_error(SSL *ssl);
/* The Received header's TLS comments (RFC 5321 4.4) from the conn's
 * tls.* notes: "\r\n\t(using ...)" and the client certificate's. */
void tls_received(const struct gh_notes *n, char *buf, size_t len);
void tls_ctx_free(SSL_CTX *ctx);
const char *tls_error(void);
void tls_describe(SSL *ssl, char *version, size_t vlen, char *cipher,
		  size_t clen);

#endif
