/*
 * proxy.h - parsers for what a trusted front end says about the real
 * client: the PROXY protocol header (HAProxy, versions 1 and 2) and
 * the arguments of Postfix's XCLIENT command.
 *
 * Pure: no I/O, no allocation, no global state.  Both parsers only
 * read the octets they are given and fill a caller-owned structure.
 *
 * PROXY protocol (https://www.haproxy.org/download/2.9/doc/
 * proxy-protocol.txt).  A load balancer (HAProxy in front of several
 * relayd hosts) sends one header before the first SMTP octet:
 *
 *   v1: "PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n", "PROXY TCP6
 *       ...", or "PROXY UNKNOWN[ anything]\r\n"; 107 octets at most
 *       (section 2.1).  Exactly one space between fields, no leading
 *       zero in a port, addresses as inet_pton(3) reads them.
 *   v2: the 12-octet signature "\r\n\r\n\0\r\nQUIT\n", version 2 and a
 *       command (LOCAL or PROXY), family and transport, a 16-bit length,
 *       then the addresses and TLVs (section 2.2).
 *
 * Use (server.c): on a proxy=yes listener relayd reads before the
 * session exists, hence before its greeting.  A peer outside
 * relayd.proxy_hosts is closed on unread; a header proxy_parse() calls
 * PROXY_ERROR gets the connection closed without a reply (the spec,
 * section 2: a receiver must not guess).  On PROXY_NEED_MORE it reads
 * again (relayd.proxy_timeout, from the accept, bounds the wait; at
 * most PROXY_MAX_HEADER octets are ever needed).  On PROXY_OK it drops
 * *consumed octets (what follows is the client's first SMTP octet, and
 * stays in the buffer) and, unless info.local is set, takes info.src as
 * the client's address and port for every plugin (connect hooks run
 * only then, so they never see the balancer).  info.local (v1 UNKNOWN,
 * v2 LOCAL: the balancer's own health check) means: keep the
 * connection's own addresses, as the spec asks (sections 2.1, 2.2).
 * A v2 PROXY command for anything but TCP over IPv4 or IPv6 (UNSPEC,
 * UNIX, UDP) is an error: the spec lets a receiver refuse it, and
 * taking the balancer's address for an unknown client would hand that
 * client whatever the balancer is trusted with.
 *
 * XCLIENT (https://www.postfix.org/XCLIENT_README.html).  A test harness
 * or an upstream MTA in `relayd.xclient_hosts` overrides what the session
 * knows of the client with "XCLIENT NAME=... ADDR=... PORT=... HELO=...
 * LOGIN=... PROTO=... DESTADDR=... DESTPORT=...".  Values are xtext
 * (RFC 3461 section 4: "+" and two upper-case hex digits stand for an
 * octet); "[UNAVAILABLE]" and "[TEMPUNAVAIL]" are kept as states, not
 * values.  The session (session.c) parses with xclient_parse() (501
 * 5.5.4 with xc.why on error), then applies the attributes that are
 * present, resets its state to that of a new connection and runs the
 * connect hooks again, whose verdict is the reply: a new 220 greeting
 * as Postfix sends, or the refusal.
 */
#ifndef GATEHOUSE_PROXY_H
#define GATEHOUSE_PROXY_H

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

/* A v1 header is at most 107 octets with its CRLF (section 2.1). */
#define PROXY_V1_MAX		107
/* A v2 header is 16 octets, then up to 65535 of addresses and TLVs;
 * relayd refuses more than it would ever need: the 216 octets of the
 * largest address block and some TLVs (authority, SSL, cloud ids). */
#define PROXY_V2_MAX		4096
#define PROXY_MAX_HEADER	PROXY_V2_MAX

enum proxy_status {
	PROXY_ERROR = -1,	/* not a valid header: close, no reply */
	PROXY_NEED_MORE = 0,	/* a valid prefix so far: read more */
	PROXY_OK = 1		/* a complete header in *consumed octets */
};

struct proxy_info {
	int		 version;	/* 1 or 2 */
	int		 local;		/* keep the connection's addresses */
	int		 family;	/* AF_INET, AF_INET6; AF_UNSPEC
					   when local */
	struct sockaddr_storage src;	/* the client, port included */
	struct sockaddr_storage dst;	/* the address it connected to */
	char		 src_addr[INET6_ADDRSTRLEN];
	char		 dst_addr[INET6_ADDRSTRLEN];
	uint16_t	 src_port;
	uint16_t	 dst_port;
	size_t		 tlv_len;	/* v2: octets of TLVs (checked and
					   skipped) */
	const char	*why;		/* PROXY_ERROR: a static reason for
					   the log */
};

/*
 * Parse the PROXY header at the start of buf[0..len).  Reads no octet
 * past len and never more than the header.  Returns PROXY_NEED_MORE
 * while buf is a valid, incomplete prefix of a header (an empty buf
 * included), PROXY_ERROR as soon as it cannot be one, and PROXY_OK with
 * *consumed set to the header's length.  out is filled on PROXY_OK;
 * on PROXY_ERROR only out->why is meaningful.
 */
enum proxy_status proxy_parse(const unsigned char *buf, size_t len,
			      struct proxy_info *out, size_t *consumed);

/* ------------------------------------------------------------------ */
/* XCLIENT.                                                            */

enum xclient_attr {
	XCLIENT_NAME = 0,	/* the client's verified host name */
	XCLIENT_REVERSE_NAME,	/* its PTR name, unverified */
	XCLIENT_ADDR,		/* its address ("IPV6:" prefix allowed) */
	XCLIENT_PORT,
	XCLIENT_HELO,		/* what it said in HELO or EHLO */
	XCLIENT_LOGIN,		/* its SASL login name */
	XCLIENT_PROTO,		/* SMTP or ESMTP */
	XCLIENT_DESTADDR,	/* the address it connected to */
	XCLIENT_DESTPORT,
	XCLIENT_NATTRS
};

enum xclient_state {
	XCLIENT_ABSENT = 0,	/* not given: keep what the session has */
	XCLIENT_VALUE,		/* value holds the decoded value */
	XCLIENT_UNAVAILABLE,	/* "[UNAVAILABLE]": forget what it was */
	XCLIENT_TEMPUNAVAIL	/* "[TEMPUNAVAIL]" (names only): a lookup
				   failed for now */
};

/* An xtext value decodes to at most this (RFC 5321 4.5.3.1.2: a
 * domain is 255 octets; a login name gets the same bound). */
#define XCLIENT_VALUE_MAX	255

struct xclient {
	struct {
		enum xclient_state state;
		char	value[XCLIENT_VALUE_MAX + 1];
	} attr[XCLIENT_NATTRS];
	/* Decoded forms, valid when the attribute's state is VALUE. */
	int		 addr_family;		/* ADDR: AF_INET or AF_INET6 */
	int		 destaddr_family;	/* DESTADDR */
	uint16_t	 port, destport;
	const char	*why;		/* on error: a static text for 501 */
};

/*
 * Parse the arguments of XCLIENT (what follows "XCLIENT "): one or more
 * NAME=xtext pairs separated by single spaces, attribute names
 * case-insensitive, each at most once.  Every value is decoded and
 * checked: addresses by inet_pton(3) (IPv6 after "IPV6:"), ports
 * 0..65535, names and HELO printable with no space, PROTO SMTP or
 * ESMTP; no decoded value may hold a control octet (they would reach
 * headers and logs).  Returns 0, or -1 with out->why set.
 */
int	xclient_parse(const char *args, struct xclient *out);
/* "NAME", "ADDR", ... for logs. */
const char *xclient_attr_name(enum xclient_attr a);

#endif
