/*
 * fuzz_message.c - the message store and header push parser,
 * gh_msg_write() / gh_msg_finish() and the header lookups
 * (filters/core/message.c).
 *
 * The first four octets choose the limits (a small memory threshold
 * sends the message to a temporary file) and how the rest is cut into
 * writes; the rest is the message.  Properties: the size is what was
 * written; while the status is OK the stored message reads back
 * exactly; each parsed header has a non-empty name of printable
 * octets without ":" and the lookups by name find it; the body offset
 * lies inside the message.
 */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "core.h"
#include "fuzz.h"

static void
check_headers(const struct gh_message *m)
{
	const struct gh_header *h;
	size_t i, nth, j;
	const char *c;

	for (i = 0; i < gh_msg_header_count(m); i++) {
		h = gh_msg_header_at(m, i);
		FUZZ_ASSERT(h != NULL && h->name != NULL && h->value != NULL);
		FUZZ_ASSERT(h->name[0] != '\0');
		for (c = h->name; *c != '\0'; c++)
			FUZZ_ASSERT(*c > ' ' && *c < 127 && *c != ':');
		/* h is the nth of its name: the lookup returns it. */
		for (nth = 0, j = 0; j < i; j++)
			if (strcasecmp(gh_msg_header_at(m, j)->name,
			    h->name) == 0)
				nth++;
		FUZZ_ASSERT(gh_msg_header_get(m, h->name, nth) == h->value);
		FUZZ_ASSERT(gh_msg_header_num(m, h->name) > nth);
	}
	FUZZ_ASSERT(gh_msg_header_at(m, gh_msg_header_count(m)) == NULL);
}

static void
check_readback(struct gh_pool *p, const struct gh_message *m,
    const uint8_t *in, size_t n)
{
	struct gh_msg_reader *r;
	char buf[777];
	size_t off = 0;
	ssize_t got;

	r = gh_msg_reader_open(p, m);
	while ((got = gh_msg_read(r, buf, sizeof(buf))) > 0) {
		FUZZ_ASSERT(off + (size_t)got <= n);
		FUZZ_ASSERT(memcmp(buf, in + off, (size_t)got) == 0);
		off += (size_t)got;
	}
	FUZZ_ASSERT(got == 0 && off == n);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gh_message_limits lim;
	struct gh_message *m;
	struct gh_pool *p;
	const uint8_t *in = data + 4;
	size_t n, off, step;

	if (size < 4 || size > 65536)
		return 0;
	n = size - 4;
	memset(&lim, 0, sizeof(lim));
	lim.mem_threshold = data[0] & 1 ? 64 + data[0] * 4 : 1 << 20;
	lim.max_header_line = 16 + (size_t)data[1] * 8;
	lim.max_header_size = 64 + (size_t)data[2] * 64;
	lim.tmpdir = "/tmp";
	step = 1 + data[3] % 64;

	p = gh_pool_create();
	m = gh_msg_new(p, &lim);
	for (off = 0; off < n; off += step)
		gh_msg_write(m, (const char *)in + off,
		    n - off < step ? n - off : step);
	gh_msg_finish(m);
	FUZZ_ASSERT(gh_msg_size(m) == n);
	check_headers(m);
	/* Past a bound the status sticks and parsing stops. */
	if (gh_msg_status(m) == GH_MSG_OK) {
		FUZZ_ASSERT(gh_msg_headers_done(m));
		FUZZ_ASSERT(gh_msg_body_offset(m) <= n);
		check_readback(p, m, in, n);
	}
	gh_pool_destroy(p);
	return 0;
}
