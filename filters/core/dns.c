/*
 * dns.c - the core resolver: c-ares bound to an event loop.
 *
 * One resolver per event loop, owned by the loop's thread (c-ares 1.18
 * channels are not thread-safe).  c-ares tells us which sockets to watch
 * (ARES_OPT_SOCK_STATE_CB) and we give each one a libevent event; one
 * timer follows ares_timeout() so c-ares can retry and time out.
 * Nothing here blocks.
 *
 * Every question (type, lower-cased name) is an entry.  An entry is
 * pending while c-ares works on it, then done: its answer is cached for
 * its TTL (negative answers for the SOA minimum, RFC 2308 5, capped) in
 * a hash table with an LRU list bounded by cache_size.  A second query
 * for a pending entry waits on it (merging), one for a done entry is a
 * cache hit.  Each pending entry has a deadline (`timeout`, all tries
 * included): past it the waiters get TEMPFAIL and the entry is orphaned
 * until c-ares lets go of it.  Temporary failures (SERVFAIL, REFUSED,
 * timeouts) are cached too, for failure_ttl seconds: RFC 9520 asks
 * resolvers to, so that a dead or broken server costs one timeout per
 * question and not one per connection that asks it.
 *
 * Callbacks never run inside gh_dns_query() or inside c-ares: answered
 * waiters move to a ready list that an event drains, so a plugin always
 * has its handle before its answer, and may query or cancel freely from
 * its callback.  Entries are reference counted: the hash table, c-ares
 * and each waiter hold one.
 */
#include "config.h"

#include <ares.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "core.h"

#define DNS_MAX_RR 64		/* records kept from one answer */
#define DNS_NAME_MAX 253	/* RFC 1035 2.3.4, without the final dot */
#define DNS_CLASS_IN 1
#define DNS_RCODE_NXDOMAIN 3
#define DNS_T_A 1
#define DNS_T_CNAME 5
#define DNS_T_SOA 6
#define DNS_T_PTR 12
#define DNS_T_MX 15
#define DNS_T_TXT 16
#define DNS_T_AAAA 28

#define DC(f) offsetof(struct gh_dns_conf, f)

const struct gh_directive gh_dns_directives[] = {
	{ "servers", GH_DT_STRLIST, DC(servers), "[ ]", 0, 16, NULL,
	  "name servers: \"ip\", \"ip:port\" or \"[ipv6]:port\"; empty: "
	  "those of /etc/resolv.conf" },
	{ "timeout", GH_DT_INT, DC(timeout), "5", 1, 120, NULL,
	  "seconds a query may take, all tries included; then it is a "
	  "temporary failure" },
	{ "tries", GH_DT_INT, DC(tries), "2", 1, 10, NULL,
	  "times a question is sent to each server" },
	{ "cache_size", GH_DT_INT, DC(cache_size), "10000", 0, 10000000,
	  NULL, "answers cached per worker (0: no cache)" },
	{ "max_ttl", GH_DT_INT, DC(max_ttl), "86400", 0, 604800, NULL,
	  "longest time in seconds an answer is cached" },
	{ "negative_ttl", GH_DT_INT, DC(negative_ttl), "300", 0, 86400, NULL,
	  "longest time a \"no such name\" or \"no data\" answer is cached; "
	  "also its time when the server sent no SOA" },
	{ "failure_ttl", GH_DT_INT, DC(failure_ttl), "5", 0, 300, NULL,
	  "seconds a temporary failure (timeout, SERVFAIL, REFUSED) is "
	  "cached, so a dead server is not waited out by every connection "
	  "(RFC 9520: at least 1, at most 300; 0: not cached)" },
	{ "rdns", GH_DT_BOOL, DC(rdns), "true", 0, 0, NULL,
	  "look up every client's forward-confirmed reverse DNS name before "
	  "the lookup_rdns hook" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

struct resolver;

enum entry_state { E_PENDING, E_DONE, E_ORPHAN };

struct gh_dns_query {
	struct dns_entry *e;
	gh_dns_cb cb;
	void *arg;
	unsigned ready : 1;		/* on res->ready, else on e->waiters */
	TAILQ_ENTRY(gh_dns_query) link;
};
TAILQ_HEAD(query_list, gh_dns_query);

struct dns_entry {
	struct resolver *res;
	enum entry_state state;
	enum gh_dns_type type;
	char *name;
	int refs;
	time_t expires;			/* monotonic seconds */
	struct gh_dns_answer ans;
	struct gh_dns_rr *rr;
	char *strings;			/* what rr[i].data points into */
	struct event *deadline;
	struct query_list waiters;
	struct dns_entry *hnext;
	TAILQ_ENTRY(dns_entry) lru;
	unsigned in_hash : 1;
	unsigned in_lru : 1;
};
TAILQ_HEAD(entry_list, dns_entry);

struct dns_sock {
	struct resolver *res;
	ares_socket_t fd;
	struct event *ev;
	struct dns_sock *next;
};

struct resolver {
	struct event_base *base;
	struct gh_dns_conf conf;
	ares_channel channel;
	struct event *timer;
	struct event *ready_ev;
	struct query_list ready;
	struct dns_sock *socks;
	struct dns_entry **hash;
	size_t hsize;			/* a power of two */
	size_t ncached;			/* entries on the LRU list */
	struct entry_list lru;
	int stopping;
	unsigned long nqueries, nhits, nmerged, nsent;
	struct resolver *next;
};

/* Loops and their resolvers.  A worker has one loop; milterd has one per
 * loop thread, hence the lock (taken once per query, never held long). */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct resolver *registry;
static int ares_ready;

static const int qtypes[] = {
	[GH_DNS_A] = DNS_T_A, [GH_DNS_AAAA] = DNS_T_AAAA,
	[GH_DNS_MX] = DNS_T_MX, [GH_DNS_TXT] = DNS_T_TXT,
	[GH_DNS_PTR] = DNS_T_PTR
};

static void entry_unref(struct dns_entry *e);

const char *
gh_dns_status_name(enum gh_dns_status s)
{
	static const char *const names[] = {
		"ok", "nxdomain", "nodata", "tempfail"
	};

	return (unsigned)s < 4 ? names[s] : "?";
}

const char *
gh_dns_type_name(enum gh_dns_type t)
{
	static const char *const names[] = { "A", "AAAA", "MX", "TXT", "PTR" };

	return (unsigned)t < 5 ? names[t] : "?";
}

static time_t
mono_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec;
}

static struct resolver *
resolver_of(struct event_base *base)
{
	struct resolver *r;

	pthread_mutex_lock(&registry_lock);
	for (r = registry; r != NULL && r->base != base; r = r->next)
		;
	pthread_mutex_unlock(&registry_lock);
	return r;
}

/* ------------------------------------------------------------------ */
/* c-ares on the loop: socket events and the timeout timer.            */

static void
timer_update(struct resolver *r)
{
	struct timeval tv, *tvp;

	if (r->stopping)
		return;
	tvp = ares_timeout(r->channel, NULL, &tv);
	if (tvp != NULL)
		evtimer_add(r->timer, tvp);
	else
		evtimer_del(r->timer);
}

static void
timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct resolver *r = arg;

	(void)fd;
	(void)what;
	ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
	timer_update(r);
}

