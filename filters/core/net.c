/*
 * net.c - networks in configuration ("192.0.2.0/24", "2001:db8::/32" or
 * one address) and whether a client falls in one.  Plugins that match
 * client addresses (relay, access, ...) share this instead of each
 * parsing CIDR text of their own.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

int
gh_net_parse(const char *s, struct gh_net *n)
{
	char buf[INET6_ADDRSTRLEN + 8], *slash, *end;
	long bits;

	if (strlen(s) >= sizeof(buf))
		return -1;
	snprintf(buf, sizeof(buf), "%s", s);
	if ((slash = strchr(buf, '/')) != NULL)
		*slash++ = '\0';
	memset(n, 0, sizeof(*n));
	if (inet_pton(AF_INET, buf, n->addr) == 1)
		n->family = AF_INET;
	else if (inet_pton(AF_INET6, buf, n->addr) == 1)
		n->family = AF_INET6;
	else
		return -1;
	n->bits = n->family == AF_INET ? 32 : 128;
	if (slash != NULL) {
		bits = strtol(slash, &end, 10);
		if (*slash == '\0' || *end != '\0' || bits < 0 ||
		    bits > n->bits)
			return -1;
		n->bits = (int)bits;
	}
	return 0;
}

/* Are the first `bits` bits of a and b equal? */
static int
prefix_equal(const unsigned char *a, const unsigned char *b, int bits)
{
	int whole = bits / 8, rest = bits % 8;
	unsigned char mask;

	if (memcmp(a, b, (size_t)whole) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (unsigned char)(0xff << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

/* The client's address as family and bytes: an IPv4-mapped IPv6
 * address (a dual-stack listener) counts as the IPv4 address it is. */
static int
client_addr(const struct gh_conn *conn, unsigned char out[16])
{
	static const unsigned char mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};
	const struct sockaddr *sa = (const struct sockaddr *)&conn->remote_sa;

	if (sa->sa_family == AF_INET) {
		memcpy(out, &((const struct sockaddr_in *)(const void *)sa)->
		       sin_addr, 4);
		return AF_INET;
	}
	if (sa->sa_family == AF_INET6) {
		const unsigned char *a = ((const struct sockaddr_in6 *)
		    (const void *)sa)->sin6_addr.s6_addr;

		if (memcmp(a, mapped, sizeof(mapped)) == 0) {
			memcpy(out, a + 12, 4);
			return AF_INET;
		}
		memcpy(out, a, 16);
		return AF_INET6;
	}
	return -1;
}

int
gh_net_match(const struct gh_net *n, const struct gh_conn *conn)
{
	unsigned char addr[16];

	return client_addr(conn, addr) == n->family &&
	    prefix_equal(addr, n->addr, n->bits);
}
