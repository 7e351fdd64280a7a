/*
 * log.c - leveled logging to stderr or syslog.
 *
 * Levels go down to the SMTP protocol itself (GH_LOG_PROTO).  Nothing a
 * client sent reaches a log line raw: gh_sanitize() escapes control
 * octets so a CR or LF can never forge a log record.
 */
#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "core.h"

static const char *log_ident = "gatehouse";
static enum gh_loglevel log_level = GH_LOG_INFO;
static int log_syslog;

static const char *const level_names[] = {
	"error", "warning", "info", "debug", "protocol", NULL
};

void
gh_log_init(const char *ident, enum gh_loglevel level, int to_syslog)
{
	log_ident = ident;
	log_level = level;
	log_syslog = to_syslog;
	if (to_syslog)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
gh_log_set_level(enum gh_loglevel level)
{
	log_level = level;
}

enum gh_loglevel
gh_log_level(void)
{
	return log_level;
}

int
gh_loglevel_from_name(const char *name)
{
	int i;

	for (i = 0; level_names[i] != NULL; i++)
		if (strcasecmp(name, level_names[i]) == 0)
			return i;
	return -1;
}

static void
log_emit(enum gh_loglevel lvl, const char *line)
{
	static const int prio[] = {
		LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG, LOG_DEBUG
	};
	char stamp[32];
	struct timespec ts;
	struct tm tm;

	if (log_syslog) {
		syslog(prio[lvl], "%s", line);
		return;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "%s.%03ld %s[%d]: %s: %s\n", stamp,
		ts.tv_nsec / 1000000, log_ident, (int)getpid(),
		level_names[lvl], line);
}

static void
log_v(enum gh_loglevel lvl, const char *prefix, const char *fmt, va_list ap)
{
	char line[2048], clean[2048];
	size_t off = 0;

	if (prefix != NULL)
		off = (size_t)snprintf(line, sizeof(line), "%s", prefix);
	if (off >= sizeof(line))
		off = sizeof(line) - 1;
	vsnprintf(line + off, sizeof(line) - off, fmt, ap);
	/* Whatever a caller formatted in, one call is one log record:
	 * control octets are escaped here as a last line of defence. */
	gh_sanitize(clean, sizeof(clean), line, strlen(line));
	log_emit(lvl, clean);
}

void
gh_log(enum gh_loglevel lvl, const char *fmt, ...)
{
	va_list ap;

	if (lvl > log_level)
		return;
	va_start(ap, fmt);
	log_v(lvl, NULL, fmt, ap);
	va_end(ap);
}

void
gh_clog(struct gh_call *c, enum gh_loglevel lvl, const char *fmt, ...)
{
	char prefix[128];
	va_list ap;

	if (lvl > log_level)
		return;
	snprintf(prefix, sizeof(prefix), "%s %s: ",
		 c->conn != NULL ? c->conn->id : "-",
		 c->plugin != NULL ? c->plugin->name : "core");
	va_start(ap, fmt);
	log_v(lvl, prefix, fmt, ap);
	va_end(ap);
}

size_t
gh_sanitize(char *dst, size_t n, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	if (n == 0)
		return 0;
	for (i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch >= 0x20 && ch != 0x7f) {
			if (o + 1 >= n)
				break;
			dst[o++] = (char)ch;
			continue;
		}
		/* \xNN: visible, unambiguous, never a line break. */
		if (o + 4 >= n)
			break;
		dst[o++] = '\\';
		dst[o++] = 'x';
		dst[o++] = hex[ch >> 4];
		dst[o++] = hex[ch & 15];
	}
	dst[o] = '\0';
	return o;
}
