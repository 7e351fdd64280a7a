/*
 * fuzz.h - shared by the libFuzzer harnesses in tests/fuzz.
 *
 * Each harness feeds one parser relayd owns with arbitrary octets and
 * checks, besides what AddressSanitizer and UBSan catch, the properties
 * the rest of relayd relies on (no control octet in what is kept, no
 * over-read, the same result however the input is cut).  A broken
 * property aborts with a message, which libFuzzer reports as a crash
 * and saves the input for.
 */
#ifndef GATEHOUSE_FUZZ_H
#define GATEHOUSE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_ASSERT(cond)                                                    \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "%s:%d: property broken: %s\n",      \
			    __FILE__, __LINE__, #cond);                      \
			abort();                                             \
		}                                                            \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* No octet below 0x20 nor 0x7f in s: what goes into a header or a log
 * line must carry none raw. */
static inline int
fuzz_no_ctl(const char *s)
{
	for (; s != NULL && *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return 0;
	return 1;
}

#endif