static void
sock_cb(evutil_socket_t fd, short what, void *arg)
{
	struct resolver *r = ((struct dns_sock *)arg)->res;

	/* c-ares may close this socket, and we free its event, in here. */
	ares_process_fd(r->channel, (what & EV_READ) ? fd : ARES_SOCKET_BAD,
			(what & EV_WRITE) ? fd : ARES_SOCKET_BAD);
	timer_update(r);
}

static void
sock_state_cb(void *data, ares_socket_t fd, int readable, int writable)
{
	struct resolver *r = data;
	struct dns_sock *s, **sp;
	short what = (readable ? EV_READ : 0) | (writable ? EV_WRITE : 0);

	for (sp = &r->socks; *sp != NULL && (*sp)->fd != fd;
	     sp = &(*sp)->next)
		;
	s = *sp;
	if (s != NULL) {
		event_free(s->ev);
		s->ev = NULL;
	}
	if (what == 0) {
		if (s != NULL) {
			*sp = s->next;
			free(s);
		}
		return;
	}
	if (s == NULL) {
		if ((s = calloc(1, sizeof(*s))) == NULL) {
			gh_log(GH_LOG_ERR, "dns: out of memory for a socket");
			return;	/* the query times out */
		}
		s->res = r;
		s->fd = fd;
		s->next = r->socks;
		r->socks = s;
	}
	s->ev = event_new(r->base, fd, what | EV_PERSIST, sock_cb, s);
	if (s->ev != NULL)
		event_add(s->ev, NULL);
}

/* ------------------------------------------------------------------ */
/* Answers: parsing a DNS message (RFC 1035 4.1).                      */

struct parse {
	const unsigned char *buf;
	int len;
	const unsigned char *p;
	struct gh_dns_rr rr[DNS_MAX_RR];
	size_t off[DNS_MAX_RR];		/* data offsets into text */
	size_t n;
	char *text;
	size_t tlen, tcap;
	unsigned min_ttl;
	int have_ttl;
	unsigned soa_ttl;
	int have_soa;
};

static int
need(const struct parse *ps, const unsigned char *p, long n)
{
	return p >= ps->buf && n >= 0 && (p - ps->buf) + n <= ps->len;
}

static int
text_add(struct parse *ps, const void *data, size_t n, size_t *off)
{
	if (ps->tlen + n + 1 > ps->tcap) {
		size_t cap = ps->tcap ? ps->tcap * 2 : 512;
		char *t;

		while (cap < ps->tlen + n + 1)
			cap *= 2;
		if ((t = realloc(ps->text, cap)) == NULL)
			return -1;
		ps->text = t;
		ps->tcap = cap;
	}
	*off = ps->tlen;
	if (data != NULL)
		memcpy(ps->text + ps->tlen, data, n);
	ps->tlen += n;
	ps->text[ps->tlen++] = '\0';
	return 0;
}

/* Expand the name at p; *next is where the field after it starts. */
static int
name_read(struct parse *ps, const unsigned char *p, char *out, size_t n,
	  const unsigned char **next)
{
	char *name = NULL;
	long enclen = 0;

	if (!need(ps, p, 1) || ares_expand_name(p, ps->buf, ps->len, &name,
						&enclen) != ARES_SUCCESS)
		return -1;
	if (out != NULL)
		snprintf(out, n, "%s", name);
	ares_free_string(name);
	if (next != NULL)
		*next = p + enclen;
	return 0;
}

static void
ttl_note(struct parse *ps, unsigned ttl)
{
	if (!ps->have_ttl || ttl < ps->min_ttl)
		ps->min_ttl = ttl;
	ps->have_ttl = 1;
}

static void
lower(char *s)
{
	for (; *s != '\0'; s++)
		*s = (char)tolower((unsigned char)*s);
}

