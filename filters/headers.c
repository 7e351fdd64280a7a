/*
 * headers.c - the header block must be well formed enough to deliver
 * (Haraka's data.headers, its RFC 5322 part, and the Received loop cap).
 *
 * At data_headers, once the whole header block has been read:
 *   - a mail loop: more than max_received Received fields (RFC 5321 6.3:
 *     a loop is detected by counting them; 100 is the RFC's own floor)
 *     is refused with 550 5.4.6;
 *   - RFC 5322 3.6: the origination date and the From field must occur
 *     exactly once; a missing or repeated one is refused with 550 5.6.0;
 *   - RFC 5322 3.6: Sender, Reply-To, To, Cc, Bcc, Message-ID,
 *     In-Reply-To, References and Subject may occur at most once; a
 *     repeated one is refused with 550 5.6.0.
 * The first failed check decides; the result store says which.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>

#include "filter.h"

struct headers_conf {
	int require_date;
	int require_from;
	struct gh_strlist single_fields;
	long long max_received;
};

static const struct gh_directive headers_directives[] = {
	{ "require_date", GH_DT_BOOL,
	  offsetof(struct headers_conf, require_date), "true", 0, 0, NULL,
	  "exactly one Date field (RFC 5322 3.6)" },
	{ "require_from", GH_DT_BOOL,
	  offsetof(struct headers_conf, require_from), "true", 0, 0, NULL,
	  "exactly one From field (RFC 5322 3.6)" },
	{ "single_fields", GH_DT_STRLIST,
	  offsetof(struct headers_conf, single_fields),
	  "[ \"Sender\", \"Reply-To\", \"To\", \"Cc\", \"Bcc\", \"Message-ID\", "
	  "\"In-Reply-To\", \"References\", \"Subject\" ]", 0, 0, NULL,
	  "fields that may occur at most once (RFC 5322 3.6)" },
	{ "max_received", GH_DT_INT,
	  offsetof(struct headers_conf, max_received), "100", 0, 100000, NULL,
	  "more Received fields than this is a mail loop (0: no limit)" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

/* Refuse the message: log, record, reply.  Always GH_DENY. */
static enum gh_verdict
headers_refuse(struct gh_call *c, const char *enh, const char *text)
{
	gh_clog(c, GH_LOG_INFO, "refused %s: %s", c->txn->id, text);
	gh_result(c, GH_FAIL, "%s", text);
	gh_reply(c, 550, enh, "%s", text);
	return GH_DENY;
}

/* RFC 5322 3.6: fields with a minimum and maximum of one. */
static enum gh_verdict
check_exactly_one(struct gh_call *c, const char *name)
{
	char text[128];

	if (gh_msg_header_num(c->txn->msg, name) == 1)
		return GH_CONT;
	snprintf(text, sizeof(text), "Message must have exactly one %s "
		 "header", name);
	return headers_refuse(c, "5.6.0", text);
}

static enum gh_verdict
headers_check(struct gh_call *c)
{
	const struct headers_conf *cf = c->plugin->conf;
	const struct gh_message *m = c->txn->msg;
	enum gh_verdict v;
	char text[160];
	size_t i, n;

	n = gh_msg_header_num(m, "Received");
	if (cf->max_received > 0 && n > (size_t)cf->max_received) {
		gh_clog(c, GH_LOG_INFO, "%zu Received fields, limit %lld",
			n, cf->max_received);
		return headers_refuse(c, "5.4.6",
				      "Too many Received headers: mail loop");
	}
	if (cf->require_date && (v = check_exactly_one(c, "Date")) != GH_CONT)
		return v;
	if (cf->require_from && (v = check_exactly_one(c, "From")) != GH_CONT)
		return v;
	for (i = 0; i < cf->single_fields.n; i++) {
		const char *name = cf->single_fields.v[i];

		if (gh_msg_header_num(m, name) > 1) {
			snprintf(text, sizeof(text), "Message must have at "
				 "most one %s header", name);
			return headers_refuse(c, "5.6.0", text);
		}
	}
	gh_result(c, GH_PASS, "%zu Received", n);
	return GH_CONT;
}

static const struct gh_hook_entry headers_hooks[] = {
	{ GH_HOOK_DATA_HEADERS, headers_check },
	{ 0, NULL }
};

const struct gh_module gh_module_headers = {
	.abi = GH_ABI_VERSION,
	.name = "headers",
	.description = "refuse malformed header blocks and mail loops",
	.doc =
"Checks the header block of every message once it has been read (the\n"
"data_headers hook) and refuses the message when (first failure wins):\n"
"\n"
"  - it has more than `max_received` Received fields: a mail loop (RFC\n"
"    5321 6.3):  550 5.4.6 Too many Received headers: mail loop\n"
"  - it lacks a Date field or has two (RFC 5322 3.6, require_date):\n"
"    550 5.6.0 Message must have exactly one Date header\n"
"  - the same for From (require_from)\n"
"  - a field of `single_fields` occurs more than once (RFC 5322 3.6):\n"
"    550 5.6.0 Message must have at most one Subject header\n"
"\n"
"Field names compare case-insensitively.  The Received field relayd adds\n"
"itself is not counted.  Each refusal has a log line and a headers=fail\n"
"result in the decision trace; a message that passes records the number\n"
"of Received fields.  Use mode = \"shadow\" to see what would be refused\n"
"before enforcing: many bulk senders still send two To fields.\n"
"\n"
"Example (allow repeated References, which some old clients send):\n"
"\n"
"    headers = {\n"
"      single_fields = [ \"Sender\", \"Reply-To\", \"To\", \"Cc\", \"Bcc\",\n"
"                        \"Message-ID\", \"In-Reply-To\", \"Subject\" ];\n"
"      max_received = 50;\n"
"    };\n",
	.directives = headers_directives,
	.conf_size = sizeof(struct headers_conf),
	.hooks = headers_hooks,
	.edits = GH_EDITS_NONE,
};
