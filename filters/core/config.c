/*
 * config.c - reading and validating the configuration file.
 *
 * The file is libconfig syntax.  The top level holds `plugins`, a list of
 * plugin names in chain order, `plugin_dir`, the host's own sections
 * ("relayd", "dns", ...) and one group per plugin.  Every group is checked
 * against a directive table: unknown keys, wrong types and values out of
 * range are errors naming file and line, so a typo never silently falls
 * back to a default.
 *
 * Defaults are written in the directive tables in libconfig syntax and
 * parsed with libconfig itself, through the same code as the file's
 * values: what `-h` prints is exactly what the parser applies.
 *
 * Everything that outlives gh_config_load (strings, lists, plugin confs)
 * is copied into the configuration's pool; the libconfig handle is
 * destroyed before returning.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"

#ifndef GH_PLUGIN_DIR
#define GH_PLUGIN_DIR "/usr/local/lib/gatehouse/plugins"
#endif

/* A plugin group is validated against its module's table and the common
 * one at once, so at most this many tables apply to one group. */
#define MAX_TABLES 2

static const char *const mode_choices[] = { "enforce", "shadow", NULL };

const struct gh_directive gh_plugin_common_directives[] = {
	{
		.name = "mode",
		.type = GH_DT_ENUM,
		.offset = offsetof(struct gh_plugin, shadow),
		.def = "\"enforce\"",
		.choices = mode_choices,
		.doc = "shadow logs and counts rejecting verdicts but acts "
		    "as CONT",
	},
	{
		.name = "timeout",
		.type = GH_DT_INT,
		.offset = offsetof(struct gh_plugin, timeout),
		.def = "30",
		.min = 0,
		.max = 3600,
		.doc = "deadline in seconds for a pending hook (0: none); "
		    "on expiry the hook counts as DENYSOFT",
	},
	{ .name = NULL },
};

/* Why a value was refused, and which setting to blame (an element of a
 * list may sit on a later line than its key). */
struct why {
	char text[256];
	const config_setting_t *at;
	const char *file;	/* the main file, for reading a value back */
};

static void why_set(struct why *, const config_setting_t *, const char *, ...)
	__attribute__((format(printf, 3, 4)));

static void
why_set(struct why *w, const config_setting_t *at, const char *fmt, ...)
{
	va_list ap;

	w->at = at;
	va_start(ap, fmt);
	vsnprintf(w->text, sizeof(w->text), fmt, ap);
	va_end(ap);
}

/*
 * The name to print for a file libconfig read.  An @include'd file is
 * named as written in the directive, relative to the include dir: prefix
 * that so the name can be opened.  path is scratch space.
 */
static const char *
source_name(const config_t *cf, const char *sf, const char *file,
    char *path, size_t n)
{
	const char *dir;

	if (sf == NULL || (file != NULL && strcmp(sf, file) == 0))
		return file != NULL ? file : "(config)";
	dir = cf != NULL ? config_get_include_dir(cf) : NULL;
	if (sf[0] == '/' || dir == NULL || dir[0] == '\0')
		return sf;
	snprintf(path, n, "%s%s%s", dir,
	    dir[strlen(dir) - 1] == '/' ? "" : "/", sf);
	return path;
}

/*
 * libconfig joins adjacent string literals ("a" "b"), so it stamps a
 * string element of a list with the line of the token after it: in
 *
 *	plugins = [
 *	  "dnsbl"
 *	];
 *
 * "dnsbl" is said to be on the line of "];".  Look back from there for
 * the line that holds the string as written, no further than the line of
 * the element before it (or of the list itself), which cannot be later.
 * A value with quotes or backslashes is written escaped: left as is.
 */