/* One record of the type asked for. */
static int
rr_read(struct parse *ps, enum gh_dns_type type, const unsigned char *rd,
	unsigned rdlen, unsigned ttl)
{
	struct gh_dns_rr *rr = &ps->rr[ps->n];
	char buf[INET6_ADDRSTRLEN], name[DNS_NAME_MAX + 2];
	size_t o, tl;

	memset(rr, 0, sizeof(*rr));
	rr->ttl = ttl;
	switch (type) {
	case GH_DNS_A:
	case GH_DNS_AAAA:
		if (rdlen != (type == GH_DNS_A ? 4u : 16u))
			return -1;
		rr->family = type == GH_DNS_A ? AF_INET : AF_INET6;
		memcpy(rr->addr, rd, rdlen);
		inet_ntop(rr->family, rd, buf, sizeof(buf));
		rr->len = strlen(buf);
		return text_add(ps, buf, rr->len, &ps->off[ps->n]);
	case GH_DNS_MX:
		if (rdlen < 3)
			return -1;
		rr->pref = (unsigned)rd[0] << 8 | rd[1];
		/* FALLTHROUGH */
	case GH_DNS_PTR:
		if (name_read(ps, rd + (type == GH_DNS_MX ? 2 : 0), name,
			      sizeof(name), NULL) != 0)
			return -1;
		lower(name);
		rr->len = strlen(name);
		return text_add(ps, name, rr->len, &ps->off[ps->n]);
	case GH_DNS_TXT:
		/* RFC 7208 3.3: the strings of one record are joined. */
		if (text_add(ps, NULL, rdlen, &ps->off[ps->n]) != 0)
			return -1;
		for (o = 0, tl = 0; o < rdlen; o += 1 + rd[o]) {
			if (o + 1 + rd[o] > rdlen)
				return -1;
			memcpy(ps->text + ps->off[ps->n] + tl, rd + o + 1, rd[o]);
			tl += rd[o];
		}
		ps->text[ps->off[ps->n] + tl] = '\0';
		rr->len = tl;
		return 0;
	}
	return -1;
}

/* Walk count resource records from ps->p.  In the answer section keep
 * the records of the type asked for; in the authority section note an
 * SOA's negative-caching TTL (RFC 2308 5). */
static int
section_read(struct parse *ps, int count, int answer, enum gh_dns_type type)
{
	const unsigned char *p = ps->p, *rd;
	unsigned rtype, rclass, ttl, rdlen;
	int i;

	for (i = 0; i < count; i++) {
		if (name_read(ps, p, NULL, 0, &p) != 0 || !need(ps, p, 10))
			return -1;
		rtype = (unsigned)p[0] << 8 | p[1];
		rclass = (unsigned)p[2] << 8 | p[3];
		ttl = (unsigned)p[4] << 24 | (unsigned)p[5] << 16 |
		    (unsigned)p[6] << 8 | p[7];
		rdlen = (unsigned)p[8] << 8 | p[9];
		rd = p + 10;
		if (!need(ps, rd, rdlen))
			return -1;
		p = rd + rdlen;
		if (ttl > 0x7fffffffu)	/* RFC 2181 8 */
			ttl = 0;
		if (rclass != DNS_CLASS_IN)
			continue;
		if (answer && rtype == DNS_T_CNAME)
			ttl_note(ps, ttl);
		if (answer && (int)rtype == qtypes[type] && ps->n < DNS_MAX_RR) {
			if (rr_read(ps, type, rd, rdlen, ttl) != 0)
				return -1;
			ttl_note(ps, ttl);
			ps->n++;
		}
		if (!answer && rtype == DNS_T_SOA) {
			const unsigned char *f;
			unsigned minimum;

			if (name_read(ps, rd, NULL, 0, &f) != 0 ||
			    name_read(ps, f, NULL, 0, &f) != 0 ||
			    !need(ps, f, 20) || f + 20 > p)
				return -1;
			minimum = (unsigned)f[16] << 24 |
			    (unsigned)f[17] << 16 | (unsigned)f[18] << 8 | f[19];
			ps->soa_ttl = ttl < minimum ? ttl : minimum;
			ps->have_soa = 1;
		}
	}
	ps->p = p;
	return 0;
}

static int
mx_cmp(const void *a, const void *b)
{
	const struct gh_dns_rr *x = a, *y = b;

	return (x->pref > y->pref) - (x->pref < y->pref);
}

static void
entry_set_error(struct dns_entry *e, enum gh_dns_status st,
		const char *why)
{
	e->ans.status = st;
	e->ans.error = why;
	e->ans.n = 0;
	e->ans.rr = NULL;
	e->ans.ttl = 0;
}

