/*
 * test_chain.c - the chain runner (chain.c): verdict order, hooks that
 * run every plugin, shadow mode, plugin replies, AGAIN / gh_resume,
 * deadlines, cancellation, the deny hook and the results store.
 *
 * The plugins are fakes defined here.  Every configured plugin points its
 * `conf` at one struct fake of the static table `fk`, which says what its
 * hook returns, which reply it gives and whether it goes pending; the hook
 * counts its calls and notes the order in `trace`.  Two modules share the
 * one hook function: "fake" has every hook but `deny`, "dhook" has only
 * `deny`.  Runtimes run on a real libevent loop.
 */
#include "config.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "core.h"
#include "t.h"

#define NFAKE 6

enum fake_mode {
	M_SYNC = 0,	/* return verdict */
	M_TIMER,	/* AGAIN; a 10 ms timer resumes with `later` */
	M_NEVER,	/* AGAIN; nobody resumes */
	M_EARLY,	/* gh_resume(later) inside the hook, then AGAIN */
	M_EARLY_CONT	/* gh_resume(later) inside the hook, then verdict */
};

struct fake {
	enum gh_verdict verdict;
	enum fake_mode mode;
	enum gh_verdict later;	/* for the resuming modes */
	int code;		/* gh_reply when code or text is set */
	const char *enh;
	const char *text;
	int reply_late;		/* M_TIMER: give the reply when resuming */
	int result;		/* gh_result(GH_PASS, "seen") */
	const char *cap;	/* gh_cap_add at capabilities */
	int want_cancel;	/* register a cancel handler */
	int shadow;
	long long timeout;
	int init_fail;
	unsigned idle;		/* init sets it as gh_plugin.idle_hooks */
	/* Observed. */
	int calls;
	int cancels;
	int inits, finis;
	enum gh_hook last_hook;
	enum gh_verdict seen_denied;
	const struct gh_plugin *seen_denied_by;
	struct gh_call *pending;
	struct event *ev;
};

static struct fake fk[NFAKE];
static char trace[256];
static int fini_order[NFAKE], nfini;

static void
fake_cancel(void *arg)
{
	struct fake *f = arg;

	f->cancels++;
	/* What a real plugin does: stop the work that would resume. */
	if (f->ev != NULL)
		evtimer_del(f->ev);
	f->pending = NULL;
}

static void
fake_timer(evutil_socket_t fd, short what, void *arg)
{
	struct fake *f = arg;
	struct gh_call *c = f->pending;

	(void)fd;
	(void)what;
	f->pending = NULL;
	if (c == NULL)
		return;
	if (f->reply_late)
		gh_reply(c, f->code, f->enh, "%s", f->text ? f->text : "");
	gh_resume(c, f->later);
}

static enum gh_verdict
fake_hook(struct gh_call *c)
{
	struct fake *f = c->plugin->conf;
	struct timeval tv = { 0, 10000 };

	f->calls++;
	f->last_hook = c->hook;
	if (c->hook == GH_HOOK_DENY) {
		f->seen_denied = c->denied_verdict;
		f->seen_denied_by = c->denied ? c->denied->plugin : NULL;
	}
	snprintf(trace + strlen(trace), sizeof(trace) - strlen(trace), "%s%s",
		 trace[0] ? " " : "", c->plugin->name);
	if ((f->code != 0 || f->text != NULL) && !f->reply_late)
		gh_reply(c, f->code, f->enh, "%s", f->text ? f->text : "");
	if (f->result)
		gh_result(c, GH_PASS, "seen");
	if (f->cap != NULL)
		gh_cap_add(c, f->cap);
	if (f->want_cancel)
		gh_on_cancel(c, fake_cancel, f);
	switch (f->mode) {
	case M_TIMER:
		f->pending = c;
		if (f->ev == NULL)
			f->ev = evtimer_new(c->plugin->base, fake_timer, f);
		evtimer_add(f->ev, &tv);
		return GH_AGAIN;
	case M_NEVER:
		f->pending = c;
		return GH_AGAIN;
	case M_EARLY:
		gh_resume(c, f->later);
		return GH_AGAIN;
	case M_EARLY_CONT:
		gh_resume(c, f->later);
		return f->verdict;
	default:
		return f->verdict;
	}
}

static int
fake_init(struct gh_plugin *p, char *err, size_t errlen)
{
	struct fake *f = p->conf;

	f->inits++;
	if (p->base == NULL) {
		snprintf(err, errlen, "no base");
		return -1;
	}
	if (f->init_fail) {
		snprintf(err, errlen, "%s: init failed", p->name);
		return -1;
	}
	p->idle_hooks = f->idle;
	return 0;
}

static void
fake_fini(struct gh_plugin *p)
{
	struct fake *f = p->conf;

	f->finis++;
	fini_order[nfini++] = (int)(f - fk);
}

static const struct gh_hook_entry fake_hooks[] = {
	{ GH_HOOK_CONNECT_INIT, fake_hook },
	{ GH_HOOK_LOOKUP_RDNS, fake_hook },
	{ GH_HOOK_CONNECT, fake_hook },
	{ GH_HOOK_HELO, fake_hook },
	{ GH_HOOK_EHLO, fake_hook },
	{ GH_HOOK_CAPABILITIES, fake_hook },
	{ GH_HOOK_UNRECOGNIZED_COMMAND, fake_hook },
	{ GH_HOOK_AUTH, fake_hook },
	{ GH_HOOK_MAIL, fake_hook },
	{ GH_HOOK_RCPT, fake_hook },
	{ GH_HOOK_RCPT_OK, fake_hook },
	{ GH_HOOK_DATA, fake_hook },
	{ GH_HOOK_DATA_HEADERS, fake_hook },
	{ GH_HOOK_DATA_POST, fake_hook },
	{ GH_HOOK_MAX_DATA_EXCEEDED, fake_hook },
	{ GH_HOOK_QUEUE, fake_hook },
	{ GH_HOOK_QUEUE_OK, fake_hook },
	{ GH_HOOK_RESET_TRANSACTION, fake_hook },
	{ GH_HOOK_DISCONNECT, fake_hook },
	{ GH_HOOK_GET_MX, fake_hook },
	{ GH_HOOK_DEFERRED, fake_hook },
	{ GH_HOOK_BOUNCE, fake_hook },
	{ GH_HOOK_DELIVERED, fake_hook },
	{ 0, NULL },
};

static const struct gh_hook_entry dhook_hooks[] = {
	{ GH_HOOK_DENY, fake_hook },
	{ 0, NULL },
};

static const struct gh_directive no_directives[] = { { .name = NULL } };

static const struct gh_module fake_module = {
	.abi = GH_ABI_VERSION, .name = "fake", .description = "fake",
	.directives = no_directives, .hooks = fake_hooks,
	.init = fake_init, .fini = fake_fini,
};

static const struct gh_module dhook_module = {
	.abi = GH_ABI_VERSION, .name = "dhook", .description = "deny hook",
	.directives = no_directives, .hooks = dhook_hooks,
	.init = fake_init, .fini = fake_fini,
};

/* ------------------------------------------------------------------ */
/* The environment: loop, configuration, runtime, connection.          */