static unsigned
string_elem_line(const char *path, const config_setting_t *s, unsigned line)
{
	const config_setting_t *list = config_setting_parent(s);
	char want[512], buf[4096];
	unsigned low, n = 0, found = 0;
	int idx = config_setting_index(s);
	FILE *fp;

	if (list == NULL || config_setting_type(s) != CONFIG_TYPE_STRING ||
	    !(config_setting_is_array(list) || config_setting_is_list(list)) ||
	    strpbrk(config_setting_get_string(s), "\"\\") != NULL)
		return line;
	low = idx > 0 ? config_setting_source_line(
	    config_setting_get_elem(list, (unsigned)idx - 1)) :
	    config_setting_source_line(list);
	snprintf(want, sizeof(want), "\"%s\"", config_setting_get_string(s));
	if (low == 0 || (fp = fopen(path, "r")) == NULL)
		return line;
	/* A line longer than buf counts as several: only numbering
	 * complete lines matters, and those end in "\n". */
	while (n < line && fgets(buf, sizeof(buf), fp) != NULL) {
		if (strchr(buf, '\n') != NULL || feof(fp))
			n++;
		if (n >= low && strstr(buf, want) != NULL)
			found = n + (strchr(buf, '\n') == NULL && !feof(fp));
	}
	fclose(fp);
	return found > 0 ? found : line;
}

/*
 * "FILE:LINE: " for setting s.  libconfig knows the file a setting came
 * from, which differs from the main file for @include'd settings; file is
 * the fallback for strings parsed from memory.  LINE is left out when
 * libconfig cannot tell (0).
 */
static void
where(char *buf, size_t n, const char *file, const config_setting_t *s)
{
	const char *f = file != NULL ? file : "(config)";
	char path[1024];
	unsigned line = 0;

	if (s != NULL) {
		line = config_setting_source_line(s);
		f = source_name(s->config, config_setting_source_file(s), file,
		    path, sizeof(path));
		if (line > 0)
			line = string_elem_line(f, s, line);
	}
	if (line > 0)
		snprintf(buf, n, "%s:%u: ", f, line);
	else
		snprintf(buf, n, "%s: ", f);
}

static void err_at(char *, size_t, const char *, const config_setting_t *,
    const char *, ...) __attribute__((format(printf, 5, 6)));

static void
err_at(char *err, size_t errlen, const char *file, const config_setting_t *s,
    const char *fmt, ...)
{
	char loc[512], msg[512];
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	where(loc, sizeof(loc), file, s);
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%s%s", loc, msg);
}

static void err_plain(char *, size_t, const char *, ...)
	__attribute__((format(printf, 3, 4)));

static void
err_plain(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static void *
field(void *conf, const struct gh_directive *d)
{
	return (char *)conf + d->offset;
}

/* `"a", "b"` into buf, for messages and -h. */
static void
choices_text(char *buf, size_t n, const char *const *choices)
{
	size_t i, len = 0;

	buf[0] = '\0';
	for (i = 0; choices != NULL && choices[i] != NULL; i++) {
		snprintf(buf + len, n - len, "%s\"%s\"", i ? ", " : "",
		    choices[i]);
		len = strlen(buf);
	}
}

static int
set_bool(const struct gh_directive *d, void *conf, const config_setting_t *s,
    struct why *w)
{
	if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
		why_set(w, s, "expected true or false");
		return -1;
	}
	*(int *)field(conf, d) = config_setting_get_bool(s) ? 1 : 0;
	return 0;
}

/*
 * libconfig 1.5 reads an integer without an L suffix into 32 bits and
 * keeps whatever is left: 4294967297 arrives as 1.  So the literal of a
 * 32-bit setting is read back from its line ("name = value" or "name:
 * value") and parsed here; *v gets its true value (saturated) and text
 * the literal.  Returns 1 when the text says more than libconfig kept, 0
 * when it agrees or cannot be found (the setting is then taken as
 * libconfig read it).
 */
