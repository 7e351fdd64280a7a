/*
 * test_dns.c - the core resolver (dns.c) against a scripted DNS server.
 *
 * The server is a UDP socket on 127.0.0.1 on the same libevent loop as
 * the resolver: it answers each question from the table `zone` below
 * (TTLs, SOA in negative answers, CNAME chains, TXT strings, unordered
 * MX), counts the questions per name, and never answers "slow.test".
 * That lets the tests see what went to the wire: merging, cache hits,
 * TTL expiry, negative caching, eviction, cancellation and deadlines.
 */
#include "config.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core.h"
#include "t.h"

#define T_A 1
#define T_CNAME 5
#define T_SOA 6
#define T_PTR 12
#define T_MX 15
#define T_TXT 16

struct rec {
	const char *qname;
	int qtype;		/* 0: any */
	int rcode;
	int silent;
	/* Up to three answer records, built by type. */
	struct { int type; unsigned ttl; const char *data; int pref; } an[3];
	unsigned soa_ttl, soa_min;	/* an SOA in authority if soa_ttl */
	int count;
};

static struct rec zone[] = {
	{ "a.test", T_A, 0, 0, { { T_A, 1, "192.0.2.1", 0 } }, 0, 0, 0 },
	{ "ttl.test", T_A, 0, 0, { { T_A, 2, "192.0.2.4", 0 } }, 0, 0, 0 },
	{ "long.test", T_A, 0, 0, { { T_A, 3600, "192.0.2.2", 0 },
	  { T_A, 60, "192.0.2.3", 0 } }, 0, 0, 0 },
	{ "mx.test", T_MX, 0, 0, { { T_MX, 300, "c.mx.test", 30 },
	  { T_MX, 300, "a.mx.test", 10 }, { T_MX, 300, "b.mx.test", 20 } },
	  0, 0, 0 },
	{ "txt.test", T_TXT, 0, 0, { { T_TXT, 300, "v=spf1 |-all", 0 } },
	  0, 0, 0 },
	{ "cname.test", T_A, 0, 0, { { T_CNAME, 100, "long.test", 0 },
	  { T_A, 50, "192.0.2.2", 0 } }, 0, 0, 0 },
	{ "nx.test", 0, 3, 0, { { 0, 0, NULL, 0 } }, 600, 5, 0 },
	{ "nodata.test", 0, 0, 0, { { 0, 0, NULL, 0 } }, 0, 0, 0 },
	{ "servfail.test", 0, 2, 0, { { 0, 0, NULL, 0 } }, 0, 0, 0 },
	{ "slow.test", 0, 0, 1, { { 0, 0, NULL, 0 } }, 0, 0, 0 },
	{ "count.test", T_A, 0, 0, { { T_A, 300, "192.0.2.9", 0 } }, 0, 0, 0 },
	{ "e1.test", T_A, 0, 0, { { T_A, 300, "192.0.2.11", 0 } }, 0, 0, 0 },
	{ "e2.test", T_A, 0, 0, { { T_A, 300, "192.0.2.12", 0 } }, 0, 0, 0 },
	{ "e3.test", T_A, 0, 0, { { T_A, 300, "192.0.2.13", 0 } }, 0, 0, 0 },
	{ "1.2.0.192.in-addr.arpa", T_PTR, 0, 0,
	  { { T_PTR, 300, "liar.test", 0 }, { T_PTR, 300, "A.Test", 0 } },
	  0, 0, 0 },
	{ "liar.test", T_A, 0, 0, { { T_A, 300, "192.0.2.99", 0 } }, 0, 0, 0 },
	{ "5.2.0.192.in-addr.arpa", T_PTR, 0, 0,
	  { { T_PTR, 300, "liar.test", 0 } }, 0, 0, 0 },
	{ "6.2.0.192.in-addr.arpa", T_PTR, 0, 0,
	  { { T_PTR, 300, "slow.test", 0 } }, 0, 0, 0 },
};
#define NZONE (sizeof(zone) / sizeof(zone[0]))