static struct event_base *base;
static struct gh_config *cfg;
static struct gh_runtime *rt;
static struct gh_conn *conn;

struct done_rec {
	int calls;
	struct gh_outcome o;
};

static struct done_rec rec;

static void
on_done(void *arg, const struct gh_outcome *o)
{
	struct done_rec *r = arg;

	r->calls++;
	r->o = *o;
}

static void
reset_fakes(void)
{
	size_t i;

	for (i = 0; i < NFAKE; i++) {
		memset(&fk[i], 0, sizeof(fk[i]));
		fk[i].timeout = 30;
	}
	trace[0] = '\0';
	nfini = 0;
	memset(&rec, 0, sizeof(rec));
}

/* Build n plugins "p0".."p{n-1}" on fk[0..n-1]; mods[i] chooses the
 * module (NULL: fake).  Call after filling fk[]. */
static int
setup_mods(size_t n, const struct gh_module *const *mods)
{
	char err[256] = "";
	size_t i;

	base = event_base_new();
	cfg = NULL;
	{
		struct gh_pool *p = gh_pool_create();

		cfg = gh_palloc(p, sizeof(*cfg));
		cfg->pool = p;
	}
	cfg->plugins = gh_palloc(cfg->pool, (n ? n : 1) * sizeof(*cfg->plugins));
	cfg->nplugins = n;
	for (i = 0; i < n; i++) {
		struct gh_plugin *p = &cfg->plugins[i];

		p->mod = mods != NULL && mods[i] != NULL ? mods[i] : &fake_module;
		p->name = gh_psprintf(cfg->pool, "p%zu", i);
		p->conf = &fk[i];
		p->shadow = fk[i].shadow;
		p->timeout = fk[i].timeout;
	}
	rt = gh_runtime_create(cfg, base, err, sizeof(err));
	if (rt == NULL) {
		fprintf(stderr, "  gh_runtime_create: %s\n", err);
		return -1;
	}
	conn = gh_conn_new(base);
	return 0;
}

static int
setup(size_t n)
{
	return setup_mods(n, NULL);
}

static void
teardown(void)
{
	size_t i;

	if (conn != NULL)
		gh_conn_free(conn);
	conn = NULL;
	gh_runtime_free(rt);
	rt = NULL;
	for (i = 0; i < NFAKE; i++) {
		if (fk[i].ev != NULL)
			event_free(fk[i].ev);
		fk[i].ev = NULL;
	}
	if (cfg != NULL)
		gh_pool_destroy(cfg->pool);
	cfg = NULL;
	if (base != NULL)
		event_base_free(base);
	base = NULL;
}

static struct gh_chain *
run_hook(enum gh_hook h)
{
	struct gh_call proto;

	memset(&proto, 0, sizeof(proto));
	proto.conn = conn;
	proto.txn = conn->txn;
	proto.hook = h;
	return gh_chain_run(rt, &proto, on_done, &rec);
}

/* Run the loop until done() ran (or nothing is left to wait for). */
static void
wait_done(void)
{
	while (rec.calls == 0)
		if (event_base_loop(base, EVLOOP_ONCE) != 0)
			break;
}

/* Let whatever is due run, without blocking. */
static void
spin(void)
{
	int i;

	for (i = 0; i < 5; i++)
		event_base_loop(base, EVLOOP_NONBLOCK);
}

static double
now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

static int
has_ctl(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return 1;
	return 0;
}

/* The outcome is exactly the wire table's default for (h, v). */
static void
check_default(const struct gh_outcome *o, enum gh_hook h, enum gh_verdict v,
	      int relaying)
{
	const struct gh_wire *w = gh_wire_reply(h, v, relaying);

	T_EQ_INT(o->verdict, v);
	T_EQ_INT(o->code, w->code);
	T_EQ_STR(o->enh, w->enh ? w->enh : "");
	T_EQ_STR(o->text, w->text ? w->text : "");
	T_EQ_INT(o->action, w->action);
}

/* ------------------------------------------------------------------ */
/* Order.                                                              */

static void
test_first_non_cont_ends_chain(void)
{
	struct gh_chain *ch;

	reset_fakes();
	fk[0].verdict = GH_CONT;
	fk[1].verdict = GH_DENY;
	fk[2].verdict = GH_OK;
	if (setup(3) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	ch = run_hook(GH_HOOK_MAIL);
	T_CHECK(ch == NULL);
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_DENY);
	T_CHECK(rec.o.by == &cfg->plugins[1]);
	T_EQ_INT(fk[0].calls, 1);
	T_EQ_INT(fk[1].calls, 1);
	T_EQ_INT(fk[2].calls, 0);
	T_EQ_STR(trace, "p0 p1");
	check_default(&rec.o, GH_HOOK_MAIL, GH_DENY, 0);
	teardown();
}

static void
test_ok_ends_chain(void)
{
	reset_fakes();
	fk[0].verdict = GH_OK;
	fk[1].verdict = GH_DENY;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_HELO) == NULL);
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_OK);
	T_CHECK(rec.o.by == &cfg->plugins[0]);
	T_EQ_INT(fk[1].calls, 0);
	check_default(&rec.o, GH_HOOK_HELO, GH_OK, 0);
	teardown();
}

static void
test_stop_ends_chain(void)
{
	reset_fakes();
	fk[0].verdict = GH_STOP;
	fk[1].verdict = GH_DENY;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_DATA) == NULL);
	T_EQ_INT(rec.o.verdict, GH_STOP);
	T_CHECK(rec.o.by == &cfg->plugins[0]);
	T_EQ_INT(fk[1].calls, 0);
	T_EQ_INT(rec.o.code, 354);
	teardown();
}

static void
test_all_cont(void)
{
	int i;

	reset_fakes();
	if (setup(4) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_MAIL) == NULL);
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_CONT);
	T_CHECK(rec.o.by == NULL);
	for (i = 0; i < 4; i++)
		T_EQ_INT(fk[i].calls, 1);
	T_EQ_STR(trace, "p0 p1 p2 p3");
	check_default(&rec.o, GH_HOOK_MAIL, GH_CONT, 0);
	teardown();
}

static void
test_no_plugins(void)
{
	reset_fakes();
	if (setup(0) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(!gh_runtime_has_hook(rt, GH_HOOK_MAIL));
	T_CHECK(run_hook(GH_HOOK_MAIL) == NULL);
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_CONT);
	T_CHECK(rec.o.by == NULL);
	check_default(&rec.o, GH_HOOK_MAIL, GH_CONT, 0);
	/* queue with nobody to take the message: 451. */
	memset(&rec, 0, sizeof(rec));
	T_CHECK(run_hook(GH_HOOK_QUEUE) == NULL);
	T_EQ_INT(rec.o.code, 451);
	teardown();
}