static int
int_wrapped(const config_setting_t *s, const char *file, long long *v,
    char *text, size_t textlen)
{
	const char *name = config_setting_name(s), *p;
	char path[1024], buf[4096], *end;
	unsigned line = config_setting_source_line(s), n = 0, more = 0;
	size_t len;
	FILE *fp;
	long long x;

	if (name == NULL || line == 0 || (fp = fopen(source_name(s->config,
	    config_setting_source_file(s), file, path, sizeof(path)), "r")) ==
	    NULL)
		return 0;
	while (n < line && fgets(buf, sizeof(buf), fp) != NULL)
		n++;
	/* The "=" or the value may follow on the next lines: a few of them
	 * are joined on, line breaks as spaces. */
	len = n == line ? strlen(buf) : 0;
	while (n == line && len + 1 < sizeof(buf) && more < 4 &&
	       fgets(buf + len, (int)(sizeof(buf) - len), fp) != NULL) {
		more++;
		len = strlen(buf);
	}
	fclose(fp);
	if (n != line)
		return 0;
	for (end = buf; *end != '\0'; end++)
		if (*end == '\n' || *end == '\r')
			*end = ' ';
	len = strlen(name);
	for (p = strstr(buf, name); p != NULL; p = strstr(p + 1, name)) {
		if (p > buf && (isalnum((unsigned char)p[-1]) || p[-1] == '_' ||
		    p[-1] == '-' || p[-1] == '*'))
			continue;
		p += len;
		p += strspn(p, " \t");
		if (*p != '=' && *p != ':')
			continue;
		p++;
		p += strspn(p, " \t");
		errno = 0;
		x = strtoll(p, &end, 0);
		if (end == p || *end == 'L' || *end == 'l' || *end == '.' ||
		    *end == 'e' || *end == 'E')
			return 0;
		if (errno == ERANGE || x != (long long)config_setting_get_int(s)) {
			*v = x;
			snprintf(text, textlen, "%.*s", (int)(end - p), p);
			return 1;
		}
		return 0;
	}
	return 0;
}

static int
set_int(const struct gh_directive *d, void *conf, const config_setting_t *s,
    struct why *w)
{
	long long v;
	char text[32];

	if (config_setting_type(s) != CONFIG_TYPE_INT &&
	    config_setting_type(s) != CONFIG_TYPE_INT64) {
		why_set(w, s, "expected an integer");
		return -1;
	}
	if (config_setting_type(s) == CONFIG_TYPE_INT && w->file != NULL &&
	    int_wrapped(s, w->file, &v, text, sizeof(text))) {
		if (v < d->min || v > d->max)
			why_set(w, s, "value %s is out of range %lld..%lld",
			    text, d->min, d->max);
		else
			why_set(w, s, "value %s does not fit in 32 bits: "
			    "write it with an L suffix (%sL)", text, text);
		return -1;
	}
	v = config_setting_get_int64(s);
	if (v < d->min || v > d->max) {
		why_set(w, s, "value %lld is out of range %lld..%lld", v,
		    d->min, d->max);
		return -1;
	}
	*(long long *)field(conf, d) = v;
	return 0;
}

static int
set_string(const struct gh_directive *d, void *conf, const config_setting_t *s,
    struct gh_pool *pool, struct why *w)
{
	if (config_setting_type(s) != CONFIG_TYPE_STRING) {
		why_set(w, s, "expected a string");
		return -1;
	}
	*(const char **)field(conf, d) =
	    gh_pstrdup(pool, config_setting_get_string(s));
	return 0;
}

/*
 * An array or list of strings, or one string standing for a list of one:
 * `whitelist = "10.0.0.0/8";` is what people write.  v is always
 * allocated and NULL-terminated, so users may walk either way.
 */
static int
strlist_read(struct gh_strlist *out, const config_setting_t *s,
    long long min, long long max, struct gh_pool *pool, struct why *w)
{
	const config_setting_t *e;
	const char **v;
	size_t i, n;

	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		n = 1;
	} else if (config_setting_is_array(s) || config_setting_is_list(s)) {
		n = (size_t)config_setting_length(s);
		for (i = 0; i < n; i++) {
			e = config_setting_get_elem(s, (unsigned)i);
			if (config_setting_type(e) != CONFIG_TYPE_STRING) {
				why_set(w, e, "expected a list of strings");
				return -1;
			}
		}
	} else {
		why_set(w, s, "expected a string or a list of strings");
		return -1;
	}
	if (max > 0 && n > (unsigned long long)max) {
		why_set(w, s, "too many values (%zu, at most %lld)", n, max);
		return -1;
	}
	if (min > 0 && n < (unsigned long long)min) {
		why_set(w, s, "needs at least %lld value%s", min,
			min == 1 ? "" : "s");
		return -1;
	}
	v = gh_palloc(pool, (n + 1) * sizeof(*v));
	if (config_setting_type(s) == CONFIG_TYPE_STRING)
		v[0] = gh_pstrdup(pool, config_setting_get_string(s));
	else
		for (i = 0; i < n; i++)
			v[i] = gh_pstrdup(pool,
			    config_setting_get_string_elem(s, (unsigned)i));
	v[n] = NULL;
	out->n = n;
	out->v = v;
	return 0;
}