static struct event_base *base;
static int srv_fd;
static struct event *srv_ev;
static char server[64];

static struct rec *
rec_find(const char *name, int type)
{
	size_t i;

	for (i = 0; i < NZONE; i++)
		if (strcasecmp(zone[i].qname, name) == 0 &&
		    (zone[i].qtype == 0 || zone[i].qtype == type))
			return &zone[i];
	for (i = 0; i < NZONE; i++)	/* the name exists: no data */
		if (strcasecmp(zone[i].qname, name) == 0)
			return NULL;
	return rec_find("nx.test", 0);	/* NXDOMAIN with an SOA */
}

static size_t
put_name(unsigned char *p, const char *name)
{
	size_t o = 0;
	const char *dot;

	while (*name != '\0') {
		size_t len = (dot = strchr(name, '.')) ? (size_t)(dot - name) :
		    strlen(name);

		p[o++] = (unsigned char)len;
		memcpy(p + o, name, len);
		o += len;
		name += len + (dot != NULL);
	}
	p[o++] = 0;
	return o;
}

static size_t
put16(unsigned char *p, unsigned v)
{
	p[0] = (unsigned char)(v >> 8);
	p[1] = (unsigned char)v;
	return 2;
}

static size_t
put32(unsigned char *p, unsigned v)
{
	put16(p, v >> 16);
	put16(p + 2, v & 0xffff);
	return 4;
}

static size_t
put_rdata(unsigned char *p, int type, const char *data, int pref)
{
	size_t o = 0;

	switch (type) {
	case T_A:
		inet_pton(AF_INET, data, p);
		return 4;
	case T_MX:
		o = put16(p, (unsigned)pref);
		/* FALLTHROUGH */
	case T_CNAME:
	case T_PTR:
		return o + put_name(p + o, data);
	case T_TXT: {
		/* '|' separates the record's strings. */
		const char *s = data, *bar;

		while (s != NULL) {
			size_t len = (bar = strchr(s, '|')) ?
			    (size_t)(bar - s) : strlen(s);

			p[o++] = (unsigned char)len;
			memcpy(p + o, s, len);
			o += len;
			s = bar ? bar + 1 : NULL;
		}
		return o;
	}
	}
	return 0;
}

static size_t
put_rr(unsigned char *p, const char *owner, int type, unsigned ttl,
       const char *data, int pref)
{
	size_t o = put_name(p, owner), rdlen;

	o += put16(p + o, (unsigned)type);
	o += put16(p + o, 1);
	o += put32(p + o, ttl);
	rdlen = put_rdata(p + o + 2, type, data, pref);
	o += put16(p + o, (unsigned)rdlen);
	return o + rdlen;
}

