/*
 * message.c - the received message: stored octets and the parsed header
 * block.
 *
 * Contract.  The host appends the message with gh_msg_write() in pieces
 * of any size: octets already dot-unstuffed, CRLF line ends.  The octets
 * are kept in memory up to lim->mem_threshold; the first write that would
 * go past it moves everything to an unlinked temporary file in
 * lim->tmpdir and appends there, so a large message never sits in memory.
 *
 * The header block (RFC 5322 section 2.2) is parsed as it arrives, by a
 * push parser that keeps only the field being assembled: lines may be
 * split across writes in any way, down to one octet per write.  A field
 * is "Name: value" plus continuation lines that start with SP or HTAB;
 * its value keeps the folding CRLFs, loses the final CRLF and the SP/HTAB
 * right after the colon.  The block ends at the first empty line.
 *
 * What is not a header field ends the block too.  A line without a colon
 * (or whose name has an octet outside 33..126) makes the header malformed
 * under RFC 5322; like Postfix we take it as the first line of the body
 * and the header block as complete.  "Name : value", whitespace before
 * the colon, is the obsolete syntax of RFC 5322 section 4.5 and is
 * accepted with the name trimmed.
 *
 * Bounds: one field with its continuations may have at most
 * lim->max_header_line octets (its final CRLF not counted: a 998-octet
 * line of RFC 5322 section 2.1.1 fits in 998), and the header block (the
 * fields with all their CRLFs, not the empty line) at most
 * lim->max_header_size octets.  Past either, the status becomes
 * GH_MSG_HEADER_TOO_BIG.  A status other than OK is sticky: later octets
 * are counted in gh_msg_size() but neither stored nor parsed.
 */
#include "config.h"

#include <sys/types.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core.h"

/* Used when a bound is given as 0: Postfix's header_size_limit for one
 * field, ten times that for the block. */
#define MSG_DEF_HEADER_LINE	102400
#define MSG_DEF_HEADER_SIZE	1024000
#define MSG_MIN_BUF		4096
#define MSG_MIN_HEADERS		16

struct gh_message {
	struct gh_pool		*pool;
	size_t			 mem_threshold;
	size_t			 max_header_line;
	size_t			 max_header_size;
	const char		*tmpdir;

	enum gh_msg_status	 status;
	uint64_t		 size;		/* octets written */
	uint64_t		 stored;	/* octets kept (memory or file) */

	/* Storage: mem until the threshold, then fd. */
	char			*mem;
	size_t			 memcap;
	int			 fd;

	/* Header parser.  fbuf holds the pending field (flen octets, whole
	 * lines with their line ends) followed by the line being read
	 * (llen octets). */
	char			*fbuf;
	size_t			 fcap;		/* allocated */
	size_t			 fmax;		/* max_header_line + CRLF */
	size_t			 flen, llen;
	size_t			 fname;		/* name length, trimmed */
	size_t			 fvalue;	/* value offset in fbuf */
	uint64_t		 hdr_size;	/* block octets so far */
	uint64_t		 body_off;	/* first body octet */
	int			 hdr_done;

	struct gh_header	*hdrs;
	size_t			 nhdrs, hdrcap;
};

struct gh_msg_reader {
	const struct gh_message	*m;
	uint64_t		 off;
};

/* ------------------------------------------------------------------ */
/* Storage.                                                            */

static void
msg_close(void *arg)
{
	struct gh_message *m = arg;

	if (m->fd != -1) {
		close(m->fd);
		m->fd = -1;
	}
}

