/*
 * dataframe.c - the SMTP DATA and BDAT input framer.
 *
 * A small state machine over the wire octets; see dataframe.h for the
 * contract.  Runs of octets that pass unchanged are found with memchr
 * and emitted in one piece; the callback is only called more often
 * where the output differs from the input (a stuffed dot, a bare line
 * end) and once at the end of each buffer.
 */
#include "config.h"

#include <string.h>

#include "dataframe.h"

enum {
	DF_LINE = 0,	/* at the start of a real line (after CR LF) */
	DF_DOT,		/* "." at a real line start, held */
	DF_DOTCR,	/* ".\r" at a real line start, held */
	DF_MID,		/* inside a line, or after a bare line end */
	DF_CR,		/* after a CR (already emitted) */
	DF_DONE		/* CR LF "." CR LF seen */
};

static const char crlf[] = "\r\n";

void
df_init(struct dataframe *f)
{
	f->state = DF_LINE;
	f->bare_lf = 0;
	f->bare_cr = 0;
}

/* Emit buf[*rs..end) and start the next run at next. */
static void
run_flush(const char *buf, size_t *rs, size_t end, size_t next,
    df_emit_fn emit, void *arg)
{
	if (end > *rs)
		emit(arg, buf + *rs, end - *rs);
	*rs = next;
}

/*
 * Inside a line: skip to the next CR or LF from *i.  Octets up to it stay
 * in the current run.  *lf caches the next LF so that a line full of bare
 * CRs is not scanned again for each of them.  Returns the octet found,
 * or 0 at the end of buf with *i == n.
 */
static int
scan_line(const char *buf, size_t n, size_t *i, size_t *lf)
{
	const char *p;
	size_t stop;

	if (*lf == (size_t)-1 || *lf < *i) {
		p = memchr(buf + *i, '\n', n - *i);
		*lf = p != NULL ? (size_t)(p - buf) : n;
	}
	stop = *lf;
	p = memchr(buf + *i, '\r', stop - *i);
	if (p != NULL) {
		*i = (size_t)(p - buf);
		return '\r';
	}
	*i = stop;
	return stop < n ? '\n' : 0;
}

size_t
df_feed_data(struct dataframe *f, const char *buf, size_t n,
    df_emit_fn emit, void *arg, int *done)
{
	size_t i = 0, rs = 0, lf = (size_t)-1;

	*done = 0;
	while (i < n && f->state != DF_DONE) {
		switch (f->state) {
		case DF_LINE:
			if (buf[i] == '.') {
				/* RFC 5321 4.5.2: drop the first dot. */
				run_flush(buf, &rs, i, i + 1, emit, arg);
				i++;
				f->state = DF_DOT;
			} else if (buf[i] == '\r') {
				i++;
				f->state = DF_CR;
			} else {
				/* A bare LF here is counted by DF_MID. */
				f->state = DF_MID;
			}
			break;
		case DF_DOT:
			if (buf[i] == '\r') {
				/* Held: with an LF next it is the end. */
				i++;
				rs = i;
				f->state = DF_DOTCR;
			} else {
				/* The dot stays dropped; DF_MID emits what
				 * follows, a bare LF included, from rs. */
				f->state = DF_MID;
			}
			break;
		case DF_DOTCR:
			if (buf[i] == '\n') {
				i++;
				rs = i;
				f->state = DF_DONE;
				*done = 1;
			} else {
				/* ".\r" then not LF: a bare CR after a dot
				 * line.  The octet is not consumed yet. */
				f->bare_cr++;
				emit(arg, crlf, 2);
				f->state = DF_MID;
			}
			break;
		case DF_CR:
			if (buf[i] == '\n') {
				i++;
				f->state = DF_LINE;
			} else {
				/* Bare CR: complete it into CRLF, but the
				 * next octet does not start a real line. */
				f->bare_cr++;
				run_flush(buf, &rs, i, i, emit, arg);
				emit(arg, "\n", 1);
				f->state = DF_MID;
			}
			break;
		case DF_MID:
			switch (scan_line(buf, n, &i, &lf)) {
			case '\r':
				i++;
				f->state = DF_CR;
				break;
			case '\n':
				f->bare_lf++;
				run_flush(buf, &rs, i, i + 1, emit, arg);
				emit(arg, crlf, 2);
				i++;
				break;
			}
			break;
		}
	}
	run_flush(buf, &rs, i, i, emit, arg);
	if (f->state == DF_DONE)
		*done = 1;
	return i;
}

void
df_feed_bdat(struct dataframe *f, const char *buf, size_t n,
    df_emit_fn emit, void *arg)
{
	size_t i = 0, rs = 0, lf = (size_t)-1;

	while (i < n) {
		if (f->state == DF_CR) {
			/* The CR may have ended the previous chunk. */
			if (buf[i] == '\n')
				i++;
			else {
				f->bare_cr++;
				run_flush(buf, &rs, i, i, emit, arg);
				emit(arg, "\n", 1);
			}
			f->state = DF_MID;
			continue;
		}
		switch (scan_line(buf, n, &i, &lf)) {
		case '\r':
			i++;
			f->state = DF_CR;
			break;
		case '\n':
			f->bare_lf++;
			run_flush(buf, &rs, i, i + 1, emit, arg);
			emit(arg, crlf, 2);
			i++;
			break;
		}
	}
	run_flush(buf, &rs, i, i, emit, arg);
}

void
df_bdat_last(struct dataframe *f, df_emit_fn emit, void *arg)
{
	if (f->state == DF_CR) {
		f->bare_cr++;
		emit(arg, "\n", 1);
	}
	f->state = DF_DONE;
}
