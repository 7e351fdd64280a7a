/*
 * early_talker.c - refuse clients that talk before the greeting
 * (Haraka's early_talker).
 *
 * RFC 5321 3.1 and 4.3.1: the client waits for the 220 greeting before
 * its first command.  Spam engines often do not: they write EHLO (or the
 * whole session) at once.  relayd sets conn->early_talker when input
 * arrives while the connect stage is still running; this plugin makes
 * the connect stage last long enough to tell: at the connect hook it
 * holds the greeting back for `pause` milliseconds (GH_AGAIN and a timer
 * on the connection's loop), then looks at the flag.
 *
 * An early talker is answered 554 5.7.1 and disconnected, or, with
 * reject = false, only recorded in the results (for other plugins, such
 * as a scoring one, and for the decision trace).  The flag is looked at
 * again at HELO/EHLO, MAIL, RCPT and DATA, in case it was set after this
 * plugin's connect hook ran (a later connect plugin that waited).
 *
 * Clients that may relay (conn->relaying, see the relay plugin) are
 * neither held back nor refused: they are our own.
 */
#include "config.h"

#include <event2/event.h>
#include <stdio.h>

#include "filter.h"

#define NOTE_SEEN "early_talker.seen"

struct early_talker_conf {
	long long pause;
	int reject;
};

static const struct gh_directive early_talker_directives[] = {
	{ "pause", GH_DT_INT, offsetof(struct early_talker_conf, pause),
	  "1000", 0, 30000, NULL,
	  "milliseconds to hold the greeting back (0: do not wait)" },
	{ "reject", GH_DT_BOOL, offsetof(struct early_talker_conf, reject),
	  "true", 0, 0, NULL,
	  "refuse an early talker (554 5.7.1); false: only record it" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

/* A greeting held back: the call to finish and its timer. */
struct pause {
	struct gh_call *call;
	struct event *ev;
};

/* Decide on a client that may have talked early.  Records the finding
 * once per connection. */
static enum gh_verdict
early_talker_verdict(struct gh_call *c)
{
	const struct early_talker_conf *cf = c->plugin->conf;
	int first = gh_note_get(c->conn->notes, NOTE_SEEN) == NULL;

	if (!c->conn->early_talker || c->conn->relaying)
		return GH_CONT;
	if (first) {
		gh_note_set(c->conn->notes, NOTE_SEEN, "1");
		gh_clog(c, GH_LOG_INFO, "%s talked before the greeting%s",
			c->conn->remote_ip, cf->reject ? ": refused" : "");
		gh_result(c, GH_FAIL, "early talker at %s",
			  gh_hook_name(c->hook));
	}
	if (!cf->reject)
		return GH_CONT;
	gh_reply(c, 554, "5.7.1", "You talk too soon");
	return GH_DENYDISCONNECT;
}

static void
pause_over(evutil_socket_t fd, short what, void *arg)
{
	struct pause *p = arg;
	struct gh_call *c = p->call;

	(void)fd;
	(void)what;
	event_free(p->ev);
	p->ev = NULL;
	gh_resume(c, early_talker_verdict(c));
}

/* The connection went away (or the deadline passed) while we waited. */
static void
pause_cancel(void *arg)
{
	struct pause *p = arg;

	if (p->ev != NULL)
		event_free(p->ev);
	p->ev = NULL;
}

static enum gh_verdict
early_talker_connect(struct gh_call *c)
{
	const struct early_talker_conf *cf = c->plugin->conf;
	struct pause *p;
	struct timeval tv;

	if (cf->pause == 0 || c->conn->relaying)
		return early_talker_verdict(c);
	/* The pause lives as long as the connection; a cancelled one only
	 * frees its timer. */
	p = gh_palloc(c->conn->pool, sizeof(*p));
	p->call = c;
	if ((p->ev = evtimer_new(c->conn->base, pause_over, p)) == NULL) {
		gh_clog(c, GH_LOG_ERR, "cannot create a timer: not waiting");
		return early_talker_verdict(c);
	}
	tv.tv_sec = (time_t)(cf->pause / 1000);
	tv.tv_usec = (suseconds_t)(cf->pause % 1000) * 1000;
	evtimer_add(p->ev, &tv);
	gh_on_cancel(c, pause_cancel, p);
	return GH_AGAIN;
}

static int
early_talker_init(struct gh_plugin *p, char *err, size_t errlen)
{
	const struct early_talker_conf *cf = p->conf;

	/* The pause must end before the hook's own deadline, or every
	 * connection would get 421 for a plugin timeout. */
	if (p->timeout > 0 && cf->pause >= p->timeout * 1000) {
		snprintf(err, errlen, "%s: pause %lld ms is not below timeout "
			 "(%lld s)", p->name, cf->pause, p->timeout);
		return -1;
	}
	return 0;
}

static const struct gh_hook_entry early_talker_hooks[] = {
	{ GH_HOOK_CONNECT, early_talker_connect },
	{ GH_HOOK_HELO, early_talker_verdict },
	{ GH_HOOK_EHLO, early_talker_verdict },
	{ GH_HOOK_MAIL, early_talker_verdict },
	{ GH_HOOK_RCPT, early_talker_verdict },
	{ GH_HOOK_DATA, early_talker_verdict },
	{ 0, NULL }
};

const struct gh_module gh_module_early_talker = {
	.abi = GH_ABI_VERSION,
	.name = "early_talker",
	.description = "refuse clients that talk before the greeting",
	.doc =
"A client must wait for the 220 greeting before it sends a command (RFC\n"
"5321 3.1); many spam engines do not.  early_talker holds the greeting\n"
"back for `pause` milliseconds at the connect hook; relayd marks a client\n"
"that sends anything meanwhile as an early talker, and the plugin then\n"
"answers\n"
"\n"
"    554 5.7.1 You talk too soon\n"
"\n"
"and closes the connection (Haraka: early_talker).  With reject = false\n"
"it only logs the client and records early_talker=fail in the results.\n"
"The flag is checked again at HELO/EHLO, MAIL, RCPT and DATA (the reply\n"
"there is 554 5.7.1 too, and the connection closes), which catches a\n"
"client that talked while a later connect plugin was still working.\n"
"\n"
"Clients that may relay (see the relay plugin) are not held back or\n"
"refused.  The pause costs every client that much latency on connect,\n"
"and an open connection for that long; 1000 ms catches most engines.\n"
"pause must stay below the plugin's timeout.  List early_talker after\n"
"plugins that refuse at connect cheaply (access, dnsbl).\n"
"\n"
"Example:\n"
"\n"
"    plugins = [ \"relay\", \"access\", \"early_talker\", \"host_list\",\n"
"                \"smtp_forward\" ];\n"
"    early_talker = { pause = 1500; reject = true; };\n",
	.directives = early_talker_directives,
	.conf_size = sizeof(struct early_talker_conf),
	.hooks = early_talker_hooks,
	.init = early_talker_init,
	.edits = GH_EDITS_NONE,
};