static void
srv_read(evutil_socket_t fd, short what, void *arg)
{
	unsigned char q[512], r[2048];
	struct sockaddr_storage from;
	socklen_t flen = sizeof(from);
	char name[256];
	size_t o = 0, qend, i, n = 0;
	ssize_t len;
	struct rec *rec;
	int type;

	(void)what;
	(void)arg;
	len = recvfrom(fd, q, sizeof(q), 0, (struct sockaddr *)&from, &flen);
	if (len < 17)
		return;
	for (i = 12; q[i] != 0 && i < (size_t)len; i += q[i] + 1) {
		if (o)
			name[o++] = '.';
		memcpy(name + o, q + i + 1, q[i]);
		o += q[i];
	}
	name[o] = '\0';
	qend = i + 5;
	type = q[i + 1] << 8 | q[i + 2];
	rec = rec_find(name, type);
	if (rec != NULL) {
		rec->count++;
		if (rec->silent)
			return;
	}
	memcpy(r, q, qend);
	r[2] = 0x81;				/* QR, RD */
	r[3] = (unsigned char)(0x80 | (rec ? rec->rcode : 0));
	r[6] = r[7] = r[8] = r[9] = r[10] = r[11] = 0;
	o = qend;
	for (i = 0; rec != NULL && i < 3 && rec->an[i].type != 0; i++, n++)
		o += put_rr(r + o, i > 0 && rec->an[0].type == T_CNAME ?
			    rec->an[0].data : name, rec->an[i].type,
			    rec->an[i].ttl, rec->an[i].data, rec->an[i].pref);
	put16(r + 6, (unsigned)n);
	if (rec != NULL && rec->soa_ttl != 0) {
		size_t start = o + put_name(r + o, "test"), rd;

		o = start;
		o += put16(r + o, T_SOA);
		o += put16(r + o, 1);
		o += put32(r + o, rec->soa_ttl);
		rd = o + 2;
		rd += put_name(r + rd, "ns.test");
		rd += put_name(r + rd, "host.test");
		rd += put32(r + rd, 1);
		rd += put32(r + rd, 3600);
		rd += put32(r + rd, 600);
		rd += put32(r + rd, 86400);
		rd += put32(r + rd, rec->soa_min);
		put16(r + o, (unsigned)(rd - o - 2));
		o = rd;
		put16(r + 8, 1);
	}
	sendto(fd, r, o, 0, (struct sockaddr *)&from, flen);
}

static void
server_start(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);

	srv_fd = socket(AF_INET, SOCK_DGRAM, 0);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(srv_fd, (struct sockaddr *)&sin, sizeof(sin));
	getsockname(srv_fd, (struct sockaddr *)&sin, &len);
	snprintf(server, sizeof(server), "127.0.0.1:%d", ntohs(sin.sin_port));
	evutil_make_socket_nonblocking(srv_fd);
	srv_ev = event_new(base, srv_fd, EV_READ | EV_PERSIST, srv_read, NULL);
	event_add(srv_ev, NULL);
}

static int
count_of(const char *name)
{
	size_t i;

	for (i = 0; i < NZONE; i++)
		if (strcmp(zone[i].qname, name) == 0)
			return zone[i].count;
	return -1;
}

/* ------------------------------------------------------------------ */
/* Running queries to completion.                                      */

struct got {
	int called;
	enum gh_dns_status status;
	char error[64];
	unsigned ttl;
	size_t n;
	char data[3][128];
	unsigned pref[3];
	size_t len0;
};

static int outstanding;

static void
got_cb(void *arg, const struct gh_dns_answer *ans)
{
	struct got *g = arg;
	size_t i;

	g->called++;
	g->status = ans->status;
	snprintf(g->error, sizeof(g->error), "%s", ans->error ? ans->error :
		 "");
	g->ttl = ans->ttl;
	g->n = ans->n;
	for (i = 0; i < ans->n && i < 3; i++) {
		snprintf(g->data[i], sizeof(g->data[i]), "%s", ans->rr[i].data);
		g->pref[i] = ans->rr[i].pref;
	}
	if (ans->n > 0)
		g->len0 = ans->rr[0].len;
	if (--outstanding == 0)
		event_base_loopbreak(base);
}

static void
guard_fired(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	event_base_loopbreak(base);
}

/* Run the loop until every expected callback ran (or 5 s passed). */
static void
run(int expect)
{
	struct event *guard = evtimer_new(base, guard_fired, NULL);
	struct timeval tv = { 5, 0 };

	outstanding += expect;
	evtimer_add(guard, &tv);
	if (outstanding > 0)
		event_base_dispatch(base);
	event_free(guard);
}

static void
ask(enum gh_dns_type t, const char *name, struct got *g)
{
	memset(g, 0, sizeof(*g));
	T_CHECK(gh_dns_query(base, t, name, got_cb, g) != NULL);
	run(1);
	T_EQ_INT(g->called, 1);
}

static void
sleep_loop(int ms)
{
	struct event *t = evtimer_new(base, guard_fired, NULL);
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(t, &tv);
	event_base_dispatch(base);
	event_free(t);
}

