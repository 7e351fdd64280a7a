/*
 * spoolq.h - the spool's queue file: one file per message holding its
 * envelope and its octets, which checks itself.
 *
 * Layout (text envelope, then the message, then a trailer):
 *
 *	GHSPOOL 1
 *	id ID
 *	host OUR-HOSTNAME		(Reporting-MTA of bounces, EHLO)
 *	kind msg | dsn | dsn-postmaster
 *	arrival UNIX-TIME
 *	attempts N
 *	next UNIX-TIME			(next delivery attempt)
 *	hold 0 | 1
 *	from MAILBOX			(empty for the null sender)
 *	params BODY=8BITMIME SMTPUTF8	(MAIL parameters to pass on)
 *	route mx			(optional: deliver by MX lookup;
 *					 absent: to the configured next hop)
 *	rcpt MAILBOX			(one per recipient still to do)
 *	error TEXT			(the last failure, optional)
 *	<empty line>
 *	MESSAGE OCTETS (CRLF line ends, not dot-stuffed)
 *	GHEND CRC32-HEX LENGTH
 *
 * LENGTH is the number of octets before the trailer and CRC32 (IEEE
 * 802.3, as zlib's crc32) covers exactly those octets.  A file whose
 * size, trailer or checksum does not match was torn (a crash while it
 * was written, a disk that lost it): spoolq_load() refuses it, so it is
 * never delivered half.  Envelope lines never contain CR or LF: the
 * mailboxes come from the SMTP parser, texts are sanitised.
 */
#ifndef GATEHOUSE_SPOOLQ_H
#define GATEHOUSE_SPOOLQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SPOOLQ_MAGIC "GHSPOOL 1"
#define SPOOLQ_ENV_MAX (4 * 1024 * 1024)	/* envelope bound */

enum spoolq_kind { SPOOLQ_MSG = 0, SPOOLQ_DSN, SPOOLQ_DSN_PM };
/* Where a message goes: the next hop, or each recipient domain's MX. */
enum spoolq_route { SPOOLQ_ROUTE_HOP = 0, SPOOLQ_ROUTE_MX };

struct spoolq_env {
	char id[64];
	char host[256];
	enum spoolq_kind kind;
	long long arrival;
	long long attempts;
	long long next;
	int hold;
	int route;		/* SPOOLQ_ROUTE_* */
	char *from;		/* "" for <> */
	char *params;		/* "" when none */
	char **rcpts;
	size_t nrcpts;
	char *error;		/* "" when none */
	/* Set by spoolq_load: where the message is in the file. */
	off_t msg_off;
	off_t msg_len;
};

uint32_t spoolq_crc32(uint32_t crc, const void *data, size_t n);

/* Buffered writer that keeps the checksum and the length. */
struct spoolq_w {
	int fd;
	uint32_t crc;
	uint64_t len;
	int err;		/* errno of the first failure, sticky */
	size_t n;
	char buf[65536];
};

void spoolq_w_init(struct spoolq_w *w, int fd);
/* 0, or -1 with w->err set. */
int spoolq_w_put(struct spoolq_w *w, const void *data, size_t n);
/* The envelope up to and including the empty line. */
int spoolq_w_env(struct spoolq_w *w, const struct spoolq_env *e);
/* The trailer, and everything to the file (no fsync). */
int spoolq_w_finish(struct spoolq_w *w);

/*
 * Read the envelope of the queue file open on fd into e (strings
 * allocated; spoolq_env_free releases them).  With verify, the trailer,
 * length and checksum are checked too (a full read of the file).
 * Returns 0, or -1 with why filled.
 */
int spoolq_load(int fd, struct spoolq_env *e, int verify, char *why,
		size_t whylen);
void spoolq_env_free(struct spoolq_env *e);
/* Add a recipient to e (a copy).  0 or -1. */
int spoolq_env_add_rcpt(struct spoolq_env *e, const char *mailbox);
const char *spoolq_kind_name(enum spoolq_kind k);

/*
 * Write a new queue file at tmp_path (created, exclusive, 0600) with
 * envelope e and the message octets of the queue file src_fd (at
 * e->msg_off, e->msg_len): a retry that changes the envelope.  The new
 * file is locked (flock) and left open in *out_fd.  Returns 0, or -1 with
 * errno set (the temporary file removed).
 */
int spoolq_rewrite(const char *tmp_path, const struct spoolq_env *e,
		   int src_fd, int *out_fd);

/* `relayd -q ...` on the spool of cfg's spool plugin (spoolctl.c):
 * returns the exit status. */
struct gh_config;
int spoolq_command(const struct gh_config *cfg, int argc, char **argv);

#endif
