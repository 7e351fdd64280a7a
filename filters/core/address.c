/*
 * address.c - the RFC 5321 section 4.1.2 path parser.
 *
 * Parses what follows "MAIL FROM:" or "RCPT TO:":
 *
 *	"<" [ A-d-l ":" ] Mailbox ">" [ SP Mail-parameters ]
 *
 * into a struct gh_path whose strings live in the caller's pool.  The
 * parser is strict about the address itself (a front end must not hand
 * the next hop anything it would choke on) and lenient only where real
 * clients are known to stray: one space before "<" and extra spaces
 * around the parameters.  Non-ASCII octets are accepted when they form
 * valid UTF-8 (RFC 6531); whether SMTPUTF8 was asked for is the host's
 * business, told by addr.utf8.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <strings.h>

#include "core.h"

/* RFC 5321 section 4.5.3.1: size limits. */
#define MAX_LOCAL	64	/* 4.5.3.1.1, the local part as written */
#define MAX_DOMAIN	255	/* 4.5.3.1.2 */
#define MAX_LABEL	63	/* RFC 1035 section 2.3.4 */
#define MAX_PATH	256	/* 4.5.3.1.3, "<" to ">" inclusive */

struct parser {
	struct gh_pool	*pool;
	const char	*why;
	int		 utf8;		/* saw valid non-ASCII octets */
};

static int
is_alnum(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9');
}

static int
is_ctl(unsigned char c)
{
	return c < 32 || c == 127;
}

/* atext, RFC 5322 section 3.2.3. */
static int
is_atext(unsigned char c)
{
	return is_alnum(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~",
	    c) != NULL);
}

/*
 * Length of the well-formed UTF-8 sequence at s (RFC 3629 section 4),
 * or 0.  Overlong forms, surrogates and code points past U+10FFFF are
 * refused: RFC 6531 only allows UTF8-non-ascii, and a malformed octet
 * in an address would be passed on verbatim to the next hop.
 */
static size_t
utf8_len(const unsigned char *s)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n, i;

	if (c >= 0xc2 && c <= 0xdf)
		n = 2;
	else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		if (c == 0xe0)
			lo = 0xa0;	/* overlong */
		else if (c == 0xed)
			hi = 0x9f;	/* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		if (c == 0xf0)
			lo = 0x90;	/* overlong */
		else if (c == 0xf4)
			hi = 0x8f;	/* past U+10FFFF */
	} else
		return 0;
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (i = 2; i < n; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return n;
}

/* Why an address stopped at octet c where it should have gone on. */
static const char *
stop_why(unsigned char c, const char *other)
{
	if (c == '\0')
		return "Missing closing angle bracket";
	if (c == ' ')
		return "Space in address";
	if (is_ctl(c))
		return "Control character in address";
	return other;
}

/*
 * Check the domain s[0..len): dot-separated labels of letters, digits
 * and hyphens, no hyphen at either end of a label (RFC 5321 section
 * 4.1.2, sub-domain).  A label may start with a digit (RFC 1123 section
 * 2.1).  Non-ASCII octets are U-labels (RFC 6531 section 3.3); the
 * label limit is applied to the octets as written.  No trailing dot:
 * the grammar has none.
 */
static int
domain_check(const char *s, size_t len, int *utf8, const char **why)
{
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *end = p + len, *label;
	size_t n;

	if (len > MAX_DOMAIN) {
		*why = "Domain too long";
		return -1;
	}
	for (;;) {
		label = p;
		while (p < end && *p != '.') {
			if (*p >= 0x80) {
				if ((n = utf8_len(p)) == 0 ||
				    n > (size_t)(end - p)) {
					*why = "Invalid UTF-8 in address";
					return -1;
				}
				*utf8 = 1;
				p += n;
			} else if (is_alnum(*p) || *p == '-')
				p++;
			else {
				*why = "Invalid domain";
				return -1;
			}
		}
		if (p == label || *label == '-' || p[-1] == '-') {
			*why = "Invalid domain";
			return -1;
		}
		if ((size_t)(p - label) > MAX_LABEL) {
			*why = "Domain label too long";
			return -1;
		}
		if (p == end)
			return 0;
		p++;			/* the dot */
	}
}

/*
 * Span the octets that may make up a domain: the checks proper are in
 * domain_check(), this only finds where the domain ends.  Returns NULL
 * on malformed UTF-8.
 */