/* ------------------------------------------------------------------ */

static void
test_records(void)
{
	struct got g;

	ask(GH_DNS_A, "long.test", &g);
	T_EQ_INT(g.status, GH_DNS_OK);
	T_EQ_INT(g.n, 2);
	T_EQ_STR(g.data[0], "192.0.2.2");
	T_EQ_INT(g.ttl, 60);	/* the smallest TTL of the set */
	ask(GH_DNS_MX, "MX.test.", &g);
	T_EQ_INT(g.status, GH_DNS_OK);
	T_EQ_INT(g.n, 3);
	T_EQ_STR(g.data[0], "a.mx.test");	/* sorted by preference */
	T_EQ_INT(g.pref[0], 10);
	T_EQ_STR(g.data[2], "c.mx.test");
	ask(GH_DNS_TXT, "txt.test", &g);
	T_EQ_INT(g.n, 1);
	T_EQ_STR(g.data[0], "v=spf1 -all");	/* strings joined */
	T_EQ_INT(g.len0, 11);
	ask(GH_DNS_A, "cname.test", &g);
	T_EQ_INT(g.status, GH_DNS_OK);
	T_EQ_INT(g.n, 1);
	T_EQ_STR(g.data[0], "192.0.2.2");
	T_EQ_INT(g.ttl, 50);
}

static void
test_negative(void)
{
	struct got g;
	int before;

	ask(GH_DNS_A, "nx.test", &g);
	T_EQ_INT(g.status, GH_DNS_NXDOMAIN);
	T_EQ_INT(g.ttl, 5);		/* RFC 2308: min(SOA TTL, minimum) */
	before = count_of("nx.test");
	ask(GH_DNS_A, "nx.test", &g);
	T_EQ_INT(g.status, GH_DNS_NXDOMAIN);
	T_EQ_INT(count_of("nx.test"), before);	/* cached */
	ask(GH_DNS_MX, "nodata.test", &g);
	T_EQ_INT(g.status, GH_DNS_NODATA);
	T_EQ_INT(g.ttl, 7);		/* no SOA: negative_ttl */
	ask(GH_DNS_MX, "a.test", &g);	/* the name has only an A */
	T_EQ_INT(g.status, GH_DNS_NODATA);
	ask(GH_DNS_A, "servfail.test", &g);
	T_EQ_INT(g.status, GH_DNS_TEMPFAIL);
	before = count_of("servfail.test");
	ask(GH_DNS_A, "servfail.test", &g);
	T_EQ_INT(g.status, GH_DNS_TEMPFAIL);
	/* RFC 9520: cached for failure_ttl (1 s here), then asked again. */
	T_EQ_INT(count_of("servfail.test"), before);
	sleep_loop(1100);
	ask(GH_DNS_A, "servfail.test", &g);
	T_EQ_INT(g.status, GH_DNS_TEMPFAIL);
	T_CHECK(count_of("servfail.test") > before);
}

static void
test_merge_and_cache(void)
{
	struct got g[5];
	int i;

	memset(g, 0, sizeof(g));
	for (i = 0; i < 5; i++)
		T_CHECK(gh_dns_query(base, GH_DNS_A, "count.test", got_cb,
				     &g[i]) != NULL);
	/* Never answered inside gh_dns_query, even from the cache. */
	T_EQ_INT(g[0].called, 0);
	run(5);
	for (i = 0; i < 5; i++) {
		T_EQ_INT(g[i].called, 1);
		T_EQ_STR(g[i].data[0], "192.0.2.9");
	}
	T_EQ_INT(count_of("count.test"), 1);	/* merged */
	memset(g, 0, sizeof(g));
	T_CHECK(gh_dns_query(base, GH_DNS_A, "Count.Test.", got_cb, &g[0]));
	T_EQ_INT(g[0].called, 0);
	run(1);
	T_EQ_INT(g[0].called, 1);
	T_EQ_INT(count_of("count.test"), 1);	/* a cache hit */
	T_CHECK(g[0].ttl > 0 && g[0].ttl <= 300);
}