/* Every verdict at several hooks: outcome == gh_wire_reply's default. */
static void
test_wire_table(void)
{
	static const struct {
		enum gh_hook hook;
		int relaying;
	} hooks[] = {
		{ GH_HOOK_CONNECT, 0 }, { GH_HOOK_HELO, 0 },
		{ GH_HOOK_EHLO, 0 }, { GH_HOOK_AUTH, 0 },
		{ GH_HOOK_UNRECOGNIZED_COMMAND, 0 }, { GH_HOOK_MAIL, 0 },
		{ GH_HOOK_RCPT, 0 }, { GH_HOOK_RCPT, 1 },
		{ GH_HOOK_RCPT_OK, 0 }, { GH_HOOK_DATA, 0 },
		{ GH_HOOK_DATA_POST, 0 }, { GH_HOOK_MAX_DATA_EXCEEDED, 0 },
		{ GH_HOOK_QUEUE, 0 },
	};
	size_t i;
	int v;

	for (i = 0; i < sizeof(hooks) / sizeof(hooks[0]); i++) {
		char label[96];

		snprintf(label, sizeof(label), "test_wire_table %s relaying=%d",
			 gh_hook_name(hooks[i].hook), hooks[i].relaying);
		T_BEGIN();
		for (v = GH_CONT; v < GH_AGAIN; v++) {
			reset_fakes();
			fk[0].verdict = (enum gh_verdict)v;
			fk[1].verdict = GH_DENY;
			if (setup(2) < 0) {
				T_CHECK(0);
				teardown();
				continue;
			}
			conn->relaying = hooks[i].relaying;
			T_CHECK(run_hook(hooks[i].hook) == NULL);
			if (v == GH_CONT) {
				/* p1 decided */
				T_EQ_INT(fk[1].calls, 1);
				T_CHECK(rec.o.by == &cfg->plugins[1]);
				check_default(&rec.o, hooks[i].hook, GH_DENY,
					      hooks[i].relaying);
			} else {
				T_EQ_INT(fk[1].calls, 0);
				T_CHECK(rec.o.by == &cfg->plugins[0]);
				check_default(&rec.o, hooks[i].hook,
					      (enum gh_verdict)v,
					      hooks[i].relaying);
			}
			T_EQ_INT(rec.calls, 1);
			teardown();
		}
		T_END(label);
	}
}

/* Hooks whose verdicts mean nothing run every plugin. */
static void
test_runs_all_hooks(void)
{
	static const enum gh_hook hooks[] = {
		GH_HOOK_CONNECT_INIT, GH_HOOK_CAPABILITIES, GH_HOOK_QUEUE_OK,
		GH_HOOK_RESET_TRANSACTION, GH_HOOK_DISCONNECT,
		GH_HOOK_DEFERRED, GH_HOOK_BOUNCE, GH_HOOK_DELIVERED,
	};
	size_t i;
	int j;

	for (i = 0; i < sizeof(hooks) / sizeof(hooks[0]); i++) {
		char label[96];

		snprintf(label, sizeof(label), "test_runs_all_hooks %s",
			 gh_hook_name(hooks[i]));
		T_BEGIN();
		reset_fakes();
		fk[0].verdict = GH_DENY;
		fk[1].verdict = GH_DISCONNECT;
		fk[2].verdict = GH_OK;
		fk[3].verdict = GH_DENYSOFTDISCONNECT;
		fk[4].verdict = (enum gh_verdict)42;
		fk[5].verdict = GH_STOP;
		/* A deny hook must not run either: nothing was denied. */
		{
			static const struct gh_module *const mods[] = {
				NULL, NULL, NULL, NULL, NULL, &dhook_module
			};

			fk[5].verdict = GH_OK;
			if (setup_mods(6, mods) < 0) {
				T_CHECK(0);
				teardown();
				T_END(label);
				continue;
			}
		}
		T_CHECK(run_hook(hooks[i]) == NULL);
		T_EQ_INT(rec.calls, 1);
		for (j = 0; j < 5; j++)
			T_EQ_INT(fk[j].calls, 1);
		T_EQ_INT(fk[5].calls, 0);
		T_EQ_INT(rec.o.verdict, GH_CONT);
		T_CHECK(rec.o.by == NULL);
		T_EQ_INT(rt->shadow_denials, 0);
		if (hooks[i] == GH_HOOK_QUEUE_OK) {
			T_EQ_INT(rec.o.code, 250);
			T_EQ_STR(rec.o.text, "Message accepted");
		}
		teardown();
		T_END(label);
	}
}

static void
test_capabilities_cap_add(void)
{
	struct gh_call proto;
	struct gh_strlist caps = { 0, NULL };

	reset_fakes();
	fk[0].cap = "PIPELINING";
	fk[0].verdict = GH_OK;
	fk[1].cap = "8BITMIME";
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	memset(&proto, 0, sizeof(proto));
	proto.conn = conn;
	proto.hook = GH_HOOK_CAPABILITIES;
	proto.caps = &caps;
	T_CHECK(gh_chain_run(rt, &proto, on_done, &rec) == NULL);
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(caps.n, 2);
	if (caps.n == 2) {
		T_EQ_STR(caps.v[0], "PIPELINING");
		T_EQ_STR(caps.v[1], "8BITMIME");
	}
	teardown();
}

/* ------------------------------------------------------------------ */
/* Shadow mode.                                                        */

static void
test_shadow_rejects_become_cont(void)
{
	static const enum gh_verdict vs[] = {
		GH_DENY, GH_DENYSOFT, GH_DENYDISCONNECT, GH_DENYSOFTDISCONNECT,
		GH_DISCONNECT,
	};
	size_t i;

	for (i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) {
		char label[96], want[64];
		const struct gh_result *r;

		snprintf(label, sizeof(label), "test_shadow_rejects_become_cont %s",
			 gh_verdict_name(vs[i]));
		T_BEGIN();
		reset_fakes();
		fk[0].verdict = vs[i];
		fk[0].shadow = 1;
		fk[0].text = "would reject";
		fk[0].code = 550;
		/* The deny hook is not consulted for a shadow verdict. */
		fk[2].verdict = GH_OK;
		{
			static const struct gh_module *const mods[] = {
				NULL, NULL, &dhook_module
			};

			if (setup_mods(3, mods) < 0) {
				T_CHECK(0);
				teardown();
				T_END(label);
				continue;
			}
		}
		T_CHECK(run_hook(GH_HOOK_MAIL) == NULL);
		T_EQ_INT(rec.calls, 1);
		T_EQ_INT(fk[1].calls, 1);
		T_EQ_INT(fk[2].calls, 0);
		T_EQ_INT(rec.o.verdict, GH_CONT);
		T_CHECK(rec.o.by == NULL);
		check_default(&rec.o, GH_HOOK_MAIL, GH_CONT, 0);
		T_EQ_INT(rt->shadow_denials, 1);
		r = gh_results_get(conn->results, "p0");
		T_CHECK(r != NULL);
		if (r != NULL) {
			snprintf(want, sizeof(want), "shadow %s",
				 gh_verdict_name(vs[i]));
			T_EQ_INT(r->kind, GH_FAIL);
			T_EQ_STR(r->msg, want);
		}
		teardown();
		T_END(label);
	}
}

static void
test_shadow_ok_counts(void)
{
	reset_fakes();
	fk[0].verdict = GH_OK;
	fk[0].shadow = 1;
	fk[1].verdict = GH_DENY;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_MAIL) == NULL);
	T_EQ_INT(rec.o.verdict, GH_OK);
	T_CHECK(rec.o.by == &cfg->plugins[0]);
	T_EQ_INT(fk[1].calls, 0);
	T_EQ_INT(rt->shadow_denials, 0);
	T_CHECK(gh_results_get(conn->results, "p0") == NULL);
	teardown();
}

