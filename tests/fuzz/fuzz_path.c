/*
 * fuzz_path.c - the MAIL FROM / RCPT TO argument parser, gh_path_parse()
 * (filters/core/address.c), with its parameter lookup and the domain
 * check.
 *
 * The first octet chooses MAIL or RCPT; the rest is the text after
 * "MAIL FROM:" or "RCPT TO:" as the session hands it over (one line, no
 * CRLF, cut at the first NUL as a C string).  Properties: an accepted
 * path keeps no control octet in its mailbox, parts or parameters (they
 * reach Received headers, the next hop and the logs); parameter
 * keywords are non-empty and upper-case and at most GH_MAX_PARAMS; a
 * null path has no mailbox; every accepted domain that is not a literal
 * passes gh_domain_valid(); a refusal has a reason.
 */
#include "config.h"

#include <string.h>

#include "core.h"
#include "fuzz.h"

static void
check_path(const struct gh_path *p, enum gh_path_kind kind)
{
	const struct gh_addr *a = &p->addr;
	size_t i;
	const char *k;

	FUZZ_ASSERT(a->mailbox != NULL);
	FUZZ_ASSERT(fuzz_no_ctl(a->mailbox) && fuzz_no_ctl(a->local) &&
	    fuzz_no_ctl(a->domain));
	if (a->is_null) {
		FUZZ_ASSERT(kind == GH_PATH_MAIL);
		FUZZ_ASSERT(a->mailbox[0] == '\0');
	}
	if (a->domain != NULL && !a->is_literal)
		FUZZ_ASSERT(gh_domain_valid(a->domain));
	FUZZ_ASSERT(p->nparams <= GH_MAX_PARAMS);
	for (i = 0; i < p->nparams; i++) {
		k = p->params[i].key;
		FUZZ_ASSERT(k != NULL && k[0] != '\0');
		FUZZ_ASSERT(fuzz_no_ctl(k) && fuzz_no_ctl(p->params[i].value));
		for (; *k != '\0'; k++)
			FUZZ_ASSERT(!(*k >= 'a' && *k <= 'z'));
		/* Duplicates are refused, so the lookup finds this one. */
		FUZZ_ASSERT(gh_path_param(p, p->params[i].key) != NULL);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gh_pool *pool;
	struct gh_path path;
	enum gh_path_kind kind;
	const char *why = NULL;
	char *s;

	if (size < 1 || size > 2048)
		return 0;
	kind = data[0] & 1 ? GH_PATH_RCPT : GH_PATH_MAIL;
	if ((s = malloc(size)) == NULL)
		return 0;
	memcpy(s, data + 1, size - 1);
	s[size - 1] = '\0';
	pool = gh_pool_create();
	memset(&path, 0, sizeof(path));
	if (gh_path_parse(pool, s, kind, &path, &why) == 0)
		check_path(&path, kind);
	else
		FUZZ_ASSERT(why != NULL);
	(void)gh_domain_valid(s);
	gh_pool_destroy(pool);
	free(s);
	return 0;
}