/* Fill e's answer from a response; returns the TTL to cache it for. */
static unsigned
entry_parse(struct dns_entry *e, const unsigned char *buf, int len)
{
	const struct gh_dns_conf *cf = &e->res->conf;
	struct parse ps;
	int qd, an, ns, rcode, i;
	unsigned ttl;

	memset(&ps, 0, sizeof(ps));
	ps.buf = buf;
	ps.len = len;
	if (len < 12) {
		entry_set_error(e, GH_DNS_TEMPFAIL, "short answer");
		return 0;
	}
	rcode = buf[3] & 0x0f;
	qd = buf[4] << 8 | buf[5];
	an = buf[6] << 8 | buf[7];
	ns = buf[8] << 8 | buf[9];
	ps.p = buf + 12;
	for (i = 0; i < qd; i++)
		if (name_read(&ps, ps.p, NULL, 0, &ps.p) != 0 ||
		    !need(&ps, ps.p, 4) || (ps.p += 4, 0))
			goto bad;
	if (section_read(&ps, an, 1, e->type) != 0 ||
	    section_read(&ps, ns, 0, e->type) != 0)
		goto bad;
	if (rcode == 0 && ps.n > 0) {
		e->rr = malloc(ps.n * sizeof(*e->rr));
		if (e->rr == NULL)
			goto oom;
		memcpy(e->rr, ps.rr, ps.n * sizeof(*e->rr));
		e->strings = ps.text;
		for (i = 0; i < (int)ps.n; i++)
			e->rr[i].data = e->strings + ps.off[i];
		if (e->type == GH_DNS_MX)
			qsort(e->rr, ps.n, sizeof(*e->rr), mx_cmp);
		e->ans.status = GH_DNS_OK;
		e->ans.error = NULL;
		e->ans.rr = e->rr;
		e->ans.n = ps.n;
		ttl = ps.min_ttl;
		return ttl < (unsigned)cf->max_ttl ? ttl : (unsigned)cf->max_ttl;
	}
	free(ps.text);
	if (rcode == 0 || rcode == DNS_RCODE_NXDOMAIN) {
		entry_set_error(e, rcode == 0 ? GH_DNS_NODATA :
				GH_DNS_NXDOMAIN, rcode ? "no such name" : NULL);
		/* RFC 2308 5: negative answers last the SOA minimum; with no
		 * SOA, our cap. */
		ttl = ps.have_soa ? ps.soa_ttl : (unsigned)cf->negative_ttl;
		return ttl < (unsigned)cf->negative_ttl ? ttl :
		    (unsigned)cf->negative_ttl;
	}
	entry_set_error(e, GH_DNS_TEMPFAIL, rcode == 2 ? "SERVFAIL" :
			rcode == 5 ? "REFUSED" : "server error");
	return 0;
bad:
	free(ps.text);
	entry_set_error(e, GH_DNS_TEMPFAIL, "malformed answer");
	return 0;
oom:
	free(ps.text);
	entry_set_error(e, GH_DNS_TEMPFAIL, "out of memory");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Entries: the cache and the waiters.                                  */

static size_t
entry_hash(const struct resolver *r, enum gh_dns_type type,
	   const char *name)
{
	uint32_t h = 2166136261u ^ (uint32_t)type;

	for (; *name != '\0'; name++)
		h = (h ^ (unsigned char)*name) * 16777619u;
	return h & (r->hsize - 1);
}

static struct dns_entry *
hash_find(struct resolver *r, enum gh_dns_type type, const char *name)
{
	struct dns_entry *e = r->hash[entry_hash(r, type, name)];

	for (; e != NULL; e = e->hnext)
		if (e->type == type && strcmp(e->name, name) == 0)
			return e;
	return NULL;
}

static void
hash_add(struct resolver *r, struct dns_entry *e)
{
	size_t h = entry_hash(r, e->type, e->name);

	e->hnext = r->hash[h];
	r->hash[h] = e;
	e->in_hash = 1;
	e->refs++;
}

/* Take e out of the cache (hash and LRU); drops the cache's reference. */
static void
cache_remove(struct dns_entry *e)
{
	struct resolver *r = e->res;
	struct dns_entry **ep;

	if (!e->in_hash)
		return;
	for (ep = &r->hash[entry_hash(r, e->type, e->name)]; *ep != e;
	     ep = &(*ep)->hnext)
		;
	*ep = e->hnext;
	e->in_hash = 0;
	if (e->in_lru) {
		TAILQ_REMOVE(&r->lru, e, lru);
		e->in_lru = 0;
		r->ncached--;
	}
	entry_unref(e);
}

static void
entry_free(struct dns_entry *e)
{
	if (e->deadline != NULL)
		event_free(e->deadline);
	free(e->rr);
	free(e->strings);
	free(e->name);
	free(e);
}

static void
entry_unref(struct dns_entry *e)
{
	if (--e->refs == 0)
		entry_free(e);
}

static struct dns_entry *
entry_new(struct resolver *r, enum gh_dns_type type, const char *name)
{
	struct dns_entry *e = calloc(1, sizeof(*e));

	if (e == NULL || (e->name = strdup(name)) == NULL) {
		free(e);
		return NULL;
	}
	e->res = r;
	e->type = type;
	e->ans.type = type;
	e->ans.name = e->name;
	TAILQ_INIT(&e->waiters);
	return e;
}

/* Hand every waiter of e to the ready list. */
static void
entry_release_waiters(struct dns_entry *e)
{
	struct resolver *r = e->res;
	struct gh_dns_query *q;

	if (TAILQ_EMPTY(&e->waiters))
		return;
	while ((q = TAILQ_FIRST(&e->waiters)) != NULL) {
		TAILQ_REMOVE(&e->waiters, q, link);
		q->ready = 1;
		TAILQ_INSERT_TAIL(&r->ready, q, link);
	}
	event_active(r->ready_ev, 0, 0);
}

static void
cache_insert(struct dns_entry *e, unsigned ttl)
{
	struct resolver *r = e->res;

	if (ttl == 0 || r->conf.cache_size == 0) {
		cache_remove(e);
		return;
	}
	e->expires = mono_now() + (time_t)ttl;
	TAILQ_INSERT_HEAD(&r->lru, e, lru);
	e->in_lru = 1;
	r->ncached++;
	while (r->ncached > (size_t)r->conf.cache_size)
		cache_remove(TAILQ_LAST(&r->lru, entry_list));
}

/* A failure without an answer, in words for logs and replies. */
static const char *
ares_why(int status)
{
	switch (status) {
	case ARES_ETIMEOUT:
		return "timeout";
	case ARES_ECONNREFUSED:
		/* Also what c-ares says once every server said REFUSED. */
		return "servers refused or unreachable";
	case ARES_ESERVFAIL:
		return "SERVFAIL";
	case ARES_EREFUSED:
		return "REFUSED";
	}
	return ares_strerror(status);
}

static void
query_done(void *arg, int status, int timeouts, unsigned char *abuf,
	   int alen)
{
	struct dns_entry *e = arg;
	unsigned ttl = 0;

	(void)timeouts;
	if (e->state == E_PENDING && !e->res->stopping) {
		if (abuf != NULL && alen >= 12)
			ttl = entry_parse(e, abuf, alen);
		else if (status == ARES_ENOTFOUND)
			entry_set_error(e, GH_DNS_NXDOMAIN, "no such name");
		else
			entry_set_error(e, GH_DNS_TEMPFAIL, ares_why(status));
		e->state = E_DONE;
		evtimer_del(e->deadline);
		if (e->ans.status == GH_DNS_TEMPFAIL)
			gh_log(GH_LOG_DEBUG, "dns: %s %s: %s",
			       gh_dns_type_name(e->type), e->name,
			       e->ans.error);
		entry_release_waiters(e);
		cache_insert(e, e->ans.status == GH_DNS_TEMPFAIL ?
		    (unsigned)e->res->conf.failure_ttl : ttl);
	}
	entry_unref(e);		/* c-ares's reference */
}

/*
 * Cache a timeout as its own finished entry: the timed-out one stays
 * with c-ares (which may still answer it, into nothing) until it lets go.
 */
static void
failure_remember(struct resolver *r, enum gh_dns_type type,
		 const char *name, const char *why)
{
	struct dns_entry *f;

	if (r->conf.failure_ttl == 0 || r->conf.cache_size == 0 ||
	    (f = entry_new(r, type, name)) == NULL)
		return;
	f->state = E_DONE;
	entry_set_error(f, GH_DNS_TEMPFAIL, why);
	hash_add(r, f);
	cache_insert(f, (unsigned)r->conf.failure_ttl);
}

static void
deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct dns_entry *e = arg;

	(void)fd;
	(void)what;
	gh_log(GH_LOG_INFO, "dns: %s %s: no answer within %llds",
	       gh_dns_type_name(e->type), e->name, e->res->conf.timeout);
	/* c-ares still holds the entry; it is freed when c-ares lets go. */
	e->state = E_ORPHAN;
	entry_set_error(e, GH_DNS_TEMPFAIL, "timeout");
	entry_release_waiters(e);
	cache_remove(e);
	failure_remember(e->res, e->type, e->name, "timeout");
}