static void
test_ttl_expiry(void)
{
	struct got g;
	int n;

	ask(GH_DNS_A, "ttl.test", &g);
	n = count_of("ttl.test");
	T_EQ_INT(n, 1);
	/* The TTL is 2 s: a second later it is still good. */
	ask(GH_DNS_A, "ttl.test", &g);
	T_EQ_INT(count_of("ttl.test"), 1);
	T_CHECK(g.ttl >= 1 && g.ttl <= 2);
	sleep_loop(2100);
	ask(GH_DNS_A, "ttl.test", &g);
	T_EQ_INT(g.status, GH_DNS_OK);
	T_EQ_INT(count_of("ttl.test"), 2);
}

static void
test_cancel(void)
{
	struct got g, h;
	struct gh_dns_query *q;

	memset(&g, 0, sizeof(g));
	memset(&h, 0, sizeof(h));
	q = gh_dns_query(base, GH_DNS_A, "e1.test", got_cb, &g);
	T_CHECK(gh_dns_query(base, GH_DNS_A, "e1.test", got_cb, &h) != NULL);
	gh_dns_cancel(q);
	run(1);
	T_EQ_INT(g.called, 0);
	T_EQ_INT(h.called, 1);
	/* A cancelled query's answer still fills the cache. */
	memset(&g, 0, sizeof(g));
	q = gh_dns_query(base, GH_DNS_A, "e2.test", got_cb, &g);
	gh_dns_cancel(q);
	sleep_loop(200);
	T_EQ_INT(g.called, 0);
	ask(GH_DNS_A, "e2.test", &g);
	T_EQ_INT(count_of("e2.test"), 1);
	/* Cancelling a cache hit before it is delivered. */
	memset(&g, 0, sizeof(g));
	q = gh_dns_query(base, GH_DNS_A, "e2.test", got_cb, &g);
	gh_dns_cancel(q);
	sleep_loop(50);
	T_EQ_INT(g.called, 0);
	gh_dns_cancel(NULL);
}

static void
test_deadline(void)
{
	struct got g, h;
	int before;

	memset(&g, 0, sizeof(g));
	memset(&h, 0, sizeof(h));
	T_CHECK(gh_dns_query(base, GH_DNS_A, "slow.test", got_cb, &g));
	T_CHECK(gh_dns_query(base, GH_DNS_A, "slow.test", got_cb, &h));
	run(2);
	T_EQ_INT(g.called, 1);
	T_EQ_INT(g.status, GH_DNS_TEMPFAIL);
	T_EQ_STR(g.error, "timeout");
	T_EQ_INT(h.status, GH_DNS_TEMPFAIL);
	/* Asked again within failure_ttl: the cached timeout, at once and
	 * without a question on the wire. */
	before = count_of("slow.test");
	ask(GH_DNS_A, "slow.test", &g);
	T_EQ_INT(g.status, GH_DNS_TEMPFAIL);
	T_EQ_STR(g.error, "timeout");
	T_EQ_INT(count_of("slow.test"), before);
	/* After it: a new question. */
	sleep_loop(1100);
	ask(GH_DNS_A, "slow.test", &g);
	T_EQ_INT(g.status, GH_DNS_TEMPFAIL);
	T_CHECK(count_of("slow.test") > before);
}

static void
test_invalid_names(void)
{
	static const char *const bad[] = {
		"a..test", ".", "", "a b.test", "a\\.test", "x\n.test",
		/* a 64-octet label */
		("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
		 ".test")
	};
	struct got g;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ask(GH_DNS_A, bad[i], &g);
		T_EQ_INT(g.status, GH_DNS_NXDOMAIN);
		T_EQ_STR(g.error, "invalid name");
	}
	T_CHECK(gh_dns_query(base, GH_DNS_A, "a.test", NULL, NULL) == NULL);
}

