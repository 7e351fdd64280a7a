/*
 * fuzz_smtpc_reply.c - the next hop's replies as smtpc reads them
 * (filters/core/smtpc.c): lines cut at CRLF and bounded like
 * conn_read(), then line_take() assembling multi-line replies, with the
 * enhanced code and the EHLO keywords.
 *
 * The parser is static inside smtpc.c and tied to its connection, so
 * the harness includes the file (no change to smtpc.c) and drives
 * line_take() on a connection it makes itself, never connected.  The
 * first octet chooses whether the replies answer EHLO (keywords
 * parsed) or a command.  Properties: a complete reply has a code in
 * 200..599, an enhanced code of its class or none, and a text with no
 * control octet (it is logged and may become relayd's own reply).
 */
#include "../../filters/core/smtpc.c"

#include "fuzz.h"

static void
check_reply(const struct smtpc_reply *r)
{
	FUZZ_ASSERT(r->code >= 200 && r->code <= 599);
	FUZZ_ASSERT(strlen(r->text) < sizeof(r->text));
	FUZZ_ASSERT(fuzz_no_ctl(r->text));
	FUZZ_ASSERT(fuzz_no_ctl(r->enh));
	if (r->enh[0] != '\0')
		FUZZ_ASSERT(r->enh[0] == '0' + r->code / 100 &&
		    r->enh[1] == '.');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtpc_conn c;
	char line[SMTPC_LINE_MAX + 1];
	const char *in = (const char *)data + 1, *eol;
	size_t n, len, skip;
	int r;

	if (size < 1 || size > 65536)
		return 0;
	memset(&c, 0, sizeof(c));
	c.state = data[0] & 1 ? C_HELLO : C_READY;
	n = size - 1;
	/* As conn_read(): EVBUFFER_EOL_CRLF ends a line at LF with an
	 * optional CR before it; a line with its end longer than
	 * SMTPC_LINE_MAX fails the hop. */
	while (n > 0) {
		if ((eol = memchr(in, '\n', n)) == NULL)
			break;
		len = (size_t)(eol - in);
		skip = 1;
		if (len > 0 && in[len - 1] == '\r') {
			len--;
			skip = 2;
		}
		if (len + skip > SMTPC_LINE_MAX)
			break;
		memcpy(line, in, len);
		line[len] = '\0';
		r = line_take(&c, line, len);
		if (r < 0)
			break;
		if (r == 1) {
			check_reply(&c.cur);
			c.curlines = 0;
		}
		in += len + skip;
		n -= len + skip;
	}
	return 0;
}
