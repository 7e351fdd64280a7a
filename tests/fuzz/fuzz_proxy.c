/*
 * fuzz_proxy.c - proxy_parse() (relayd/proxy.c) on arbitrary octets.
 *
 * Properties: the status is one of the three; a complete header is no
 * longer than the input and parses the same from exactly its own
 * octets, and one octet fewer asks for more; NEED_MORE is never given
 * past the largest header; an error has a reason.
 */
#include "config.h"

#include <string.h>

#include "fuzz.h"
#include "proxy.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_info pi, again;
	size_t used = 0, used2 = 0;
	enum proxy_status st;

	st = proxy_parse(data, size, &pi, &used);
	FUZZ_ASSERT(st == PROXY_OK || st == PROXY_NEED_MORE ||
	    st == PROXY_ERROR);
	if (st == PROXY_ERROR)
		FUZZ_ASSERT(pi.why != NULL);
	if (st == PROXY_NEED_MORE)
		FUZZ_ASSERT(size < PROXY_MAX_HEADER);
	if (st != PROXY_OK)
		return 0;
	FUZZ_ASSERT(used > 0 && used <= size && used <= PROXY_MAX_HEADER);
	FUZZ_ASSERT(pi.version == 1 || pi.version == 2);
	FUZZ_ASSERT(pi.local || pi.family == AF_INET ||
	    pi.family == AF_INET6);
	FUZZ_ASSERT(fuzz_no_ctl(pi.src_addr) && fuzz_no_ctl(pi.dst_addr));
	FUZZ_ASSERT(proxy_parse(data, used, &again, &used2) == PROXY_OK);
	FUZZ_ASSERT(used2 == used);
	FUZZ_ASSERT(strcmp(again.src_addr, pi.src_addr) == 0);
	FUZZ_ASSERT(proxy_parse(data, used - 1, &again, &used2) ==
	    PROXY_NEED_MORE);
	return 0;
}
