/*
 * notes.c - connection and transaction state shared between plugins:
 * notes (key/value), the results store, ids, and the lifetime of
 * connections and transactions with their pools.
 *
 * Notes and results are short lists: a handful of plugins write a few
 * entries each, so a linked list in the owner's pool is both the
 * simplest and the fastest structure.
 */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

struct note {
	const char *key;
	const char *value;
	void *ptr;
	struct note *next;
};

struct gh_notes {
	struct gh_pool *pool;
	struct note *head;
};

struct gh_results {
	struct gh_pool *pool;
	struct gh_result *head, *tail;
};

struct gh_notes *
gh_notes_new(struct gh_pool *p)
{
	struct gh_notes *n = gh_palloc(p, sizeof(*n));

	n->pool = p;
	return n;
}

static struct note *
note_find(const struct gh_notes *n, const char *key)
{
	struct note *e;

	for (e = n->head; e != NULL; e = e->next)
		if (strcmp(e->key, key) == 0)
			return e;
	return NULL;
}

static struct note *
note_slot(struct gh_notes *n, const char *key)
{
	struct note *e = note_find(n, key);

	if (e == NULL) {
		e = gh_palloc(n->pool, sizeof(*e));
		e->key = gh_pstrdup(n->pool, key);
		e->next = n->head;
		n->head = e;
	}
	return e;
}

void
gh_note_set(struct gh_notes *n, const char *key, const char *value)
{
	note_slot(n, key)->value = gh_pstrdup(n->pool, value);
}

const char *
gh_note_get(const struct gh_notes *n, const char *key)
{
	const struct note *e = note_find(n, key);

	return e != NULL ? e->value : NULL;
}

void
gh_note_setp(struct gh_notes *n, const char *key, void *ptr)
{
	note_slot(n, key)->ptr = ptr;
}

void *
gh_note_getp(const struct gh_notes *n, const char *key)
{
	const struct note *e = note_find(n, key);

	return e != NULL ? e->ptr : NULL;
}

struct gh_results *
gh_results_new(struct gh_pool *p)
{
	struct gh_results *r = gh_palloc(p, sizeof(*r));

	r->pool = p;
	return r;
}

void
gh_results_add(struct gh_results *r, const char *plugin,
	       enum gh_result_kind kind, const char *msg)
{
	struct gh_result *e = gh_palloc(r->pool, sizeof(*e));

	e->plugin = gh_pstrdup(r->pool, plugin);
	e->kind = kind;
	e->msg = msg != NULL ? gh_pstrdup(r->pool, msg) : NULL;
	if (r->tail != NULL)
		r->tail->next = e;
	else
		r->head = e;
	r->tail = e;
}

const struct gh_result *
gh_results_first(const struct gh_results *r)
{
	return r != NULL ? r->head : NULL;
}

/* The last result a plugin recorded is its verdict on the matter. */
const struct gh_result *
gh_results_get(const struct gh_results *r, const char *plugin)
{
	const struct gh_result *e, *found = NULL;

	for (e = gh_results_first(r); e != NULL; e = e->next)
		if (strcmp(e->plugin, plugin) == 0)
			found = e;
	return found;
}

const char *
gh_result_kind_name(enum gh_result_kind k)
{
	static const char *const names[] = { "pass", "fail", "skip", "err" };

	return (unsigned)k < 4 ? names[k] : "?";
}

static size_t
results_append(const struct gh_results *r, char *buf, size_t n, size_t off)
{
	const struct gh_result *e;
	char clean[256];

	for (e = gh_results_first(r); e != NULL && off < n; e = e->next) {
		int w;

		if (e->msg != NULL) {
			gh_sanitize(clean, sizeof(clean), e->msg,
				    strlen(e->msg));
			w = snprintf(buf + off, n - off, "%s%s=%s(%s)",
				     off ? " " : "", e->plugin,
				     gh_result_kind_name(e->kind), clean);
		} else {
			w = snprintf(buf + off, n - off, "%s%s=%s",
				     off ? " " : "", e->plugin,
				     gh_result_kind_name(e->kind));
		}
		if (w < 0)
			break;
		off += (size_t)w;
	}
	return off < n ? off : n - 1;
}

size_t
gh_results_format(const struct gh_results *conn, const struct gh_results *txn,
		  char *buf, size_t n)
{
	size_t off;

	if (n == 0)
		return 0;
	buf[0] = '\0';
	off = results_append(conn, buf, n, 0);
	return results_append(txn, buf, n, off);
}

/*
 * Ids: 9 base-32 digits of microseconds, then pid and a counter, so ids
 * sort by time and never repeat across the workers of one host.  The
 * counter is atomic: milterd makes ids from several threads.
 */
void
gh_make_id(char *buf, size_t n)
{
	static const char digits[] = "0123456789BCDFGHJKLMNPQRSTVWXYZ";
	static unsigned counter;
	struct timespec ts;
	unsigned long long v;
	char tmp[32];
	int i;

	clock_gettime(CLOCK_REALTIME, &ts);
	v = (unsigned long long)ts.tv_sec * 1000000ULL +
	    (unsigned long long)ts.tv_nsec / 1000;
	for (i = 10; i >= 0; i--) {
		tmp[i] = digits[v % 31];
		v /= 31;
	}
	snprintf(tmp + 11, sizeof(tmp) - 11, "%05x%03x",
		 (unsigned)getpid() & 0xfffff,
		 __atomic_fetch_add(&counter, 1, __ATOMIC_RELAXED) & 0xfff);
	snprintf(buf, n, "%s", tmp);
}

struct gh_conn *
gh_conn_new(struct event_base *base)
{
	struct gh_pool *p = gh_pool_create();
	struct gh_conn *c = gh_palloc(p, sizeof(*c));
	char id[32];

	c->pool = p;
	c->notes = gh_notes_new(p);
	c->results = gh_results_new(p);
	c->base = base;
	gh_make_id(id, sizeof(id));
	c->id = gh_pstrdup(p, id);
	return c;
}

void
gh_conn_free(struct gh_conn *c)
{
	if (c == NULL)
		return;
	gh_txn_free(c);
	gh_pool_destroy(c->pool);
}

struct gh_txn *
gh_txn_new(struct gh_conn *c)
{
	struct gh_pool *p;
	struct gh_txn *t;
	char id[32];

	gh_txn_free(c);
	p = gh_pool_create();
	t = gh_palloc(p, sizeof(*t));
	t->pool = p;
	t->notes = gh_notes_new(p);
	t->results = gh_results_new(p);
	gh_make_id(id, sizeof(id));
	t->id = gh_pstrdup(p, id);
	c->txn = t;
	return t;
}

void
gh_txn_free(struct gh_conn *c)
{
	if (c->txn == NULL)
		return;
	gh_pool_destroy(c->txn->pool);
	c->txn = NULL;
}