static int
set_enum(const struct gh_directive *d, void *conf, const config_setting_t *s,
    struct why *w)
{
	char list[512];
	const char *v;
	int i;

	if (config_setting_type(s) == CONFIG_TYPE_STRING) {
		v = config_setting_get_string(s);
		for (i = 0; d->choices != NULL && d->choices[i] != NULL; i++) {
			if (strcasecmp(v, d->choices[i]) == 0) {
				*(int *)field(conf, d) = i;
				return 0;
			}
		}
	}
	choices_text(list, sizeof(list), d->choices);
	why_set(w, s, "expected one of %s", list);
	return -1;
}

/* Store the value of setting s for directive d. */
static int
dir_set(const struct gh_directive *d, void *conf, const config_setting_t *s,
    struct gh_pool *pool, struct why *w)
{
	switch (d->type) {
	case GH_DT_BOOL:
		return set_bool(d, conf, s, w);
	case GH_DT_INT:
		return set_int(d, conf, s, w);
	case GH_DT_STRING:
		return set_string(d, conf, s, pool, w);
	case GH_DT_STRLIST:
		return strlist_read(field(conf, d), s, d->min, d->max, pool,
				    w);
	case GH_DT_ENUM:
		return set_enum(d, conf, s, w);
	}
	why_set(w, s, "internal: unknown directive type %d", (int)d->type);
	return -1;
}

/* NULL def: zero, NULL or the empty list. */
static void
dir_zero(const struct gh_directive *d, void *conf, struct gh_pool *pool)
{
	struct gh_strlist *l;

	switch (d->type) {
	case GH_DT_BOOL:
	case GH_DT_ENUM:
		*(int *)field(conf, d) = 0;
		break;
	case GH_DT_INT:
		*(long long *)field(conf, d) = 0;
		break;
	case GH_DT_STRING:
		*(const char **)field(conf, d) = NULL;
		break;
	case GH_DT_STRLIST:
		l = field(conf, d);
		l->n = 0;
		l->v = gh_palloc(pool, sizeof(*l->v));
		break;
	}
}

/*
 * Apply d's default.  The text is parsed as "v = <def>;" and stored by
 * dir_set, so a default obeys the same rules as a value in the file.  A
 * default that does not parse or does not fit is the table author's bug.
 */
static int
dir_default(const struct gh_directive *d, void *conf, struct gh_pool *pool,
    char *err, size_t errlen)
{
	config_t cf;
	config_setting_t *s;
	struct why w = { .file = NULL };
	char *src;
	size_t n;
	int rc = -1;

	if (d->type == GH_DT_ENUM &&
	    (d->choices == NULL || d->choices[0] == NULL)) {
		err_plain(err, errlen, "internal: bad default for %s",
		    d->name);
		return -1;
	}
	if (d->def == NULL) {
		dir_zero(d, conf, pool);
		return 0;
	}
	n = strlen(d->def) + sizeof("v = ;");
	if ((src = malloc(n)) == NULL) {
		err_plain(err, errlen, "%s", strerror(errno));
		return -1;
	}
	snprintf(src, n, "v = %s;", d->def);
	config_init(&cf);
	if (config_read_string(&cf, src) == CONFIG_TRUE &&
	    config_setting_length(config_root_setting(&cf)) == 1 &&
	    (s = config_lookup(&cf, "v")) != NULL &&
	    dir_set(d, conf, s, pool, &w) == 0)
		rc = 0;
	config_destroy(&cf);
	free(src);
	if (rc == -1)
		err_plain(err, errlen, "internal: bad default for %s", d->name);
	return rc;
}

static const struct gh_directive *
dir_find(const struct gh_directive *dirs, const char *name)
{
	for (; dirs != NULL && dirs->name != NULL; dirs++)
		if (strcmp(dirs->name, name) == 0)
			return dirs;
	return NULL;
}

/*
 * gh_directives_apply over several tables at once: each table fills its
 * own conf, a key must be known to one of them.  A plugin group holds
 * both the module's directives and the common ones.
 */