static int
write_all(int fd, const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(fd, p, n);
		if (w == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Move what is in memory to a fresh temporary file.  The file is
 * unlinked at once: nothing is left behind if the process dies, and the
 * descriptor is closed when the message's pool goes. */
static int
msg_spill(struct gh_message *m)
{
	char *path;
	int fd;

	path = gh_psprintf(m->pool, "%s/gatehouse-msg.XXXXXXXXXX", m->tmpdir);
	if ((fd = mkstemp(path)) == -1) {
		gh_log(GH_LOG_ERR, "message: temporary file in %s: %s",
		       m->tmpdir, strerror(errno));
		return -1;
	}
	if (unlink(path) == -1)
		gh_log(GH_LOG_WARN, "message: unlink %s: %s", path,
		       strerror(errno));
	/* Workers may spawn helpers; the spool file is not theirs. */
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	m->fd = fd;
	gh_pool_cleanup(m->pool, msg_close, m);
	if (write_all(fd, m->mem, (size_t)m->stored) == -1) {
		gh_log(GH_LOG_ERR, "message: write to temporary file: %s",
		       strerror(errno));
		return -1;
	}
	/* The pool keeps the old buffer until the transaction ends; only
	 * forget it so it is not used again. */
	m->mem = NULL;
	m->memcap = 0;
	return 0;
}

static int
msg_store(struct gh_message *m, const char *data, size_t n)
{
	size_t need, cap;
	char *nb;

	if (m->fd == -1 && m->stored + n > m->mem_threshold &&
	    msg_spill(m) == -1)
		return -1;
	if (m->fd != -1) {
		if (write_all(m->fd, data, n) == -1) {
			gh_log(GH_LOG_ERR, "message: write to temporary "
			       "file: %s", strerror(errno));
			return -1;
		}
		m->stored += n;
		return 0;
	}
	need = (size_t)m->stored + n;
	if (need > m->memcap) {
		/* Doubling in a pool leaves the old buffers behind, at most
		 * as much again as the threshold. */
		cap = m->memcap ? m->memcap : MSG_MIN_BUF;
		while (cap < need)
			cap *= 2;
		if (cap > m->mem_threshold)
			cap = m->mem_threshold;
		nb = gh_palloc(m->pool, cap);
		if (m->stored > 0)
			memcpy(nb, m->mem, (size_t)m->stored);
		m->mem = nb;
		m->memcap = cap;
	}
	memcpy(m->mem + m->stored, data, n);
	m->stored += n;
	return 0;
}

/* ------------------------------------------------------------------ */
/* Header parser.                                                      */

/* RFC 5322 section 3.6.8: ftext is printable US-ASCII except ':'. */
static int
is_ftext(unsigned char c)
{
	return c >= 33 && c <= 126 && c != ':';
}

int
gh_header_name_check(const char *name, const char *what, const char *file,
		     char *err, size_t errlen)
{
	const char *p;

	if (name == NULL)
		return 0;
	for (p = name; *p != '\0'; p++)
		if (!is_ftext((unsigned char)*p)) {
			snprintf(err, errlen, "%s: %s: \"%s\" is not a header "
				 "field name (printable ASCII, no space or "
				 "colon: RFC 5322 3.6.8)", file, what, name);
			return -1;
		}
	return 0;
}

static int
is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* Length of the line end at the end of s: 2 (CRLF), 1 (LF) or 0. */
static size_t
eol_len(const char *s, size_t len)
{
	if (len >= 2 && s[len - 2] == '\r' && s[len - 1] == '\n')
		return 2;
	if (len >= 1 && s[len - 1] == '\n')
		return 1;
	return 0;
}

enum field_kind { FIELD_NO = 0, FIELD_YES, FIELD_MAYBE };

/* Is s the first line of a header field?  FIELD_MAYBE: only name
 * octets (and maybe whitespace) so far, the colon may still come. */
static enum field_kind
field_start(const char *s, size_t len, size_t *namelen, size_t *valoff)
{
	size_t i = 0;

	while (i < len && is_ftext((unsigned char)s[i]))
		i++;
	if (i == 0)
		return len == 0 ? FIELD_MAYBE : FIELD_NO;
	*namelen = i;
	/* obs-optional (RFC 5322 section 4.5.x): WSP before the colon. */
	while (i < len && is_wsp((unsigned char)s[i]))
		i++;
	if (i == len)
		return FIELD_MAYBE;
	if (s[i] != ':')
		return FIELD_NO;
	i++;
	while (i < len && is_wsp((unsigned char)s[i]))
		i++;
	*valoff = i;
	return FIELD_YES;
}

static void
hdr_too_big(struct gh_message *m)
{
	m->status = GH_MSG_HEADER_TOO_BIG;
}

/* The header block is over: what follows is body. */
static void
hdr_end(struct gh_message *m, size_t sep)
{
	/* sep: octets of the empty separator line, 0 when the block ended
	 * on a line that already belongs to the body. */
	m->body_off = m->hdr_size + sep;
	m->hdr_done = 1;
	m->flen = m->llen = 0;
}

/* The pending field is complete: record it. */
static void
hdr_flush(struct gh_message *m)
{
	struct gh_header *h, *nh;
	size_t vlen;

	if (m->flen == 0)
		return;
	if (m->nhdrs == m->hdrcap) {
		m->hdrcap = m->hdrcap ? m->hdrcap * 2 : MSG_MIN_HEADERS;
		nh = gh_palloc(m->pool, m->hdrcap * sizeof(*nh));
		if (m->nhdrs > 0)
			memcpy(nh, m->hdrs, m->nhdrs * sizeof(*nh));
		m->hdrs = nh;
	}
	vlen = m->flen - eol_len(m->fbuf, m->flen);
	if (m->fvalue > vlen)	/* "Name:" with nothing, not even CRLF */
		m->fvalue = vlen;
	h = &m->hdrs[m->nhdrs++];
	h->name = gh_pstrndup(m->pool, m->fbuf, m->fname);
	h->value = gh_pstrndup(m->pool, m->fbuf + m->fvalue, vlen - m->fvalue);
	m->flen = 0;
}

/* Account for a line of llen octets joining the pending field. */
static void
hdr_grow_field(struct gh_message *m)
{
	m->flen += m->llen;
	m->hdr_size += m->llen;
	m->llen = 0;
	if (m->flen - eol_len(m->fbuf, m->flen) > m->max_header_line ||
	    m->hdr_size > m->max_header_size)
		hdr_too_big(m);
}

/* A whole line (or, from gh_msg_finish, the unterminated last one) sits
 * at fbuf + flen. */
static void
hdr_line(struct gh_message *m)
{
	const char *line = m->fbuf + m->flen;
	size_t len = m->llen - eol_len(line, m->llen);

	if (len == 0) {
		/* The empty line of RFC 5322 section 2.1. */
		hdr_flush(m);
		hdr_end(m, m->llen);
		return;
	}
	if (is_wsp((unsigned char)line[0])) {
		if (m->flen == 0) {
			/* Folding with nothing to fold into. */
			hdr_end(m, 0);
			return;
		}
		hdr_grow_field(m);
		return;
	}
	/* The pending field was flushed when this line's first octet came
	 * in, so the line starts at fbuf[0]. */
	if (field_start(line, len, &m->fname, &m->fvalue) != FIELD_YES) {
		hdr_end(m, 0);
		return;
	}
	hdr_grow_field(m);
}

/* The line being read does not fit in fmax octets: decide on what we
 * have. */
static void
hdr_overflow(struct gh_message *m)
{
	size_t namelen, valoff;

	if (m->flen > 0) {
		/* A continuation line made the field too long. */
		hdr_too_big(m);
		return;
	}
	if (field_start(m->fbuf, m->llen, &namelen, &valoff) == FIELD_NO) {
		/* A long body line: the body starts here. */
		hdr_end(m, 0);
		return;
	}
	hdr_too_big(m);
}

/* Make room for want more octets in fbuf, up to fmax. */
static size_t
hdr_room(struct gh_message *m, size_t want)
{
	size_t used = m->flen + m->llen, cap;
	char *nb;

	if (used + want > m->fcap && m->fcap < m->fmax) {
		cap = m->fcap ? m->fcap : 256;
		while (cap < used + want && cap < m->fmax)
			cap *= 2;
		if (cap > m->fmax)
			cap = m->fmax;
		nb = gh_palloc(m->pool, cap);
		if (used > 0)
			memcpy(nb, m->fbuf, used);
		m->fbuf = nb;
		m->fcap = cap;
	}
	return m->fcap - used;
}

static void
hdr_feed(struct gh_message *m, const char *p, size_t n)
{
	const char *lf;
	size_t take, room;

	while (n > 0 && !m->hdr_done && m->status == GH_MSG_OK) {
		/* A line not starting with WSP closes the pending field:
		 * whatever it turns out to be, it is not a continuation. */
		if (m->llen == 0 && m->flen > 0 && !is_wsp((unsigned char)*p))
			hdr_flush(m);
		lf = memchr(p, '\n', n);
		take = lf != NULL ? (size_t)(lf - p) + 1 : n;
		room = hdr_room(m, take);
		if (take > room) {
			memcpy(m->fbuf + m->flen + m->llen, p, room);
			m->llen += room;
			hdr_overflow(m);
			return;
		}
		memcpy(m->fbuf + m->flen + m->llen, p, take);
		m->llen += take;
		p += take;
		n -= take;
		if (lf != NULL)
			hdr_line(m);
	}
}

/* ------------------------------------------------------------------ */
/* Host interface (core.h).                                            */

struct gh_message *
gh_msg_new(struct gh_pool *p, const struct gh_message_limits *lim)
{
	struct gh_message *m = gh_palloc(p, sizeof(*m));

	m->pool = p;
	m->fd = -1;
	m->status = GH_MSG_OK;
	m->mem_threshold = lim != NULL ? lim->mem_threshold : 0;
	m->max_header_line = lim != NULL && lim->max_header_line > 0 ?
	    lim->max_header_line : MSG_DEF_HEADER_LINE;
	m->max_header_size = lim != NULL && lim->max_header_size > 0 ?
	    lim->max_header_size : MSG_DEF_HEADER_SIZE;
	m->tmpdir = lim != NULL && lim->tmpdir != NULL && *lim->tmpdir ?
	    gh_pstrdup(p, lim->tmpdir) : "/tmp";
	/* Room for the final CRLF on top of the field. */
	m->fmax = m->max_header_line + 2;
	return m;
}

enum gh_msg_status
gh_msg_write(struct gh_message *m, const char *data, size_t n)
{
	if (m->status == GH_MSG_OK && n > 0) {
		if (msg_store(m, data, n) == -1)
			m->status = GH_MSG_IO_ERROR;
		else if (!m->hdr_done)
			hdr_feed(m, data, n);
	}
	m->size += n;
	return m->status;
}

enum gh_msg_status
gh_msg_finish(struct gh_message *m)
{
	if (m->status != GH_MSG_OK || m->hdr_done)
		return m->status;
	/* A last line with no line end, then the field it belongs to. */
	if (m->llen > 0)
		hdr_line(m);
	if (m->status == GH_MSG_OK && !m->hdr_done) {
		hdr_flush(m);
		hdr_end(m, 0);
	}
	return m->status;
}

uint64_t
gh_msg_body_offset(const struct gh_message *m)
{
	return m->body_off;
}

int
gh_msg_headers_done(const struct gh_message *m)
{
	return m->hdr_done;
}

enum gh_msg_status
gh_msg_status(const struct gh_message *m)
{
	return m->status;
}

/* ------------------------------------------------------------------ */
/* Plugin interface (filter.h).                                        */

size_t
gh_msg_header_count(const struct gh_message *m)
{
	return m->nhdrs;
}

const struct gh_header *
gh_msg_header_at(const struct gh_message *m, size_t i)
{
	return i < m->nhdrs ? &m->hdrs[i] : NULL;
}

/* Field names are ASCII (ftext), so strcasecmp is exact here. */
size_t
gh_msg_header_num(const struct gh_message *m, const char *name)
{
	size_t i, n = 0;

	for (i = 0; i < m->nhdrs; i++)
		if (strcasecmp(m->hdrs[i].name, name) == 0)
			n++;
	return n;
}

const char *
gh_msg_header_get(const struct gh_message *m, const char *name, size_t nth)
{
	size_t i;

	for (i = 0; i < m->nhdrs; i++)
		if (strcasecmp(m->hdrs[i].name, name) == 0 && nth-- == 0)
			return m->hdrs[i].value;
	return NULL;
}

uint64_t
gh_msg_size(const struct gh_message *m)
{
	return m->size;
}

struct gh_msg_reader *
gh_msg_reader_open(struct gh_pool *p, const struct gh_message *m)
{
	struct gh_msg_reader *r = gh_palloc(p, sizeof(*r));

	r->m = m;
	r->off = 0;
	return r;
}

/* Each reader has its own offset and uses pread, so readers and the
 * writer never move each other's file position. */
ssize_t
gh_msg_read(struct gh_msg_reader *r, void *buf, size_t n)
{
	const struct gh_message *m = r->m;
	uint64_t left;
	ssize_t got;

	if (r->off >= m->stored || n == 0)
		return 0;
	left = m->stored - r->off;
	if (n > left)
		n = (size_t)left;
	if (n > SSIZE_MAX)
		n = SSIZE_MAX;
	if (m->fd == -1) {
		memcpy(buf, m->mem + r->off, n);
		r->off += n;
		return (ssize_t)n;
	}
	do
		got = pread(m->fd, buf, n, (off_t)r->off);
	while (got == -1 && errno == EINTR);
	if (got <= 0) {
		/* 0 before the end means the file was cut short. */
		if (got == 0)
			errno = EIO;
		return -1;
	}
	r->off += (uint64_t)got;
	return got;
}
