/*
 * names.c - the printable names of verdicts and hooks.
 *
 * These names are public: they appear in configuration (test plugins,
 * rules), in log lines and in the decision trace.
 */
#include "config.h"

#include <strings.h>

#include "core.h"

static const char *const verdict_names[GH_VERDICT_COUNT] = {
	[GH_CONT] = "CONT",
	[GH_OK] = "OK",
	[GH_DENY] = "DENY",
	[GH_DENYSOFT] = "DENYSOFT",
	[GH_DENYDISCONNECT] = "DENYDISCONNECT",
	[GH_DENYSOFTDISCONNECT] = "DENYSOFTDISCONNECT",
	[GH_DISCONNECT] = "DISCONNECT",
	[GH_STOP] = "STOP",
	[GH_AGAIN] = "AGAIN",
};

static const char *const hook_names[GH_HOOK_COUNT] = {
	[GH_HOOK_CONNECT_INIT] = "connect_init",
	[GH_HOOK_LOOKUP_RDNS] = "lookup_rdns",
	[GH_HOOK_CONNECT] = "connect",
	[GH_HOOK_HELO] = "helo",
	[GH_HOOK_EHLO] = "ehlo",
	[GH_HOOK_CAPABILITIES] = "capabilities",
	[GH_HOOK_UNRECOGNIZED_COMMAND] = "unrecognized_command",
	[GH_HOOK_AUTH] = "auth",
	[GH_HOOK_MAIL] = "mail",
	[GH_HOOK_RCPT] = "rcpt",
	[GH_HOOK_RCPT_OK] = "rcpt_ok",
	[GH_HOOK_DATA] = "data",
	[GH_HOOK_DATA_HEADERS] = "data_headers",
	[GH_HOOK_DATA_POST] = "data_post",
	[GH_HOOK_MAX_DATA_EXCEEDED] = "max_data_exceeded",
	[GH_HOOK_QUEUE] = "queue",
	[GH_HOOK_QUEUE_OK] = "queue_ok",
	[GH_HOOK_RESET_TRANSACTION] = "reset_transaction",
	[GH_HOOK_DISCONNECT] = "disconnect",
	[GH_HOOK_DENY] = "deny",
	[GH_HOOK_GET_MX] = "get_mx",
	[GH_HOOK_DEFERRED] = "deferred",
	[GH_HOOK_BOUNCE] = "bounce",
	[GH_HOOK_DELIVERED] = "delivered",
};

const char *
gh_verdict_name(enum gh_verdict v)
{
	return (unsigned)v < GH_VERDICT_COUNT ? verdict_names[v] : "?";
}

const char *
gh_hook_name(enum gh_hook h)
{
	return (unsigned)h < GH_HOOK_COUNT ? hook_names[h] : "?";
}

int
gh_verdict_from_name(const char *name)
{
	int i;

	for (i = 0; i < GH_VERDICT_COUNT; i++)
		if (strcasecmp(name, verdict_names[i]) == 0)
			return i;
	return -1;
}

int
gh_hook_from_name(const char *name)
{
	int i;

	for (i = 0; i < GH_HOOK_COUNT; i++)
		if (strcasecmp(name, hook_names[i]) == 0)
			return i;
	return -1;
}
