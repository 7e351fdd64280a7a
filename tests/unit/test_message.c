/*
 * test_message.c - the message store and its header parser: folding,
 * lookups, the end of the header block (empty line, malformed line, end
 * of message), the bounds, writes of any size, the spill to a temporary
 * file and reading back.
 */
#include "config.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core.h"
#include "t.h"

static const struct gh_message_limits deflim = {
	1024 * 1024, 998, 64 * 1024, NULL
};

/* Write s in pieces of step octets (0: all at once); finish if asked. */
static struct gh_message *
msg_from(struct gh_pool *p, const struct gh_message_limits *lim,
    const char *s, size_t len, size_t step, int finish)
{
	struct gh_message *m = gh_msg_new(p, lim ? lim : &deflim);
	size_t off = 0, n;

	if (step == 0)
		step = len ? len : 1;
	while (off < len) {
		n = len - off < step ? len - off : step;
		(void)gh_msg_write(m, s + off, n);
		off += n;
	}
	if (finish)
		(void)gh_msg_finish(m);
	return m;
}

#define MSG(p, s, step, fin) msg_from((p), NULL, (s), strlen(s), (step), (fin))

/* Read the whole message back through a reader with a small buffer. */
static size_t
read_all(struct gh_pool *p, const struct gh_message *m, char *out,
    size_t outsz, size_t chunk, int *err)
{
	struct gh_msg_reader *r = gh_msg_reader_open(p, m);
	size_t len = 0;
	ssize_t got;

	*err = 0;
	for (;;) {
		size_t want = chunk < outsz - len ? chunk : outsz - len;

		if (want == 0)
			break;
		got = gh_msg_read(r, out + len, want);
		if (got == -1) {
			*err = 1;
			break;
		}
		if (got == 0)
			break;
		len += (size_t)got;
	}
	return len;
}