static void
test_shadow_then_real_deny(void)
{
	reset_fakes();
	fk[0].verdict = GH_DENYSOFT;
	fk[0].shadow = 1;
	fk[0].code = 451;
	fk[0].text = "shadow text";
	fk[1].verdict = GH_DENY;
	fk[2].verdict = GH_DENY;
	fk[2].shadow = 1;
	if (setup(3) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_RCPT) == NULL);
	T_EQ_INT(rec.o.verdict, GH_DENY);
	T_CHECK(rec.o.by == &cfg->plugins[1]);
	/* p0's shadow reply must not leak into p1's outcome. */
	check_default(&rec.o, GH_HOOK_RCPT, GH_DENY, 0);
	T_EQ_INT(fk[2].calls, 0);
	T_EQ_INT(rt->shadow_denials, 1);
	teardown();
}

/* ------------------------------------------------------------------ */
/* Plugin replies.                                                     */

static void
test_reply_custom(void)
{
	reset_fakes();
	fk[0].verdict = GH_DENY;
	fk[0].code = 554;
	fk[0].enh = "5.7.0";
	fk[0].text = "Go away";
	if (setup(1) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	run_hook(GH_HOOK_MAIL);
	T_EQ_INT(rec.o.code, 554);
	T_EQ_STR(rec.o.enh, "5.7.0");
	T_EQ_STR(rec.o.text, "Go away");
	T_EQ_INT(rec.o.action, GH_WIRE_REPLY);
	teardown();
}

static void
test_reply_ok_custom(void)
{
	reset_fakes();
	fk[0].verdict = GH_OK;
	fk[0].code = 250;
	fk[0].enh = "2.1.0";
	fk[0].text = "Sender <a@b> fine";
	if (setup(1) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	run_hook(GH_HOOK_MAIL);
	T_EQ_INT(rec.o.verdict, GH_OK);
	T_EQ_INT(rec.o.code, 250);
	T_EQ_STR(rec.o.enh, "2.1.0");
	T_EQ_STR(rec.o.text, "Sender <a@b> fine");
	teardown();
}

/* A hook with no SMTP reply (get_mx): no code, but the plugin's text and
 * its enhanced code, when of the verdict's class, reach the caller (the
 * spool's bounce). */
static void
test_reply_no_wire_hook(void)
{
	reset_fakes();
	fk[0].verdict = GH_DENY;
	fk[0].code = 550;
	fk[0].enh = "5.1.2";
	fk[0].text = "no route to that domain";
	if (setup(1) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	run_hook(GH_HOOK_GET_MX);
	T_EQ_INT(rec.o.verdict, GH_DENY);
	T_EQ_INT(rec.o.code, 0);
	T_EQ_STR(rec.o.enh, "5.1.2");
	T_EQ_STR(rec.o.text, "no route to that domain");
	teardown();

	reset_fakes();
	fk[0].verdict = GH_DENYSOFT;
	fk[0].code = 550;
	fk[0].enh = "5.1.2";
	fk[0].text = "routes\r\nreloading";
	if (setup(1) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	run_hook(GH_HOOK_GET_MX);
	T_EQ_INT(rec.o.verdict, GH_DENYSOFT);
	T_EQ_STR(rec.o.enh, "");
	T_CHECK(!has_ctl(rec.o.text));
	T_CHECK(strstr(rec.o.text, "reloading") != NULL);
	teardown();
}

/* Table: what the plugin asked for, what goes on the wire. */
static void
test_reply_class_rules(void)
{
	static const struct {
		const char *label;
		enum gh_hook hook;
		enum gh_verdict v;
		int code;
		const char *enh;
		int want_code;
		const char *want_enh;
	} rows[] = {
		{ "DENY with 451 keeps 550", GH_HOOK_MAIL, GH_DENY, 451,
		  "4.7.1", 550, "5.7.1" },
		{ "DENY with 553 and 5.1.8", GH_HOOK_MAIL, GH_DENY, 553,
		  "5.1.8", 553, "5.1.8" },
		{ "DENYSOFT with 550 keeps 450", GH_HOOK_RCPT, GH_DENYSOFT, 550,
		  "5.1.1", 450, "4.7.1" },
		{ "DENYSOFT with 452 and 4.2.2", GH_HOOK_RCPT,
		  GH_DENYSOFT, 452, "4.2.2", 452, "4.2.2" },
		{ "code 0 keeps default", GH_HOOK_DATA, GH_DENY, 0, "5.7.9",
		  554, "5.7.9" },
		{ "code 999 ignored", GH_HOOK_MAIL, GH_DENY, 999, NULL, 550,
		  "5.7.1" },
		{ "code 5 ignored", GH_HOOK_MAIL, GH_DENY, 5, NULL, 550,
		  "5.7.1" },
		{ "negative code ignored", GH_HOOK_MAIL, GH_DENY, -550, NULL,
		  550, "5.7.1" },
		{ "right code, enh of wrong class", GH_HOOK_MAIL, GH_DENY,
		  551, "4.1.1", 551, "5.7.1" },
		{ "enh malformed 5.7", GH_HOOK_MAIL, GH_DENY, 0, "5.7", 550,
		  "5.7.1" },
		{ "enh malformed 5.7.1.1", GH_HOOK_MAIL, GH_DENY, 0, "5.7.1.1",
		  550, "5.7.1" },
		{ "enh malformed x.y.z", GH_HOOK_MAIL, GH_DENY, 0, "x.y.z",
		  550, "5.7.1" },
		{ "enh class 3", GH_HOOK_MAIL, GH_DENY, 0, "3.0.0", 550,
		  "5.7.1" },
		{ "enh trailing space", GH_HOOK_MAIL, GH_DENY, 0, "5.7.1 ",
		  550, "5.7.1" },
		{ "OK with 550 keeps 250", GH_HOOK_MAIL, GH_OK, 550, "5.7.1",
		  250, "2.1.0" },
		{ "DISCONNECT with 554 keeps 421", GH_HOOK_HELO, GH_DISCONNECT,
		  554, "5.7.1", 421, "4.7.0" },
		{ "enh follows the corrected code", GH_HOOK_MAIL, GH_DENY, 0,
		  "5.1.0", 550, "5.1.0" },
		/* The contract: what goes on the wire never carries CR, LF
		 * or spaces inside the enhanced code. */
		{ "enh with CRLF inside", GH_HOOK_MAIL, GH_DENY, 0,
		  "5.\r\n1.1", 550, "5.7.1" },
		{ "enh with space inside", GH_HOOK_MAIL, GH_DENY, 0, "5. 7.1",
		  550, "5.7.1" },
		{ "enh with sign", GH_HOOK_MAIL, GH_DENY, 0, "5.-1.+1", 550,
		  "5.7.1" },
	};
	size_t i;

	for (i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		char label[128];

		snprintf(label, sizeof(label), "test_reply_class_rules: %s",
			 rows[i].label);
		T_BEGIN();
		reset_fakes();
		fk[0].verdict = rows[i].v;
		fk[0].code = rows[i].code;
		fk[0].enh = rows[i].enh;
		fk[0].text = "custom";
		if (setup(1) < 0) {
			T_CHECK(0);
			teardown();
			T_END(label);
			continue;
		}
		run_hook(rows[i].hook);
		T_EQ_INT(rec.calls, 1);
		T_EQ_INT(rec.o.verdict, rows[i].v);
		T_EQ_INT(rec.o.code, rows[i].want_code);
		T_EQ_STR(rec.o.enh, rows[i].want_enh);
		T_EQ_STR(rec.o.text, "custom");
		T_CHECK(!has_ctl(rec.o.enh));
		teardown();
		T_END(label);
	}
}

static void
test_reply_text_cleaned(void)
{
	reset_fakes();
	fk[0].verdict = GH_DENY;
	fk[0].text = "bad\r\n250 OK\rx\ny\tz\x7f.";
	if (setup(1) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	run_hook(GH_HOOK_MAIL);
	T_CHECK(!has_ctl(rec.o.text));
	T_CHECK(strchr(rec.o.text, '\r') == NULL);
	T_CHECK(strchr(rec.o.text, '\n') == NULL);
	T_EQ_STR(rec.o.text, "bad  250 OK x y z .");
	T_EQ_INT(rec.o.code, 550);
	teardown();
}

static enum gh_verdict
nul_hook(struct gh_call *c)
{
	gh_reply(c, 550, "5.7.1", "before%cafter", '\0');
	return GH_DENY;
}

static const struct gh_hook_entry nul_hooks[] = {
	{ GH_HOOK_MAIL, nul_hook }, { 0, NULL },
};

static const struct gh_module nul_module = {
	.abi = GH_ABI_VERSION, .name = "nul", .description = "nul",
	.directives = no_directives, .hooks = nul_hooks,
};

static void
test_reply_text_nul(void)
{
	static const struct gh_module *const mods[] = { &nul_module };

	reset_fakes();
	if (setup_mods(1, mods) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	run_hook(GH_HOOK_MAIL);
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.code, 550);
	T_CHECK(!has_ctl(rec.o.text));
	/* A NUL ends the text or becomes a space; it is never kept. */
	T_CHECK(strncmp(rec.o.text, "before", 6) == 0);
	T_CHECK(strcmp(rec.o.text, "before") == 0 ||
		strcmp(rec.o.text, "before after") == 0);
	teardown();
}

static void
test_reply_text_bounded(void)
{
	char longtext[2000];

	memset(longtext, 'x', sizeof(longtext) - 1);
	longtext[sizeof(longtext) - 1] = '\0';
	reset_fakes();
	fk[0].verdict = GH_DENYSOFT;
	fk[0].text = longtext;
	if (setup(1) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	run_hook(GH_HOOK_MAIL);
	T_CHECK(strlen(rec.o.text) > 0);
	/* code, SP, enh, SP, text, CRLF within RFC 5321's 512. */
	T_CHECK(3 + 1 + strlen(rec.o.enh) + 1 + strlen(rec.o.text) + 2 <= 512);
	T_CHECK(strspn(rec.o.text, "x") == strlen(rec.o.text));
	teardown();
}

/* A reply given with CONT belongs to that plugin only. */
static void
test_reply_reset_between_plugins(void)
{
	reset_fakes();
	fk[0].verdict = GH_CONT;
	fk[0].code = 554;
	fk[0].enh = "5.7.0";
	fk[0].text = "p0 text";
	fk[1].verdict = GH_DENY;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	run_hook(GH_HOOK_MAIL);
	T_CHECK(rec.o.by == &cfg->plugins[1]);
	check_default(&rec.o, GH_HOOK_MAIL, GH_DENY, 0);
	teardown();
	/* ... and a CONT outcome (by == NULL) uses the defaults. */
	reset_fakes();
	fk[0].verdict = GH_CONT;
	fk[0].code = 250;
	fk[0].text = "p0 text";
	if (setup(1) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	run_hook(GH_HOOK_MAIL);
	check_default(&rec.o, GH_HOOK_MAIL, GH_CONT, 0);
	teardown();
}

/* ------------------------------------------------------------------ */
/* rcpt and relaying.                                                  */

static void
test_rcpt_cont_not_relaying(void)
{
	reset_fakes();
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	conn->relaying = 0;
	run_hook(GH_HOOK_RCPT);
	T_EQ_INT(rec.o.verdict, GH_CONT);
	T_CHECK(rec.o.by == NULL);
	T_EQ_INT(rec.o.code, 550);
	T_EQ_STR(rec.o.enh, "5.7.1");
	T_EQ_INT(rec.o.action, GH_WIRE_REPLY);
	T_CHECK(strstr(rec.o.text, "relay") != NULL);
	teardown();
}

static void
test_rcpt_cont_relaying(void)
{
	reset_fakes();
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	conn->relaying = 1;
	run_hook(GH_HOOK_RCPT);
	T_EQ_INT(rec.o.verdict, GH_CONT);
	T_CHECK(rec.o.by == NULL);
	T_EQ_INT(rec.o.action, GH_WIRE_NEXT);
	T_EQ_INT(rec.o.code, 0);
	teardown();
}

static void
test_rcpt_ok_not_relaying(void)
{
	reset_fakes();
	fk[0].verdict = GH_OK;
	if (setup(1) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	conn->relaying = 0;
	run_hook(GH_HOOK_RCPT);
	T_EQ_INT(rec.o.verdict, GH_OK);
	T_EQ_INT(rec.o.action, GH_WIRE_NEXT);
	teardown();
}

/* ------------------------------------------------------------------ */
/* Results.                                                            */

static void
test_results_on_conn(void)
{
	const struct gh_result *r;

	reset_fakes();
	fk[0].result = 1;
	fk[1].result = 1;
	fk[1].verdict = GH_OK;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	run_hook(GH_HOOK_HELO);
	r = gh_results_first(conn->results);
	T_CHECK(r != NULL);
	if (r != NULL) {
		T_EQ_STR(r->plugin, "p0");
		T_EQ_INT(r->kind, GH_PASS);
		T_EQ_STR(r->msg, "seen");
		T_CHECK(r->next != NULL);
		if (r->next != NULL)
			T_EQ_STR(r->next->plugin, "p1");
	}
	teardown();
}

static void
test_results_on_txn(void)
{
	const struct gh_result *r;

	reset_fakes();
	fk[0].result = 1;
	fk[1].verdict = GH_DENY;
	fk[1].shadow = 1;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	gh_txn_new(conn);
	run_hook(GH_HOOK_RCPT);
	T_CHECK(gh_results_first(conn->results) == NULL);
	r = gh_results_get(conn->txn->results, "p0");
	T_CHECK(r != NULL && r->kind == GH_PASS);
	r = gh_results_get(conn->txn->results, "p1");
	T_CHECK(r != NULL && r->kind == GH_FAIL);
	teardown();
}

/* ------------------------------------------------------------------ */
/* Invalid verdicts.                                                   */

static void
test_invalid_verdict(void)
{
	reset_fakes();
	fk[0].verdict = (enum gh_verdict)42;
	fk[0].text = "kept";
	fk[1].verdict = GH_OK;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_MAIL) == NULL);
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_DENYSOFT);
	T_CHECK(rec.o.by == &cfg->plugins[0]);
	T_EQ_INT(rec.o.code, 450);
	T_EQ_STR(rec.o.enh, "4.7.1");
	T_EQ_INT(fk[1].calls, 0);
	teardown();
}

static void
test_invalid_verdict_count(void)
{
	reset_fakes();
	fk[0].verdict = GH_VERDICT_COUNT;
	if (setup(1) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	run_hook(GH_HOOK_HELO);
	T_EQ_INT(rec.o.verdict, GH_DENYSOFT);
	T_EQ_INT(rec.o.code, 450);
	teardown();
}

/* ------------------------------------------------------------------ */
/* AGAIN and gh_resume.                                                */

static void
test_again_resume_from_timer(void)
{
	struct gh_chain *ch;

	reset_fakes();
	fk[0].mode = M_TIMER;
	fk[0].later = GH_DENY;
	fk[1].verdict = GH_OK;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	ch = run_hook(GH_HOOK_MAIL);
	T_CHECK(ch != NULL);
	T_EQ_INT(rec.calls, 0);
	wait_done();
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_DENY);
	T_CHECK(rec.o.by == &cfg->plugins[0]);
	check_default(&rec.o, GH_HOOK_MAIL, GH_DENY, 0);
	T_EQ_INT(fk[1].calls, 0);
	T_EQ_INT(rt->timeouts, 0);
	spin();
	T_EQ_INT(rec.calls, 1);
	teardown();
}

static void
test_again_resume_cont_goes_on(void)
{
	struct gh_chain *ch;

	reset_fakes();
	fk[0].mode = M_TIMER;
	fk[0].later = GH_CONT;
	fk[1].mode = M_TIMER;
	fk[1].later = GH_OK;
	fk[2].verdict = GH_DENY;
	if (setup(3) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	ch = run_hook(GH_HOOK_HELO);
	T_CHECK(ch != NULL);
	wait_done();
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_OK);
	T_CHECK(rec.o.by == &cfg->plugins[1]);
	T_EQ_INT(fk[2].calls, 0);
	T_EQ_STR(trace, "p0 p1");
	teardown();
}

static void
test_again_reply_when_resuming(void)
{
	reset_fakes();
	fk[0].mode = M_TIMER;
	fk[0].later = GH_DENYSOFT;
	fk[0].reply_late = 1;
	fk[0].code = 451;
	fk[0].enh = "4.7.25";
	fk[0].text = "Looked it up: later";
	if (setup(1) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_MAIL) != NULL);
	wait_done();
	T_EQ_INT(rec.o.verdict, GH_DENYSOFT);
	T_EQ_INT(rec.o.code, 451);
	T_EQ_STR(rec.o.enh, "4.7.25");
	T_EQ_STR(rec.o.text, "Looked it up: later");
	teardown();
}

static void
test_again_resume_with_again(void)
{
	reset_fakes();
	fk[0].mode = M_TIMER;
	fk[0].later = GH_AGAIN;
	fk[1].verdict = GH_OK;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_MAIL) != NULL);
	wait_done();
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_DENYSOFT);
	T_EQ_INT(fk[1].calls, 0);
	teardown();
}

static void
test_again_at_runs_all_hook(void)
{
	reset_fakes();
	fk[0].mode = M_TIMER;
	fk[0].later = GH_DENY;
	fk[1].verdict = GH_DENY;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_DISCONNECT) != NULL);
	wait_done();
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_CONT);
	T_CHECK(rec.o.by == NULL);
	T_EQ_INT(fk[1].calls, 1);
	teardown();
}

