/*
 * chain.c - the chain runner: runs a hook's plugins in order.
 *
 * The first verdict other than CONT ends the chain, except for the hooks
 * whose verdicts mean nothing (connect_init, capabilities, queue_ok,
 * reset_transaction, disconnect and the delivery notifications), where
 * every plugin runs.  A plugin in shadow mode has its rejecting verdicts
 * logged, counted and recorded, then treated as CONT.  A rejection runs
 * the `deny` hook first; an OK there overrides it and the chain goes on
 * with the next plugin (Haraka's delay_deny pattern).
 *
 * GH_AGAIN parks the chain: the plugin finishes with gh_resume(), or the
 * deadline timer fires, the plugin's cancel handler runs, and the call
 * counts as DENYSOFT.  A chain is heap-allocated per run because a deny
 * sub-chain can run while its parent waits.
 */
#include "config.h"

#include <event2/event.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define REPLY_MAX 450	/* text octets; with code and enh well under 512 */

struct gh_chain {
	struct gh_runtime *rt;
	struct gh_call proto;
	struct gh_call call;		/* what the current plugin sees */
	size_t idx;
	gh_chain_done_fn done;
	void *arg;
	struct event *timer;
	unsigned pending : 1;		/* a plugin returned AGAIN */
	unsigned in_call : 1;		/* inside a hook function */
	unsigned resumed_early : 1;	/* gh_resume() before AGAIN */
	enum gh_verdict early;
	void (*cancel_fn)(void *);
	void *cancel_arg;
	/* The current plugin's own reply, if it gave one. */
	int rcode;
	char renh[16];
	char rtext[REPLY_MAX + 1];
	/* A deny sub-chain and the verdict it may override. */
	struct gh_chain *child;
	enum gh_verdict denied;
	struct gh_outcome out;
	int *finished;			/* set when done() has run */
};

static void chain_step(struct gh_chain *ch);

static int
hook_runs_all(enum gh_hook h)
{
	switch (h) {
	case GH_HOOK_CONNECT_INIT:
	case GH_HOOK_CAPABILITIES:
	case GH_HOOK_QUEUE_OK:
	case GH_HOOK_RESET_TRANSACTION:
	case GH_HOOK_DISCONNECT:
	case GH_HOOK_DEFERRED:
	case GH_HOOK_BOUNCE:
	case GH_HOOK_DELIVERED:
		return 1;
	default:
		return 0;
	}
}

static void
chain_free(struct gh_chain *ch)
{
	if (ch->timer != NULL)
		event_free(ch->timer);
	free(ch);
}