static int
count_dir(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	int n = 0;

	if (d == NULL)
		return -1;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static int
count_fds(void)
{
	return count_dir("/proc/self/fd");
}

static void
test_simple(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = MSG(p, "From: a@b\r\nTo: c@d\r\n"
	    "Subject: hi\r\n\r\nbody\r\n", 0, 0);

	T_CHECK(gh_msg_headers_done(m));
	T_EQ_INT(gh_msg_status(m), GH_MSG_OK);
	T_EQ_INT(gh_msg_header_count(m), 3);
	T_EQ_STR(gh_msg_header_at(m, 0)->name, "From");
	T_EQ_STR(gh_msg_header_at(m, 0)->value, "a@b");
	T_EQ_STR(gh_msg_header_at(m, 1)->name, "To");
	T_EQ_STR(gh_msg_header_at(m, 2)->value, "hi");
	T_CHECK(gh_msg_header_at(m, 3) == NULL);
	T_EQ_INT(gh_msg_finish(m), GH_MSG_OK);
	T_EQ_INT(gh_msg_header_count(m), 3);
	gh_pool_destroy(p);
}

static void
test_folding(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = MSG(p, "Subject: a\r\n b\r\n\tc\r\n"
	    "X: y\r\n\r\n", 0, 0);

	T_EQ_INT(gh_msg_header_count(m), 2);
	T_EQ_STR(gh_msg_header_get(m, "Subject", 0), "a\r\n b\r\n\tc");
	T_EQ_STR(gh_msg_header_get(m, "X", 0), "y");
	gh_pool_destroy(p);
}

/* "Name:" then the value on the next line: only SP/HTAB right after
 * the colon go, the folding stays. */
static void
test_fold_empty_first_line(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = MSG(p, "To:\r\n a@b,\r\n c@d\r\n"
	    "X-Empty:\r\nX-Sp: \t \r\n\r\n", 0, 0);

	T_EQ_STR(gh_msg_header_get(m, "to", 0), "\r\n a@b,\r\n c@d");
	T_EQ_STR(gh_msg_header_get(m, "x-empty", 0), "");
	T_EQ_STR(gh_msg_header_get(m, "x-sp", 0), "");
	gh_pool_destroy(p);
}

static void
test_value_spaces(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = MSG(p, "Subject:   a  b\t \r\n"
	    "X:\tv\r\n\r\n", 0, 0);

	T_EQ_STR(gh_msg_header_get(m, "Subject", 0), "a  b\t ");
	T_EQ_STR(gh_msg_header_get(m, "X", 0), "v");
	gh_pool_destroy(p);
}

static void
test_case_insensitive(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = MSG(p, "SUBJECT: one\r\nsubject: two\r\n"
	    "Message-ID: <x@y>\r\n\r\n", 0, 0);

	T_EQ_INT(gh_msg_header_num(m, "Subject"), 2);
	T_EQ_STR(gh_msg_header_get(m, "subject", 0), "one");
	T_EQ_STR(gh_msg_header_get(m, "sUbJeCt", 1), "two");
	T_EQ_STR(gh_msg_header_get(m, "message-id", 0), "<x@y>");
	T_EQ_STR(gh_msg_header_at(m, 0)->name, "SUBJECT");	/* as written */
	gh_pool_destroy(p);
}

static void
test_nth(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = MSG(p, "Received: r0\r\nFrom: f\r\n"
	    "Received: r1\r\nreceived: r2\r\n\r\n", 0, 0);

	T_EQ_INT(gh_msg_header_num(m, "Received"), 3);
	T_EQ_STR(gh_msg_header_get(m, "Received", 0), "r0");
	T_EQ_STR(gh_msg_header_get(m, "Received", 1), "r1");
	T_EQ_STR(gh_msg_header_get(m, "Received", 2), "r2");
	T_CHECK(gh_msg_header_get(m, "Received", 3) == NULL);
	T_CHECK(gh_msg_header_get(m, "Missing", 0) == NULL);
	T_EQ_INT(gh_msg_header_num(m, "Missing"), 0);
	T_EQ_INT(gh_msg_header_num(m, "Receive"), 0);	/* no prefix match */
	gh_pool_destroy(p);
}

static void
test_many_headers(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = gh_msg_new(p, &deflim);
	char line[64], want[32];
	size_t i;

	for (i = 0; i < 500; i++) {
		snprintf(line, sizeof(line), "X-H%zu: v%zu\r\n", i % 7, i);
		(void)gh_msg_write(m, line, strlen(line));
	}
	(void)gh_msg_write(m, "\r\n", 2);
	T_CHECK(gh_msg_headers_done(m));
	T_EQ_INT(gh_msg_header_count(m), 500);
	T_EQ_INT(gh_msg_header_num(m, "x-h3"), 71);
	snprintf(want, sizeof(want), "v%d", 7 * 70 + 3);
	T_EQ_STR(gh_msg_header_get(m, "X-H3", 70), want);
	T_EQ_STR(gh_msg_header_at(m, 499)->value, "v499");
	gh_pool_destroy(p);
}

static void
test_done_only_after_empty_line(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = gh_msg_new(p, &deflim);

	(void)gh_msg_write(m, "A: 1\r\n", 6);
	T_CHECK(!gh_msg_headers_done(m));
	(void)gh_msg_write(m, "B: 2\r\n", 6);
	T_CHECK(!gh_msg_headers_done(m));
	T_EQ_INT(gh_msg_header_count(m), 1);	/* B may still fold */
	(void)gh_msg_write(m, "\r", 1);
	T_CHECK(!gh_msg_headers_done(m));
	T_EQ_INT(gh_msg_header_count(m), 2);
	(void)gh_msg_write(m, "\n", 1);
	T_CHECK(gh_msg_headers_done(m));
	/* Header-looking body lines are body. */
	(void)gh_msg_write(m, "C: 3\r\n\r\n", 8);
	T_EQ_INT(gh_msg_header_count(m), 2);
	gh_pool_destroy(p);
}

static void
test_no_body(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = MSG(p, "From: a\r\nTo: b\r\n", 0, 0);

	T_CHECK(!gh_msg_headers_done(m));
	T_EQ_INT(gh_msg_finish(m), GH_MSG_OK);
	T_CHECK(gh_msg_headers_done(m));
	T_EQ_INT(gh_msg_header_count(m), 2);
	T_EQ_STR(gh_msg_header_get(m, "to", 0), "b");
	gh_pool_destroy(p);
}

static void
test_last_line_unterminated(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = MSG(p, "From: a\r\nSubject: x\r\n y", 0, 1);

	T_CHECK(gh_msg_headers_done(m));
	T_EQ_INT(gh_msg_header_count(m), 2);
	T_EQ_STR(gh_msg_header_get(m, "Subject", 0), "x\r\n y");
	m = MSG(p, "Subject: only", 0, 1);
	T_EQ_INT(gh_msg_header_count(m), 1);
	T_EQ_STR(gh_msg_header_get(m, "subject", 0), "only");
	/* An unterminated last line that is no header is body. */
	m = MSG(p, "A: b\r\nno colon", 0, 1);
	T_EQ_INT(gh_msg_header_count(m), 1);
	T_CHECK(gh_msg_headers_done(m));
	gh_pool_destroy(p);
}

static void
test_empty_message(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = MSG(p, "", 0, 1);
	char buf[8];
	int err;

	T_CHECK(gh_msg_headers_done(m));
	T_EQ_INT(gh_msg_header_count(m), 0);
	T_EQ_INT(gh_msg_size(m), 0);
	T_EQ_INT(read_all(p, m, buf, sizeof(buf), 8, &err), 0);
	T_EQ_INT(err, 0);
	/* No header block at all: the first line is empty. */
	m = MSG(p, "\r\nFrom: body\r\n", 0, 1);
	T_EQ_INT(gh_msg_header_count(m), 0);
	T_CHECK(gh_msg_headers_done(m));
	gh_pool_destroy(p);
}

/* A line that is neither a field nor a continuation ends the block and
 * starts the body (RFC 5322 calls the header malformed; Postfix does
 * the same). */
static void
test_malformed_ends_block(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = gh_msg_new(p, &deflim);
	const char *a = "From: a\r\nthis is not a header\r\n";

	(void)gh_msg_write(m, a, strlen(a));
	T_CHECK(gh_msg_headers_done(m));
	(void)gh_msg_write(m, "To: b\r\n\r\n", 9);
	T_EQ_INT(gh_msg_header_count(m), 1);
	T_CHECK(gh_msg_header_get(m, "To", 0) == NULL);
	T_EQ_INT(gh_msg_status(m), GH_MSG_OK);

	/* Other malformed lines. */
	m = MSG(p, "A: 1\r\n: no name\r\nB: 2\r\n\r\n", 0, 1);
	T_EQ_INT(gh_msg_header_count(m), 1);
	m = MSG(p, "A: 1\r\nFr\x80om: x\r\nB: 2\r\n\r\n", 0, 1);
	T_EQ_INT(gh_msg_header_count(m), 1);
	m = MSG(p, "A: 1\r\nTwo words: x\r\nB: 2\r\n\r\n", 0, 1);
	T_EQ_INT(gh_msg_header_count(m), 1);
	/* Folding with nothing before it. */
	m = MSG(p, " A: 1\r\nB: 2\r\n\r\n", 0, 1);
	T_EQ_INT(gh_msg_header_count(m), 0);
	T_CHECK(gh_msg_headers_done(m));
	gh_pool_destroy(p);
}

/* RFC 5322 4.5: obsolete WSP between the name and the colon. */
static void
test_obs_name_space(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = MSG(p, "From : x\r\nSubject\t :y\r\n\r\n",
	    0, 0);

	T_EQ_INT(gh_msg_header_count(m), 2);
	T_EQ_STR(gh_msg_header_at(m, 0)->name, "From");
	T_EQ_STR(gh_msg_header_get(m, "from", 0), "x");
	T_EQ_STR(gh_msg_header_at(m, 1)->name, "Subject");
	T_EQ_STR(gh_msg_header_get(m, "subject", 0), "y");
	gh_pool_destroy(p);
}

/* The parse must not depend on how the octets were cut. */
static void
test_bytewise(void)
{
	static const char block[] = "Received: from a\r\n\tby b\r\n"
	    "From : x\r\nSubject: s\r\n  more\r\nX-Empty:\r\n"
	    "subject: two\r\n\r\nbody: not a header\r\n";
	struct gh_pool *p = gh_pool_create();
	struct gh_message *whole, *m;
	size_t step, i;

	whole = MSG(p, block, 0, 1);
	T_EQ_INT(gh_msg_header_count(whole), 5);
	for (step = 1; step <= 7; step++) {
		m = MSG(p, block, step, 0);
		T_CHECK(gh_msg_headers_done(m));
		(void)gh_msg_finish(m);
		T_EQ_INT(gh_msg_header_count(m), gh_msg_header_count(whole));
		for (i = 0; i < gh_msg_header_count(whole); i++) {
			T_EQ_STR(gh_msg_header_at(m, i)->name,
			    gh_msg_header_at(whole, i)->name);
			T_EQ_STR(gh_msg_header_at(m, i)->value,
			    gh_msg_header_at(whole, i)->value);
		}
		T_EQ_INT(gh_msg_size(m), sizeof(block) - 1);
	}
	gh_pool_destroy(p);
}

/* Lines ended by a bare LF (a host that did not normalise) still parse. */
static void
test_lf_lines(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = MSG(p, "A: 1\n b\nC: 2\n\nbody\n", 0, 0);

	T_CHECK(gh_msg_headers_done(m));
	T_EQ_INT(gh_msg_header_count(m), 2);
	T_EQ_STR(gh_msg_header_get(m, "a", 0), "1\n b");
	T_EQ_STR(gh_msg_header_get(m, "c", 0), "2");
	gh_pool_destroy(p);
}

static void
test_line_limit(void)
{
	struct gh_message_limits lim = { 4096, 20, 4096, NULL };
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m;
	const char *at = "Subject: 12345678901\r\n\r\n";	/* 20 + CRLF */
	const char *past = "Subject: 123456789012\r\n\r\n";
	const char *fold_at = "Subject: 12\r\n 456789\r\n\r\n";	/* 11+2+7 */
	const char *fold_past = "Subject: 12\r\n 4567890\r\n\r\n";

	m = msg_from(p, &lim, at, strlen(at), 0, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_OK);
	T_EQ_STR(gh_msg_header_get(m, "subject", 0), "12345678901");
	m = msg_from(p, &lim, at, strlen(at), 1, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_OK);
	m = msg_from(p, &lim, past, strlen(past), 0, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_HEADER_TOO_BIG);
	m = msg_from(p, &lim, past, strlen(past), 1, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_HEADER_TOO_BIG);
	m = msg_from(p, &lim, fold_at, strlen(fold_at), 0, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_OK);
	T_EQ_STR(gh_msg_header_get(m, "subject", 0), "12\r\n 456789");
	m = msg_from(p, &lim, fold_past, strlen(fold_past), 0, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_HEADER_TOO_BIG);
	m = msg_from(p, &lim, fold_past, strlen(fold_past), 1, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_HEADER_TOO_BIG);
	/* The last field, with no CRLF, at the bound. */
	m = msg_from(p, &lim, "Subject: 12345678901", 20, 0, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_OK);
	m = msg_from(p, &lim, "Subject: 123456789012", 21, 0, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_HEADER_TOO_BIG);
	gh_pool_destroy(p);
}

/* A long first line: too big if it may be a field, body if it cannot. */
static void
test_long_line_kind(void)
{
	struct gh_message_limits lim = { 4096, 20, 4096, NULL };
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m;
	const char *name = "X-Very-Long-Header-Name-Here: v\r\n\r\n";
	const char *nocolon = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n";
	const char *body = "This is a long body line, no header.\r\n";

	m = msg_from(p, &lim, name, strlen(name), 0, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_HEADER_TOO_BIG);
	m = msg_from(p, &lim, nocolon, strlen(nocolon), 0, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_HEADER_TOO_BIG);
	m = msg_from(p, &lim, body, strlen(body), 0, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_OK);
	T_CHECK(gh_msg_headers_done(m));
	T_EQ_INT(gh_msg_header_count(m), 0);
	m = msg_from(p, &lim, body, strlen(body), 3, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_OK);
	/* Long lines after the header block are no concern of ours. */
	m = msg_from(p, &lim, "A: b\r\n\r\n", 8, 0, 0);
	(void)gh_msg_write(m, name, strlen(name));
	T_EQ_INT(gh_msg_finish(m), GH_MSG_OK);
	gh_pool_destroy(p);
}

static void
test_block_limit(void)
{
	/* Three fields of 10 octets with CRLF: a 30-octet block. */
	const char *blk = "A: 12345\r\nB: 12345\r\nC: 12345\r\n\r\nbody";
	struct gh_message_limits at = { 4096, 998, 30, NULL };
	struct gh_message_limits past = { 4096, 998, 29, NULL };
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m;

	m = msg_from(p, &at, blk, strlen(blk), 0, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_OK);
	T_EQ_INT(gh_msg_header_count(m), 3);
	m = msg_from(p, &at, blk, strlen(blk), 1, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_OK);
	m = msg_from(p, &past, blk, strlen(blk), 0, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_HEADER_TOO_BIG);
	m = msg_from(p, &past, blk, strlen(blk), 1, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_HEADER_TOO_BIG);
	gh_pool_destroy(p);
}

/* Once too big, always too big; octets are still counted. */
static void
test_sticky_and_size(void)
{
	struct gh_message_limits lim = { 4096, 10, 4096, NULL };
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = gh_msg_new(p, &lim);
	const char *big = "Subject: way too long\r\n";
	char buf[64];
	int err;
	size_t n;

	T_EQ_INT(gh_msg_write(m, big, strlen(big)), GH_MSG_HEADER_TOO_BIG);
	T_EQ_INT(gh_msg_write(m, "\r\nbody\r\n", 8), GH_MSG_HEADER_TOO_BIG);
	T_EQ_INT(gh_msg_finish(m), GH_MSG_HEADER_TOO_BIG);
	T_EQ_INT(gh_msg_status(m), GH_MSG_HEADER_TOO_BIG);
	T_EQ_INT(gh_msg_size(m), strlen(big) + 8);
	/* Only what came before the status changed is stored. */
	n = read_all(p, m, buf, sizeof(buf), 64, &err);
	T_EQ_INT(err, 0);
	T_EQ_INT(n, strlen(big));
	gh_pool_destroy(p);
}

static void
test_size(void)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = gh_msg_new(p, &deflim);

	T_EQ_INT(gh_msg_size(m), 0);
	(void)gh_msg_write(m, "A: b\r\n", 6);
	(void)gh_msg_write(m, "", 0);
	(void)gh_msg_write(m, "\r\nxyz", 5);
	T_EQ_INT(gh_msg_size(m), 11);
	(void)gh_msg_finish(m);
	T_EQ_INT(gh_msg_size(m), 11);
	gh_pool_destroy(p);
}