static void
test_resume_synchronously(void)
{
	struct gh_chain *ch;

	reset_fakes();
	fk[0].mode = M_EARLY;
	fk[0].later = GH_DENYDISCONNECT;
	fk[0].want_cancel = 1;
	fk[1].verdict = GH_OK;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	ch = run_hook(GH_HOOK_MAIL);
	T_CHECK(ch == NULL);
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_DENYDISCONNECT);
	T_CHECK(rec.o.by == &cfg->plugins[0]);
	T_EQ_INT(rec.o.action, GH_WIRE_CLOSE);
	T_EQ_INT(fk[1].calls, 0);
	T_EQ_INT(fk[0].cancels, 0);
	spin();
	T_EQ_INT(rec.calls, 1);
	teardown();
}

static void
test_resume_synchronously_cont(void)
{
	reset_fakes();
	fk[0].mode = M_EARLY;
	fk[0].later = GH_CONT;
	fk[1].mode = M_EARLY;
	fk[1].later = GH_OK;
	fk[2].verdict = GH_DENY;
	if (setup(3) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_RCPT) == NULL);
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_OK);
	T_CHECK(rec.o.by == &cfg->plugins[1]);
	T_EQ_INT(fk[2].calls, 0);
	teardown();
}

/* The verdict returned wins over an early gh_resume when it is not
 * AGAIN; the resume must not leak into the next plugin. */