static void
clean_text(char *dst, size_t n, const char *src)
{
	size_t i, o = 0;

	/* RFC 5321 4.2: reply text is printable; a CR, LF or NUL from a
	 * plugin (or from client data it quoted) must not split a reply. */
	for (i = 0; src[i] != '\0' && o + 1 < n; i++) {
		unsigned char ch = (unsigned char)src[i];

		dst[o++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
	}
	dst[o] = '\0';
}

static int
enh_valid(const char *e)
{
	int a, b, c, n = 0;

	/* Digits and dots only: %d alone would skip white space (CR, LF)
	 * and take signs, letting a broken code split the reply. */
	if (strspn(e, "0123456789.") != strlen(e))
		return 0;
	return sscanf(e, "%1d.%3d.%3d%n", &a, &b, &c, &n) == 3 &&
	    e[n] == '\0' && (a == 2 || a == 4 || a == 5);
}

/* At a hook with no SMTP reply (get_mx), a plugin's own words still
 * reach whoever reports the verdict, a bounce for one: its text, and its
 * enhanced code when of the verdict's class.  The code stays 0. */
static void
outcome_words(const struct gh_chain *ch, enum gh_verdict v,
	      struct gh_outcome *o)
{
	int class = v == GH_DENY || v == GH_DENYDISCONNECT ? 5 :
	    gh_verdict_is_reject(v) ? 4 : 2;

	if (ch->renh[0] != '\0' && enh_valid(ch->renh) &&
	    ch->renh[0] - '0' == class)
		snprintf(o->enh, sizeof(o->enh), "%s", ch->renh);
	if (ch->rtext[0] != '\0')
		snprintf(o->text, sizeof(o->text), "%s", ch->rtext);
}

/* Fill ch->out from the wire table and the plugin's own reply. */
static void
chain_outcome(struct gh_chain *ch, enum gh_verdict v,
	      const struct gh_plugin *by)
{
	const struct gh_wire *w = gh_wire_reply(ch->proto.hook, v,
						ch->proto.conn != NULL &&
						ch->proto.conn->relaying);
	struct gh_outcome *o = &ch->out;

	memset(o, 0, sizeof(*o));
	o->verdict = v;
	o->by = by;
	o->action = w->action;
	o->code = w->code;
	snprintf(o->enh, sizeof(o->enh), "%s", w->enh ? w->enh : "");
	snprintf(o->text, sizeof(o->text), "%s", w->text ? w->text : "");
	if (by == NULL)
		return;
	if (w->code == 0) {
		outcome_words(ch, v, o);
		return;
	}
	/* A plugin's code must be of the verdict's class: a 4xx with DENY
	 * would turn a permanent refusal into a retry loop. */
	if (ch->rcode >= 200 && ch->rcode <= 599 &&
	    ch->rcode / 100 == w->code / 100)
		o->code = ch->rcode;
	if (ch->renh[0] != '\0' && enh_valid(ch->renh) &&
	    ch->renh[0] - '0' == o->code / 100)
		snprintf(o->enh, sizeof(o->enh), "%s", ch->renh);
	if (ch->rtext[0] != '\0')
		snprintf(o->text, sizeof(o->text), "%s", ch->rtext);
}

static void
chain_finish(struct gh_chain *ch, enum gh_verdict v,
	     const struct gh_plugin *by)
{
	gh_chain_done_fn done = ch->done;
	void *arg = ch->arg;
	struct gh_outcome out;

	chain_outcome(ch, v, by);
	out = ch->out;
	if (ch->finished != NULL)
		*ch->finished = 1;
	/* done() may free the connection, and with it whoever holds ch. */
	chain_free(ch);
	done(arg, &out);
}

static void
reset_reply(struct gh_chain *ch)
{
	ch->rcode = 0;
	ch->renh[0] = '\0';
	ch->rtext[0] = '\0';
}

static void
deny_done(void *arg, const struct gh_outcome *o)
{
	struct gh_chain *ch = arg;

	ch->child = NULL;
	if (o->verdict == GH_OK) {
		gh_log(GH_LOG_INFO, "%s: %s's %s at %s overridden by %s",
		       ch->proto.conn ? ch->proto.conn->id : "-",
		       ch->call.plugin->name, gh_verdict_name(ch->denied),
		       gh_hook_name(ch->proto.hook),
		       o->by ? o->by->name : "?");
		ch->idx++;
		chain_step(ch);
		return;
	}
	chain_finish(ch, ch->denied, ch->call.plugin);
}

/* A plugin said no: give the deny hook its chance to overrule. */
static struct gh_chain *chain_new(struct gh_runtime *rt,
				  const struct gh_call *proto,
				  gh_chain_done_fn done, void *arg);

static int
run_deny_hook(struct gh_chain *ch, enum gh_verdict v)
{
	struct gh_call proto;
	struct gh_chain *child;

	if (ch->proto.hook == GH_HOOK_DENY ||
	    ch->rt->nbound[GH_HOOK_DENY] == 0)
		return 0;
	proto = ch->proto;
	proto.hook = GH_HOOK_DENY;
	proto.denied = &ch->call;
	proto.denied_verdict = v;
	ch->denied = v;
	child = chain_new(ch->rt, &proto, deny_done, ch);
	if (child == NULL)
		return 0;
	ch->child = child;
	/* May finish at once, and ch with it: touch neither afterwards. */
	chain_step(child);
	return 1;
}

static void
shadow_log(struct gh_chain *ch, enum gh_verdict v)
{
	struct gh_call *c = &ch->call;

	ch->rt->shadow_denials++;
	gh_clog(c, GH_LOG_INFO, "shadow: would %s at %s: %s",
		gh_verdict_name(v), gh_hook_name(c->hook),
		ch->rtext[0] ? ch->rtext : "(default reply)");
	gh_result(c, GH_FAIL, "shadow %s", gh_verdict_name(v));
}

/* Act on one plugin's verdict.  Returns 1 when the chain is done (or
 * continues elsewhere), 0 to go on with the next plugin. */
static int
chain_verdict(struct gh_chain *ch, enum gh_verdict v)
{
	if (v >= GH_VERDICT_COUNT || v == GH_AGAIN) {
		gh_clog(&ch->call, GH_LOG_ERR, "invalid verdict %d at %s",
			(int)v, gh_hook_name(ch->proto.hook));
		v = GH_DENYSOFT;
	}
	if (hook_runs_all(ch->proto.hook) || v == GH_CONT)
		return 0;
	if (ch->call.plugin->shadow && gh_verdict_is_reject(v)) {
		shadow_log(ch, v);
		return 0;
	}
	if (gh_verdict_is_reject(v) && run_deny_hook(ch, v))
		return 1;
	chain_finish(ch, v, ch->call.plugin);
	return 1;
}

static void
timer_fired(evutil_socket_t fd, short what, void *arg)
{
	struct gh_chain *ch = arg;

	(void)fd;
	(void)what;
	ch->pending = 0;
	ch->rt->timeouts++;
	gh_clog(&ch->call, GH_LOG_WARN, "timed out at %s after %llds: "
		"counts as DENYSOFT", gh_hook_name(ch->proto.hook),
		ch->call.plugin->timeout);
	if (ch->cancel_fn != NULL)
		ch->cancel_fn(ch->cancel_arg);
	ch->cancel_fn = NULL;
	reset_reply(ch);
	gh_result(&ch->call, GH_ERR, "timeout");
	snprintf(ch->rtext, sizeof(ch->rtext),
		 "Temporary failure (%s), try again later", "plugin timeout");
	if (!chain_verdict(ch, GH_DENYSOFT)) {
		ch->idx++;
		chain_step(ch);
	}
}

static void
chain_park(struct gh_chain *ch)
{
	struct timeval tv;

	ch->pending = 1;
	if (ch->call.plugin->timeout <= 0 || ch->rt->base == NULL)
		return;
	if (ch->timer == NULL)
		ch->timer = evtimer_new(ch->rt->base, timer_fired, ch);
	tv.tv_sec = (time_t)ch->call.plugin->timeout;
	tv.tv_usec = 0;
	evtimer_add(ch->timer, &tv);
}

static void
chain_step(struct gh_chain *ch)
{
	enum gh_hook h = ch->proto.hook;

	while (ch->idx < ch->rt->nbound[h]) {
		const struct gh_bound *b = &ch->rt->bound[h][ch->idx];
		enum gh_verdict v;

		ch->call = ch->proto;
		ch->call.plugin = b->plugin;
		ch->call.core = ch;
		ch->cancel_fn = NULL;
		ch->resumed_early = 0;
		reset_reply(ch);
		ch->in_call = 1;
		v = b->fn(&ch->call);
		ch->in_call = 0;
		if (v == GH_AGAIN) {
			if (!ch->resumed_early) {
				chain_park(ch);
				return;
			}
			v = ch->early;
		}
		if (chain_verdict(ch, v))
			return;
		ch->idx++;
	}
	chain_finish(ch, GH_CONT, NULL);
}

static struct gh_chain *
chain_new(struct gh_runtime *rt, const struct gh_call *proto,
	  gh_chain_done_fn done, void *arg)
{
	struct gh_chain *ch = calloc(1, sizeof(*ch));

	if (ch == NULL)
		return NULL;
	ch->rt = rt;
	ch->proto = *proto;
	ch->done = done;
	ch->arg = arg;
	return ch;
}

struct gh_chain *
gh_chain_run(struct gh_runtime *rt, const struct gh_call *proto,
	     gh_chain_done_fn done, void *arg)
{
	struct gh_chain *ch = chain_new(rt, proto, done, arg);
	int finished = 0;

	if (ch == NULL) {
		struct gh_outcome o;

		/* No memory for a chain: answer "try later", never accept. */
		memset(&o, 0, sizeof(o));
		o.verdict = GH_DENYSOFT;
		o.code = 451;
		snprintf(o.enh, sizeof(o.enh), "4.3.0");
		snprintf(o.text, sizeof(o.text), "Local error");
		done(arg, &o);
		return NULL;
	}
	/* Run synchronously; a pending plugin returns here and the chain
	 * resumes from the loop.  A chain that finished is already freed. */
	ch->finished = &finished;
	chain_step(ch);
	if (finished)
		return NULL;
	ch->finished = NULL;
	return ch;
}

void
gh_chain_cancel(struct gh_chain *ch)
{
	if (ch == NULL)
		return;
	if (ch->child != NULL)
		gh_chain_cancel(ch->child);
	if (ch->pending && ch->cancel_fn != NULL)
		ch->cancel_fn(ch->cancel_arg);
	chain_free(ch);
}

void
gh_resume(struct gh_call *c, enum gh_verdict v)
{
	struct gh_chain *ch = c->core;

	if (ch->in_call) {
		/* Answered before the hook even returned AGAIN (a cache
		 * hit): take it when it does. */
		ch->resumed_early = 1;
		ch->early = v;
		return;
	}
	if (!ch->pending) {
		gh_clog(c, GH_LOG_ERR, "resume without a pending call");
		return;
	}
	ch->pending = 0;
	ch->cancel_fn = NULL;
	if (ch->timer != NULL)
		evtimer_del(ch->timer);
	if (v == GH_AGAIN)
		v = GH_DENYSOFT;
	if (!chain_verdict(ch, v)) {
		ch->idx++;
		chain_step(ch);
	}
}

void
gh_on_cancel(struct gh_call *c, void (*fn)(void *), void *arg)
{
	struct gh_chain *ch = c->core;

	ch->cancel_fn = fn;
	ch->cancel_arg = arg;
}

void
gh_reply(struct gh_call *c, int code, const char *enh, const char *fmt, ...)
{
	struct gh_chain *ch = c->core;
	char raw[1024];
	va_list ap;

	ch->rcode = code;
	snprintf(ch->renh, sizeof(ch->renh), "%s", enh ? enh : "");
	va_start(ap, fmt);
	vsnprintf(raw, sizeof(raw), fmt, ap);
	va_end(ap);
	clean_text(ch->rtext, sizeof(ch->rtext), raw);
}

void
gh_result(struct gh_call *c, enum gh_result_kind kind, const char *fmt, ...)
{
	struct gh_results *r = c->txn != NULL ? c->txn->results :
	    c->conn->results;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	gh_results_add(r, c->plugin != NULL ? c->plugin->name : "core",
		       kind, msg[0] ? msg : NULL);
}

void
gh_cap_add(struct gh_call *c, const char *capability)
{
	struct gh_strlist *l = c->caps;
	const char **v;

	if (l == NULL)
		return;
	v = gh_palloc(c->conn->pool, (l->n + 1) * sizeof(*v));
	if (l->n > 0)
		memcpy(v, l->v, l->n * sizeof(*v));
	v[l->n] = gh_pstrdup(c->conn->pool, capability);
	l->v = v;
	l->n++;
}

/* ------------------------------------------------------------------ */

_Static_assert(GH_HOOK_COUNT <= 32, "gh_plugin.idle_hooks holds a bit a hook");

struct gh_runtime *
gh_runtime_create(struct gh_config *cfg, struct event_base *base,
		  char *err, size_t errlen)
{
	struct gh_runtime *rt = calloc(1, sizeof(*rt));
	size_t i, h;

	if (rt == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	rt->cfg = cfg;
	rt->base = base;
	for (i = 0; i < cfg->nplugins; i++) {
		struct gh_plugin *p = &cfg->plugins[i];
		const struct gh_hook_entry *e;

		p->base = base;
		p->rt = rt;
		if (p->mod->init != NULL && p->mod->init(p, err, errlen) < 0) {
			gh_runtime_free(rt);
			return NULL;
		}
		rt->ninit = i + 1;
		for (e = p->mod->hooks; e != NULL && e->fn != NULL; e++) {
			h = e->hook;
			if (p->idle_hooks & GH_HOOK_BIT(h))
				continue;
			rt->bound[h] = realloc(rt->bound[h],
			    (rt->nbound[h] + 1) * sizeof(*rt->bound[h]));
			if (rt->bound[h] == NULL) {
				snprintf(err, errlen, "out of memory");
				gh_runtime_free(rt);
				return NULL;
			}
			rt->bound[h][rt->nbound[h]].plugin = p;
			rt->bound[h][rt->nbound[h]].fn = e->fn;
			rt->nbound[h]++;
		}
	}
	return rt;
}

void
gh_runtime_free(struct gh_runtime *rt)
{
	size_t i;

	if (rt == NULL)
		return;
	for (i = rt->ninit; i-- > 0;) {
		struct gh_plugin *p = &rt->cfg->plugins[i];

		if (p->mod->fini != NULL)
			p->mod->fini(p);
	}
	for (i = 0; i < GH_HOOK_COUNT; i++)
		free(rt->bound[i]);
	free(rt);
}

int
gh_runtime_has_hook(const struct gh_runtime *rt, enum gh_hook h)
{
	return rt->nbound[h] > 0;
}

static int worker_share, worker_nshares = 1;

void
gh_worker_share_set(int share, int nshares)
{
	if (nshares < 1 || share < 0 || share >= nshares) {
		share = 0;
		nshares = 1;
	}
	worker_share = share;
	worker_nshares = nshares;
}

void
gh_worker_share(int *share, int *nshares)
{
	*share = worker_share;
	*nshares = worker_nshares;
}
