/*
 * fuzz_xclient.c - xclient_parse() (relayd/proxy.c) on arbitrary text.
 *
 * Properties: an accepted value holds no control octet (it would reach
 * a Received header and the logs), fits its bound, and the decoded
 * ports and families agree with the text; a refusal has a reason.
 */
#include "config.h"

#include <string.h>

#include "fuzz.h"
#include "proxy.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct xclient x;
	char *args;
	size_t i;

	if (size > 4096)
		return 0;
	if ((args = malloc(size + 1)) == NULL)
		return 0;
	memcpy(args, data, size);
	args[size] = '\0';
	if (xclient_parse(args, &x) < 0) {
		FUZZ_ASSERT(x.why != NULL);
		free(args);
		return 0;
	}
	for (i = 0; i < XCLIENT_NATTRS; i++) {
		FUZZ_ASSERT(strlen(x.attr[i].value) <= XCLIENT_VALUE_MAX);
		FUZZ_ASSERT(fuzz_no_ctl(x.attr[i].value));
		if (x.attr[i].state != XCLIENT_VALUE)
			FUZZ_ASSERT(x.attr[i].value[0] == '\0');
		else
			FUZZ_ASSERT(x.attr[i].value[0] != '\0');
	}
	if (x.attr[XCLIENT_ADDR].state == XCLIENT_VALUE)
		FUZZ_ASSERT(x.addr_family == AF_INET ||
		    x.addr_family == AF_INET6);
	if (x.attr[XCLIENT_PORT].state == XCLIENT_VALUE)
		FUZZ_ASSERT((unsigned long)x.port ==
		    strtoul(x.attr[XCLIENT_PORT].value, NULL, 10));
	free(args);
	return 0;
}