static void
test_resume_early_then_return_verdict(void)
{
	reset_fakes();
	fk[0].mode = M_EARLY_CONT;
	fk[0].later = GH_DENY;
	fk[0].verdict = GH_CONT;
	fk[1].mode = M_SYNC;
	fk[1].verdict = GH_CONT;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_MAIL) == NULL);
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_CONT);
	T_EQ_INT(fk[1].calls, 1);
	teardown();
}

/* The deadline timer of a resumed call is gone: the next plugin, with
 * no deadline, is not timed out by it. */
static void
test_resume_clears_deadline(void)
{
	struct gh_chain *ch;
	int i;

	reset_fakes();
	fk[0].mode = M_TIMER;
	fk[0].later = GH_CONT;
	fk[0].timeout = 1;
	fk[1].mode = M_NEVER;
	fk[1].timeout = 0;
	fk[1].want_cancel = 1;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	ch = run_hook(GH_HOOK_MAIL);
	T_CHECK(ch != NULL);
	for (i = 0; i < 100 && fk[1].calls == 0; i++)
		event_base_loop(base, EVLOOP_ONCE);
	T_EQ_INT(fk[1].calls, 1);
	T_EQ_INT(rec.calls, 0);
	/* No timer of the chain's left (ours is not pending any more). */
	T_EQ_INT(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
	T_EQ_INT(event_base_loop(base, EVLOOP_ONCE), 1);
	T_EQ_INT(rec.calls, 0);
	T_EQ_INT(rt->timeouts, 0);
	if (rec.calls == 0) {	/* else ch is gone */
		gh_chain_cancel(ch);
		T_EQ_INT(fk[1].cancels, 1);
	}
	T_EQ_INT(rec.calls, 0);
	teardown();
}

/* ------------------------------------------------------------------ */
/* Deadlines.                                                          */

static void
test_timeout(void)
{
	const struct gh_result *r;
	struct gh_chain *ch;
	double t0, dt;

	reset_fakes();
	fk[0].mode = M_NEVER;
	fk[0].timeout = 1;
	fk[0].want_cancel = 1;
	fk[1].verdict = GH_OK;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	t0 = now();
	ch = run_hook(GH_HOOK_MAIL);
	T_CHECK(ch != NULL);
	T_EQ_INT(rec.calls, 0);
	wait_done();
	dt = now() - t0;
	T_EQ_INT(rec.calls, 1);
	T_CHECK(dt >= 0.9 && dt < 5.0);
	T_EQ_INT(rec.o.verdict, GH_DENYSOFT);
	T_CHECK(rec.o.by == &cfg->plugins[0]);
	T_EQ_INT(rec.o.code, 450);
	T_EQ_STR(rec.o.enh, "4.7.1");
	T_CHECK(strstr(rec.o.text, "timeout") != NULL);
	T_EQ_INT(fk[0].cancels, 1);
	T_EQ_INT(fk[1].calls, 0);
	T_EQ_INT(rt->timeouts, 1);
	r = gh_results_get(conn->results, "p0");
	T_CHECK(r != NULL && r->kind == GH_ERR);
	spin();
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(fk[0].cancels, 1);
	teardown();
}

/* A shadow plugin that times out holds nobody up for good. */
static void
test_timeout_shadow(void)
{
	reset_fakes();
	fk[0].mode = M_NEVER;
	fk[0].timeout = 1;
	fk[0].shadow = 1;
	fk[0].want_cancel = 1;
	fk[1].verdict = GH_OK;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_MAIL) != NULL);
	wait_done();
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_OK);
	T_CHECK(rec.o.by == &cfg->plugins[1]);
	T_EQ_INT(fk[0].cancels, 1);
	T_EQ_INT(fk[1].calls, 1);
	T_EQ_INT(rt->timeouts, 1);
	T_EQ_INT(rt->shadow_denials, 1);
	teardown();
}