static void
ready_cb(evutil_socket_t fd, short what, void *arg)
{
	struct resolver *r = arg;
	struct gh_dns_query *q;
	time_t now = mono_now();

	(void)fd;
	(void)what;
	/* Callbacks may query (appending here) and cancel (removing). */
	while ((q = TAILQ_FIRST(&r->ready)) != NULL) {
		struct dns_entry *e = q->e;

		TAILQ_REMOVE(&r->ready, q, link);
		e->ans.ttl = e->in_lru && e->expires > now ?
		    (unsigned)(e->expires - now) : 0;
		q->cb(q->arg, &e->ans);
		free(q);
		entry_unref(e);
	}
}

/* Lower-case, drop a final dot; refuse what cannot be a DNS name. */
static int
name_normalize(const char *in, char *out, size_t n)
{
	size_t len = strlen(in), i, label = 0;

	if (len > 0 && in[len - 1] == '.')
		len--;
	if (len == 0 || len > DNS_NAME_MAX || len >= n)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)in[i];

		/* c-ares reads backslash escapes; controls and blanks have
		 * no business in a name we look up. */
		if (ch <= 0x20 || ch == 0x7f || ch == '\\')
			return -1;
		if (ch == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (++label > 63) {
			return -1;
		}
		out[i] = (char)tolower(ch);
	}
	out[len] = '\0';
	return 0;
}

static void
waiter_ready(struct resolver *r, struct gh_dns_query *q)
{
	q->ready = 1;
	TAILQ_INSERT_TAIL(&r->ready, q, link);
	event_active(r->ready_ev, 0, 0);
}

/* A pending entry for (type, name) with q waiting on it; then the
 * question goes out. */
static int
entry_send(struct resolver *r, enum gh_dns_type type, const char *name,
	   struct gh_dns_query *q)
{
	struct dns_entry *e = entry_new(r, type, name);
	struct timeval tv = { (time_t)r->conf.timeout, 0 };

	if (e == NULL)
		return -1;
	e->deadline = evtimer_new(r->base, deadline_cb, e);
	if (e->deadline == NULL) {
		entry_free(e);
		return -1;
	}
	e->state = E_PENDING;
	hash_add(r, e);
	evtimer_add(e->deadline, &tv);
	q->e = e;
	e->refs++;
	TAILQ_INSERT_TAIL(&e->waiters, q, link);
	e->refs++;		/* c-ares's, dropped in query_done */
	r->nsent++;
	/* May answer at once (no server, a socket error): query_done then
	 * runs in here and moves q to the ready list. */
	ares_query(r->channel, name, DNS_CLASS_IN, qtypes[type], query_done,
		   e);
	timer_update(r);
	return 0;
}