static void
test_eviction(void)
{
	struct got g;

	/* cache_size is 4: e3, then four new answers push it out. */
	ask(GH_DNS_A, "e3.test", &g);
	ask(GH_DNS_A, "e3.test", &g);
	T_EQ_INT(count_of("e3.test"), 1);
	ask(GH_DNS_A, "u1.test", &g);
	ask(GH_DNS_A, "u2.test", &g);
	ask(GH_DNS_A, "u3.test", &g);
	ask(GH_DNS_A, "e3.test", &g);
	T_EQ_INT(count_of("e3.test"), 1);	/* still there */
	ask(GH_DNS_A, "u4.test", &g);
	ask(GH_DNS_A, "u5.test", &g);
	ask(GH_DNS_A, "u6.test", &g);
	ask(GH_DNS_A, "u7.test", &g);
	ask(GH_DNS_A, "e3.test", &g);
	T_EQ_INT(count_of("e3.test"), 2);
}

static void
test_reverse_names(void)
{
	char buf[128];

	T_EQ_INT(gh_dns_reverse_name("127.0.0.2", "bl.test", buf,
				     sizeof(buf)), 0);
	T_EQ_STR(buf, "2.0.0.127.bl.test");
	T_EQ_INT(gh_dns_reverse_name("192.0.2.1", NULL, buf, sizeof(buf)), 0);
	T_EQ_STR(buf, "1.2.0.192.in-addr.arpa");
	/* RFC 5782 2.4 example. */
	T_EQ_INT(gh_dns_reverse_name("2001:db8:1:2:3:4:567:89ab", "bl.test",
				     buf, sizeof(buf)), 0);
	T_EQ_STR(buf, "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d."
		 "0.1.0.0.2.bl.test");
	T_EQ_INT(gh_dns_reverse_name("::1", NULL, buf, sizeof(buf)), 0);
	T_EQ_STR(buf, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0."
		 "0.0.0.0.0.ip6.arpa");
	T_EQ_INT(gh_dns_reverse_name("::ffff:192.0.2.1", "z.test", buf,
				     sizeof(buf)), 0);
	T_EQ_STR(buf, "1.2.0.192.z.test");
	T_EQ_INT(gh_dns_reverse_name("192.0.2", NULL, buf, sizeof(buf)), -1);
	T_EQ_INT(gh_dns_reverse_name("::1", NULL, buf, 20), -1);
	T_EQ_INT(gh_dns_reverse_name("1.2.3.4", "zone.test", buf, 12), -1);
}

struct rgot {
	int called;
	enum gh_rdns_status status;
	char name[128], ptr[128];
	size_t nptr;
};

static void
rdns_cb(void *arg, const struct gh_rdns_result *r)
{
	struct rgot *g = arg;

	g->called++;
	g->status = r->status;
	snprintf(g->name, sizeof(g->name), "%s", r->name ? r->name : "");
	snprintf(g->ptr, sizeof(g->ptr), "%s", r->ptr ? r->ptr : "");
	g->nptr = r->nptr;
	if (--outstanding == 0)
		event_base_loopbreak(base);
}

static void
rdns(const char *ip, struct rgot *g)
{
	memset(g, 0, sizeof(*g));
	T_CHECK(gh_dns_rdns(base, ip, rdns_cb, g) != NULL);
	run(1);
	T_EQ_INT(g->called, 1);
}

