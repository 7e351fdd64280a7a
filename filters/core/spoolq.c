/*
 * spoolq.c - the spool's queue file format (see spoolq.h): writing with
 * a running checksum, reading the envelope, checking a file for tears.
 *
 * Shared by the spool plugin (filters/spool.c) and relayd's queue
 * commands.  Nothing here fsyncs: durability is the caller's (the spool
 * plugin's commit thread).
 */
#include "config.h"

#include <sys/types.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spoolq.h"

#define TRAILER_MAX 64

/* ------------------------------------------------------------------ */
/* CRC-32 (the reflected polynomial 0xEDB88320 of IEEE 802.3).          */

/* Slicing by 8: crc_table[k][b] is the CRC of byte b followed by k
 * zero octets, so eight octets take eight lookups and no loop-carried
 * shift per octet (a queue file is checksummed as it is written, on
 * the event loop). */
static uint32_t crc_table[8][256];
static int crc_ready;

static void
crc_init(void)
{
	uint32_t c, n, k;

	for (n = 0; n < 256; n++) {
		c = n;
		for (k = 0; k < 8; k++)
			c = c & 1 ? 0xEDB88320U ^ (c >> 1) : c >> 1;
		crc_table[0][n] = c;
	}
	for (n = 0; n < 256; n++)
		for (k = 1; k < 8; k++)
			crc_table[k][n] = (crc_table[k - 1][n] >> 8) ^
			    crc_table[0][crc_table[k - 1][n] & 0xff];
	crc_ready = 1;
}