static int
directives_apply_n(const struct gh_directive *const *tabs, void *const *confs,
    size_t ntabs, const config_setting_t *group, struct gh_pool *pool,
    const char *file, char *err, size_t errlen)
{
	const struct gh_directive *d, *found;
	const config_setting_t *s;
	const char *gname, *key;
	struct why w = { .file = file };
	void *conf;
	size_t t;
	int i, n;

	for (t = 0; t < ntabs; t++)
		for (d = tabs[t]; d != NULL && d->name != NULL; d++)
			if (dir_default(d, confs[t], pool, err, errlen) == -1)
				return -1;
	if (group == NULL)
		return 0;

	gname = config_setting_name(group);
	if (gname == NULL)
		gname = "(root)";
	if (!config_setting_is_group(group)) {
		err_at(err, errlen, file, group, "%s: expected a group", gname);
		return -1;
	}
	n = config_setting_length(group);
	for (i = 0; i < n; i++) {
		s = config_setting_get_elem(group, (unsigned)i);
		key = config_setting_name(s);
		found = NULL;
		conf = NULL;
		for (t = 0; t < ntabs && found == NULL; t++)
			if ((found = dir_find(tabs[t], key)) != NULL)
				conf = confs[t];
		if (found == NULL) {
			err_at(err, errlen, file, s,
			    "%s: unknown setting \"%s\"", gname, key);
			return -1;
		}
		if (dir_set(found, conf, s, pool, &w) == -1) {
			err_at(err, errlen, file, w.at, "%s.%s: %s", gname,
			    key, w.text);
			return -1;
		}
	}
	return 0;
}

int
gh_directives_apply(const struct gh_directive *dirs, void *conf,
    const config_setting_t *group, struct gh_pool *pool, const char *file,
    char *err, size_t errlen)
{
	const struct gh_directive *tabs[1] = { dirs };
	void *confs[1] = { conf };

	return directives_apply_n(tabs, confs, 1, group, pool, file, err,
	    errlen);
}

static const char *
dtype_name(enum gh_dtype t)
{
	switch (t) {
	case GH_DT_BOOL:
		return "bool";
	case GH_DT_INT:
		return "integer";
	case GH_DT_STRING:
		return "string";
	case GH_DT_STRLIST:
		return "list of strings";
	case GH_DT_ENUM:
		return "one of";
	}
	return "?";
}

/* The default as written in the table, or what NULL stands for. */
static const char *
dir_default_text(const struct gh_directive *d, char *buf, size_t n)
{
	if (d->def != NULL)
		return d->def;
	switch (d->type) {
	case GH_DT_BOOL:
		return "false";
	case GH_DT_INT:
		return "0";
	case GH_DT_STRING:
		return "\"\"";
	case GH_DT_STRLIST:
		return "[]";
	case GH_DT_ENUM:
		if (d->choices != NULL && d->choices[0] != NULL) {
			snprintf(buf, n, "\"%s\"", d->choices[0]);
			return buf;
		}
		break;
	}
	return "\"\"";
}

void
gh_directives_print(FILE *fp, const struct gh_directive *dirs)
{
	const struct gh_directive *d;
	char buf[512], defbuf[128];

	for (d = dirs; d != NULL && d->name != NULL; d++) {
		switch (d->type) {
		case GH_DT_INT:
			snprintf(buf, sizeof(buf), "%s, %lld..%lld",
			    dtype_name(d->type), d->min, d->max);
			break;
		case GH_DT_STRLIST:
			if (d->max > 0)
				snprintf(buf, sizeof(buf), "%s, at most %lld",
				    dtype_name(d->type), d->max);
			else
				snprintf(buf, sizeof(buf), "%s",
				    dtype_name(d->type));
			break;
		case GH_DT_ENUM:
			snprintf(buf, sizeof(buf), "%s ", dtype_name(d->type));
			choices_text(buf + strlen(buf),
			    sizeof(buf) - strlen(buf), d->choices);
			break;
		default:
			snprintf(buf, sizeof(buf), "%s", dtype_name(d->type));
			break;
		}
		fprintf(fp, "  %s = %s;   (%s)\n", d->name,
		    dir_default_text(d, defbuf, sizeof(defbuf)), buf);
		if (d->doc != NULL)
			fprintf(fp, "      %s\n", d->doc);
	}
}

/* ------------------------------------------------------------------ */
/* Loading a file.                                                     */

static int
name_in(const char *name, const char *const *list)
{
	for (; list != NULL && *list != NULL; list++)
		if (strcmp(*list, name) == 0)
			return 1;
	return 0;
}