static void
test_rdns(void)
{
	struct rgot g;
	struct gh_rdns_query *q;

	/* Two PTR names: the liar does not point back, a.test does. */
	rdns("192.0.2.1", &g);
	T_EQ_INT(g.status, GH_RDNS_CONFIRMED);
	T_EQ_STR(g.name, "a.test");		/* lower-cased */
	T_EQ_STR(g.ptr, "liar.test");
	T_EQ_INT(g.nptr, 2);
	rdns("::ffff:192.0.2.1", &g);
	T_EQ_INT(g.status, GH_RDNS_CONFIRMED);
	rdns("192.0.2.5", &g);
	T_EQ_INT(g.status, GH_RDNS_UNCONFIRMED);
	T_EQ_STR(g.name, "");
	rdns("192.0.2.7", &g);
	T_EQ_INT(g.status, GH_RDNS_NONE);
	rdns("192.0.2.6", &g);			/* forward lookup times out */
	T_EQ_INT(g.status, GH_RDNS_TEMPFAIL);
	T_CHECK(gh_dns_rdns(base, "not an ip", rdns_cb, &g) == NULL);
	memset(&g, 0, sizeof(g));
	q = gh_dns_rdns(base, "192.0.2.1", rdns_cb, &g);
	gh_dns_rdns_cancel(q);
	sleep_loop(50);
	T_EQ_INT(g.called, 0);
}

static void
test_start_errors(void)
{
	struct event_base *b2 = event_base_new();
	struct gh_dns_conf cf;
	const char *bad[] = { "not-an-address" };
	char err[256];

	memset(&cf, 0, sizeof(cf));
	cf.timeout = 1;
	cf.tries = 1;
	cf.servers.n = 1;
	cf.servers.v = bad;
	T_EQ_INT(gh_dns_start(b2, &cf, err, sizeof(err)), -1);
	T_CHECK(strstr(err, "not-an-address") != NULL);
	/* No resolver on that loop: nothing starts. */
	T_CHECK(gh_dns_query(b2, GH_DNS_A, "a.test", got_cb, NULL) == NULL);
	gh_dns_stop(b2);		/* harmless */
	event_base_free(b2);
}

/* Stopping with queries outstanding calls nobody back. */
static void
test_stop(void)
{
	struct event_base *b2 = event_base_new();
	struct gh_dns_conf cf;
	const char *srv[] = { server };
	struct got g;
	char err[256];

	memset(&cf, 0, sizeof(cf));
	cf.timeout = 1;
	cf.tries = 1;
	cf.cache_size = 10;
	cf.servers.n = 1;
	cf.servers.v = srv;
	T_EQ_INT(gh_dns_start(b2, &cf, err, sizeof(err)), 0);
	memset(&g, 0, sizeof(g));
	T_CHECK(gh_dns_query(b2, GH_DNS_A, "slow.test", got_cb, &g) != NULL);
	T_CHECK(gh_dns_query(b2, GH_DNS_A, "..", got_cb, &g) != NULL);
	gh_dns_stop(b2);
	event_base_loop(b2, EVLOOP_NONBLOCK);
	T_EQ_INT(g.called, 0);
	event_base_free(b2);
}

int
main(void)
{
	struct gh_dns_conf cf;
	const char *srv[1];
	char err[256];

	gh_log_init("test_dns", GH_LOG_ERR, 0);
	base = event_base_new();
	server_start();
	memset(&cf, 0, sizeof(cf));
	srv[0] = server;
	cf.servers.n = 1;
	cf.servers.v = srv;
	cf.timeout = 1;
	cf.tries = 2;
	cf.cache_size = 4;
	cf.max_ttl = 86400;
	cf.negative_ttl = 7;
	cf.failure_ttl = 1;
	if (gh_dns_start(base, &cf, err, sizeof(err)) != 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	T_RUN(test_records);
	T_RUN(test_negative);
	T_RUN(test_merge_and_cache);
	T_RUN(test_cancel);
	T_RUN(test_deadline);
	T_RUN(test_invalid_names);
	T_RUN(test_eviction);
	T_RUN(test_reverse_names);
	T_RUN(test_rdns);
	T_RUN(test_start_errors);
	T_RUN(test_stop);
	T_RUN(test_ttl_expiry);
	gh_dns_stop(base);
	event_free(srv_ev);
	close(srv_fd);
	event_base_free(base);
	return t_done("test_dns");
}