struct gh_dns_query *
gh_dns_query(struct event_base *base, enum gh_dns_type type,
	     const char *name, gh_dns_cb cb, void *arg)
{
	struct resolver *r = resolver_of(base);
	struct gh_dns_query *q;
	struct dns_entry *e;
	char norm[DNS_NAME_MAX + 2];

	if (r == NULL || cb == NULL || (unsigned)type > GH_DNS_PTR ||
	    name == NULL || (q = calloc(1, sizeof(*q))) == NULL)
		return NULL;
	q->cb = cb;
	q->arg = arg;
	r->nqueries++;
	if (name_normalize(name, norm, sizeof(norm)) != 0) {
		/* Nothing by that name can exist: say so without asking. */
		if ((e = entry_new(r, type, "")) == NULL) {
			free(q);
			return NULL;
		}
		e->state = E_DONE;
		entry_set_error(e, GH_DNS_NXDOMAIN, "invalid name");
		goto ready;
	}
	e = hash_find(r, type, norm);
	if (e != NULL && e->state == E_DONE && e->expires <= mono_now()) {
		cache_remove(e);
		e = NULL;
	}
	if (e == NULL) {
		if (entry_send(r, type, norm, q) != 0) {
			free(q);
			return NULL;
		}
		return q;
	}
	if (e->state == E_PENDING) {
		r->nmerged++;
		q->e = e;
		e->refs++;
		TAILQ_INSERT_TAIL(&e->waiters, q, link);
		return q;
	}
	r->nhits++;
	TAILQ_REMOVE(&r->lru, e, lru);
	TAILQ_INSERT_HEAD(&r->lru, e, lru);
ready:
	q->e = e;
	e->refs++;
	waiter_ready(r, q);
	return q;
}

void
gh_dns_cancel(struct gh_dns_query *q)
{
	struct dns_entry *e;

	if (q == NULL)
		return;
	e = q->e;
	if (q->ready)
		TAILQ_REMOVE(&e->res->ready, q, link);
	else
		TAILQ_REMOVE(&e->waiters, q, link);
	free(q);
	/* A pending entry stays: its answer still fills the cache. */
	entry_unref(e);
}

/* ------------------------------------------------------------------ */
/* Reverse names and forward-confirmed reverse DNS.                     */

/* Parse ip; an IPv4-mapped IPv6 address (::ffff:a.b.c.d) is IPv4.
 * Returns the family, or 0. */
static int
addr_parse(const char *ip, unsigned char a[16])
{
	static const unsigned char mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};

	if (inet_pton(AF_INET, ip, a) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, ip, a) != 1)
		return 0;
	if (memcmp(a, mapped, 12) != 0)
		return AF_INET6;
	memmove(a, a + 12, 4);
	return AF_INET;
}

int
gh_dns_reverse_name(const char *ip, const char *zone, char *buf, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char a[16];
	size_t o = 0;
	int i, w;

	switch (addr_parse(ip, a)) {
	case AF_INET:
		w = snprintf(buf, n, "%u.%u.%u.%u.%s", a[3], a[2], a[1], a[0],
			     zone ? zone : "in-addr.arpa");
		return w < 0 || (size_t)w >= n ? -1 : 0;
	case AF_INET6:
		for (i = 15; i >= 0; i--) {
			w = snprintf(buf + o, n - o, "%c.%c.", hex[a[i] & 15],
				     hex[a[i] >> 4]);
			if (w < 0 || (size_t)w >= n - o)
				return -1;
			o += (size_t)w;
		}
		w = snprintf(buf + o, n - o, "%s", zone ? zone : "ip6.arpa");
		return w < 0 || (size_t)w >= n - o ? -1 : 0;
	}
	return -1;
}

const char *
gh_rdns_status_name(enum gh_rdns_status s)
{
	static const char *const names[] = {
		"confirmed", "unconfirmed", "none", "tempfail"
	};

	return (unsigned)s < 4 ? names[s] : "?";
}

struct rdns_fwd {
	struct gh_rdns_query *parent;
	struct gh_dns_query *q;
	char name[DNS_NAME_MAX + 2];
	enum gh_dns_status status;
	int confirmed;
};

struct gh_rdns_query {
	struct event_base *base;
	char ip[INET6_ADDRSTRLEN];
	int family;
	unsigned char addr[16];
	gh_rdns_cb cb;
	void *arg;
	struct gh_dns_query *ptrq;
	struct rdns_fwd fwd[GH_RDNS_MAX_NAMES];
	size_t nfwd, pending, nptr;
	int ptr_tempfail;
};

static void
rdns_finish(struct gh_rdns_query *rq)
{
	struct gh_rdns_result res;
	char name[DNS_NAME_MAX + 2] = "", ptr[DNS_NAME_MAX + 2] = "";
	char ip[INET6_ADDRSTRLEN];
	gh_rdns_cb cb = rq->cb;
	void *arg = rq->arg;
	int tempfail = rq->ptr_tempfail;
	size_t i;

	memset(&res, 0, sizeof(res));
	/* The first name in PTR order that points back wins. */
	for (i = 0; i < rq->nfwd; i++) {
		if (rq->fwd[i].confirmed && name[0] == '\0')
			snprintf(name, sizeof(name), "%s", rq->fwd[i].name);
		tempfail |= rq->fwd[i].status == GH_DNS_TEMPFAIL;
	}
	if (rq->nfwd > 0)
		snprintf(ptr, sizeof(ptr), "%s", rq->fwd[0].name);
	res.status = name[0] ? GH_RDNS_CONFIRMED : tempfail ?
	    GH_RDNS_TEMPFAIL : rq->nfwd > 0 ? GH_RDNS_UNCONFIRMED :
	    GH_RDNS_NONE;
	snprintf(ip, sizeof(ip), "%s", rq->ip);
	res.ip = ip;
	res.name = name[0] ? name : NULL;
	res.ptr = ptr[0] ? ptr : NULL;
	res.nptr = rq->nptr;
	free(rq);
	cb(arg, &res);
}