static struct gh_section *
section_find(struct gh_section *sections, const char *name)
{
	for (; sections != NULL && sections->name != NULL; sections++)
		if (strcmp(sections->name, name) == 0)
			return sections;
	return NULL;
}

static const struct gh_module *
builtin_find(const char *name)
{
	const struct gh_module *const *m;

	for (m = gh_builtin_modules; *m != NULL; m++)
		if (strcmp((*m)->name, name) == 0)
			return *m;
	return NULL;
}

static struct gh_plugin *
plugin_find(struct gh_config *cfg, const char *name)
{
	size_t i;

	for (i = 0; i < cfg->nplugins; i++)
		if (strcmp(cfg->plugins[i].name, name) == 0)
			return &cfg->plugins[i];
	return NULL;
}

/*
 * A plugin name becomes a libconfig group name and, for a loadable
 * plugin, part of a path: allow only what libconfig allows for a name,
 * which also keeps "/" and ".." out of plugin_dir lookups.
 */
static int
plugin_name_valid(const char *s)
{
	const char *p;

	if ((s[0] < 'a' || s[0] > 'z') && (s[0] < 'A' || s[0] > 'Z'))
		return 0;
	for (p = s + 1; *p != '\0'; p++)
		if ((*p < 'a' || *p > 'z') && (*p < 'A' || *p > 'Z') &&
		    (*p < '0' || *p > '9') && *p != '_' && *p != '-')
			return 0;
	return 1;
}

/* Read, check and resolve `plugins`; fill cfg->plugins (mod and name). */
static int
plugins_read(struct gh_config *cfg, const config_setting_t *root,
    struct gh_section *sections, const char *const *ignore,
    const char *file, char *err, size_t errlen)
{
	const config_setting_t *s, *e;
	struct gh_strlist names;
	struct gh_plugin *p;
	struct why w = { .file = NULL };
	char detail[512];
	size_t i;

	if ((s = config_setting_get_member(root, "plugins")) == NULL)
		return 0;
	if (strlist_read(&names, s, 0, 0, cfg->pool, &w) == -1) {
		err_at(err, errlen, file, w.at, "plugins: %s", w.text);
		return -1;
	}
	cfg->plugins = gh_palloc(cfg->pool,
	    (names.n ? names.n : 1) * sizeof(*cfg->plugins));
	for (i = 0; i < names.n; i++) {
		/* A single string has no elements to point at. */
		e = config_setting_type(s) == CONFIG_TYPE_STRING ? s :
		    config_setting_get_elem(s, (unsigned)i);
		if (!plugin_name_valid(names.v[i])) {
			err_at(err, errlen, file, e,
			    "plugins: invalid plugin name \"%s\"", names.v[i]);
			return -1;
		}
		if (section_find(sections, names.v[i]) != NULL ||
		    name_in(names.v[i], ignore) ||
		    strcmp(names.v[i], "plugins") == 0 ||
		    strcmp(names.v[i], "plugin_dir") == 0) {
			err_at(err, errlen, file, e,
			    "plugins: \"%s\" is a reserved name", names.v[i]);
			return -1;
		}
		if (plugin_find(cfg, names.v[i]) != NULL) {
			err_at(err, errlen, file, e,
			    "plugins: duplicate plugin \"%s\"", names.v[i]);
			return -1;
		}
		p = &cfg->plugins[cfg->nplugins];
		detail[0] = '\0';
		p->mod = gh_module_find(names.v[i], cfg->plugin_dir, detail,
		    sizeof(detail));
		if (p->mod == NULL) {
			err_at(err, errlen, file, e,
			    "plugins: unknown plugin \"%s\"%s%s", names.v[i],
			    detail[0] ? ": " : "", detail);
			return -1;
		}
		p->name = names.v[i];
		cfg->nplugins++;
	}
	return 0;
}

/*
 * Validate a plugin's group (NULL: defaults only) into p: the module's
 * directives into p->conf, the common ones into p itself.
 */
