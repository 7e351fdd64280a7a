/*
 * replies.c - the wire reply of every verdict at every hook.
 *
 * This table is the single source of truth for what a verdict means on
 * the wire; doc/verdicts (the README's table) is generated from the same
 * rows by `relayd -R`.  It follows Haraka's *_respond methods, with three
 * deliberate differences: STOP and DISCONNECT are defined at every hook
 * (STOP ends the chain and takes the hook's positive outcome; DISCONNECT
 * answers 421 and closes, as RFC 5321 3.8 asks of a server that ends a
 * session), and every reply carries an RFC 3463 enhanced status code.
 */
#include "config.h"

#include <stddef.h>

#include "core.h"

#define R(c, e, t) { c, e, t, GH_WIRE_REPLY }
#define C(c, e, t) { c, e, t, GH_WIRE_CLOSE }
#define L(c, e, t) { c, e, t, GH_WIRE_LOOP }
#define N { 0, NULL, NULL, GH_WIRE_NEXT }

#define CLOSE_421 C(421, "4.7.0", "Closing connection")

/* Rows: CONT, OK, DENY, DENYSOFT, DENYDISCONNECT, DENYSOFTDISCONNECT,
 * DISCONNECT, STOP. */
static const struct gh_wire connect_row[] = {
	R(220, NULL, "ESMTP ready"),
	R(220, NULL, "ESMTP ready"),
	L(554, "5.7.1", "Your host is not welcome here"),
	L(421, "4.7.0", "Service temporarily unavailable"),
	C(554, "5.7.1", "Your host is not welcome here"),
	C(421, "4.7.0", "Service temporarily unavailable"),
	CLOSE_421,
	R(220, NULL, "ESMTP ready"),
};

static const struct gh_wire helo_row[] = {
	R(250, NULL, "Hello"),
	R(250, NULL, "Hello"),
	R(550, "5.7.1", "HELO rejected"),
	R(450, "4.7.1", "HELO temporarily rejected"),
	C(550, "5.7.1", "HELO rejected"),
	C(421, "4.7.1", "HELO temporarily rejected"),
	CLOSE_421,
	R(250, NULL, "Hello"),
};

static const struct gh_wire unrecognized_row[] = {
	R(500, "5.5.1", "Unrecognized command"),
	R(250, "2.0.0", "OK"),
	R(500, "5.5.1", "Unrecognized command"),
	R(450, "4.5.1", "Command temporarily refused"),
	C(521, "5.5.1", "Unrecognized command"),
	C(421, "4.5.1", "Command temporarily refused"),
	CLOSE_421,
	R(500, "5.5.1", "Unrecognized command"),
};

static const struct gh_wire auth_row[] = {
	R(535, "5.7.8", "Authentication credentials invalid"),
	R(235, "2.7.0", "Authentication successful"),
	R(535, "5.7.8", "Authentication credentials invalid"),
	R(454, "4.7.0", "Temporary authentication failure"),
	C(535, "5.7.8", "Authentication credentials invalid"),
	C(421, "4.7.0", "Temporary authentication failure"),
	CLOSE_421,
	R(535, "5.7.8", "Authentication credentials invalid"),
};

static const struct gh_wire mail_row[] = {
	R(250, "2.1.0", "Sender OK"),
	R(250, "2.1.0", "Sender OK"),
	R(550, "5.7.1", "Sender rejected"),
	R(450, "4.7.1", "Sender temporarily rejected"),
	C(550, "5.7.1", "Sender rejected"),
	C(421, "4.7.1", "Sender temporarily rejected"),
	CLOSE_421,
	R(250, "2.1.0", "Sender OK"),
};

/* rcpt's CONT and STOP depend on relaying: see gh_wire_reply(). */
static const struct gh_wire rcpt_row[] = {
	N,
	N,
	R(550, "5.7.1", "Recipient rejected"),
	R(450, "4.7.1", "Recipient temporarily rejected"),
	C(550, "5.7.1", "Recipient rejected"),
	C(421, "4.7.1", "Recipient temporarily rejected"),
	CLOSE_421,
	N,
};

static const struct gh_wire rcpt_not_relaying =
	R(550, "5.7.1", "I cannot deliver mail for that recipient: relay access denied");

static const struct gh_wire rcpt_ok_row[] = {
	R(250, "2.1.5", "Recipient OK"),
	R(250, "2.1.5", "Recipient OK"),
	R(550, "5.7.1", "Recipient rejected"),
	R(450, "4.7.1", "Recipient temporarily rejected"),
	C(550, "5.7.1", "Recipient rejected"),
	C(421, "4.7.1", "Recipient temporarily rejected"),
	CLOSE_421,
	R(250, "2.1.5", "Recipient OK"),
};