/* In memory: read back identical, nothing on disk. */
static void
test_memory_readback(void)
{
	char dir[] = "/tmp/ghtest.XXXXXX";
	struct gh_message_limits lim = { 65536, 998, 65536, dir };
	static const char msg[] = "A: b\r\n\r\nline one\r\nline \0two\r\n";
	struct gh_pool *p;
	struct gh_message *m;
	char buf[128];
	int err;
	size_t n;

	T_CHECK(mkdtemp(dir) != NULL);
	p = gh_pool_create();
	m = msg_from(p, &lim, msg, sizeof(msg) - 1, 5, 1);
	T_EQ_INT(count_dir(dir), 0);
	n = read_all(p, m, buf, sizeof(buf), 3, &err);
	T_EQ_INT(err, 0);
	T_EQ_INT(n, sizeof(msg) - 1);
	T_CHECK(memcmp(buf, msg, sizeof(msg) - 1) == 0);
	gh_pool_destroy(p);
	rmdir(dir);
}

/* Past the threshold: a temporary file, unlinked at once, closed with
 * the pool; read back byte-identical. */
static void
test_spill(void)
{
	char dir[] = "/tmp/ghtest.XXXXXX";
	struct gh_message_limits lim = { 100, 998, 65536, dir };
	static char msg[20000], back[20000];
	struct gh_pool *p;
	struct gh_message *m;
	size_t i, off, n, len;
	int err, fds;

	T_CHECK(mkdtemp(dir) != NULL);
	len = (size_t)snprintf(msg, sizeof(msg), "From: a\r\nTo: b\r\n\r\n");
	for (i = len; i < sizeof(msg); i++)
		msg[i] = (char)(i * 7 % 251);	/* NULs, CRs, LFs, 8-bit */
	len = sizeof(msg);
	fds = count_fds();
	p = gh_pool_create();
	m = gh_msg_new(p, &lim);
	for (off = 0, n = 1; off < len; off += n, n = n * 3 % 997 + 1) {
		if (n > len - off)
			n = len - off;
		T_EQ_INT(gh_msg_write(m, msg + off, n), GH_MSG_OK);
	}
	T_EQ_INT(gh_msg_finish(m), GH_MSG_OK);
	T_EQ_INT(gh_msg_size(m), len);
	T_EQ_INT(gh_msg_header_count(m), 2);
	T_EQ_INT(count_dir(dir), 0);		/* unlinked */
	T_EQ_INT(count_fds(), fds + 1);		/* but open */
	n = read_all(p, m, back, sizeof(back), 4093, &err);
	T_EQ_INT(err, 0);
	T_EQ_INT(n, len);
	T_CHECK(memcmp(back, msg, len) == 0);
	gh_pool_destroy(p);
	T_EQ_INT(count_fds(), fds);		/* closed by the pool */
	rmdir(dir);
}