static int
plugin_apply(struct gh_config *cfg, struct gh_plugin *p,
    const config_setting_t *group, const char *file, char *err, size_t errlen)
{
	const struct gh_directive *tabs[MAX_TABLES];
	const struct gh_directive *d;
	void *confs[MAX_TABLES];

	/* A module redeclaring a common key would make one of the two
	 * silently unreachable. */
	for (d = p->mod->directives; d != NULL && d->name != NULL; d++) {
		if (dir_find(gh_plugin_common_directives, d->name) != NULL) {
			err_plain(err, errlen, "internal: module %s declares "
			    "common directive %s", p->mod->name, d->name);
			return -1;
		}
	}
	p->conf = gh_palloc(cfg->pool,
	    p->mod->conf_size ? p->mod->conf_size : 1);
	tabs[0] = p->mod->directives;
	confs[0] = p->conf;
	tabs[1] = gh_plugin_common_directives;
	confs[1] = p;
	return directives_apply_n(tabs, confs, MAX_TABLES, group, cfg->pool,
	    file, err, errlen);
}

static int
plugin_dir_read(struct gh_config *cfg, const config_setting_t *root,
    const char *file, char *err, size_t errlen)
{
	const config_setting_t *s;

	cfg->plugin_dir = GH_PLUGIN_DIR;
	if ((s = config_setting_get_member(root, "plugin_dir")) == NULL)
		return 0;
	if (config_setting_type(s) != CONFIG_TYPE_STRING ||
	    config_setting_get_string(s)[0] == '\0') {
		err_at(err, errlen, file, s,
		    "plugin_dir: expected a non-empty string");
		return -1;
	}
	cfg->plugin_dir = gh_pstrdup(cfg->pool, config_setting_get_string(s));
	return 0;
}

/* One top-level setting other than plugins and plugin_dir. */
static int
toplevel_check(struct gh_config *cfg, const config_setting_t *s,
    struct gh_section *sections, const char *const *ignore, const char *file,
    char *err, size_t errlen)
{
	const char *name = config_setting_name(s);
	struct gh_section *sec;
	struct gh_plugin *p, scratch;

	if (strcmp(name, "plugins") == 0 || strcmp(name, "plugin_dir") == 0)
		return 0;
	if (name_in(name, ignore))
		return 0;
	if ((sec = section_find(sections, name)) != NULL)
		return gh_directives_apply(sec->directives, sec->conf, s,
		    cfg->pool, file, err, errlen);
	if ((p = plugin_find(cfg, name)) != NULL)
		return plugin_apply(cfg, p, s, file, err, errlen);
	/* A known module left out of `plugins` (commented out, say) is
	 * still checked so that its typos surface now, not when it is
	 * enabled again; the result is thrown away. */
	memset(&scratch, 0, sizeof(scratch));
	if ((scratch.mod = builtin_find(name)) != NULL) {
		scratch.name = name;
		return plugin_apply(cfg, &scratch, s, file, err, errlen);
	}
	if (config_setting_is_group(s))
		err_at(err, errlen, file, s, "unknown setting \"%s\" "
		    "(not a plugin name or a section)", name);
	else
		err_at(err, errlen, file, s, "unknown setting \"%s\"", name);
	return -1;
}

/*
 * @include "x.conf" is read relative to the directory of the main file,
 * not the daemon's cwd.  libconfig 1.5 would do that with an include
 * dir, but it prefixes the dir to absolute paths too, so that
 * @include "/etc/gatehouse/x.conf" fails.  Instead the file is parsed
 * from inside its directory (the daemon is single-threaded while it
 * reads configuration) and the include dir is set afterwards, for
 * naming included files in messages only.
 */