/* ------------------------------------------------------------------ */
/* Cancellation.                                                       */

static void
test_cancel_pending(void)
{
	struct gh_chain *ch;

	reset_fakes();
	fk[0].mode = M_TIMER;
	fk[0].later = GH_OK;
	fk[0].want_cancel = 1;
	fk[0].timeout = 1;
	if (setup(2) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	ch = run_hook(GH_HOOK_MAIL);
	T_CHECK(ch != NULL);
	gh_chain_cancel(ch);
	T_EQ_INT(fk[0].cancels, 1);
	T_EQ_INT(rec.calls, 0);
	/* Neither the plugin's timer nor the deadline is left. */
	T_EQ_INT(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0);
	spin();
	T_EQ_INT(rec.calls, 0);
	T_EQ_INT(fk[1].calls, 0);
	T_EQ_INT(fk[0].cancels, 1);
	teardown();
}

static void
test_cancel_null(void)
{
	gh_chain_cancel(NULL);
	T_CHECK(1);
}

/* ------------------------------------------------------------------ */
/* The deny hook.                                                      */

static const struct gh_module *const deny_mods[] = {
	NULL, NULL, NULL, &dhook_module, &dhook_module,
};

static void
test_deny_hook_ok_continues(void)
{
	reset_fakes();
	fk[0].verdict = GH_DENY;
	fk[0].text = "p0 says no";
	fk[1].verdict = GH_CONT;
	fk[2].verdict = GH_CONT;
	fk[3].verdict = GH_OK;	/* deny hook: override */
	fk[4].verdict = GH_DENY;	/* deny hook: never reached */
	if (setup_mods(5, deny_mods) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_MAIL) == NULL);
	T_EQ_INT(rec.calls, 1);
	T_EQ_STR(trace, "p0 p3 p1 p2");
	T_EQ_INT(fk[3].calls, 1);
	T_EQ_INT(fk[3].last_hook, GH_HOOK_DENY);
	T_EQ_INT(fk[3].seen_denied, GH_DENY);
	T_CHECK(fk[3].seen_denied_by == &cfg->plugins[0]);
	T_EQ_INT(fk[4].calls, 0);
	T_EQ_INT(rec.o.verdict, GH_CONT);
	T_CHECK(rec.o.by == NULL);
	check_default(&rec.o, GH_HOOK_MAIL, GH_CONT, 0);
	teardown();
}

static void
test_deny_hook_ok_then_next_decides(void)
{
	reset_fakes();
	fk[0].verdict = GH_DENYSOFT;
	fk[1].verdict = GH_OK;
	fk[3].verdict = GH_OK;
	if (setup_mods(5, deny_mods) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_RCPT) == NULL);
	T_EQ_INT(rec.o.verdict, GH_OK);
	T_CHECK(rec.o.by == &cfg->plugins[1]);
	T_EQ_INT(fk[3].seen_denied, GH_DENYSOFT);
	T_EQ_INT(fk[2].calls, 0);
	teardown();
}

static void
test_deny_hook_cont_keeps_deny(void)
{
	reset_fakes();
	fk[0].verdict = GH_DENY;
	fk[0].code = 553;
	fk[0].enh = "5.1.8";
	fk[0].text = "Bad sender domain";
	fk[1].verdict = GH_OK;
	fk[3].verdict = GH_CONT;
	fk[4].verdict = GH_CONT;
	if (setup_mods(5, deny_mods) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_MAIL) == NULL);
	T_EQ_INT(rec.calls, 1);
	T_EQ_STR(trace, "p0 p3 p4");
	T_EQ_INT(fk[1].calls, 0);
	T_EQ_INT(rec.o.verdict, GH_DENY);
	T_CHECK(rec.o.by == &cfg->plugins[0]);
	/* The denying plugin's own reply survives the deny hook. */
	T_EQ_INT(rec.o.code, 553);
	T_EQ_STR(rec.o.enh, "5.1.8");
	T_EQ_STR(rec.o.text, "Bad sender domain");
	teardown();
}

static void
test_deny_hook_deny_keeps_original(void)
{
	reset_fakes();
	fk[0].verdict = GH_DENYSOFT;
	fk[3].verdict = GH_DENY;
	if (setup_mods(5, deny_mods) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_MAIL) == NULL);
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_DENYSOFT);
	T_CHECK(rec.o.by == &cfg->plugins[0]);
	T_EQ_INT(fk[4].calls, 0);
	teardown();
}

