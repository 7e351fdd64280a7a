/*
 * server.c - a worker: accept loop, connection limits, draining.
 *
 * Workers share the listening sockets the master opened.  Connection
 * counts live in a table in shared memory so that max_connections and
 * max_connections_per_ip hold for the host, not per worker.  SIGTERM
 * makes a worker stop accepting and exit once its sessions are done (or
 * drain_timeout passed).  On a proxy=yes listener the PROXY header is
 * read here, before the session exists.
 */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "proxy.h"
#include "relayd.h"

/*
 * The table: open addressing on a hash of the client address, sized far
 * beyond max_connections so probes stay short; a slot whose count is zero
 * is reused for another address.  All updates are atomic builtins:
 * workers are separate processes.
 *
 * Each worker also records what it counted in a ticket region of its own
 * (written only by that worker), so that when a worker dies the master
 * gives its connections back: a crash must not eat into the limits.
 */
struct conn_slot {
	unsigned char key[16];
	int used;
	int count;
};

struct conn_ticket {
	int used;
	unsigned char key[16];
	long slot;			/* the slot counted in, or -1 */
};

struct conn_table {
	int total;
	size_t nslots;
	size_t nworkers, per_worker;
	struct conn_slot *slots;
	struct conn_ticket *tickets;	/* nworkers * per_worker */
};

struct conn_table *
conn_table_create(size_t slots, size_t nworkers, size_t per_worker)
{
	size_t len = sizeof(struct conn_table) +
	    slots * sizeof(struct conn_slot) +
	    nworkers * per_worker * sizeof(struct conn_ticket);
	struct conn_table *t = mmap(NULL, len, PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (t == MAP_FAILED)
		return NULL;
	t->nslots = slots;
	t->nworkers = nworkers;
	t->per_worker = per_worker;
	t->slots = (struct conn_slot *)(t + 1);
	t->tickets = (struct conn_ticket *)(t->slots + slots);
	return t;
}

/* One key an address: an IPv4 client of a dual-stack listener
 * (::ffff:a.b.c.d) counts as the IPv4 address it is, on every port. */
static void
addr_key(const struct sockaddr *sa, unsigned char key[16])
{
	const struct in6_addr *a6;

	memset(key, 0, 16);
	if (sa->sa_family == AF_INET6) {
		a6 = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(a6))
			memcpy(key + 12, &a6->s6_addr[12], 4);
		else
			memcpy(key, a6, 16);
	} else if (sa->sa_family == AF_INET)
		memcpy(key + 12, &((const struct sockaddr_in *)
		       (const void *)sa)->sin_addr, 4);
}