static int
parse_in_dir(config_t *cf, FILE *fp, const char *dir)
{
	int here, rc;

	if (dir == NULL)
		return config_read(cf, fp);
	if ((here = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
	    chdir(dir) != 0) {
		/* Cannot come back, or cannot go: the include dir is
		 * right for relative includes at least. */
		if (here >= 0)
			close(here);
		config_set_include_dir(cf, dir);
		return config_read(cf, fp);
	}
	rc = config_read(cf, fp);
	if (fchdir(here) != 0)
		gh_log(GH_LOG_ERR, "cannot return to the working directory: "
		    "%s", strerror(errno));
	close(here);
	config_set_include_dir(cf, dir);
	return rc;
}

static int
file_read(config_t *cf, struct gh_pool *pool, const char *path, char *err,
    size_t errlen)
{
	const char *f, *slash = strrchr(path, '/'), *dir = NULL;
	char name[1024];
	struct stat st;
	FILE *fp;
	int rc;

	/* libconfig reports only "file I/O error": open first to say
	 * why.  A directory opens fine and fails on the first read. */
	if ((fp = fopen(path, "r")) == NULL) {
		err_plain(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(fp), &st) == 0 && S_ISDIR(st.st_mode)) {
		fclose(fp);
		err_plain(err, errlen, "%s: %s", path, strerror(EISDIR));
		return -1;
	}
	if (slash != NULL)
		dir = slash == path ? "/" :
		    gh_pstrndup(pool, path, (size_t)(slash - path));
	rc = parse_in_dir(cf, fp, dir);
	fclose(fp);
	if (rc == CONFIG_TRUE)
		return 0;
	f = source_name(cf, config_error_file(cf), path, name, sizeof(name));
	if (config_error_line(cf) > 0)
		err_plain(err, errlen, "%s:%d: %s", f, config_error_line(cf),
		    config_error_text(cf));
	else
		err_plain(err, errlen, "%s: %s", f, config_error_text(cf));
	return -1;
}

static int
config_build(struct gh_config *cfg, config_t *cf, struct gh_section *sections,
    const char *const *ignore, char *err, size_t errlen)
{
	const config_setting_t *root = config_root_setting(cf);
	const char *file = cfg->path;
	struct gh_section *sec;
	size_t i;
	int n, k;

	if (plugin_dir_read(cfg, root, file, err, errlen) == -1 ||
	    plugins_read(cfg, root, sections, ignore, file, err, errlen) == -1)
		return -1;

	/* Groups that are absent still get their defaults; those present
	 * are filled again below, in file order so that the first error
	 * reported is the first in the file. */
	for (sec = sections; sec != NULL && sec->name != NULL; sec++)
		if (gh_directives_apply(sec->directives, sec->conf, NULL,
		    cfg->pool, file, err, errlen) == -1)
			return -1;
	for (i = 0; i < cfg->nplugins; i++)
		if (plugin_apply(cfg, &cfg->plugins[i], NULL, file, err,
		    errlen) == -1)
			return -1;

	n = config_setting_length(root);
	for (k = 0; k < n; k++)
		if (toplevel_check(cfg, config_setting_get_elem(root,
		    (unsigned)k), sections, ignore, file, err, errlen) == -1)
			return -1;
	return 0;
}

/*
 * Only the plugin_dir a file names, for `-c FILE -h NAME`: the manual of
 * a .so plugin is found where the file says relayd will load it from,
 * without the rest of the file having to be valid.
 */
int
gh_config_plugin_dir(const char *path, char *dir, size_t dirlen, char *err,
    size_t errlen)
{
	struct gh_config cfg;
	config_t cf;
	int rc;

	memset(&cfg, 0, sizeof(cfg));
	cfg.pool = gh_pool_create();
	config_init(&cf);
	rc = file_read(&cf, cfg.pool, path, err, errlen);
	if (rc == 0)
		rc = plugin_dir_read(&cfg, config_root_setting(&cf), path, err,
		    errlen);
	if (rc == 0 && snprintf(dir, dirlen, "%s", cfg.plugin_dir) >=
	    (int)dirlen) {
		err_plain(err, errlen, "%s: plugin_dir: longer than %zu "
		    "characters", path, dirlen - 1);
		rc = -1;
	}
	config_destroy(&cf);
	gh_pool_destroy(cfg.pool);
	return rc;
}

struct gh_config *
gh_config_load(const char *path, struct gh_section *sections,
    const char *const *ignore, char *err, size_t errlen)
{
	struct gh_pool *pool;
	struct gh_config *cfg;
	config_t cf;
	int rc;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	pool = gh_pool_create();
	cfg = gh_palloc(pool, sizeof(*cfg));
	cfg->pool = pool;
	cfg->path = gh_pstrdup(pool, path);
	cfg->plugin_dir = GH_PLUGIN_DIR;

	config_init(&cf);
	rc = file_read(&cf, pool, path, err, errlen);
	if (rc == 0)
		rc = config_build(cfg, &cf, sections, ignore, err, errlen);
	/* Nothing points into libconfig's memory past this point. */
	config_destroy(&cf);
	if (rc == -1) {
		gh_pool_destroy(pool);
		return NULL;
	}
	return cfg;
}

void
gh_config_free(struct gh_config *cfg)
{
	if (cfg == NULL)
		return;
	/* cfg itself lives in its pool. */
	gh_pool_destroy(cfg->pool);
}