static const char *
domain_span(struct parser *ps, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	for (;;) {
		if (*p >= 0x80) {
			if ((n = utf8_len(p)) == 0) {
				ps->why = "Invalid UTF-8 in address";
				return NULL;
			}
			p += n;
		} else if (is_alnum(*p) || *p == '-' || *p == '.')
			p++;
		else
			return (const char *)p;
	}
}

/*
 * A-d-l = At-domain *( "," At-domain ), At-domain = "@" Domain.  RFC
 * 5321 section 4.1.1.3 and appendix C: a source route must be accepted
 * and SHOULD be ignored.  Returns the octet after the ":".
 */
static const char *
parse_route(struct parser *ps, const char *s)
{
	const char *end;
	const char *why;

	for (;;) {
		if (*s != '@')
			goto bad;
		if ((end = domain_span(ps, ++s)) == NULL)
			return NULL;
		if (domain_check(s, end - s, &ps->utf8, &why) == -1)
			goto bad;
		s = end;
		if (*s == ':')
			return s + 1;
		if (*s != ',')
			goto bad;
		s++;
	}
 bad:
	ps->why = "Invalid source route";
	return NULL;
}

/*
 * Dot-string = Atom *("." Atom), atoms of atext (plus UTF-8 per RFC
 * 6531 section 3.3).  Returns the first octet past it.
 */
static const char *
parse_dot_string(struct parser *ps, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n;

	for (;;) {
		if (*p >= 0x80) {
			if ((n = utf8_len(p)) == 0) {
				ps->why = "Invalid UTF-8 in address";
				return NULL;
			}
			ps->utf8 = 1;
			p += n;
		} else if (is_atext(*p))
			p++;
		else if (*p == '.') {
			/* No leading, trailing or double dot. */
			if ((const char *)p == s ||
			    (p[1] < 0x80 && !is_atext(p[1]))) {
				ps->why = "Invalid local part";
				return NULL;
			}
			p++;
		} else
			return (const char *)p;
	}
}

/*
 * Quoted-string = DQUOTE *QcontentSMTP DQUOTE, qtextSMTP being 32-126
 * except '"' and '\', quoted-pairSMTP a backslash and one of 32-126.
 * RFC 6531 adds UTF-8 to qtextSMTP but not to quoted pairs.  Returns
 * the octet after the closing quote.
 */
static const char *
parse_quoted(struct parser *ps, const char *s)
{
	const unsigned char *p = (const unsigned char *)s + 1;
	size_t n;

	for (;;) {
		if (*p == '"')
			return (const char *)p + 1;
		if (*p == '\0') {
			ps->why = "Unterminated quoted string";
			return NULL;
		}
		if (is_ctl(*p)) {
			ps->why = "Control character in address";
			return NULL;
		}
		if (*p == '\\') {
			if (p[1] == '\0') {
				ps->why = "Unterminated quoted string";
				return NULL;
			}
			if (is_ctl(p[1])) {
				ps->why = "Control character in address";
				return NULL;
			}
			if (p[1] > 126) {
				ps->why = "Invalid quoted pair";
				return NULL;
			}
			p += 2;
		} else if (*p >= 0x80) {
			if ((n = utf8_len(p)) == 0) {
				ps->why = "Invalid UTF-8 in address";
				return NULL;
			}
			ps->utf8 = 1;
			p += n;
		} else
			p++;
	}
}

/*
 * address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
 * General-address-literal ) "]", RFC 5321 section 4.1.3.  General
 * literals have no registered tags besides IPv6, so they are refused.
 * Returns the octet after "]".
 */
static const char *
parse_literal(struct parser *ps, const char *s)
{
	const char *p = s + 1, *end;
	char buf[64];
	unsigned char addr[sizeof(struct in6_addr)];
	size_t len;

	for (end = p; *end != ']'; end++) {
		if (*end == '\0') {
			ps->why = "Unterminated address literal";
			return NULL;
		}
		if (is_ctl(*end)) {
			ps->why = "Control character in address";
			return NULL;
		}
		/* dcontent is 33-90 and 94-126. */
		if ((unsigned char)*end <= 32 || (unsigned char)*end > 126 ||
		    *end == '[' || *end == '\\') {
			ps->why = "Invalid address literal";
			return NULL;
		}
	}
	len = end - p;
	if (len >= sizeof(buf))
		goto bad;
	if (len > 5 && strncasecmp(p, "IPv6:", 5) == 0) {
		memcpy(buf, p + 5, len - 5);
		buf[len - 5] = '\0';
		if (inet_pton(AF_INET6, buf, addr) != 1)
			goto bad;
	} else {
		memcpy(buf, p, len);
		buf[len] = '\0';
		if (inet_pton(AF_INET, buf, addr) != 1)
			goto bad;
	}
	return end + 1;
 bad:
	ps->why = "Invalid address literal";
	return NULL;
}

