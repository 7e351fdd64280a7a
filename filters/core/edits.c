/*
 * edits.c - the header and envelope edits plugins ask for.
 *
 * Edits are recorded in order on the transaction.  relayd applies them
 * to what it queues; milterd replays them through smfi_* at end of
 * message, the only time libmilter allows modifications.
 */
#include "config.h"

#include <string.h>

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