static size_t
addr_hash(const unsigned char key[16])
{
	uint32_t h = 2166136261u;
	size_t i;

	for (i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h;
}

/* Claim slot s for key: an empty slot, or one whose address has no
 * connection left (so a busy server never fills the table). */
static int
slot_claim(struct conn_slot *s, const unsigned char key[16])
{
	int expect = 0;

	if (!__atomic_compare_exchange_n(&s->used, &expect, 1, 0,
	    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		expect = 2;
		if (__atomic_load_n(&s->count, __ATOMIC_ACQUIRE) != 0 ||
		    !__atomic_compare_exchange_n(&s->used, &expect, 1, 0,
		    __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return 0;
		if (__atomic_load_n(&s->count, __ATOMIC_ACQUIRE) != 0) {
			__atomic_store_n(&s->used, 2, __ATOMIC_RELEASE);
			return 0;
		}
	}
	memcpy(s->key, key, 16);
	__atomic_store_n(&s->used, 2, __ATOMIC_RELEASE);
	return 1;
}

/*
 * Two passes: find the address along its probe sequence, else claim the
 * first reusable slot.  Two workers racing on a new address may both
 * claim a slot; its connections are then split in two counts, which only
 * loosens the per-address limit for that moment, never the total.
 */
static struct conn_slot *
slot_find(struct conn_table *t, const unsigned char key[16], int create)
{
	size_t h = addr_hash(key), n;

	for (n = 0; n < t->nslots; n++) {
		struct conn_slot *s = &t->slots[(h + n) % t->nslots];
		int used = __atomic_load_n(&s->used, __ATOMIC_ACQUIRE);

		if (used == 0)
			break;
		if (used == 2 && memcmp(s->key, key, 16) == 0)
			return s;
	}
	if (!create)
		return NULL;
	for (n = 0; n < t->nslots; n++) {
		struct conn_slot *s = &t->slots[(h + n) % t->nslots];

		if (slot_claim(s, key))
			return s;
	}
	return NULL;
}

/* Leave the slot that was counted in, by its index: looked up again by
 * address it may since be another address's (a slot whose count was 0
 * is reused), and the count would be taken from the wrong one. */
static void
count_leave(struct conn_table *t, long slot)
{
	struct conn_slot *s;

	__atomic_sub_fetch(&t->total, 1, __ATOMIC_ACQ_REL);
	if (slot < 0)
		return;
	s = &t->slots[slot];
	if (__atomic_load_n(&s->count, __ATOMIC_ACQUIRE) > 0)
		__atomic_sub_fetch(&s->count, 1, __ATOMIC_ACQ_REL);
}

/*
 * Count one more connection of key in its slot.  Between finding a slot
 * and counting in it, another worker may reuse it for another address
 * (its count was 0): the count is then checked to have landed on key's
 * slot, and taken back and tried again if not.  NULL when no slot can
 * be had (the table is full: the total limit still holds).
 */
static struct conn_slot *
count_enter(struct conn_table *t, const unsigned char key[16], int *count)
{
	struct conn_slot *s;
	int tries;

	for (tries = 0; tries < 8; tries++) {
		if ((s = slot_find(t, key, 1)) == NULL)
			return NULL;
		*count = __atomic_add_fetch(&s->count, 1, __ATOMIC_ACQ_REL);
		if (__atomic_load_n(&s->used, __ATOMIC_ACQUIRE) == 2 &&
		    memcmp(s->key, key, 16) == 0)
			return s;
		__atomic_sub_fetch(&s->count, 1, __ATOMIC_ACQ_REL);
	}
	return NULL;
}

static struct conn_ticket *
ticket_take(struct conn_table *t, int worker, const unsigned char key[16],
	    int *ticket)
{
	struct conn_ticket *region = t->tickets +
	    (size_t)worker * t->per_worker;
	size_t i;

	for (i = 0; i < t->per_worker; i++)
		if (!region[i].used) {
			region[i].used = 1;
			memcpy(region[i].key, key, 16);
			*ticket = (int)i;
			return &region[i];
		}
	return NULL;
}

int
conn_table_enter(struct conn_table *t, int worker, const struct sockaddr *sa,
		 long long max_total, long long max_per_ip)
{
	unsigned char key[16];
	struct conn_slot *s;
	struct conn_ticket *k;
	int ticket, count;

	addr_key(sa, key);
	if (ticket_take(t, worker, key, &ticket) == NULL)
		return -1;	/* this worker holds max_connections */
	if (__atomic_add_fetch(&t->total, 1, __ATOMIC_ACQ_REL) > max_total) {
		__atomic_sub_fetch(&t->total, 1, __ATOMIC_ACQ_REL);
		t->tickets[(size_t)worker * t->per_worker + ticket].used = 0;
		return -1;
	}
	k = &t->tickets[(size_t)worker * t->per_worker + ticket];
	k->slot = -1;
	if ((s = count_enter(t, key, &count)) == NULL)
		return ticket;	/* table full: the total limit still holds */
	k->slot = (long)(s - t->slots);
	if (max_per_ip > 0 && count > max_per_ip) {
		count_leave(t, k->slot);
		k->used = 0;
		return -1;
	}
	return ticket;
}

void
conn_table_leave(struct conn_table *t, int worker, int ticket)
{
	struct conn_ticket *k = &t->tickets[(size_t)worker * t->per_worker +
					    (size_t)ticket];

	if (!k->used)
		return;
	count_leave(t, k->slot);
	k->used = 0;
}

void
conn_table_release(struct conn_table *t, int worker)
{
	size_t i;
	int n = 0;

	/* The worker is gone (waitpid told us): its region is ours. */
	for (i = 0; i < t->per_worker; i++)
		if (t->tickets[(size_t)worker * t->per_worker + i].used) {
			conn_table_leave(t, worker, (int)i);
			n++;
		}
	if (n > 0)
		gh_log(GH_LOG_INFO, "released %d connection counts of a "
		       "stopped worker", n);
}

/* ------------------------------------------------------------------ */
/*
 * AUTH failures per client address.  Like the connection counts, the
 * table is shared by the workers, so that a guesser cannot spread its
 * tries over them or over new connections.  Each address probes a few
 * slots; a new address takes a free or expired slot, else the one whose
 * last failure is oldest: under a flood of addresses the table forgets
 * the least recent, never refuses to count.  Races between workers can
 * lose a count, which only loosens the limit for that moment.
 */
#define FAIL_PROBES 8

struct fail_slot {
	unsigned char key[16];
	int count;
	time_t last;
};

struct fail_table {
	size_t nslots;
	struct fail_slot *slots;
};

struct fail_table *
fail_table_create(size_t slots)
{
	size_t len = sizeof(struct fail_table) +
	    slots * sizeof(struct fail_slot);
	struct fail_table *t = mmap(NULL, len, PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (t == MAP_FAILED)
		return NULL;
	t->nslots = slots;
	t->slots = (struct fail_slot *)(t + 1);
	return t;
}

/* A slot to reuse ranks by its last failure; free or expired first. */
static time_t
fail_rank(const struct fail_slot *s, time_t now, long long window)
{
	return s->count == 0 || now - s->last >= window ? 0 : s->last;
}

static struct fail_slot *
fail_find(struct fail_table *t, const unsigned char key[16], time_t now,
	  long long window, int create)
{
	struct fail_slot *s, *victim = NULL;
	size_t h = addr_hash(key), n;

	for (n = 0; n < FAIL_PROBES && n < t->nslots; n++) {
		s = &t->slots[(h + n) % t->nslots];
		if (s->count > 0 && memcmp(s->key, key, 16) == 0) {
			if (now - s->last >= window)
				s->count = 0;
			return s;
		}
		if (victim == NULL || fail_rank(s, now, window) <
		    fail_rank(victim, now, window))
			victim = s;
	}
	if (!create || victim == NULL)
		return NULL;
	memcpy(victim->key, key, 16);
	victim->count = 0;
	return victim;
}

int
fail_table_count(struct fail_table *t, const struct sockaddr *sa,
		 long long window)
{
	unsigned char key[16];
	struct fail_slot *s;

	addr_key(sa, key);
	s = fail_find(t, key, time(NULL), window, 0);
	return s != NULL ? s->count : 0;
}

int
fail_table_add(struct fail_table *t, const struct sockaddr *sa,
	       long long window)
{
	unsigned char key[16];
	time_t now = time(NULL);
	struct fail_slot *s;

	addr_key(sa, key);
	s = fail_find(t, key, now, window, 1);
	s->last = now;
	return __atomic_add_fetch(&s->count, 1, __ATOMIC_ACQ_REL);
}

void
fail_table_clear(struct fail_table *t, const struct sockaddr *sa)
{
	unsigned char key[16];
	struct fail_slot *s;

	addr_key(sa, key);
	if ((s = fail_find(t, key, time(NULL), 1, 0)) != NULL)
		__atomic_store_n(&s->count, 0, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------------ */
/* Trusted hosts (proxy_hosts, xclient_hosts).                          */

int
nets_match(const struct gh_net *nets, size_t n, const struct sockaddr *sa)
{
	struct gh_conn probe;
	size_t i;

	/* gh_net_match reads the client's address of a connection. */
	memset(&probe, 0, sizeof(probe));
	memcpy(&probe.remote_sa, sa, sa->sa_family == AF_INET6 ?
	       sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	for (i = 0; i < n; i++)
		if (gh_net_match(&nets[i], &probe))
			return 1;
	return 0;
}

/* ------------------------------------------------------------------ */
/*
 * PROXY protocol: on a proxy=yes listener the session starts only once
 * the load balancer's header has told who the client is, so that every
 * plugin, the per-address limits, the logs and the Received header see
 * the client, never the balancer.  A peer outside proxy_hosts is closed
 * on at once, unread; a header proxy_parse() refuses, or one not
 * complete within proxy_timeout, closes the connection with no reply
 * (the specification, section 2: a receiver must not guess).
 *
 * The header is read straight from the socket, before any bufferevent
 * exists, and never an octet past it: each read first peeks, and only
 * takes what proxy_parse() says belongs to the header.  What follows
 * stays in the socket for the session, plain text or a TLS ClientHello
 * on an implicit TLS listener alike.
 */
struct proxy_wait {
	struct server *srv;
	const struct listener *lst;
	int fd;
	struct event *ev;
	struct timespec deadline;
	struct sockaddr_storage peer;
	char peer_ip[INET6_ADDRSTRLEN];
	int peer_port;
	size_t len;
	unsigned char buf[PROXY_MAX_HEADER];
};

static void
sa_text(const struct sockaddr *sa, char *ip, size_t iplen, int *port)
{
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, (socklen_t)iplen);
		*port = ntohs(s6->sin6_port);
	} else {
		const struct sockaddr_in *s4 = (const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, ip, (socklen_t)iplen);
		*port = ntohs(s4->sin_port);
	}
}

static void
proxy_wait_end(struct proxy_wait *pw, int close_fd)
{
	struct server *srv = pw->srv;

	event_free(pw->ev);
	if (close_fd)
		close(pw->fd);
	free(pw);
	if (close_fd)
		server_session_closed(srv);
	else
		srv->nsessions--;	/* the session counts it now */
}

/* Wait for more of the header, up to the deadline set at accept. */
static void
proxy_wait_more(struct proxy_wait *pw)
{
	struct timespec now;
	struct timeval tv = { 0, 0 };
	long long ns;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ns = (long long)(pw->deadline.tv_sec - now.tv_sec) * 1000000000LL +
	    (pw->deadline.tv_nsec - now.tv_nsec);
	if (ns > 0) {
		tv.tv_sec = (time_t)(ns / 1000000000LL);
		tv.tv_usec = (suseconds_t)(ns % 1000000000LL / 1000);
	}
	event_add(pw->ev, &tv);
}

static void
proxy_refused(struct proxy_wait *pw, const char *why)
{
	gh_log(GH_LOG_INFO, "PROXY header from %s port %d refused: %s; "
	       "closed", pw->peer_ip, pw->peer_port, why);
	proxy_wait_end(pw, 1);
}

/* The whole header is in: the session starts with what it said. */
static void
proxy_accepted(struct proxy_wait *pw, const struct proxy_info *info)
{
	char via[160];
	const struct sockaddr *sa = (const struct sockaddr *)&pw->peer;

	if (info->local) {
		/* v1 UNKNOWN, v2 LOCAL: the balancer speaking for itself
		 * (a health check); sections 2.1 and 2.2 keep the
		 * connection's own addresses. */
		snprintf(via, sizeof(via), "PROXY v%d %s from %s port %d, "
			 "the balancer's own connection", info->version,
			 info->version == 1 ? "UNKNOWN" : "LOCAL", pw->peer_ip,
			 pw->peer_port);
		session_start(pw->srv, pw->lst, pw->fd, sa,
			      pw->peer.ss_family == AF_INET6 ?
			      sizeof(struct sockaddr_in6) :
			      sizeof(struct sockaddr_in), NULL, via);
	} else {
		snprintf(via, sizeof(via), "PROXY v%d from %s port %d",
			 info->version, pw->peer_ip, pw->peer_port);
		session_start(pw->srv, pw->lst, pw->fd,
			      (const struct sockaddr *)&info->src,
			      info->family == AF_INET6 ?
			      sizeof(struct sockaddr_in6) :
			      sizeof(struct sockaddr_in),
			      (const struct sockaddr *)&info->dst, via);
	}
	proxy_wait_end(pw, 0);
}

static void
proxy_read_cb(evutil_socket_t fd, short what, void *arg)
{
	struct proxy_wait *pw = arg;
	struct proxy_info info;
	enum proxy_status st;
	size_t consumed = 0;
	ssize_t n;

	if (what & EV_TIMEOUT) {
		gh_log(GH_LOG_INFO, "PROXY header from %s port %d: not "
		       "complete within %lld seconds (%zu octets); closed",
		       pw->peer_ip, pw->peer_port, pw->srv->conf->proxy_timeout,
		       pw->len);
		proxy_wait_end(pw, 1);
		return;
	}
	n = recv(fd, pw->buf + pw->len, sizeof(pw->buf) - pw->len, MSG_PEEK);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK ||
	    errno == EINTR)) {
		proxy_wait_more(pw);
		return;
	}
	if (n <= 0) {
		gh_log(GH_LOG_INFO, "PROXY header from %s port %d: %s after "
		       "%zu octets", pw->peer_ip, pw->peer_port, n == 0 ?
		       "connection closed" : strerror(errno), pw->len);
		proxy_wait_end(pw, 1);
		return;
	}
	st = proxy_parse(pw->buf, pw->len + (size_t)n, &info, &consumed);
	if (st == PROXY_ERROR) {
		proxy_refused(pw, info.why);
		return;
	}
	/* NEED_MORE: every octet peeked is header; OK: take only the
	 * header.  Either way what is taken was peeked, so it is there. */
	if (st == PROXY_OK)
		n = (ssize_t)(consumed - pw->len);
	if (recv(fd, pw->buf + pw->len, (size_t)n, 0) != n) {
		proxy_refused(pw, "short read");
		return;
	}
	pw->len += (size_t)n;
	if (st == PROXY_OK) {
		proxy_accepted(pw, &info);
		return;
	}
	if (pw->len >= sizeof(pw->buf)) {
		/* proxy_parse() decides within PROXY_MAX_HEADER octets. */
		proxy_refused(pw, "header too long");
		return;
	}
	proxy_wait_more(pw);
}

static void
proxy_accept(struct server *srv, const struct listener *lst, int fd,
	     const struct sockaddr *sa, socklen_t salen)
{
	struct proxy_wait *pw = calloc(1, sizeof(*pw));
	char ip[INET6_ADDRSTRLEN];
	int port;

	if (!nets_match(srv->conf->proxy_nets, srv->conf->nproxy_nets, sa)) {
		sa_text(sa, ip, sizeof(ip), &port);
		gh_log(GH_LOG_INFO, "connection from %s port %d to PROXY "
		       "listener %s: not in relayd.proxy_hosts; closed", ip,
		       port, lst->address);
		free(pw);
		close(fd);
		return;
	}
	if (pw == NULL) {
		close(fd);
		return;
	}
	pw->srv = srv;
	pw->lst = lst;
	pw->fd = fd;
	memcpy(&pw->peer, sa, salen);
	sa_text(sa, pw->peer_ip, sizeof(pw->peer_ip), &pw->peer_port);
	if ((pw->ev = event_new(srv->base, fd, EV_READ, proxy_read_cb,
				pw)) == NULL) {
		close(fd);
		free(pw);
		return;
	}
	srv->nsessions++;
	clock_gettime(CLOCK_MONOTONIC, &pw->deadline);
	pw->deadline.tv_sec += (time_t)srv->conf->proxy_timeout;
	proxy_wait_more(pw);
}

/* ------------------------------------------------------------------ */

/* The pause is over: listen again (unless draining meanwhile). */
static void
accept_resume(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;
	size_t i;

	(void)fd;
	(void)what;
	for (i = 0; i < srv->nlisten && !srv->draining; i++)
		if (srv->listen_ev[i] != NULL)
			event_add(srv->listen_ev[i], NULL);
}

/*
 * accept(2) failed for want of a resource (descriptors, buffers): the
 * pending connection stays in the backlog, so the listening socket stays
 * readable and a level-triggered event would fire again at once, a busy
 * loop that floods the log.  Stop listening for a second, say so once.
 */
static void
accept_starved(struct server *srv, int err)
{
	struct timeval tv = { 1, 0 };
	size_t i;

	if (srv->accept_pause == NULL &&
	    (srv->accept_pause = evtimer_new(srv->base, accept_resume,
	    srv)) == NULL)
		return;
	if (evtimer_pending(srv->accept_pause, NULL))
		return;
	gh_log(GH_LOG_WARN, "accept: %s: not accepting for 1 s (%lu "
	       "sessions open)", strerror(err), srv->nsessions);
	for (i = 0; i < srv->nlisten; i++)
		if (srv->listen_ev[i] != NULL)
			event_del(srv->listen_ev[i]);
	evtimer_add(srv->accept_pause, &tv);
}

static void
accept_cb(evutil_socket_t lfd, short what, void *arg)
{
	struct server *srv = arg;
	const struct listener *lst = NULL;
	struct sockaddr_storage ss;
	socklen_t len;
	size_t k;
	int fd, i;

	(void)what;
	for (k = 0; k < srv->nlisten; k++)
		if (srv->listen_fd[k] == lfd)
			lst = &srv->conf->listeners[k];
	/* Take a handful per wake-up: fair to the other workers, cheap
	 * under a burst. */
	for (i = 0; i < 16; i++) {
		len = sizeof(ss);
		fd = accept4(lfd, (struct sockaddr *)&ss, &len,
			     SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE ||
			    errno == ENOBUFS || errno == ENOMEM)
				accept_starved(srv, errno);
			else if (errno != EAGAIN && errno != EWOULDBLOCK &&
			    errno != EINTR && errno != ECONNABORTED)
				gh_log(GH_LOG_WARN, "accept: %s",
				       strerror(errno));
			return;
		}
		if (lst->proxy)
			proxy_accept(srv, lst, fd, (struct sockaddr *)&ss, len);
		else
			session_start(srv, lst, fd, (struct sockaddr *)&ss,
				      len, NULL, NULL);
	}
}

static void
server_stop_listening(struct server *srv)
{
	size_t i;

	for (i = 0; i < srv->nlisten; i++)
		if (srv->listen_ev[i] != NULL) {
			event_free(srv->listen_ev[i]);
			srv->listen_ev[i] = NULL;
		}
}

void
server_session_closed(struct server *srv)
{
	srv->nsessions--;
	if (srv->draining && srv->nsessions == 0)
		event_base_loopbreak(srv->base);
}

static void
drain_expired(evutil_socket_t fd, short what, void *arg)
{
	struct server *srv = arg;

	(void)fd;
	(void)what;
	gh_log(GH_LOG_WARN, "drain timeout: closing %lu sessions",
	       srv->nsessions);
	event_base_loopbreak(srv->base);
}

static void
sigterm_cb(evutil_socket_t sig, short what, void *arg)
{
	struct server *srv = arg;
	struct timeval tv = { (time_t)srv->conf->drain_timeout, 0 };
	size_t i;

	(void)sig;
	(void)what;
	if (srv->draining)
		return;
	srv->draining = 1;
	server_stop_listening(srv);
	/* Our copies of the listening sockets: once the master's and every
	 * draining worker's are closed, new clients are refused by the
	 * kernel rather than left in a backlog nobody accepts from. */
	for (i = 0; i < srv->nlisten; i++) {
		close(srv->listen_fd[i]);
		srv->listen_fd[i] = -1;
	}
	gh_log(GH_LOG_INFO, "worker draining %lu sessions", srv->nsessions);
	if (srv->nsessions == 0) {
		event_base_loopbreak(srv->base);
		return;
	}
	srv->drain_timer = evtimer_new(srv->base, drain_expired, srv);
	evtimer_add(srv->drain_timer, &tv);
}

int
server_run(struct server *srv)
{
	struct event *term;
	char err[512];
	size_t i;

	srv->base = event_base_new();
	if (srv->base == NULL) {
		gh_log(GH_LOG_ERR, "cannot create the event loop");
		return 1;
	}
	if (gh_dns_start(srv->base, srv->dns, err, sizeof(err)) != 0) {
		gh_log(GH_LOG_ERR, "%s", err);
		return 2;
	}
	srv->rt = gh_runtime_create(srv->cfg, srv->base, err, sizeof(err));
	if (srv->rt == NULL) {
		gh_log(GH_LOG_ERR, "plugin start-up failed: %s", err);
		return 2;
	}
	for (i = 0; i < srv->nlisten; i++) {
		srv->listen_ev[i] = event_new(srv->base, srv->listen_fd[i],
					      EV_READ | EV_PERSIST, accept_cb,
					      srv);
		event_add(srv->listen_ev[i], NULL);
	}
	term = evsignal_new(srv->base, SIGTERM, sigterm_cb, srv);
	event_add(term, NULL);
	/* The master owns reloads: a worker ignores SIGHUP. */
	signal(SIGHUP, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);
	event_base_dispatch(srv->base);
	server_stop_listening(srv);
	event_free(term);
	if (srv->drain_timer != NULL)
		event_free(srv->drain_timer);
	if (srv->accept_pause != NULL)
		event_free(srv->accept_pause);
	gh_runtime_free(srv->rt);
	gh_dns_stop(srv->base);
	return 0;
}