/*
 * The domain after "@": a hostname or an address literal.  Returns the
 * octet after it, which the caller checks is ">".
 */
static const char *
parse_domain(struct parser *ps, const char *s, struct gh_addr *a)
{
	const char *end;

	if (*s == '[') {
		/* Literals are far shorter than MAX_DOMAIN: parse_literal
		 * bounds them. */
		if ((end = parse_literal(ps, s)) == NULL)
			return NULL;
		if (*end != '>') {
			ps->why = stop_why(*end, "Invalid character in domain");
			return NULL;
		}
		a->is_literal = 1;
		return end;
	}
	if ((end = domain_span(ps, s)) == NULL)
		return NULL;
	if (*end != '>') {
		ps->why = stop_why(*end, "Invalid character in domain");
		return NULL;
	}
	if (end == s) {
		ps->why = "Missing domain";
		return NULL;
	}
	if (domain_check(s, end - s, &ps->utf8, &ps->why) == -1)
		return NULL;
	return end;
}

/*
 * A quoted local part that needs no quotes ("bad", "b\ad") is the same
 * mailbox as the plain one (RFC 5321 4.1.2, RFC 5322 3.4.1), and
 * becomes it, as Postfix rewrites it: plugins compare mailboxes as text,
 * and a deny list must not be passed by quoting an address.  One that
 * needs them ("john doe", "a@b", "") stays as written.
 */
static void
unquote(struct parser *ps, struct gh_addr *a)
{
	const char *q = a->local + 1, *last = a->local + strlen(a->local) - 1;
	char *plain, *o;
	size_t i, n;

	if ((plain = gh_palloc(ps->pool, (size_t)(last - q) + 1)) == NULL)
		return;
	for (o = plain; q < last; q++)
		*o++ = *q == '\\' ? *++q : *q;
	*o = '\0';
	n = (size_t)(o - plain);
	if (n == 0 || plain[0] == '.' || plain[n - 1] == '.')
		return;
	for (i = 0; i < n; i++)
		if (!((unsigned char)plain[i] >= 0x80 ||
		      is_atext((unsigned char)plain[i]) ||
		      (plain[i] == '.' && plain[i + 1] != '.')))
			return;
	a->local = plain;
	a->mailbox = a->domain == NULL ? plain :
	    gh_psprintf(ps->pool, "%s@%s", plain, a->domain);
	a->is_quoted = 0;
}

/*
 * "<" ... ">": fills a and returns the octet after ">".
 */
static const char *
parse_addr(struct parser *ps, const char *s, enum gh_path_kind kind,
    struct gh_addr *a)
{
	const char *start = s, *local, *end, *dom = NULL;

	s++;				/* "<" */
	if (*s == '>') {
		/* The null reverse-path, RFC 5321 section 4.5.5; it has
		 * no place in a forward-path. */
		if (kind != GH_PATH_MAIL) {
			ps->why = "Null recipient not allowed";
			return NULL;
		}
		a->is_null = 1;
		a->local = a->mailbox = "";
		return s + 1;
	}
	if (*s == '@') {
		if ((s = parse_route(ps, s)) == NULL)
			return NULL;
		a->had_route = 1;
	}

	local = s;
	if (*s == '"') {
		if ((end = parse_quoted(ps, s)) == NULL)
			return NULL;
		a->is_quoted = 1;
	} else if ((end = parse_dot_string(ps, s)) == NULL)
		return NULL;
	if (end == local) {
		ps->why = (*end == '>' || *end == '@') ? "Invalid local part" :
		    stop_why(*end, "Invalid character in local part");
		return NULL;
	}
	if ((size_t)(end - local) > MAX_LOCAL) {
		ps->why = "Local part too long";
		return NULL;
	}
	s = end;

	if (*s == '@') {
		dom = s + 1;
		if ((s = parse_domain(ps, dom, a)) == NULL)
			return NULL;
	} else if (*s == '>') {
		/* "<Postmaster>" is the one forward-path without a domain
		 * (RFC 5321 section 4.1.1.3); it takes no source route. */
		if (kind != GH_PATH_RCPT || a->had_route || a->is_quoted ||
		    end - local != 10 ||
		    strncasecmp(local, "postmaster", 10) != 0) {
			ps->why = "Missing domain";
			return NULL;
		}
	} else {
		ps->why = stop_why(*s, "Invalid character in local part");
		return NULL;
	}
	/* s is at ">" */
	if ((size_t)(s + 1 - start) > MAX_PATH) {
		ps->why = "Address too long";
		return NULL;
	}