/* A threshold of 0 sends everything to the file from the first octet. */
static void
test_threshold_zero(void)
{
	struct gh_message_limits lim = { 0, 998, 65536, NULL };
	static const char msg[] = "Subject: s\r\n\r\nbody\r\n";
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m;
	char buf[64];
	int err, fds = count_fds();
	size_t n;

	m = msg_from(p, &lim, msg, sizeof(msg) - 1, 1, 1);
	T_EQ_INT(gh_msg_status(m), GH_MSG_OK);
	T_EQ_INT(count_fds(), fds + 1);
	n = read_all(p, m, buf, sizeof(buf), 1, &err);
	T_EQ_INT(err, 0);
	T_EQ_INT(n, sizeof(msg) - 1);
	T_CHECK(memcmp(buf, msg, n) == 0);
	T_EQ_STR(gh_msg_header_get(m, "subject", 0), "s");
	gh_pool_destroy(p);
}

/* Readers keep their own offsets. */
static void
test_two_readers(void)
{
	struct gh_message_limits lim = { 8, 998, 65536, NULL };
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = msg_from(p, &lim, "A: b\r\n\r\n0123456789",
	    18, 0, 1);
	struct gh_msg_reader *r1 = gh_msg_reader_open(p, m);
	struct gh_msg_reader *r2 = gh_msg_reader_open(p, m);
	char a[32], b[32];

	T_EQ_INT(gh_msg_read(r1, a, 4), 4);
	T_EQ_INT(gh_msg_read(r2, b, 10), 10);
	T_EQ_INT(gh_msg_read(r1, a + 4, 32 - 4), 14);
	T_EQ_INT(gh_msg_read(r1, a, 32), 0);
	T_EQ_INT(gh_msg_read(r2, b + 10, 32 - 10), 8);
	T_CHECK(memcmp(a, "A: b", 4) == 0);
	T_CHECK(memcmp(b, "A: b\r\n\r\n0123456789", 18) == 0);
	gh_pool_destroy(p);
}

