/*
 * scripted.c - a test plugin, loaded as a shared object, whose verdicts
 * the test decides.
 *
 * The client scripts it in-band: "XSCRIPT hook SPEC" (answered 250 by the
 * plugin through unrecognized_command) sets what the plugin returns at
 * that hook for the rest of the connection.  SPEC is a verdict name, or
 * "VERDICT:code:enh:text" for a custom reply, or "AGAIN:VERDICT:ms" to
 * answer after ms milliseconds from a timer, or "AGAIN:never" to test the
 * deadline.  "XNOTE KEY" answers 250 with the connection note KEY.
 * The connect-stage hooks come before any command, so
 * `connect` and `lookup_rdns` are directives.  Unscripted, the plugin
 * accepts recipients (rcpt OK) and, when sink_dir is set, queues each
 * message into sink_dir as TXNID.eml and answers OK.
 *
 * It is also the proof that third-party plugins load: it is built apart
 * from relayd and found through plugin_dir.
 */
#include "config.h"

#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "filter.h"

struct scripted_conf {
	const char *connect;
	const char *lookup_rdns;
	const char *sink_dir;
};

static const struct gh_directive scripted_directives[] = {
	{ "connect", GH_DT_STRING, offsetof(struct scripted_conf, connect),
	  "\"CONT\"", 0, 0, NULL, "verdict SPEC at connect" },
	{ "lookup_rdns", GH_DT_STRING,
	  offsetof(struct scripted_conf, lookup_rdns), "\"CONT\"", 0, 0, NULL,
	  "verdict SPEC at lookup_rdns" },
	{ "sink_dir", GH_DT_STRING, offsetof(struct scripted_conf, sink_dir),
	  "\"\"", 0, 0, NULL, "queue messages into this directory" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

struct pending {
	struct gh_call *call;
	struct event *ev;
	enum gh_verdict v;
};

static void
pending_fire(evutil_socket_t fd, short what, void *arg)
{
	struct pending *p = arg;
	struct gh_call *c = p->call;
	enum gh_verdict v = p->v;

	(void)fd;
	(void)what;
	event_free(p->ev);
	free(p);
	gh_resume(c, v);
}

static void
pending_cancel(void *arg)
{
	struct pending *p = arg;

	event_free(p->ev);
	free(p);
}

/* Apply SPEC; returns the verdict to give the chain. */
static enum gh_verdict
run_spec(struct gh_call *c, const char *spec)
{
	char buf[512], *f[4] = { NULL, NULL, NULL, NULL }, *save = NULL;
	int i, v;

	snprintf(buf, sizeof(buf), "%s", spec);
	f[0] = strtok_r(buf, ":", &save);
	for (i = 1; i < 4 && f[i - 1] != NULL; i++)
		f[i] = strtok_r(NULL, i == 3 ? "" : ":", &save);
	if (f[0] == NULL)
		return GH_CONT;
	if (strcmp(f[0], "AGAIN") == 0) {
		struct pending *p;
		struct timeval tv;

		if (f[1] == NULL || strcmp(f[1], "never") == 0)
			return GH_AGAIN;	/* only the deadline ends it */
		p = calloc(1, sizeof(*p));
		p->call = c;
		v = gh_verdict_from_name(f[1]);
		p->v = v < 0 ? GH_CONT : (enum gh_verdict)v;
		p->ev = evtimer_new(c->conn->base, pending_fire, p);
		tv.tv_sec = 0;
		tv.tv_usec = (f[2] ? atoi(f[2]) : 10) * 1000;
		evtimer_add(p->ev, &tv);
		gh_on_cancel(c, pending_cancel, p);
		return GH_AGAIN;
	}
	v = gh_verdict_from_name(f[0]);
	if (v < 0)
		return GH_CONT;
	if (f[1] != NULL)
		gh_reply(c, atoi(f[1]), f[2], "%s", f[3] ? f[3] : "scripted");
	gh_result(c, gh_verdict_is_reject((enum gh_verdict)v) ? GH_FAIL : GH_PASS,
		  "%s at %s", f[0], gh_hook_name(c->hook));
	return (enum gh_verdict)v;
}

static const char *
script_for(struct gh_call *c)
{
	char key[64];

	snprintf(key, sizeof(key), "scripted.%s", gh_hook_name(c->hook));
	return gh_note_get(c->conn->notes, key);
}

static enum gh_verdict
generic(struct gh_call *c)
{
	const char *spec = script_for(c);

	return spec != NULL ? run_spec(c, spec) : GH_CONT;
}

static enum gh_verdict
on_connect(struct gh_call *c)
{
	const struct scripted_conf *cf = c->plugin->conf;

	return run_spec(c, c->hook == GH_HOOK_CONNECT ? cf->connect :
			cf->lookup_rdns);
}

static enum gh_verdict
on_unrecognized(struct gh_call *c)
{
	char hook[64], spec[400], key[80];
	const char *v;

	/* "XNOTE KEY": the connection note's value, for tests of what the
	 * host records (tls.*, rdns.*). */
	if (sscanf(c->arg, "XNOTE %79s", key) == 1) {
		v = gh_note_get(c->conn->notes, key);
		gh_reply(c, 250, "2.0.0", "%s=%s", key, v != NULL ? v :
			 "(unset)");
		return GH_OK;
	}
	if (sscanf(c->arg, "XSCRIPT %63s %399[^\n]", hook, spec) == 2) {
		if (gh_hook_from_name(hook) < 0) {
			gh_reply(c, 501, "5.5.4", "no hook %s", hook);
			return GH_DENY;
		}
		snprintf(key, sizeof(key), "scripted.%s", hook);
		gh_note_set(c->conn->notes, key, spec);
		gh_reply(c, 250, "2.0.0", "scripted %s %s", hook, spec);
		return GH_OK;
	}
	return generic(c);
}

static enum gh_verdict
on_rcpt(struct gh_call *c)
{
	const char *spec = script_for(c);

	return spec != NULL ? run_spec(c, spec) : GH_OK;
}

static int
write_cb(void *arg, const char *data, size_t n)
{
	return fwrite(data, 1, n, arg) == n ? 0 : -1;
}

static enum gh_verdict
on_queue(struct gh_call *c)
{
	const struct scripted_conf *cf = c->plugin->conf;
	const char *spec = script_for(c);
	char path[4096], tmp[4200];
	FILE *fp;

	if (spec != NULL)
		return run_spec(c, spec);
	if (cf->sink_dir[0] == '\0')
		return GH_CONT;
	snprintf(path, sizeof(path), "%s/%s.eml", cf->sink_dir, c->txn->id);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if ((fp = fopen(tmp, "w")) == NULL)
		return GH_DENYSOFT;
	if (gh_txn_output(c->txn, write_cb, fp) != 0) {
		fclose(fp);
		return GH_DENYSOFT;
	}
	fclose(fp);
	rename(tmp, path);
	c->txn->queue_reply = c->txn->id;
	return GH_OK;
}

static const struct gh_hook_entry scripted_hooks[] = {
	{ GH_HOOK_LOOKUP_RDNS, on_connect },
	{ GH_HOOK_CONNECT, on_connect },
	{ GH_HOOK_HELO, generic },
	{ GH_HOOK_EHLO, generic },
	{ GH_HOOK_UNRECOGNIZED_COMMAND, on_unrecognized },
	{ GH_HOOK_MAIL, generic },
	{ GH_HOOK_RCPT, on_rcpt },
	{ GH_HOOK_RCPT_OK, generic },
	{ GH_HOOK_DATA, generic },
	{ GH_HOOK_DATA_HEADERS, generic },
	{ GH_HOOK_DATA_POST, generic },
	{ GH_HOOK_MAX_DATA_EXCEEDED, generic },
	{ GH_HOOK_QUEUE, on_queue },
	{ GH_HOOK_DENY, generic },
	{ 0, NULL }
};

const struct gh_module gh_module = {
	.abi = GH_ABI_VERSION,
	.name = "scripted",
	.description = "test plugin whose verdicts the client scripts",
	.doc = "A test plugin: see tests/plugins/scripted.c.\n",
	.directives = scripted_directives,
	.conf_size = sizeof(struct scripted_conf),
	.hooks = scripted_hooks,
};