uint32_t
spoolq_crc32(uint32_t crc, const void *data, size_t n)
{
	const unsigned char *p = data;

	if (!crc_ready)
		crc_init();
	crc = ~crc;
	for (; n >= 8; p += 8, n -= 8) {
		crc ^= (uint32_t)p[0] | (uint32_t)p[1] << 8 |
		    (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
		crc = crc_table[7][crc & 0xff] ^
		    crc_table[6][(crc >> 8) & 0xff] ^
		    crc_table[5][(crc >> 16) & 0xff] ^
		    crc_table[4][crc >> 24] ^ crc_table[3][p[4]] ^
		    crc_table[2][p[5]] ^ crc_table[1][p[6]] ^
		    crc_table[0][p[7]];
	}
	while (n-- > 0)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

const char *
spoolq_kind_name(enum spoolq_kind k)
{
	switch (k) {
	case SPOOLQ_MSG:
		return "msg";
	case SPOOLQ_DSN:
		return "dsn";
	case SPOOLQ_DSN_PM:
		return "dsn-postmaster";
	}
	return "msg";
}

/* ------------------------------------------------------------------ */
/* Writing.                                                            */

static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, p, n)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

void
spoolq_w_init(struct spoolq_w *w, int fd)
{
	w->fd = fd;
	w->crc = 0;
	w->len = 0;
	w->err = 0;
	w->n = 0;
}

static int
w_flush(struct spoolq_w *w)
{
	if (w->err != 0)
		return -1;
	if (w->n > 0 && write_all(w->fd, w->buf, w->n) != 0) {
		w->err = errno != 0 ? errno : EIO;
		return -1;
	}
	w->n = 0;
	return 0;
}

int
spoolq_w_put(struct spoolq_w *w, const void *data, size_t n)
{
	const char *p = data;
	size_t k;

	if (w->err != 0)
		return -1;
	w->crc = spoolq_crc32(w->crc, p, n);
	w->len += n;
	while (n > 0) {
		if (w->n == sizeof(w->buf) && w_flush(w) != 0)
			return -1;
		k = sizeof(w->buf) - w->n;
		if (k > n)
			k = n;
		memcpy(w->buf + w->n, p, k);
		w->n += k;
		p += k;
		n -= k;
	}
	return 0;
}

static int
w_line(struct spoolq_w *w, const char *key, const char *value)
{
	if (spoolq_w_put(w, key, strlen(key)) != 0 ||
	    spoolq_w_put(w, " ", 1) != 0 ||
	    spoolq_w_put(w, value, strlen(value)) != 0)
		return -1;
	return spoolq_w_put(w, "\n", 1);
}

static int
w_num(struct spoolq_w *w, const char *key, long long v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%lld", v);
	return w_line(w, key, buf);
}

int
spoolq_w_env(struct spoolq_w *w, const struct spoolq_env *e)
{
	size_t i;

	if (spoolq_w_put(w, SPOOLQ_MAGIC "\n", sizeof(SPOOLQ_MAGIC)) != 0 ||
	    w_line(w, "id", e->id) != 0 || w_line(w, "host", e->host) != 0 ||
	    w_line(w, "kind", spoolq_kind_name(e->kind)) != 0 ||
	    w_num(w, "arrival", e->arrival) != 0 ||
	    w_num(w, "attempts", e->attempts) != 0 ||
	    w_num(w, "next", e->next) != 0 ||
	    w_num(w, "hold", e->hold) != 0 ||
	    w_line(w, "from", e->from ? e->from : "") != 0 ||
	    w_line(w, "params", e->params ? e->params : "") != 0)
		return -1;
	/* Only when not the default: files stay readable by a relayd that
	 * does not route (it skips unknown keys and uses its next hop). */
	if (e->route == SPOOLQ_ROUTE_MX && w_line(w, "route", "mx") != 0)
		return -1;
	for (i = 0; i < e->nrcpts; i++)
		if (w_line(w, "rcpt", e->rcpts[i]) != 0)
			return -1;
	if (e->error != NULL && e->error[0] != '\0' &&
	    w_line(w, "error", e->error) != 0)
		return -1;
	return spoolq_w_put(w, "\n", 1);
}

int
spoolq_w_finish(struct spoolq_w *w)
{
	char t[TRAILER_MAX];
	int n;

	if (w->err != 0)
		return -1;
	n = snprintf(t, sizeof(t), "GHEND %08x %llu\n", (unsigned)w->crc,
		     (unsigned long long)w->len);
	/* With the last octets when it fits: one write for a small file. */
	if (sizeof(w->buf) - w->n >= (size_t)n) {
		memcpy(w->buf + w->n, t, (size_t)n);
		w->n += (size_t)n;
		return w_flush(w);
	}
	if (w_flush(w) != 0)
		return -1;
	if (write_all(w->fd, t, (size_t)n) != 0) {
		w->err = errno != 0 ? errno : EIO;
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Reading.                                                            */

static void why_set(char *why, size_t n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
why_set(char *why, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
}

void
spoolq_env_free(struct spoolq_env *e)
{
	size_t i;

	for (i = 0; i < e->nrcpts; i++)
		free(e->rcpts[i]);
	free(e->rcpts);
	free(e->from);
	free(e->params);
	free(e->error);
	e->rcpts = NULL;
	e->nrcpts = 0;
	e->from = e->params = e->error = NULL;
}

int
spoolq_env_add_rcpt(struct spoolq_env *e, const char *mailbox)
{
	char **v = realloc(e->rcpts, (e->nrcpts + 1) * sizeof(*v));

	if (v == NULL)
		return -1;
	e->rcpts = v;
	if ((v[e->nrcpts] = strdup(mailbox)) == NULL)
		return -1;
	e->nrcpts++;
	return 0;
}

static int
num(const char *s, long long *out)
{
	char *end;

	errno = 0;
	*out = strtoll(s, &end, 10);
	return s[0] == '\0' || *end != '\0' || errno != 0 ? -1 : 0;
}

static int
env_line(struct spoolq_env *e, char *line, char *why, size_t whylen)
{
	char *v = strchr(line, ' ');
	char **dst = NULL;

	if (v == NULL) {
		/* "from", "params" and "error" may be empty: "key " */
		why_set(why, whylen, "bad envelope line");
		return -1;
	}
	*v++ = '\0';
	if (strcmp(line, "id") == 0)
		snprintf(e->id, sizeof(e->id), "%s", v);
	else if (strcmp(line, "host") == 0)
		snprintf(e->host, sizeof(e->host), "%s", v);
	else if (strcmp(line, "kind") == 0) {
		if (strcmp(v, "dsn") == 0)
			e->kind = SPOOLQ_DSN;
		else if (strcmp(v, "dsn-postmaster") == 0)
			e->kind = SPOOLQ_DSN_PM;
		else
			e->kind = SPOOLQ_MSG;
	} else if (strcmp(line, "arrival") == 0) {
		if (num(v, &e->arrival) != 0)
			goto bad;
	} else if (strcmp(line, "attempts") == 0) {
		if (num(v, &e->attempts) != 0)
			goto bad;
	} else if (strcmp(line, "next") == 0) {
		if (num(v, &e->next) != 0)
			goto bad;
	} else if (strcmp(line, "hold") == 0) {
		e->hold = strcmp(v, "1") == 0;
	} else if (strcmp(line, "route") == 0) {
		e->route = strcmp(v, "mx") == 0 ? SPOOLQ_ROUTE_MX :
		    SPOOLQ_ROUTE_HOP;
	} else if (strcmp(line, "from") == 0)
		dst = &e->from;
	else if (strcmp(line, "params") == 0)
		dst = &e->params;
	else if (strcmp(line, "error") == 0)
		dst = &e->error;
	else if (strcmp(line, "rcpt") == 0) {
		if (spoolq_env_add_rcpt(e, v) != 0)
			goto oom;
	}
	/* Unknown keys are skipped: a newer relayd may add some. */
	if (dst != NULL) {
		free(*dst);
		if ((*dst = strdup(v)) == NULL)
			goto oom;
	}
	return 0;
bad:
	why_set(why, whylen, "bad value for \"%s\"", line);
	return -1;
oom:
	why_set(why, whylen, "out of memory");
	return -1;
}

static int
fill_defaults(struct spoolq_env *e)
{
	if (e->from == NULL && (e->from = strdup("")) == NULL)
		return -1;
	if (e->params == NULL && (e->params = strdup("")) == NULL)
		return -1;
	if (e->error == NULL && (e->error = strdup("")) == NULL)
		return -1;
	return 0;
}

/*
 * The trailer in the file's last want octets t: the last "GHEND " there.
 * The message before it may end in any octet, NUL included, and without
 * a line break (BDAT), so no string function may look for it; a
 * "GHEND " in the message comes before the real one, and a forged one
 * fails the length and checksum checks.
 */
static const char *
trailer_find(const char *t, size_t want)
{
	size_t i;

	for (i = want >= 6 ? want - 6 : 0; i-- > 0;)
		if (memcmp(t + i, "GHEND ", 6) == 0)
			return t + i;
	return NULL;
}

/* Check the trailer and the checksum of the whole file. */
static int
verify(int fd, off_t size, char *why, size_t whylen)
{
	char t[TRAILER_MAX + 1], buf[65536];
	const char *tr;
	unsigned crc;
	unsigned long long len;
	uint32_t c = 0;
	off_t tstart, pos = 0;
	ssize_t n;
	size_t want;

	want = size < TRAILER_MAX ? (size_t)size : TRAILER_MAX;
	if (size < 8 || pread(fd, t, want, size - (off_t)want) != (ssize_t)want) {
		why_set(why, whylen, "no trailer (file of %lld octets)",
			(long long)size);
		return -1;
	}
	t[want] = '\0';
	if (t[want - 1] != '\n') {
		why_set(why, whylen, "torn: no end marker");
		return -1;
	}
	t[want - 1] = '\0';
	if ((tr = trailer_find(t, want - 1)) == NULL ||
	    sscanf(tr + 6, "%8x %llu", &crc, &len) != 2) {
		why_set(why, whylen, "torn: no end marker");
		return -1;
	}
	tstart = size - (off_t)(want - (size_t)(tr - t));
	if ((off_t)len != tstart) {
		why_set(why, whylen, "torn: length %llu, marker at %lld", len,
			(long long)tstart);
		return -1;
	}
	while (pos < tstart) {
		want = sizeof(buf);
		if ((off_t)want > tstart - pos)
			want = (size_t)(tstart - pos);
		if ((n = pread(fd, buf, want, pos)) <= 0) {
			why_set(why, whylen, "read: %s", n < 0 ?
				strerror(errno) : "short file");
			return -1;
		}
		c = spoolq_crc32(c, buf, (size_t)n);
		pos += n;
	}
	if (c != crc) {
		why_set(why, whylen, "checksum mismatch (%08x, expected %08x)",
			(unsigned)c, crc);
		return -1;
	}
	return 0;
}

int
spoolq_load(int fd, struct spoolq_env *e, int do_verify, char *why,
	    size_t whylen)
{
	struct stat st;
	char *buf = NULL, *p, *line, *nl;
	size_t cap = 16384, len = 0;
	ssize_t n;
	off_t end = 0;
	int rc = -1;

	memset(e, 0, sizeof(*e));
	if (fstat(fd, &st) != 0) {
		why_set(why, whylen, "fstat: %s", strerror(errno));
		return -1;
	}
	if (do_verify && verify(fd, st.st_size, why, whylen) != 0)
		return -1;
	/* Read until the empty line that ends the envelope. */
	for (;;) {
		char *nb = realloc(buf, cap + 1);

		if (nb == NULL) {
			why_set(why, whylen, "out of memory");
			goto out;
		}
		buf = nb;
		while (len < cap) {
			n = pread(fd, buf + len, cap - len, (off_t)len);
			if (n < 0) {
				why_set(why, whylen, "read: %s",
					strerror(errno));
				goto out;
			}
			if (n == 0)
				break;
			len += (size_t)n;
		}
		buf[len] = '\0';
		if ((p = strstr(buf, "\n\n")) != NULL) {
			end = (off_t)(p - buf) + 2;
			p[1] = '\0';
			break;
		}
		if (len < cap || cap >= SPOOLQ_ENV_MAX) {
			why_set(why, whylen, "torn: envelope has no end");
			goto out;
		}
		cap *= 4;
	}
	if (strncmp(buf, SPOOLQ_MAGIC "\n", sizeof(SPOOLQ_MAGIC)) != 0) {
		why_set(why, whylen, "not a queue file");
		goto out;
	}
	for (line = buf + sizeof(SPOOLQ_MAGIC); *line != '\0'; line = nl + 1) {
		if ((nl = strchr(line, '\n')) == NULL)
			break;
		*nl = '\0';
		if (env_line(e, line, why, whylen) != 0)
			goto out;
	}
	if (e->id[0] == '\0' || fill_defaults(e) != 0) {
		why_set(why, whylen, "envelope without id");
		goto out;
	}
	e->msg_off = end;
	e->msg_len = 0;
	if (do_verify) {
		char t[TRAILER_MAX + 1];
		size_t want = st.st_size < TRAILER_MAX ? (size_t)st.st_size :
		    TRAILER_MAX;
		const char *tl;

		/* verify() checked the trailer: find where it starts. */
		if (pread(fd, t, want, st.st_size - (off_t)want) !=
		    (ssize_t)want || (tl = trailer_find(t, want - 1)) == NULL)
			goto out;
		e->msg_len = st.st_size - (off_t)(want - (size_t)(tl - t)) -
		    end;
		if (e->msg_len < 0) {
			why_set(why, whylen, "torn: message before envelope "
				"end");
			goto out;
		}
	}
	rc = 0;
out:
	free(buf);
	if (rc != 0)
		spoolq_env_free(e);
	return rc;
}

int
spoolq_rewrite(const char *tmp_path, const struct spoolq_env *e, int src_fd,
	       int *out_fd)
{
	struct spoolq_w *w = malloc(sizeof(*w));
	char buf[65536];
	off_t pos = e->msg_off, end = e->msg_off + e->msg_len;
	ssize_t n;
	size_t want;
	int fd, saved;

	if (w == NULL)
		return -1;
	fd = open(tmp_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		free(w);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0)
		goto fail;
	spoolq_w_init(w, fd);
	if (spoolq_w_env(w, e) != 0)
		goto wfail;
	while (pos < end) {
		want = sizeof(buf);
		if ((off_t)want > end - pos)
			want = (size_t)(end - pos);
		if ((n = pread(src_fd, buf, want, pos)) <= 0) {
			if (n == 0)
				errno = EIO;
			goto fail;
		}
		if (spoolq_w_put(w, buf, (size_t)n) != 0)
			goto wfail;
		pos += n;
	}
	if (spoolq_w_finish(w) != 0)
		goto wfail;
	free(w);
	*out_fd = fd;
	return 0;
wfail:
	errno = w->err;
fail:
	saved = errno;
	close(fd);
	unlink(tmp_path);
	free(w);
	errno = saved;
	return -1;
}
