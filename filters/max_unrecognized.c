/*
 * max_unrecognized.c - disconnect clients that keep sending commands we
 * do not know (Haraka's max_unrecognized_commands).
 *
 * Each unrecognized command is counted on the connection; up to `limit`
 * of them the plugin says CONT and the core answers 500 5.5.1 as usual.
 * The next one is answered 521 5.5.1 and the connection is closed: a
 * client that speaks some other protocol (HTTP, a scanner) is dropped
 * early instead of being answered line after line.
 *
 * relayd's own relayd.max_unrecognized (421 4.7.0) is a backstop for
 * when this plugin is not loaded; keep this limit below it.
 */
#include "config.h"

#include <stdio.h>

#include "filter.h"

#define NOTE_COUNT "max_unrecognized.count"

struct max_unrecognized_conf {
	long long limit;
};

static const struct gh_directive max_unrecognized_directives[] = {
	{ "limit", GH_DT_INT, offsetof(struct max_unrecognized_conf, limit),
	  "5", 0, 1000, NULL,
	  "unrecognized commands answered 500; the next one closes (521)" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

/* The connection's counter, created on first use in the connection's
 * pool, so it lives exactly as long as the connection. */
static unsigned long *
counter(struct gh_conn *conn)
{
	unsigned long *n = gh_note_getp(conn->notes, NOTE_COUNT);

	if (n == NULL) {
		n = gh_palloc(conn->pool, sizeof(*n));
		gh_note_setp(conn->notes, NOTE_COUNT, n);
	}
	return n;
}

static enum gh_verdict
max_unrecognized_cmd(struct gh_call *c)
{
	const struct max_unrecognized_conf *cf = c->plugin->conf;
	unsigned long *n = counter(c->conn);

	if (++*n <= (unsigned long)cf->limit)
		return GH_CONT;
	gh_clog(c, GH_LOG_INFO, "%lu unrecognized commands, limit %lld: "
		"disconnecting %s", *n, cf->limit, c->conn->remote_ip);
	gh_result(c, GH_FAIL, "%lu unrecognized commands", *n);
	gh_reply(c, 521, "5.5.1", "Too many unrecognized commands");
	return GH_DENYDISCONNECT;
}

static const struct gh_hook_entry max_unrecognized_hooks[] = {
	{ GH_HOOK_UNRECOGNIZED_COMMAND, max_unrecognized_cmd },
	{ 0, NULL }
};

const struct gh_module gh_module_max_unrecognized = {
	.abi = GH_ABI_VERSION,
	.name = "max_unrecognized",
	.description = "disconnect after too many unrecognized commands",
	.doc =
"Counts the commands relayd does not know, per connection.  The first\n"
"`limit` of them get the usual 500 5.5.1; the next one gets\n"
"\n"
"    521 5.5.1 Too many unrecognized commands\n"
"\n"
"and the connection is closed (Haraka: max_unrecognized_commands).  A\n"
"log line names the client; the result store records the count.\n"
"\n"
"Plugins that implement commands of their own do so in the\n"
"unrecognized_command hook: list them before max_unrecognized, so that\n"
"a command one of them answers is not counted.  relayd.max_unrecognized\n"
"(421 4.7.0) still applies; keep `limit` below it.  limit = 0 closes the\n"
"connection at the first unrecognized command.\n"
"\n"
"Example:\n"
"\n"
"    plugins = [ \"max_unrecognized\", \"host_list\", \"smtp_forward\" ];\n"
"    max_unrecognized = { limit = 3; };\n",
	.directives = max_unrecognized_directives,
	.conf_size = sizeof(struct max_unrecognized_conf),
	.hooks = max_unrecognized_hooks,
	.edits = GH_EDITS_NONE,
};
