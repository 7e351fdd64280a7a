/*
 * fuzz_dataframe.c - the DATA and BDAT framer (relayd/dataframe.c).
 *
 * The first octet chooses DATA or BDAT and where to cut the input in
 * two.  The input is framed three ways: whole, in the two pieces, and
 * one octet at a time; content, end, octets consumed and the bare CR /
 * bare LF counters must agree.  The content may hold no bare CR nor
 * bare LF (every line end a CRLF: what closes SMTP smuggling), except a
 * last CR still waiting for its LF; when DATA ends, the content is
 * empty or ends with CRLF, and nothing after the end is consumed.
 */
#include "config.h"

#include <string.h>

#include "dataframe.h"
#include "fuzz.h"

struct out {
	char	*buf;
	size_t	 len, cap;
};

static void
collect(void *arg, const char *p, size_t n)
{
	struct out *o = arg;

	FUZZ_ASSERT(n > 0);
	FUZZ_ASSERT(o->len + n <= o->cap);
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

struct run {
	struct out	out;
	size_t		consumed;
	int		done;
	unsigned long	bare_lf, bare_cr;
};

/* Frame data[0..n) cut at each offset in cuts (ascending, < n). */
static void
frame(int bdat, const char *data, size_t n, const size_t *cuts,
    size_t ncuts, struct run *r)
{
	struct dataframe f;
	size_t i, from = 0, to;

	df_init(&f);
	r->consumed = 0;
	r->done = 0;
	for (i = 0; i <= ncuts && !r->done; i++) {
		to = i < ncuts ? cuts[i] : n;
		if (bdat)
			df_feed_bdat(&f, data + from, to - from, collect,
			    &r->out);
		else {
			r->consumed += df_feed_data(&f, data + from, to - from,
			    collect, &r->out, &r->done);
			if (!r->done)
				FUZZ_ASSERT(r->consumed == to);
		}
		from = to;
	}
	if (bdat) {
		df_bdat_last(&f, collect, &r->out);
		r->consumed = n;
	}
	r->bare_lf = f.bare_lf;
	r->bare_cr = f.bare_cr;
}

static void
check_content(const struct run *r, int bdat)
{
	const char *b = r->out.buf;
	size_t i, n = r->out.len;

	for (i = 0; i < n; i++) {
		if (b[i] == '\r' && !(i + 1 == n && !bdat && !r->done))
			FUZZ_ASSERT(i + 1 < n && b[i + 1] == '\n');
		if (b[i] == '\n')
			FUZZ_ASSERT(i > 0 && b[i - 1] == '\r');
	}
	if (r->done)
		FUZZ_ASSERT(n == 0 || (n >= 2 && b[n - 2] == '\r' &&
		    b[n - 1] == '\n'));
}

static int
same(const struct run *a, const struct run *b)
{
	return a->out.len == b->out.len && memcmp(a->out.buf, b->out.buf,
	    a->out.len) == 0 && a->consumed == b->consumed &&
	    a->done == b->done && a->bare_lf == b->bare_lf &&
	    a->bare_cr == b->bare_cr;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run whole, two, bytes;
	const char *in = (const char *)data + 1;
	size_t n, cut, i, *cuts;
	int bdat;

	if (size < 1 || size > 65536)
		return 0;
	n = size - 1;
	bdat = data[0] & 1;
	cut = n > 0 ? (data[0] >> 1) % n : 0;
	/* Each bare line end becomes CRLF: at most twice the input. */
	memset(&whole, 0, sizeof(whole));
	memset(&two, 0, sizeof(two));
	memset(&bytes, 0, sizeof(bytes));
	whole.out.cap = two.out.cap = bytes.out.cap = 2 * n + 2;
	whole.out.buf = malloc(whole.out.cap);
	two.out.buf = malloc(two.out.cap);
	bytes.out.buf = malloc(bytes.out.cap);
	cuts = malloc((n + 1) * sizeof(*cuts));
	for (i = 1; i < n; i++)
		cuts[i - 1] = i;

	frame(bdat, in, n, NULL, 0, &whole);
	frame(bdat, in, n, &cut, cut > 0 ? 1 : 0, &two);
	frame(bdat, in, n, cuts, n > 1 ? n - 1 : 0, &bytes);
	FUZZ_ASSERT(whole.consumed <= n);
	check_content(&whole, bdat);
	FUZZ_ASSERT(same(&whole, &two));
	FUZZ_ASSERT(same(&whole, &bytes));

	free(whole.out.buf);
	free(two.out.buf);
	free(bytes.out.buf);
	free(cuts);
	return 0;
}