static const struct gh_wire data_row[] = {
	R(354, NULL, "End data with <CR><LF>.<CR><LF>"),
	R(354, NULL, "End data with <CR><LF>.<CR><LF>"),
	R(554, "5.7.1", "Message refused"),
	R(451, "4.7.1", "Message temporarily refused"),
	C(554, "5.7.1", "Message refused"),
	C(421, "4.7.1", "Message temporarily refused"),
	CLOSE_421,
	R(354, NULL, "End data with <CR><LF>.<CR><LF>"),
};

/* data_headers and data_post: the reply goes out after the final dot. */
static const struct gh_wire data_post_row[] = {
	N,
	N,
	R(550, "5.7.1", "Message rejected"),
	R(450, "4.7.1", "Message temporarily rejected"),
	C(550, "5.7.1", "Message rejected"),
	C(421, "4.7.1", "Message temporarily rejected"),
	CLOSE_421,
	N,
};

static const struct gh_wire max_data_row[] = {
	R(552, "5.3.4", "Message size exceeds fixed maximum message size"),
	R(552, "5.3.4", "Message size exceeds fixed maximum message size"),
	R(552, "5.3.4", "Message size exceeds fixed maximum message size"),
	R(450, "4.3.4", "Message too big for now"),
	C(552, "5.3.4", "Message size exceeds fixed maximum message size"),
	C(421, "4.3.4", "Message too big for now"),
	CLOSE_421,
	R(552, "5.3.4", "Message size exceeds fixed maximum message size"),
};

/* Haraka: CONT at queue means nobody took the message: 451. */
static const struct gh_wire queue_row[] = {
	R(451, "4.3.0", "Queuing declined or disabled, try again later"),
	N,
	R(550, "5.7.1", "Message rejected"),
	R(450, "4.3.0", "Message temporarily rejected"),
	C(550, "5.7.1", "Message rejected"),
	C(421, "4.3.0", "Message temporarily rejected"),
	CLOSE_421,
	R(451, "4.3.0", "Queuing declined or disabled, try again later"),
};

static const struct gh_wire queue_ok_reply =
	R(250, "2.0.0", "Message accepted");

static const struct gh_wire no_reply = { 0, NULL, NULL, GH_WIRE_NONE };

static const struct gh_wire *
hook_row(enum gh_hook h)
{
	switch (h) {
	case GH_HOOK_LOOKUP_RDNS:
	case GH_HOOK_CONNECT:
		return connect_row;
	case GH_HOOK_HELO:
	case GH_HOOK_EHLO:
		return helo_row;
	case GH_HOOK_UNRECOGNIZED_COMMAND:
		return unrecognized_row;
	case GH_HOOK_AUTH:
		return auth_row;
	case GH_HOOK_MAIL:
		return mail_row;
	case GH_HOOK_RCPT:
		return rcpt_row;
	case GH_HOOK_RCPT_OK:
		return rcpt_ok_row;
	case GH_HOOK_DATA:
		return data_row;
	case GH_HOOK_DATA_HEADERS:
	case GH_HOOK_DATA_POST:
		return data_post_row;
	case GH_HOOK_MAX_DATA_EXCEEDED:
		return max_data_row;
	case GH_HOOK_QUEUE:
		return queue_row;
	default:
		return NULL;
	}
}

const struct gh_wire *
gh_wire_reply(enum gh_hook h, enum gh_verdict v, int relaying)
{
	const struct gh_wire *row;

	if (h == GH_HOOK_QUEUE_OK)
		return &queue_ok_reply;
	row = hook_row(h);
	if (row == NULL || v >= GH_AGAIN)
		return &no_reply;
	/* Haraka: a recipient nobody claimed is accepted only from a client
	 * that may relay. */
	if (h == GH_HOOK_RCPT && (v == GH_CONT || v == GH_STOP) && !relaying)
		return &rcpt_not_relaying;
	return &row[v];
}

int
gh_verdict_is_reject(enum gh_verdict v)
{
	switch (v) {
	case GH_DENY:
	case GH_DENYSOFT:
	case GH_DENYDISCONNECT:
	case GH_DENYSOFTDISCONNECT:
	case GH_DISCONNECT:
		return 1;
	default:
		return 0;
	}
}
