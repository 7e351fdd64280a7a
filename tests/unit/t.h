/*
 * t.h - a minimal table-friendly unit test harness.
 *
 * Each test binary calls T_RUN(fn) for its test functions and ends with
 * `return t_done("name");`, which prints "name: N passed, N failed" and a
 * machine line "RESULT passed=N failed=N" that tests/run adds up.  A test
 * function counts as one test: it fails if any T_ check in it failed.
 */
#ifndef GATEHOUSE_T_H
#define GATEHOUSE_T_H

#include <stdio.h>
#include <string.h>

static int t_passed, t_failed, t_cur_failed;

#define T_CHECK(cond)                                                        \
	do {                                                                 \
		if (!(cond)) {                                               \
			fprintf(stderr, "  %s:%d: check failed: %s\n",       \
				__FILE__, __LINE__, #cond);                  \
			t_cur_failed = 1;                                    \
		}                                                            \
	} while (0)

#define T_EQ_INT(a, b)                                                       \
	do {                                                                 \
		long long t_a_ = (long long)(a), t_b_ = (long long)(b);      \
		if (t_a_ != t_b_) {                                          \
			fprintf(stderr, "  %s:%d: %s == %lld, want %lld\n",  \
				__FILE__, __LINE__, #a, t_a_, t_b_);         \
			t_cur_failed = 1;                                    \
		}                                                            \
	} while (0)

#define T_EQ_STR(a, b)                                                       \
	do {                                                                 \
		const char *t_a_ = (a), *t_b_ = (b);                         \
		if ((t_a_ == NULL) != (t_b_ == NULL) ||                      \
		    (t_a_ != NULL && strcmp(t_a_, t_b_) != 0)) {             \
			fprintf(stderr, "  %s:%d: %s == \"%s\", want \"%s\"\n",\
				__FILE__, __LINE__, #a,                      \
				t_a_ ? t_a_ : "(null)",                      \
				t_b_ ? t_b_ : "(null)");                     \
			t_cur_failed = 1;                                    \
		}                                                            \
	} while (0)

/* For table-driven tests: one row is one test. */
#define T_BEGIN() (t_cur_failed = 0)
#define T_END(label)                                                         \
	do {                                                                 \
		if (t_cur_failed) {                                          \
			t_failed++;                                          \
			fprintf(stderr, "FAIL %s\n", (label));               \
		} else {                                                     \
			t_passed++;                                          \
		}                                                            \
	} while (0)

#define T_RUN(fn)                                                            \
	do {                                                                 \
		T_BEGIN();                                                   \
		fn();                                                        \
		T_END(#fn);                                                  \
	} while (0)

static inline int
t_done(const char *name)
{
	printf("%s: %d passed, %d failed\n", name, t_passed, t_failed);
	printf("RESULT passed=%d failed=%d\n", t_passed, t_failed);
	return t_failed ? 1 : 0;
}

#endif