static void
test_io_error(void)
{
	struct gh_message_limits lim = { 4, 998, 65536,
	    "/nonexistent/gatehouse-test" };
	struct gh_pool *p = gh_pool_create();
	struct gh_message *m = gh_msg_new(p, &lim);

	T_EQ_INT(gh_msg_write(m, "A: b", 4), GH_MSG_OK);
	T_EQ_INT(gh_msg_write(m, "\r\n", 2), GH_MSG_IO_ERROR);
	T_EQ_INT(gh_msg_write(m, "\r\n", 2), GH_MSG_IO_ERROR);
	T_EQ_INT(gh_msg_finish(m), GH_MSG_IO_ERROR);
	T_EQ_INT(gh_msg_size(m), 8);
	gh_pool_destroy(p);
}

int
main(void)
{
	T_RUN(test_simple);
	T_RUN(test_folding);
	T_RUN(test_fold_empty_first_line);
	T_RUN(test_value_spaces);
	T_RUN(test_case_insensitive);
	T_RUN(test_nth);
	T_RUN(test_many_headers);
	T_RUN(test_done_only_after_empty_line);
	T_RUN(test_no_body);
	T_RUN(test_last_line_unterminated);
	T_RUN(test_empty_message);
	T_RUN(test_malformed_ends_block);
	T_RUN(test_obs_name_space);
	T_RUN(test_bytewise);
	T_RUN(test_lf_lines);
	T_RUN(test_line_limit);
	T_RUN(test_long_line_kind);
	T_RUN(test_block_limit);
	T_RUN(test_sticky_and_size);
	T_RUN(test_size);
	T_RUN(test_memory_readback);
	T_RUN(test_spill);
	T_RUN(test_threshold_zero);
	T_RUN(test_two_readers);
	T_RUN(test_io_error);
	return t_done("message");
}
