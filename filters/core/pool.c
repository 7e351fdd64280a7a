/*
 * pool.c - region allocator for connections and transactions.
 *
 * Allocations come from chained blocks and are released all at once when
 * the pool is destroyed, after its cleanup handlers ran (newest first).
 * Large requests get a block of their own so a pool never wastes more
 * than one block's tail.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define POOL_BLOCK 4096
#define POOL_ALIGN 16

struct pool_block {
	struct pool_block *next;
	size_t size, used;
	max_align_t data[];
};

struct pool_cleanup {
	void (*fn)(void *);
	void *arg;
	struct pool_cleanup *next;
};

struct gh_pool {
	struct pool_block *head;
	struct pool_cleanup *cleanups;
};

static void *
xmalloc(size_t n)
{
	void *p = malloc(n);

	if (p == NULL) {
		/* Out of memory in an allocator has no sane recovery; the
		 * master restarts the worker. */
		gh_log(GH_LOG_ERR, "out of memory (%zu bytes)", n);
		abort();
	}
	return p;
}

static struct pool_block *
block_new(size_t size)
{
	struct pool_block *b = xmalloc(sizeof(*b) + size);

	b->next = NULL;
	b->size = size;
	b->used = 0;
	return b;
}

struct gh_pool *
gh_pool_create(void)
{
	struct gh_pool *p = xmalloc(sizeof(*p));

	p->head = block_new(POOL_BLOCK - sizeof(struct pool_block));
	p->cleanups = NULL;
	return p;
}

void
gh_pool_destroy(struct gh_pool *p)
{
	struct pool_block *b, *next;

	if (p == NULL)
		return;
	/* Cleanups may still use pool memory, so they run first. */
	while (p->cleanups != NULL) {
		struct pool_cleanup *c = p->cleanups;

		p->cleanups = c->next;
		c->fn(c->arg);
	}
	for (b = p->head; b != NULL; b = next) {
		next = b->next;
		free(b);
	}
	free(p);
}

void *
gh_palloc(struct gh_pool *p, size_t n)
{
	struct pool_block *b = p->head;
	size_t need = (n + POOL_ALIGN - 1) & ~(size_t)(POOL_ALIGN - 1);
	void *mem;

	if (need == 0)
		need = POOL_ALIGN;
	if (need > b->size - b->used) {
		if (need > POOL_BLOCK / 4) {
			/* A big one: its own block, behind the head so the
			 * head's free tail stays usable. */
			struct pool_block *big = block_new(need);

			big->used = need;
			big->next = b->next;
			b->next = big;
			memset(big->data, 0, need);
			return big->data;
		}
		b = block_new(POOL_BLOCK - sizeof(struct pool_block));
		b->next = p->head;
		p->head = b;
	}
	mem = (char *)b->data + b->used;
	b->used += need;
	memset(mem, 0, need);
	return mem;
}

char *
gh_pstrndup(struct gh_pool *p, const char *s, size_t n)
{
	char *d = gh_palloc(p, n + 1);

	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

char *
gh_pstrdup(struct gh_pool *p, const char *s)
{
	return s == NULL ? NULL : gh_pstrndup(p, s, strlen(s));
}

char *
gh_psprintf(struct gh_pool *p, const char *fmt, ...)
{
	char small[256], *d;
	va_list ap;
	int n;

	/* Most strings fit the stack buffer: format once. */
	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return gh_pstrdup(p, "");
	if ((size_t)n < sizeof(small))
		return gh_pstrndup(p, small, (size_t)n);
	d = gh_palloc(p, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(d, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return d;
}

void
gh_pool_cleanup(struct gh_pool *p, void (*fn)(void *), void *arg)
{
	struct pool_cleanup *c = gh_palloc(p, sizeof(*c));

	c->fn = fn;
	c->arg = arg;
	c->next = p->cleanups;
	p->cleanups = c;
}