	a->local = gh_pstrndup(ps->pool, local, end - local);
	if (dom != NULL) {
		a->domain = gh_pstrndup(ps->pool, dom, s - dom);
		a->mailbox = gh_pstrndup(ps->pool, local, s - local);
	} else
		a->mailbox = a->local;
	if (a->is_quoted)
		unquote(ps, a);
	a->utf8 = ps->utf8;
	return s + 1;
}

/*
 * Mail-parameters = esmtp-param *(SP esmtp-param), RFC 5321 section
 * 4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-"),
 * esmtp-value = 1*(%d33-60 / %d62-126).  Runs of spaces and trailing
 * spaces are tolerated.  Keywords are upper-cased; values are kept as
 * written.
 */
static int
parse_params(struct parser *ps, const char *s, struct gh_path *out)
{
	const char *key, *val;
	char *k;
	size_t klen, i;

	for (;;) {
		while (*s == ' ')
			s++;
		if (*s == '\0')
			return 0;

		key = s;
		if (!is_alnum(*s))
			goto badkey;
		while (is_alnum(*s) || *s == '-')
			s++;
		if (*s != '=' && *s != ' ' && *s != '\0')
			goto badkey;
		klen = s - key;

		val = NULL;
		if (*s == '=') {
			val = ++s;
			while (*s > 32 && *s < 127 && *s != '=')
				s++;
			if (s == val || (*s != ' ' && *s != '\0')) {
				ps->why = "Invalid parameter value";
				return -1;
			}
		}

		for (i = 0; i < out->nparams; i++)
			if (strlen(out->params[i].key) == klen &&
			    strncasecmp(out->params[i].key, key, klen) == 0) {
				ps->why = "Duplicate parameter";
				return -1;
			}
		if (out->nparams == GH_MAX_PARAMS) {
			ps->why = "Too many parameters";
			return -1;
		}
		k = gh_pstrndup(ps->pool, key, klen);
		for (i = 0; i < klen; i++)
			if (k[i] >= 'a' && k[i] <= 'z')
				k[i] -= 'a' - 'A';
		out->params[out->nparams].key = k;
		out->params[out->nparams].value = val == NULL ? NULL :
		    gh_pstrndup(ps->pool, val, s - val);
		out->nparams++;
	}
 badkey:
	ps->why = "Invalid parameter keyword";
	return -1;
}

int
gh_path_parse(struct gh_pool *p, const char *s, enum gh_path_kind kind,
    struct gh_path *out, const char **why)
{
	struct parser ps;
	const char *rest;

	memset(out, 0, sizeof(*out));
	memset(&ps, 0, sizeof(ps));
	ps.pool = p;
	if (s == NULL)
		s = "";

	/* "MAIL FROM: <a@b>" is not RFC 5321 but common; Postfix and
	 * Exim take it.  One space only. */
	if (*s == ' ')
		s++;
	if (*s != '<') {
		ps.why = "Address must be in angle brackets";
		goto fail;
	}
	if ((rest = parse_addr(&ps, s, kind, &out->addr)) == NULL)
		goto fail;
	if (*rest != '\0' && *rest != ' ') {
		ps.why = "Garbage after address";
		goto fail;
	}
	if (parse_params(&ps, rest, out) == -1)
		goto fail;
	return 0;
 fail:
	/* Leave nothing half-filled for a careless caller. */
	memset(out, 0, sizeof(*out));
	if (why != NULL)
		*why = ps.why;
	return -1;
}

/*
 * The value of ESMTP parameter key (matched case-insensitively): the
 * text after "=", or "" when the keyword was given without "=" (as
 * SMTPUTF8 is), or NULL when it was not given at all.  So a test for
 * presence is `gh_path_param(p, "SMTPUTF8") != NULL`.
 */
const char *
gh_path_param(const struct gh_path *path, const char *key)
{
	size_t i;

	if (path == NULL || key == NULL)
		return NULL;
	for (i = 0; i < path->nparams; i++)
		if (strcasecmp(path->params[i].key, key) == 0)
			return path->params[i].value != NULL ?
			    path->params[i].value : "";
	return NULL;
}

/*
 * A hostname Domain per RFC 5321 section 4.1.2, U-labels allowed; no
 * address literals, no trailing dot.
 */
int
gh_domain_valid(const char *s)
{
	const char *why;
	int utf8 = 0;

	if (s == NULL)
		return 0;
	return domain_check(s, strlen(s), &utf8, &why) == 0;
}
