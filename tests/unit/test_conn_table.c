/*
 * test_conn_table.c - relayd's connection counts, shared by the worker
 * processes (relayd/server.c): the limits, and counts that come back to
 * zero when everyone has left, even when workers race on the table.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "relayd.h"
#include "t.h"

/* server.c hands accepted connections to the session code, which is not
 * part of this test. */
void
session_start(struct server *srv, const struct listener *lst, int fd,
	      const struct sockaddr *sa, socklen_t salen,
	      const struct sockaddr *local, const char *via)
{
	(void)srv;
	(void)lst;
	(void)fd;
	(void)sa;
	(void)salen;
	(void)local;
	(void)via;
}

static struct sockaddr_in
v4(uint32_t a)
{
	struct sockaddr_in s;

	memset(&s, 0, sizeof(s));
	s.sin_family = AF_INET;
	s.sin_addr.s_addr = htonl(a);
	return s;
}

static void
test_limits(void)
{
	struct conn_table *t = conn_table_create(64, 2, 8);
	struct sockaddr_in a = v4(0x7f000001u), b = v4(0x7f000002u);
	struct sockaddr_in6 m;
	int k1, k2, k3;

	T_CHECK(t != NULL);
	k1 = conn_table_enter(t, 0, (struct sockaddr *)&a, 100, 2);
	k2 = conn_table_enter(t, 0, (struct sockaddr *)&a, 100, 2);
	T_CHECK(k1 >= 0 && k2 >= 0);
	T_EQ_INT(conn_table_enter(t, 1, (struct sockaddr *)&a, 100, 2), -1);
	/* The same client through a dual-stack listener. */
	memset(&m, 0, sizeof(m));
	m.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::ffff:127.0.0.1", &m.sin6_addr);
	T_EQ_INT(conn_table_enter(t, 1, (struct sockaddr *)&m, 100, 2), -1);
	k3 = conn_table_enter(t, 1, (struct sockaddr *)&b, 100, 2);
	T_CHECK(k3 >= 0);
	conn_table_leave(t, 0, k1);
	k1 = conn_table_enter(t, 1, (struct sockaddr *)&m, 100, 2);
	T_CHECK(k1 >= 0);
	/* The total. */
	T_EQ_INT(conn_table_enter(t, 0, (struct sockaddr *)&b, 3, 0), -1);
}

/*
 * Two processes, as two workers: one comes and goes on one address, the
 * other on a new address each time, all on one slot's probe chain so
 * that a slot whose count fell to 0 is taken over under the first one's
 * feet.  Afterwards nobody is connected: every count must be 0, and the
 * first address must still get in with max_connections_per_ip = 1.
 */
static void
test_race(void)
{
	struct conn_table *t = conn_table_create(1, 2, 4);
	struct sockaddr_in a = v4(0x7f000001u), b;
	pid_t pa, pb;
	long n;
	int k, st;

	T_CHECK(t != NULL);
	if ((pa = fork()) == 0) {
		for (n = 0; n < 1000000; n++)
			if ((k = conn_table_enter(t, 0, (struct sockaddr *)&a,
			    1000, 1)) >= 0)
				conn_table_leave(t, 0, k);
		_exit(0);
	}
	if ((pb = fork()) == 0) {
		for (n = 0; n < 1000000; n++) {
			b = v4(0x7f000002u + (uint32_t)(n % 100000));
			if ((k = conn_table_enter(t, 1, (struct sockaddr *)&b,
			    1000, 1)) >= 0)
				conn_table_leave(t, 1, k);
		}
		_exit(0);
	}
	waitpid(pa, &st, 0);
	waitpid(pb, &st, 0);
	k = conn_table_enter(t, 0, (struct sockaddr *)&a, 1000, 1);
	T_CHECK(k >= 0);
	if (k >= 0)
		conn_table_leave(t, 0, k);
	b = v4(0x7f000002u + 99999u);
	k = conn_table_enter(t, 1, (struct sockaddr *)&b, 1000, 1);
	T_CHECK(k >= 0);
}

int
main(void)
{
	T_RUN(test_limits);
	T_RUN(test_race);
	return t_done("test_conn_table");
}