static void
test_deny_hook_not_for_ok(void)
{
	reset_fakes();
	fk[0].verdict = GH_OK;
	fk[3].verdict = GH_OK;
	if (setup_mods(5, deny_mods) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	run_hook(GH_HOOK_MAIL);
	T_EQ_INT(rec.o.verdict, GH_OK);
	T_EQ_INT(fk[3].calls, 0);
	T_EQ_INT(fk[4].calls, 0);
	teardown();
}

static void
test_deny_hook_pending(void)
{
	struct gh_chain *ch;

	reset_fakes();
	fk[0].verdict = GH_DENY;
	fk[1].verdict = GH_OK;
	fk[3].mode = M_TIMER;
	fk[3].later = GH_OK;
	if (setup_mods(5, deny_mods) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	ch = run_hook(GH_HOOK_MAIL);
	T_CHECK(ch != NULL);
	T_EQ_INT(rec.calls, 0);
	wait_done();
	T_EQ_INT(rec.calls, 1);
	T_EQ_INT(rec.o.verdict, GH_OK);
	T_CHECK(rec.o.by == &cfg->plugins[1]);
	T_EQ_STR(trace, "p0 p3 p1");
	teardown();
}

static void
test_deny_hook_cancel(void)
{
	struct gh_chain *ch;

	reset_fakes();
	fk[0].verdict = GH_DENY;
	fk[3].mode = M_TIMER;
	fk[3].later = GH_OK;
	fk[3].want_cancel = 1;
	if (setup_mods(5, deny_mods) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	ch = run_hook(GH_HOOK_MAIL);
	T_CHECK(ch != NULL);
	gh_chain_cancel(ch);
	T_EQ_INT(fk[3].cancels, 1);
	spin();
	T_EQ_INT(rec.calls, 0);
	T_EQ_INT(fk[1].calls, 0);
	teardown();
}

/* A pending plugin whose answer is a rejection gets the deny hook too. */
static void
test_deny_hook_after_resume(void)
{
	reset_fakes();
	fk[0].mode = M_TIMER;
	fk[0].later = GH_DENY;
	fk[1].verdict = GH_OK;
	fk[3].verdict = GH_OK;
	if (setup_mods(5, deny_mods) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(run_hook(GH_HOOK_MAIL) != NULL);
	wait_done();
	T_EQ_INT(rec.o.verdict, GH_OK);
	T_CHECK(rec.o.by == &cfg->plugins[1]);
	T_EQ_INT(fk[3].seen_denied, GH_DENY);
	teardown();
}

/* ------------------------------------------------------------------ */
/* Runtime.                                                            */

static void
test_runtime_init_fini(void)
{
	reset_fakes();
	if (setup(3) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_EQ_INT(rt->ninit, 3);
	T_EQ_INT(fk[0].inits, 1);
	T_EQ_INT(fk[2].inits, 1);
	T_CHECK(cfg->plugins[1].base == base);
	T_EQ_INT(rt->nbound[GH_HOOK_MAIL], 3);
	T_EQ_INT(rt->nbound[GH_HOOK_DENY], 0);
	T_CHECK(gh_runtime_has_hook(rt, GH_HOOK_RCPT));
	T_CHECK(!gh_runtime_has_hook(rt, GH_HOOK_DENY));
	gh_runtime_free(rt);
	rt = NULL;
	T_EQ_INT(nfini, 3);
	T_EQ_INT(fini_order[0], 2);
	T_EQ_INT(fini_order[1], 1);
	T_EQ_INT(fini_order[2], 0);
	teardown();
}

/* Hooks a plugin's init called idle are not bound: the others are, in
 * order, and a hook nobody is left on is reported absent. */
static void
test_runtime_idle_hooks(void)
{
	reset_fakes();
	fk[0].idle = GH_HOOK_BIT(GH_HOOK_MAIL) | GH_HOOK_BIT(GH_HOOK_HELO);
	fk[1].idle = GH_HOOK_BIT(GH_HOOK_MAIL);
	if (setup(3) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_EQ_INT(rt->nbound[GH_HOOK_MAIL], 1);
	T_CHECK(rt->bound[GH_HOOK_MAIL][0].plugin == &cfg->plugins[2]);
	T_EQ_INT(rt->nbound[GH_HOOK_HELO], 2);
	T_CHECK(rt->bound[GH_HOOK_HELO][0].plugin == &cfg->plugins[1]);
	T_CHECK(rt->bound[GH_HOOK_HELO][1].plugin == &cfg->plugins[2]);
	T_EQ_INT(rt->nbound[GH_HOOK_RCPT], 3);
	teardown();
	reset_fakes();
	fk[0].idle = GH_HOOK_BIT(GH_HOOK_DELIVERED);
	if (setup(1) < 0) {
		T_CHECK(0);
		teardown();
		return;
	}
	T_CHECK(!gh_runtime_has_hook(rt, GH_HOOK_DELIVERED));
	T_CHECK(gh_runtime_has_hook(rt, GH_HOOK_BOUNCE));
	teardown();
}

static void
test_runtime_init_failure(void)
{
	char err[128] = "";
	struct gh_pool *p;
	size_t i;

	reset_fakes();
	fk[1].init_fail = 1;
	base = event_base_new();
	p = gh_pool_create();
	cfg = gh_palloc(p, sizeof(*cfg));
	cfg->pool = p;
	cfg->nplugins = 3;
	cfg->plugins = gh_palloc(p, 3 * sizeof(*cfg->plugins));
	for (i = 0; i < 3; i++) {
		cfg->plugins[i].mod = &fake_module;
		cfg->plugins[i].name = gh_psprintf(p, "p%zu", i);
		cfg->plugins[i].conf = &fk[i];
		cfg->plugins[i].timeout = 30;
	}
	rt = gh_runtime_create(cfg, base, err, sizeof(err));
	T_CHECK(rt == NULL);
	T_EQ_STR(err, "p1: init failed");
	T_EQ_INT(fk[0].finis, 1);
	T_EQ_INT(fk[1].finis, 0);
	T_EQ_INT(fk[2].inits, 0);
	teardown();
}

int
main(void)
{
	gh_log_set_level(GH_LOG_ERR);

	T_RUN(test_first_non_cont_ends_chain);
	T_RUN(test_ok_ends_chain);
	T_RUN(test_stop_ends_chain);
	T_RUN(test_all_cont);
	T_RUN(test_no_plugins);
	test_wire_table();
	test_runs_all_hooks();
	T_RUN(test_capabilities_cap_add);

	test_shadow_rejects_become_cont();
	T_RUN(test_shadow_ok_counts);
	T_RUN(test_shadow_then_real_deny);

	T_RUN(test_reply_custom);
	T_RUN(test_reply_ok_custom);
	T_RUN(test_reply_no_wire_hook);
	test_reply_class_rules();
	T_RUN(test_reply_text_cleaned);
	T_RUN(test_reply_text_nul);
	T_RUN(test_reply_text_bounded);
	T_RUN(test_reply_reset_between_plugins);

	T_RUN(test_rcpt_cont_not_relaying);
	T_RUN(test_rcpt_cont_relaying);
	T_RUN(test_rcpt_ok_not_relaying);

	T_RUN(test_results_on_conn);
	T_RUN(test_results_on_txn);

	T_RUN(test_invalid_verdict);
	T_RUN(test_invalid_verdict_count);

	T_RUN(test_again_resume_from_timer);
	T_RUN(test_again_resume_cont_goes_on);
	T_RUN(test_again_reply_when_resuming);
	T_RUN(test_again_resume_with_again);
	T_RUN(test_again_at_runs_all_hook);
	T_RUN(test_resume_synchronously);
	T_RUN(test_resume_synchronously_cont);
	T_RUN(test_resume_early_then_return_verdict);
	T_RUN(test_resume_clears_deadline);

	T_RUN(test_timeout);
	T_RUN(test_timeout_shadow);

	T_RUN(test_cancel_pending);
	T_RUN(test_cancel_null);

	T_RUN(test_deny_hook_ok_continues);
	T_RUN(test_deny_hook_ok_then_next_decides);
	T_RUN(test_deny_hook_cont_keeps_deny);
	T_RUN(test_deny_hook_deny_keeps_original);
	T_RUN(test_deny_hook_not_for_ok);
	T_RUN(test_deny_hook_pending);
	T_RUN(test_deny_hook_cancel);
	T_RUN(test_deny_hook_after_resume);

	T_RUN(test_runtime_init_fini);
	T_RUN(test_runtime_init_failure);
	T_RUN(test_runtime_idle_hooks);

	return t_done("test_chain");
}
