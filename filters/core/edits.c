/*
 * edits.c - the header and envelope edits plugins ask for.
 *
 * Edits are recorded in order on the transaction.  relayd applies them
 * to what it queues; milterd replays them through smfi_* at end of
 * message, the only time libmilter allows modifications.
 */
#include "config.h"

#include <string.h>
#include <strings.h>

#include "core.h"

static void
edit_push(struct gh_txn *t, enum gh_edit_kind kind, const char *name,
	  const char *value, size_t idx)
{
	struct gh_edit *e = gh_palloc(t->pool, sizeof(*e)), **tail;

	e->kind = kind;
	e->name = gh_pstrdup(t->pool, name);
	e->value = gh_pstrdup(t->pool, value);
	e->idx = idx;
	for (tail = &t->edits; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = e;
}

void
gh_header_add(struct gh_txn *t, const char *name, const char *value)
{
	edit_push(t, GH_EDIT_HDR_ADD, name, value, 0);
}

void
gh_header_insert(struct gh_txn *t, size_t idx, const char *name,
		 const char *value)
{
	edit_push(t, GH_EDIT_HDR_INSERT, name, value, idx);
}

void
gh_header_change(struct gh_txn *t, const char *name, size_t nth,
		 const char *value)
{
	edit_push(t, GH_EDIT_HDR_CHANGE, name, value, nth);
}

static void
addr_from_mailbox(struct gh_pool *p, struct gh_addr *a, const char *mailbox)
{
	const char *at = strrchr(mailbox, '@');

	a->mailbox = gh_pstrdup(p, mailbox);
	if (at != NULL) {
		a->local = gh_pstrndup(p, mailbox, (size_t)(at - mailbox));
		a->domain = gh_pstrdup(p, at + 1);
	} else {
		a->local = a->mailbox;
	}
	a->is_null = mailbox[0] == '\0';
}

void
gh_rcpt_add(struct gh_txn *t, const char *mailbox)
{
	struct gh_rcpt *r = gh_palloc(t->pool, sizeof(*r)), **tail;

	addr_from_mailbox(t->pool, &r->path.addr, mailbox);
	for (tail = &t->rcpts; *tail != NULL; tail = &(*tail)->next)
		;
	*tail = r;
	t->nrcpts++;
	edit_push(t, GH_EDIT_RCPT_ADD, mailbox, NULL, 0);
}

void
gh_rcpt_remove(struct gh_txn *t, struct gh_rcpt *r)
{
	if (r->removed)
		return;
	r->removed = 1;
	edit_push(t, GH_EDIT_RCPT_DEL, r->path.addr.mailbox, NULL, 0);
}

void
gh_sender_change(struct gh_txn *t, const char *mailbox)
{
	struct gh_path *p = gh_palloc(t->pool, sizeof(*p));

	addr_from_mailbox(t->pool, &p->addr, mailbox);
	t->mail_from = p;
	edit_push(t, GH_EDIT_FROM, mailbox, NULL, 0);
}

void
gh_quarantine(struct gh_txn *t, const char *reason)
{
	edit_push(t, GH_EDIT_QUARANTINE, reason, NULL, 0);
}

/* ------------------------------------------------------------------ */
/* The edited message, as relayd queues or forwards it.                 */

struct out_ctx {
	int (*out)(void *, const char *, size_t);
	void *arg;
};

/* A header a plugin built must not smuggle a line break: keep CRLF only
 * where it folds (followed by SP or HTAB), anything else becomes SP. */
static int
put_header(struct out_ctx *o, const char *name, const char *value)
{
	char buf[1024];
	size_t n = 0, i;
	int rc;

	if ((rc = o->out(o->arg, name, strlen(name))) != 0 ||
	    (rc = o->out(o->arg, ": ", 2)) != 0)
		return rc;
	for (i = 0; value[i] != '\0'; i++) {
		char c = value[i];

		if (c == '\r' && value[i + 1] == '\n' &&
		    (value[i + 2] == ' ' || value[i + 2] == '\t')) {
			buf[n++] = '\r';
			buf[n++] = '\n';
			i++;
		} else {
			buf[n++] = (c == '\r' || c == '\n' || c == '\0') ?
			    ' ' : c;
		}
		if (n >= sizeof(buf) - 2) {
			if ((rc = o->out(o->arg, buf, n)) != 0)
				return rc;
			n = 0;
		}
	}
	if (n > 0 && (rc = o->out(o->arg, buf, n)) != 0)
		return rc;
	return o->out(o->arg, "\r\n", 2);
}

static int
needs_rebuild(const struct gh_txn *t)
{
	const struct gh_edit *e;

	for (e = t->edits; e != NULL; e = e->next)
		if (e->kind == GH_EDIT_HDR_ADD ||
		    e->kind == GH_EDIT_HDR_CHANGE ||
		    (e->kind == GH_EDIT_HDR_INSERT && e->idx > 0))
			return 1;
	return 0;
}

/* Inserts at the top: the newest first, as milter's insheader(0). */
static int
put_top_inserts(struct out_ctx *o, const struct gh_edit *e)
{
	int rc;

	if (e == NULL)
		return 0;
	if ((rc = put_top_inserts(o, e->next)) != 0)
		return rc;
	if (e->kind == GH_EDIT_HDR_INSERT && e->idx == 0)
		return put_header(o, e->name, e->value);
	return 0;
}

/* The value of original header i after the edits: NULL if deleted. */
static const char *
edited_value(const struct gh_txn *t, size_t i)
{
	const struct gh_header *h = gh_msg_header_at(t->msg, i);
	const char *v = h->value;
	const struct gh_edit *e;
	size_t j, nth = 0;

	for (j = 0; j <= i; j++)
		if (strcasecmp(gh_msg_header_at(t->msg, j)->name,
			       h->name) == 0)
			nth++;
	for (e = t->edits; e != NULL; e = e->next)
		if (e->kind == GH_EDIT_HDR_CHANGE && e->idx == nth &&
		    strcasecmp(e->name, h->name) == 0)
			v = e->value;
	return v;
}

static int
put_rebuilt_headers(struct out_ctx *o, const struct gh_txn *t)
{
	const struct gh_edit *e;
	size_t i, n = gh_msg_header_count(t->msg);
	int rc;

	for (i = 0; i <= n; i++) {
		/* An index past the last header appends, as
		 * smfi_insheader does in milterd: never dropped. */
		for (e = t->edits; e != NULL; e = e->next)
			if (e->kind == GH_EDIT_HDR_INSERT && e->idx > 0 &&
			    (e->idx == i || (i == n && e->idx > n)) &&
			    (rc = put_header(o, e->name, e->value)) != 0)
				return rc;
		if (i < n) {
			const char *v = edited_value(t, i);

			if (v != NULL && (rc = put_header(o,
			    gh_msg_header_at(t->msg, i)->name, v)) != 0)
				return rc;
		}
	}
	for (e = t->edits; e != NULL; e = e->next)
		if (e->kind == GH_EDIT_HDR_ADD &&
		    (rc = put_header(o, e->name, e->value)) != 0)
			return rc;
	return o->out(o->arg, "\r\n", 2);
}

int
gh_txn_output(struct gh_txn *t, int (*out)(void *, const char *, size_t),
	      void *arg)
{
	struct out_ctx o = { out, arg };
	struct gh_msg_reader *r;
	uint64_t skip = 0;
	char buf[16384];
	ssize_t n;
	int rc;

	if ((rc = put_top_inserts(&o, t->edits)) != 0)
		return rc;
	if (needs_rebuild(t)) {
		if ((rc = put_rebuilt_headers(&o, t)) != 0)
			return rc;
		skip = gh_msg_body_offset(t->msg);
	}
	r = gh_msg_reader_open(t->pool, t->msg);
	if (r == NULL)
		return -1;
	while ((n = gh_msg_read(r, buf, sizeof(buf))) > 0) {
		size_t off = 0;

		if (skip > 0) {
			off = skip < (uint64_t)n ? (size_t)skip : (size_t)n;
			skip -= off;
		}
		if ((size_t)n > off && (rc = out(arg, buf + off,
						 (size_t)n - off)) != 0)
			return rc;
	}
	return n < 0 ? -1 : 0;
}