static void
rdns_fwd_done(void *arg, const struct gh_dns_answer *ans)
{
	struct rdns_fwd *f = arg;
	struct gh_rdns_query *rq = f->parent;
	size_t i;

	f->q = NULL;
	f->status = ans->status;
	for (i = 0; i < ans->n; i++)
		if (ans->rr[i].family == rq->family &&
		    memcmp(ans->rr[i].addr, rq->addr, rq->family == AF_INET ?
			   4 : 16) == 0)
			f->confirmed = 1;
	if (--rq->pending == 0)
		rdns_finish(rq);
}

static void
rdns_ptr_done(void *arg, const struct gh_dns_answer *ans)
{
	struct gh_rdns_query *rq = arg;
	size_t i;

	rq->ptrq = NULL;
	rq->ptr_tempfail = ans->status == GH_DNS_TEMPFAIL;
	rq->nptr = ans->n;
	for (i = 0; i < ans->n && rq->nfwd < GH_RDNS_MAX_NAMES; i++) {
		struct rdns_fwd *f = &rq->fwd[rq->nfwd];

		if (ans->rr[i].data[0] == '\0')
			continue;
		snprintf(f->name, sizeof(f->name), "%s", ans->rr[i].data);
		f->parent = rq;
		rq->nfwd++;
	}
	/* All forward lookups go out together; pending counts them first
	 * so that no answer can finish rq while they are being sent. */
	rq->pending = rq->nfwd + 1;
	for (i = 0; i < rq->nfwd; i++) {
		struct rdns_fwd *f = &rq->fwd[i];

		f->q = gh_dns_query(rq->base, rq->family == AF_INET ?
				    GH_DNS_A : GH_DNS_AAAA, f->name,
				    rdns_fwd_done, f);
		if (f->q == NULL) {
			f->status = GH_DNS_TEMPFAIL;
			rq->pending--;
		}
	}
	if (--rq->pending == 0)
		rdns_finish(rq);
}

struct gh_rdns_query *
gh_dns_rdns(struct event_base *base, const char *ip, gh_rdns_cb cb,
	    void *arg)
{
	struct gh_rdns_query *rq;
	char name[128];

	/* name has room for the 72 octets of an IPv6 reverse name. */
	if (cb == NULL || gh_dns_reverse_name(ip, NULL, name,
					      sizeof(name)) != 0 ||
	    (rq = calloc(1, sizeof(*rq))) == NULL)
		return NULL;
	rq->base = base;
	rq->cb = cb;
	rq->arg = arg;
	snprintf(rq->ip, sizeof(rq->ip), "%s", ip);
	rq->family = addr_parse(ip, rq->addr);
	rq->ptrq = gh_dns_query(base, GH_DNS_PTR, name, rdns_ptr_done, rq);
	if (rq->ptrq == NULL) {
		free(rq);
		return NULL;
	}
	return rq;
}

void
gh_dns_rdns_cancel(struct gh_rdns_query *rq)
{
	size_t i;

	if (rq == NULL)
		return;
	gh_dns_cancel(rq->ptrq);
	for (i = 0; i < rq->nfwd; i++)
		gh_dns_cancel(rq->fwd[i].q);
	free(rq);
}

/* The connection's own rDNS, filled before lookup_rdns. */
struct conn_rdns {
	struct gh_conn *c;
	struct gh_rdns_query *q;
	void (*done)(void *);
	void *arg;
};

static void
conn_rdns_cancel(void *arg)
{
	struct conn_rdns *cr = arg;

	gh_dns_rdns_cancel(cr->q);
	cr->q = NULL;
}

static void
conn_rdns_found(void *arg, const struct gh_rdns_result *res)
{
	struct conn_rdns *cr = arg;
	struct gh_conn *c = cr->c;

	cr->q = NULL;
	if (res->name != NULL)
		c->rdns = gh_pstrdup(c->pool, res->name);
	gh_note_set(c->notes, "rdns.status", gh_rdns_status_name(res->status));
	if (res->ptr != NULL)
		gh_note_set(c->notes, "rdns.ptr", res->ptr);
	gh_log(GH_LOG_DEBUG, "%s rdns %s: %s%s%s", c->id, c->remote_ip,
	       gh_rdns_status_name(res->status), res->ptr ? " " : "",
	       res->ptr ? res->ptr : "");
	cr->done(cr->arg);
}

void
gh_conn_rdns(struct gh_conn *c, void (*done)(void *arg), void *arg)
{
	struct resolver *r = resolver_of(c->base);
	struct conn_rdns *cr;

	if (r == NULL || !r->conf.rdns) {
		done(arg);
		return;
	}
	cr = gh_palloc(c->pool, sizeof(*cr));
	cr->c = c;
	cr->done = done;
	cr->arg = arg;
	cr->q = gh_dns_rdns(c->base, c->remote_ip, conn_rdns_found, cr);
	if (cr->q == NULL) {
		gh_note_set(c->notes, "rdns.status",
			    gh_rdns_status_name(GH_RDNS_TEMPFAIL));
		done(arg);
		return;
	}
	gh_pool_cleanup(c->pool, conn_rdns_cancel, cr);
}

