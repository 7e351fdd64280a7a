/*
 * test_dataframe.c - the DATA/BDAT framer: end of data, dot-unstuffing,
 * line-end normalisation and the SMTP smuggling sequences.
 *
 * Every row is fed whole, one byte at a time and split in two at every
 * position: the content, the end, the bytes consumed and the counters
 * must not depend on how the bytes arrived.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "dataframe.h"
#include "t.h"

#define S(x)	x, sizeof(x) - 1
#define ALL	((size_t)-1)

/* What a smuggler puts after a fake end of data. */
#define SMUG	"MAIL FROM:<x>\r\nRCPT TO:<y>\r\nDATA\r\nevil\r\n.\r\n"
/* SMUG as content: everything but its real end. */
#define SMUGOUT	"MAIL FROM:<x>\r\nRCPT TO:<y>\r\nDATA\r\nevil\r\n"

struct out {
	char		buf[8192];
	size_t		len;
	int		overflow;
	int		empty_emit;
	unsigned	calls;
};

static void
collect(void *arg, const char *p, size_t n)
{
	struct out *o = arg;

	o->calls++;
	if (n == 0)
		o->empty_emit = 1;
	if (o->len + n > sizeof(o->buf)) {
		o->overflow = 1;
		return;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

struct drow {
	const char	*name;
	const char	*in;
	size_t		 inlen;
	const char	*out;
	size_t		 outlen;
	int		 done;
	size_t		 consumed;	/* ALL: inlen */
	unsigned long	 bare_lf, bare_cr;
};

static const struct drow drows[] = {
	/* Plain ends. */
	{ "empty message", S(".\r\n"), S(""), 1, 3, 0, 0 },
	{ "empty line then end", S("\r\n.\r\n"), S("\r\n"), 1, 5, 0, 0 },
	{ "one line", S("hello\r\n.\r\n"), S("hello\r\n"), 1, ALL, 0, 0 },
	{ "two lines", S("a: b\r\n\r\nbody\r\n.\r\n"),
	  S("a: b\r\n\r\nbody\r\n"), 1, ALL, 0, 0 },
	{ "pipelined command after end", S("hi\r\n.\r\nQUIT\r\n"),
	  S("hi\r\n"), 1, 7, 0, 0 },
	{ "empty message then command", S(".\r\nRSET\r\n"), S(""), 1, 3, 0, 0 },
	{ "second end not consumed", S("x\r\n.\r\n.\r\n"), S("x\r\n"), 1, 6,
	  0, 0 },

	/* Unfinished. */
	{ "no end yet", S("hi\r\n"), S("hi\r\n"), 0, ALL, 0, 0 },
	{ "held dot", S("hi\r\n."), S("hi\r\n"), 0, ALL, 0, 0 },
	{ "held dot CR", S("hi\r\n.\r"), S("hi\r\n"), 0, ALL, 0, 0 },
	{ "trailing CR emitted", S("hi\r"), S("hi\r"), 0, ALL, 0, 0 },
	{ "nothing", S(""), S(""), 0, 0, 0, 0 },

	/* Dot-unstuffing (RFC 5321 4.5.2). */
	{ "stuffed dot", S("..hello\r\n.\r\n"), S(".hello\r\n"), 1, ALL, 0, 0 },
	{ "stuffed lone dot", S("..\r\n.\r\n"), S(".\r\n"), 1, ALL, 0, 0 },
	{ "three dots", S("...\r\n.\r\n"), S("..\r\n"), 1, ALL, 0, 0 },
	{ "dot mid-line kept", S("a.b\r\n.\r\n"), S("a.b\r\n"), 1, ALL, 0, 0 },
	{ "stuffed dot second line", S("a\r\n.b\r\n.\r\n"), S("a\r\nb\r\n"), 1,
	  ALL, 0, 0 },
	{ "dot after space kept", S(" .\r\n.\r\n"), S(" .\r\n"), 1, ALL, 0, 0 },
	{ "dot after bare LF kept", S("a\n.b\r\n.\r\n"), S("a\r\n.b\r\n"), 1,
	  ALL, 1, 0 },
	{ "dot after bare CR kept", S("a\r.b\r\n.\r\n"), S("a\r\n.b\r\n"), 1,
	  ALL, 0, 1 },

	/* NULs pass through. */
	{ "NUL in line", S("a\0b\r\n.\r\n"), S("a\0b\r\n"), 1, ALL, 0, 0 },
	{ "NUL line", S("\0\r\n.\r\n"), S("\0\r\n"), 1, ALL, 0, 0 },

	/* Bare line ends: counted, normalised, never an end. */
	{ "LF dot LF", S("\n.\n"), S("\r\n.\r\n"), 0, ALL, 2, 0 },
	{ "CR dot CR", S("\r.\r"), S("\r\n.\r"), 0, ALL, 0, 1 },
	{ "CRLF dot LF", S("\r\n.\n"), S("\r\n\r\n"), 0, ALL, 1, 0 },
	{ "LF dot CRLF", S("\n.\r\n"), S("\r\n.\r\n"), 0, ALL, 1, 0 },
	{ "CRLF dot CR", S("\r\n.\r"), S("\r\n"), 0, ALL, 0, 0 },
	{ "CRLF dot CR x", S("\r\n.\rx"), S("\r\n\r\nx"), 0, ALL, 0, 1 },
	{ "CRLF NUL dot CRLF", S("\r\n\0.\r\n"), S("\r\n\0.\r\n"), 0, ALL,
	  0, 0 },
	{ "CR dot LF", S("\r.\n"), S("\r\n.\r\n"), 0, ALL, 1, 1 },
	{ "CR dot CRLF", S("\r.\r\n"), S("\r\n.\r\n"), 0, ALL, 0, 1 },
	{ "dot LF first line", S(".\n"), S("\r\n"), 0, ALL, 1, 0 },
	{ "dot CR x first line", S(".\rx"), S("\r\nx"), 0, ALL, 0, 1 },
	{ "bare CRs in a line", S("a\rb\rc\r\n.\r\n"), S("a\r\nb\r\nc\r\n"),
	  1, ALL, 0, 2 },
	{ "bare LFs", S("a\nb\nc\r\n.\r\n"), S("a\r\nb\r\nc\r\n"), 1, ALL,
	  2, 0 },

	/* The exact sequence is an end whatever came before it. */
	{ "bare CR then real end", S("hi\r\r\n.\r\nMAIL"), S("hi\r\n\r\n"),
	  1, 8, 0, 1 },
	{ "bare LF then real end", S("hi\n\r\n.\r\nMAIL"), S("hi\r\n\r\n"),
	  1, 8, 1, 0 },

	/* Smuggling: only the last CR LF . CR LF ends the message. */
	{ "smuggle LF.LF", S("hi\n.\n" SMUG),
	  S("hi\r\n.\r\n" SMUGOUT), 1, ALL, 2, 0 },
	{ "smuggle CR.CR", S("hi\r.\r" SMUG),
	  S("hi\r\n.\r\n" SMUGOUT), 1, ALL, 0, 2 },
	{ "smuggle CRLF.LF", S("hi\r\n.\n" SMUG),
	  S("hi\r\n\r\n" SMUGOUT), 1, ALL, 1, 0 },
	{ "smuggle LF.CRLF", S("hi\n.\r\n" SMUG),
	  S("hi\r\n.\r\n" SMUGOUT), 1, ALL, 1, 0 },
	{ "smuggle CRLF.CR", S("hi\r\n.\r" SMUG),
	  S("hi\r\n\r\n" SMUGOUT), 1, ALL, 0, 1 },
	{ "smuggle CRLF NUL.CRLF", S("hi\r\n\0.\r\n" SMUG),
	  S("hi\r\n\0.\r\n" SMUGOUT), 1, ALL, 0, 0 },
	{ "smuggle CR.LF", S("hi\r.\n" SMUG),
	  S("hi\r\n.\r\n" SMUGOUT), 1, ALL, 1, 1 },
	{ "smuggle LF.CR", S("hi\n.\r" SMUG),
	  S("hi\r\n.\r\n" SMUGOUT), 1, ALL, 1, 1 },
	{ "smuggle CRLF.NUL CRLF", S("hi\r\n.\0\r\n" SMUG),
	  S("hi\r\n\0\r\n" SMUGOUT), 1, ALL, 0, 0 },
	{ "smuggle CRLF SP.CRLF", S("hi\r\n .\r\n" SMUG),
	  S("hi\r\n .\r\n" SMUGOUT), 1, ALL, 0, 0 },
	{ "smuggle CRLF..CRLF", S("hi\r\n..\r\n" SMUG),
	  S("hi\r\n.\r\n" SMUGOUT), 1, ALL, 0, 0 },
	{ "smuggle CRLF.LF.CRLF", S("hi\r\n.\n.\r\n" SMUG),
	  S("hi\r\n\r\n.\r\n" SMUGOUT), 1, ALL, 1, 0 },
	{ "smuggle CRLF CR.CRLF", S("hi\r\n\r.\r\n" SMUG),
	  S("hi\r\n\r\n.\r\n" SMUGOUT), 1, ALL, 0, 1 },
	{ "smuggle CRLF.CR CRLF", S("hi\r\n.\r\r\n" SMUG),
	  S("hi\r\n\r\n\r\n" SMUGOUT), 1, ALL, 0, 1 },
	{ "smuggle LF NUL.LF", S("hi\n\0.\n" SMUG),
	  S("hi\r\n\0.\r\n" SMUGOUT), 1, ALL, 2, 0 },
	{ "smuggle at start LF.LF", S("\n.\n" SMUG),
	  S("\r\n.\r\n" SMUGOUT), 1, ALL, 2, 0 },
	{ "smuggle at start .LF", S(".\n" SMUG),
	  S("\r\n" SMUGOUT), 1, ALL, 1, 0 },
};

static void
feed_pieces(const struct drow *r, size_t split1, size_t step, struct out *o,
    int *done, size_t *consumed, struct dataframe *f)
{
	size_t off = 0, len, c;

	df_init(f);
	memset(o, 0, sizeof(*o));
	*done = 0;
	*consumed = 0;
	while (off < r->inlen && !*done) {
		if (split1 != ALL)
			len = off < split1 ? split1 - off : r->inlen - off;
		else
			len = step < r->inlen - off ? step : r->inlen - off;
		c = df_feed_data(f, r->in + off, len, collect, o, done);
		*consumed += c;
		if (!*done && c != len) {
			fprintf(stderr, "  short consume without end\n");
			t_cur_failed = 1;
			return;
		}
		off += len;
	}
}

static void
check_drow(const struct drow *r, const char *how, const struct out *o,
    int done, size_t consumed, const struct dataframe *f)
{
	size_t want = r->consumed == ALL ? r->inlen : r->consumed;
	int bad = 0;

	if (o->overflow || o->empty_emit || o->len != r->outlen ||
	    memcmp(o->buf, r->out, r->outlen) != 0)
		bad = 1;
	if (done != r->done || consumed != want ||
	    f->bare_lf != r->bare_lf || f->bare_cr != r->bare_cr)
		bad = 1;
	if (bad) {
		fprintf(stderr, "  %s (%s): outlen %zu/%zu done %d/%d "
		    "consumed %zu/%zu lf %lu/%lu cr %lu/%lu\n", r->name, how,
		    o->len, r->outlen, done, r->done, consumed, want,
		    f->bare_lf, r->bare_lf, f->bare_cr, r->bare_cr);
		t_cur_failed = 1;
	}
}

static void
run_drow(const struct drow *r)
{
	struct dataframe f;
	struct out o;
	int done;
	size_t consumed, split;

	T_BEGIN();
	feed_pieces(r, ALL, r->inlen ? r->inlen : 1, &o, &done, &consumed,
	    &f);
	check_drow(r, "whole", &o, done, consumed, &f);
	feed_pieces(r, ALL, 1, &o, &done, &consumed, &f);
	check_drow(r, "bytewise", &o, done, consumed, &f);
	for (split = 1; split < r->inlen; split++) {
		char how[32];

		feed_pieces(r, split, 0, &o, &done, &consumed, &f);
		snprintf(how, sizeof(how), "split %zu", split);
		check_drow(r, how, &o, done, consumed, &f);
	}
	T_END(r->name);
}

/* BDAT: everything is content, only line ends change. */
struct brow {
	const char	*name;
	const char	*in;
	size_t		 inlen;
	const char	*out;
	size_t		 outlen;
	unsigned long	 bare_lf, bare_cr;
};

static const struct brow brows[] = {
	{ "bdat clean", S("hello\r\nworld\r\n"), S("hello\r\nworld\r\n"), 0, 0 },
	{ "bdat bare LFs", S("a\nb\n"), S("a\r\nb\r\n"), 2, 0 },
	{ "bdat bare CRs", S("a\rb\r"), S("a\r\nb\r\n"), 0, 2 },
	{ "bdat dot line is content", S(".\r\n"), S(".\r\n"), 0, 0 },
	{ "bdat no unstuffing", S("..\r\n"), S("..\r\n"), 0, 0 },
	{ "bdat end sequence is content", S("x\r\n.\r\nMAIL"),
	  S("x\r\n.\r\nMAIL"), 0, 0 },
	{ "bdat CR CRLF", S("\r\r\n"), S("\r\n\r\n"), 0, 1 },
	{ "bdat LF CR", S("\n\r"), S("\r\n\r\n"), 1, 1 },
	{ "bdat NULs", S("\0\r\n\0"), S("\0\r\n\0"), 0, 0 },
	{ "bdat empty", S(""), S(""), 0, 0 },
	{ "bdat lone CR", S("\r"), S("\r\n"), 0, 1 },
	{ "bdat CRLF LF", S("a\r\n\n"), S("a\r\n\r\n"), 1, 0 },
	{ "bdat smuggle", S("hi\n.\n" SMUG), S("hi\r\n.\r\n" SMUG), 2, 0 },
};

static void
feed_bdat_pieces(const struct brow *r, size_t split1, size_t step,
    struct out *o, struct dataframe *f)
{
	size_t off = 0, len;

	df_init(f);
	memset(o, 0, sizeof(*o));
	while (off < r->inlen) {
		if (split1 != ALL)
			len = off < split1 ? split1 - off : r->inlen - off;
		else
			len = step < r->inlen - off ? step : r->inlen - off;
		df_feed_bdat(f, r->in + off, len, collect, o);
		off += len;
	}
	df_bdat_last(f, collect, o);
}

static void
check_brow(const struct brow *r, const char *how, const struct out *o,
    const struct dataframe *f)
{
	if (o->overflow || o->empty_emit || o->len != r->outlen ||
	    memcmp(o->buf, r->out, r->outlen) != 0 ||
	    f->bare_lf != r->bare_lf || f->bare_cr != r->bare_cr) {
		fprintf(stderr, "  %s (%s): outlen %zu/%zu lf %lu/%lu "
		    "cr %lu/%lu\n", r->name, how, o->len, r->outlen,
		    f->bare_lf, r->bare_lf, f->bare_cr, r->bare_cr);
		t_cur_failed = 1;
	}
}

static void
run_brow(const struct brow *r)
{
	struct dataframe f;
	struct out o;
	size_t split;

	T_BEGIN();
	feed_bdat_pieces(r, ALL, r->inlen ? r->inlen : 1, &o, &f);
	check_brow(r, "whole", &o, &f);
	feed_bdat_pieces(r, ALL, 1, &o, &f);
	check_brow(r, "bytewise", &o, &f);
	for (split = 1; split < r->inlen; split++) {
		char how[32];

		feed_bdat_pieces(r, split, 0, &o, &f);
		snprintf(how, sizeof(how), "split %zu", split);
		check_brow(r, how, &o, &f);
	}
	T_END(r->name);
}

/* Once ended, the framer consumes nothing more. */
static void
test_after_end(void)
{
	struct dataframe f;
	struct out o;
	int done;
	size_t c;

	memset(&o, 0, sizeof(o));
	df_init(&f);
	c = df_feed_data(&f, S(".\r\n"), collect, &o, &done);
	T_EQ_INT(c, 3);
	T_EQ_INT(done, 1);
	c = df_feed_data(&f, S("QUIT\r\n"), collect, &o, &done);
	T_EQ_INT(c, 0);
	T_EQ_INT(done, 1);
	T_EQ_INT(o.len, 0);
}

/* df_init starts the next message afresh, counters included. */
static void
test_reinit(void)
{
	struct dataframe f;
	struct out o;
	int done;

	memset(&o, 0, sizeof(o));
	df_init(&f);
	(void)df_feed_data(&f, S("a\nb\r\n.\r\n"), collect, &o, &done);
	T_EQ_INT(done, 1);
	T_EQ_INT(f.bare_lf, 1);
	df_init(&f);
	T_EQ_INT(f.bare_lf, 0);
	memset(&o, 0, sizeof(o));
	(void)df_feed_data(&f, S(".\r\n"), collect, &o, &done);
	T_EQ_INT(done, 1);
	T_EQ_INT(o.len, 0);
}

/* Clean input goes out in one piece per buffer, not one per line. */
static void
test_runs(void)
{
	static char big[6000];
	struct dataframe f;
	struct out o;
	size_t i, n = 0, c;
	int done;

	for (i = 0; i < 500; i++) {
		memcpy(big + n, "line xxxx\r\n", 11);
		n += 11;
	}
	memset(&o, 0, sizeof(o));
	df_init(&f);
	c = df_feed_data(&f, big, n, collect, &o, &done);
	T_EQ_INT(c, n);
	T_EQ_INT(done, 0);
	T_EQ_INT(o.calls, 1);
	T_EQ_INT(o.len, n);
	T_CHECK(memcmp(o.buf, big, n) == 0);
}

/* A line of bare CRs is not rescanned for each one (no quadratic
 * behaviour), and each one is counted. */
static void
test_many_bare_cr(void)
{
	static char in[4000];
	struct dataframe f;
	struct out o;
	size_t i;
	int done;

	for (i = 0; i < sizeof(in); i += 2) {
		in[i] = 'a';
		in[i + 1] = '\r';
	}
	memset(&o, 0, sizeof(o));
	df_init(&f);
	(void)df_feed_data(&f, in, sizeof(in), collect, &o, &done);
	T_EQ_INT(f.bare_cr, sizeof(in) / 2 - 1);	/* the last is held */
	T_EQ_INT(o.len, sizeof(in) / 2 * 3 - 1);
	(void)df_feed_data(&f, S("\n.\r\n"), collect, &o, &done);
	T_EQ_INT(done, 1);
	T_EQ_INT(f.bare_cr, sizeof(in) / 2 - 1);
}

/* BDAT: a CR ending one chunk and an LF starting the next are one
 * CRLF; a CR ending the last chunk is bare. */
static void
test_bdat_chunks(void)
{
	struct dataframe f;
	struct out o;

	memset(&o, 0, sizeof(o));
	df_init(&f);
	df_feed_bdat(&f, S("a\r"), collect, &o);
	df_feed_bdat(&f, S("\nb\r"), collect, &o);
	df_bdat_last(&f, collect, &o);
	T_EQ_INT(o.len, 6);
	T_CHECK(memcmp(o.buf, "a\r\nb\r\n", 6) == 0);
	T_EQ_INT(f.bare_cr, 1);
	T_EQ_INT(f.bare_lf, 0);
}

int
main(void)
{
	size_t i;

	for (i = 0; i < sizeof(drows) / sizeof(drows[0]); i++)
		run_drow(&drows[i]);
	for (i = 0; i < sizeof(brows) / sizeof(brows[0]); i++)
		run_brow(&brows[i]);
	T_RUN(test_after_end);
	T_RUN(test_reinit);
	T_RUN(test_runs);
	T_RUN(test_many_bare_cr);
	T_RUN(test_bdat_chunks);
	return t_done("dataframe");
}