/* ------------------------------------------------------------------ */
/* Starting and stopping a loop's resolver.                             */

static int
servers_set(struct resolver *r, const struct gh_strlist *servers,
	    char *err, size_t errlen)
{
	char csv[16 * 80] = "";
	size_t i, o = 0;
	int rc;

	for (i = 0; i < servers->n; i++) {
		int w = snprintf(csv + o, sizeof(csv) - o, "%s%s",
				 i ? "," : "", servers->v[i]);

		if (w < 0 || (size_t)w >= sizeof(csv) - o ||
		    strchr(servers->v[i], ',') != NULL) {
			snprintf(err, errlen, "dns: bad server \"%s\"",
				 servers->v[i]);
			return -1;
		}
		o += (size_t)w;
	}
	if (servers->n == 0)
		return 0;
	rc = ares_set_servers_ports_csv(r->channel, csv);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "dns: servers [%s]: %s (want \"ip\", "
			 "\"ip:port\" or \"[ipv6]:port\")", csv,
			 ares_strerror(rc));
		return -1;
	}
	return 0;
}

static int
channel_init(struct resolver *r, char *err, size_t errlen)
{
	struct ares_options o;
	int rc;

	memset(&o, 0, sizeof(o));
	o.sock_state_cb = sock_state_cb;
	o.sock_state_cb_data = r;
	o.tries = (int)r->conf.tries;
	/* Our deadline bounds the whole query; c-ares doubles its wait on
	 * each round, so its first try gets an even share. */
	o.timeout = (int)(r->conf.timeout * 1000 / r->conf.tries);
	rc = ares_init_options(&r->channel, &o, ARES_OPT_SOCK_STATE_CB |
			       ARES_OPT_TRIES | ARES_OPT_TIMEOUTMS);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "dns: cannot start c-ares: %s",
			 ares_strerror(rc));
		return -1;
	}
	return 0;
}

static void resolver_free(struct resolver *r);

int
gh_dns_start(struct event_base *base, const struct gh_dns_conf *conf,
	     char *err, size_t errlen)
{
	struct resolver *r;
	int rc = 0;

	pthread_mutex_lock(&registry_lock);
	if (!ares_ready && (rc = ares_library_init(ARES_LIB_INIT_ALL)) == 0)
		ares_ready = 1;
	pthread_mutex_unlock(&registry_lock);
	if (rc != ARES_SUCCESS) {
		snprintf(err, errlen, "dns: %s", ares_strerror(rc));
		return -1;
	}
	if (resolver_of(base) != NULL) {
		snprintf(err, errlen, "dns: this loop has a resolver already");
		return -1;
	}
	if ((r = calloc(1, sizeof(*r))) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r->base = base;
	r->conf = *conf;
	TAILQ_INIT(&r->ready);
	TAILQ_INIT(&r->lru);
	for (r->hsize = 64; r->hsize < (size_t)conf->cache_size * 2 &&
	     r->hsize < ((size_t)1 << 24); r->hsize <<= 1)
		;
	r->hash = calloc(r->hsize, sizeof(*r->hash));
	r->timer = evtimer_new(base, timer_cb, r);
	r->ready_ev = event_new(base, -1, 0, ready_cb, r);
	if (r->hash == NULL || r->timer == NULL || r->ready_ev == NULL) {
		snprintf(err, errlen, "out of memory");
		resolver_free(r);
		return -1;
	}
	if (channel_init(r, err, errlen) != 0) {
		resolver_free(r);
		return -1;
	}
	if (servers_set(r, &conf->servers, err, errlen) != 0) {
		ares_destroy(r->channel);
		resolver_free(r);
		return -1;
	}
	pthread_mutex_lock(&registry_lock);
	r->next = registry;
	registry = r;
	pthread_mutex_unlock(&registry_lock);
	return 0;
}

static void
resolver_free(struct resolver *r)
{
	struct dns_sock *s;

	while ((s = r->socks) != NULL) {
		r->socks = s->next;
		if (s->ev != NULL)
			event_free(s->ev);
		free(s);
	}
	if (r->timer != NULL)
		event_free(r->timer);
	if (r->ready_ev != NULL)
		event_free(r->ready_ev);
	free(r->hash);
	free(r);
}

void
gh_dns_stop(struct event_base *base)
{
	struct resolver *r, **rp;
	struct gh_dns_query *q;
	size_t i;

	pthread_mutex_lock(&registry_lock);
	for (rp = &registry; *rp != NULL && (*rp)->base != base;
	     rp = &(*rp)->next)
		;
	if ((r = *rp) != NULL)
		*rp = r->next;
	pthread_mutex_unlock(&registry_lock);
	if (r == NULL)
		return;
	gh_log(GH_LOG_DEBUG, "dns: %lu queries, %lu cache hits, %lu merged, "
	       "%lu sent", r->nqueries, r->nhits, r->nmerged, r->nsent);
	r->stopping = 1;
	while ((q = TAILQ_FIRST(&r->ready)) != NULL)
		gh_dns_cancel(q);
	for (i = 0; i < r->hsize; i++) {
		struct dns_entry *e;

		for (e = r->hash[i]; e != NULL; e = e->hnext)
			while ((q = TAILQ_FIRST(&e->waiters)) != NULL)
				gh_dns_cancel(q);
	}
	/* Runs query_done for whatever is outstanding. */
	ares_destroy(r->channel);
	for (i = 0; i < r->hsize; i++)
		while (r->hash[i] != NULL)
			cache_remove(r->hash[i]);
	resolver_free(r);
}
