/*
 * fuzz_session.c - a whole relayd SMTP session (relayd/session.c) on
 * arbitrary client octets: command_input()'s line framing (LF, CRLF,
 * max_line_length, NUL), command_dispatch()'s verb lookup and state
 * checks, every cmd_* handler, the DATA and BDAT framers, the AUTH
 * exchanges and XCLIENT, with real plugin chains in between.
 *
 * The worker is built as relayd/main.c builds one: the harness
 * includes main.c (its main renamed, nothing in it changed) for the
 * directive tables and the configuration checks, loads a small
 * configuration written to a temporary folder once (removed once the
 * plugins have read it), and starts the plugins on its own event loop.  No resolver is started, so the
 * session's reverse DNS lookup ends at once; no TLS (no certificate).
 * The plugins: host_list (accepts example.test), headers,
 * rcpt_to_disposable, max_unrecognized (shadow), auth_file with one
 * {CRAM-MD5} user, so that PLAIN and LOGIN verify without crypt(3) and
 * CRAM-MD5 is offered, and fuzzq below, a queue hook that accepts.
 *
 * Each input is one session over a socketpair.  The first octet says
 * how the rest is written (all at once, line by line, or in chunks of
 * 1..16 or 64..1024 octets, the loop run until idle after each write,
 * so partial lines and pipelining are both seen), whether the client
 * is 127.0.0.1 (in xclient_hosts) or 127.0.0.2, and which listener it
 * came to (role=mx or role=submission, both auth_plaintext=yes).  Then
 * the client shuts its side down and the loop runs until the session
 * is freed.  Or, when the octet says so in the first two ways, the
 * client writes everything, closes at once and reads nothing: relayd
 * answers into a dead socket (write errors) and must free the session
 * all the same.  The first octet, bit by bit:
 *   0-1  0 one write, 1 a write per line, 2 chunks of N, 3 of N * 64
 *   2-5  N - 1 (2, 3); bit 2 in ways 0 and 1: close without reading
 *   6    the client is 127.0.0.2 instead of 127.0.0.1
 *   7    the submission listener instead of the mx one
 * FUZZ_SESSION_TRACE=1 in the environment copies relayd's replies to
 * stderr (to read what a corpus file does).
 *
 * Properties: every octet relayd writes belongs to a reply line of at
 * most 512 octets (RFC 5321 4.5.3.1.5) that is three digits, a space
 * or a dash, text of printable US-ASCII, HT or well-formed UTF-8 (no
 * CR, LF, NUL or other control octet: nothing the client sent comes
 * back raw), then CRLF (4.2); the lines of a multi-line reply share
 * their code (4.2.1); the first digit is 2..5 and an enhanced code,
 * when there is one, is of the same class (RFC 3463 2); the output ends
 * on a complete reply; and the session is always freed once the client
 * is gone, within a bounded number of loop passes (LeakSanitizer checks
 * what it held).
 */
#define main relayd_main
#include "../../relayd/main.c"
#undef main

#include <sys/types.h>

#include "fuzz.h"

#define FZ_ROUNDS 100000	/* loop passes before calling it a hang */
#define FZ_REPLY_MAX 512	/* RFC 5321 4.5.3.1.5, CRLF included */

/* ------------------------------------------------------------------ */
/* fuzzq: the queue hook, so that a message can be accepted.           */

static enum gh_verdict
fz_queue(struct gh_call *c)
{
	(void)c;
	return GH_OK;
}

static const struct gh_directive fz_directives[] = {
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

static const struct gh_hook_entry fz_hooks[] = {
	{ GH_HOOK_QUEUE, fz_queue },
	{ 0, NULL }
};

static const struct gh_module fz_module = {
	.abi = GH_ABI_VERSION,
	.name = "fuzzq",
	.description = "accepts every message (fuzz_session)",
	.doc = "",
	.directives = fz_directives,
	.conf_size = 0,
	.hooks = fz_hooks,
	.edits = GH_EDITS_NONE,
};

extern const struct gh_module gh_module_auth_file, gh_module_headers,
    gh_module_host_list, gh_module_max_unrecognized,
    gh_module_rcpt_to_disposable;

/* In place of the generated filters/modules.c: only these are built. */
const struct gh_module *const gh_builtin_modules[] = {
	&gh_module_auth_file,
	&gh_module_headers,
	&gh_module_host_list,
	&gh_module_max_unrecognized,
	&gh_module_rcpt_to_disposable,
	&fz_module,
	NULL
};

/* ------------------------------------------------------------------ */
/* The worker.                                                         */

static const char fz_conf_text[] =
	"relayd = {\n"
	"  hostname = \"mx.fuzz.test\";\n"
	"  listen = [ \"127.0.0.1:2525 role=mx auth_plaintext=yes\",\n"
	"             \"127.0.0.1:2587 role=submission auth_plaintext=yes\" ];\n"
	"  auth_max_failures = 3;\n"
	"  auth_failure_delay = 0;\n"
	"  xclient_hosts = [ \"127.0.0.1\" ];\n"
	"  max_message_size = 65536;\n"
	"  max_recipients = 3;\n"
	"  max_header_size = 1024;\n"
	"  max_header_line = 998;\n"
	"  max_unrecognized = 6;\n"
	"  spool_threshold = 4096;\n"
	"  tmp_dir = \"/tmp\";\n"
	"  trace_header = \"X-Fuzz-Trace\";\n"
	"};\n"
	"log = { level = \"error\"; };\n"
	"dns = { rdns = false; };\n"
	"plugins = [ \"auth_file\", \"max_unrecognized\", "
	"\"rcpt_to_disposable\", \"host_list\", \"headers\", \"fuzzq\" ];\n"
	"auth_file = { file = \"@DIR@/users\"; };\n"
	"host_list = { domains = [ \"example.test\" ]; };\n"
	"max_unrecognized = { limit = 3; mode = \"shadow\"; };\n"
	"headers = { require_date = false; };\n";

/* fuzz / fuzz-pass; {CRAM-MD5} only, so no crypt(3) slows a run. */
static const char fz_users[] =
	"fuzz:{CRAM-MD5}d84d60b6b9e3f181e2f3d1e2e465b3c6"
	"2605853d6002fde11237d8152abecc26\n";

static char fz_dir[64], fz_conf_path[128], fz_users_path[128];
static struct loaded fz_loaded;
static struct server fz_srv;
static int fz_trace;		/* FUZZ_SESSION_TRACE: replies to stderr */

static void
fz_write_file(const char *path, const char *text)
{
	FILE *fp = fopen(path, "w");
	const char *at;

	FUZZ_ASSERT(fp != NULL);
	for (; (at = strstr(text, "@DIR@")) != NULL; text = at + 5)
		fprintf(fp, "%.*s%s", (int)(at - text), text, fz_dir);
	fputs(text, fp);
	FUZZ_ASSERT(fclose(fp) == 0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char err[1024];

	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	fz_trace = getenv("FUZZ_SESSION_TRACE") != NULL;
	gh_log_init("fuzz_session", GH_LOG_ERR, 0);
	snprintf(fz_dir, sizeof(fz_dir), "/tmp/fuzz_session.XXXXXX");
	FUZZ_ASSERT(mkdtemp(fz_dir) != NULL);
	snprintf(fz_conf_path, sizeof(fz_conf_path), "%s/relayd.conf", fz_dir);
	snprintf(fz_users_path, sizeof(fz_users_path), "%s/users", fz_dir);
	fz_write_file(fz_conf_path, fz_conf_text);
	fz_write_file(fz_users_path, fz_users);
	/* As main() and worker_main() do, without sockets or TLS. */
	if (config_load(fz_conf_path, &fz_loaded, err, sizeof(err)) != 0 ||
	    check_nets(&fz_loaded, fz_conf_path, err, sizeof(err)) != 0 ||
	    check_listen(&fz_loaded, fz_conf_path, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_session: %s\n", err);
		abort();
	}
	gh_log_set_level(fz_loaded.log.level);
	fz_srv.conf = &fz_loaded.conf;
	fz_srv.dns = &fz_loaded.dns;
	fz_srv.cfg = fz_loaded.cfg;
	fz_srv.hostname = fz_loaded.conf.hostname;
	fz_srv.conns = conn_table_create(64, 1, 16);
	fz_srv.auth_fails = fail_table_create(64);
	fz_srv.base = event_base_new();
	FUZZ_ASSERT(fz_srv.conns != NULL && fz_srv.auth_fails != NULL &&
		    fz_srv.base != NULL);
	fz_srv.rt = gh_runtime_create(fz_srv.cfg, fz_srv.base, err,
				      sizeof(err));
	if (fz_srv.rt == NULL) {
		fprintf(stderr, "fuzz_session: %s\n", err);
		abort();
	}
	/* Read by now (auth_file reads its users at start-up): nothing is
	 * left behind however the run ends. */
	unlink(fz_conf_path);
	unlink(fz_users_path);
	rmdir(fz_dir);
	return 0;
}

/* ------------------------------------------------------------------ */
/* What relayd wrote, checked as it arrives.                           */

struct fz_out {
	char line[FZ_REPLY_MAX + 1];
	size_t len;
	int multi;		/* the code of an unfinished multi-line reply */
	int closed;		/* relayd closed its side */
	size_t total;
};

/* The length of the character at p: 1 for US-ASCII other than DEL, 2..4
 * for a well-formed UTF-8 sequence (RFC 3629 4: no overlong form, no
 * surrogate, nothing above U+10FFFF); anything else breaks the
 * property. */
static size_t
fz_utf8_len(const char *p, size_t n)
{
	const unsigned char *u = (const unsigned char *)p;
	size_t len, i;
	unsigned lo = 0x80, hi = 0xbf;

	FUZZ_ASSERT(u[0] != 0x7f);
	if (u[0] < 0x80)
		return 1;
	if (u[0] >= 0xc2 && u[0] <= 0xdf)
		len = 2;
	else if (u[0] >= 0xe0 && u[0] <= 0xef)
		len = 3;
	else if (u[0] >= 0xf0 && u[0] <= 0xf4)
		len = 4;
	else
		len = 0;
	FUZZ_ASSERT(len != 0 && len <= n);
	if (u[0] == 0xe0)
		lo = 0xa0;
	else if (u[0] == 0xed)
		hi = 0x9f;
	else if (u[0] == 0xf0)
		lo = 0x90;
	else if (u[0] == 0xf4)
		hi = 0x8f;
	FUZZ_ASSERT(u[1] >= lo && u[1] <= hi);
	for (i = 2; i < len; i++)
		FUZZ_ASSERT(u[i] >= 0x80 && u[i] <= 0xbf);
	return len;
}

static void
fz_check_line(struct fz_out *o)
{
	const char *l = o->line, *t;
	size_t n = o->len - 2, i;
	int code;

	FUZZ_ASSERT(o->len >= 2 && l[o->len - 2] == '\r');
	FUZZ_ASSERT(n >= 4);
	/* RFC 5321 4.2: textstring = 1*(%d09 / %d32-126), which RFC 6531
	 * extends with UTF8-non-ascii (an SMTPUTF8 address quoted back). */
	for (i = 0; i < n; i += fz_utf8_len(l + i, n - i))
		FUZZ_ASSERT(l[i] == '\t' || (unsigned char)l[i] >= 32);
	FUZZ_ASSERT(l[0] >= '2' && l[0] <= '5');
	FUZZ_ASSERT(l[1] >= '0' && l[1] <= '9' && l[2] >= '0' && l[2] <= '9');
	FUZZ_ASSERT(l[3] == ' ' || l[3] == '-');
	code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
	if (o->multi != 0)
		FUZZ_ASSERT(code == o->multi);
	o->multi = l[3] == '-' ? code : 0;
	/* An enhanced code ("X.Y.Z ") is of the reply's class. */
	t = l + 4;
	if (n >= 10 && t[0] >= '2' && t[0] <= '5' && t[1] == '.' &&
	    t[2] >= '0' && t[2] <= '9' && strspn(t + 2, "0123456789") <= 3 &&
	    t[2 + strspn(t + 2, "0123456789")] == '.')
		FUZZ_ASSERT(t[0] == l[0]);
}

static void
fz_take(struct fz_out *o, const char *p, size_t n)
{
	size_t i;

	if (fz_trace)
		fwrite(p, 1, n, stderr);
	o->total += n;
	for (i = 0; i < n; i++) {
		/* A line longer than 512 octets breaks the property. */
		FUZZ_ASSERT(o->len < FZ_REPLY_MAX);
		o->line[o->len++] = p[i];
		if (p[i] == '\n') {
			fz_check_line(o);
			o->len = 0;
		}
	}
}

/* Read what relayd wrote so far; returns the octets read. */
static size_t
fz_read(int fd, struct fz_out *o)
{
	char buf[8192];
	size_t got = 0;
	ssize_t n;

	while (!o->closed) {
		n = read(fd, buf, sizeof(buf));
		if (n > 0) {
			fz_take(o, buf, (size_t)n);
			got += (size_t)n;
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			o->closed = 1;	/* EOF, or reset by relayd's close */
		} else if (errno == EAGAIN) {
			break;
		}
	}
	return got;
}

/* Run the loop until nothing moves: no event left to run and nothing
 * new from relayd, a few passes in a row. */
static void
fz_settle(int fd, struct fz_out *o)
{
	int idle = 0, rounds = 0;

	while (idle < 3 && fz_srv.nsessions > 0) {
		FUZZ_ASSERT(++rounds < FZ_ROUNDS);
		event_base_loop(fz_srv.base, EVLOOP_NONBLOCK);
		if (fz_read(fd, o) > 0)
			idle = 0;
		else
			idle++;
	}
	fz_read(fd, o);
}

/* Write p[0..n) to the session, reading its replies meanwhile so that
 * neither side ever blocks. */
static void
fz_send(int fd, struct fz_out *o, const uint8_t *p, size_t n)
{
	ssize_t w;

	while (n > 0 && fz_srv.nsessions > 0 && !o->closed) {
		w = send(fd, p, n, MSG_NOSIGNAL);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
		} else if (w < 0 && errno != EAGAIN && errno != EINTR) {
			return;		/* relayd closed: the rest is lost */
		}
		fz_settle(fd, o);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_in sin;
	struct fz_out out;
	const uint8_t *p, *end, *nl;
	size_t chunk;
	ssize_t w;
	int sv[2], mode, rounds = 0;

	if (size < 1 || size > 65536)
		return 0;
	mode = data[0] & 3;
	chunk = (size_t)((data[0] >> 2) & 15) + 1;
	if (mode == 3)
		chunk *= 64;
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(40000);
	sin.sin_addr.s_addr = htonl(data[0] & 0x40 ? 0x7f000002 : 0x7f000001);
	/* AUTH failures are counted per address across sessions: each
	 * input starts with none, so that it always does the same. */
	fail_table_clear(fz_srv.auth_fails, (struct sockaddr *)&sin);
	memset(&out, 0, sizeof(out));
	FUZZ_ASSERT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK |
			       SOCK_CLOEXEC, 0, sv) == 0);
	session_start(&fz_srv, &fz_srv.conf->listeners[data[0] & 0x80 ? 1 : 0],
		      sv[0], (struct sockaddr *)&sin, sizeof(sin), NULL, NULL);
	fz_settle(sv[1], &out);
	p = data + 1;
	end = data + size;
	if (mode < 2 && (data[0] & 4)) {
		while (p < end && (w = send(sv[1], p, (size_t)(end - p),
		    MSG_NOSIGNAL)) > 0)
			p += w;
		close(sv[1]);
		while (fz_srv.nsessions > 0) {
			FUZZ_ASSERT(++rounds < FZ_ROUNDS);
			event_base_loop(fz_srv.base, EVLOOP_NONBLOCK);
		}
		return 0;
	}
	while (p < end) {
		if (mode == 0)
			chunk = (size_t)(end - p);
		else if (mode == 1)
			chunk = (nl = memchr(p, '\n', (size_t)(end - p))) ?
			    (size_t)(nl - p) + 1 : (size_t)(end - p);
		if (chunk > (size_t)(end - p))
			chunk = (size_t)(end - p);
		fz_send(sv[1], &out, p, chunk);
		p += chunk;
	}
	/* The client is done: relayd answers what it has, then closes. */
	shutdown(sv[1], SHUT_WR);
	while (fz_srv.nsessions > 0) {
		FUZZ_ASSERT(++rounds < FZ_ROUNDS);
		event_base_loop(fz_srv.base, EVLOOP_NONBLOCK);
		fz_read(sv[1], &out);
	}
	fz_read(sv[1], &out);
	FUZZ_ASSERT(out.closed);
	/* Everything written ended a complete reply. */
	FUZZ_ASSERT(out.len == 0);
	FUZZ_ASSERT(out.multi == 0);
	FUZZ_ASSERT(out.total > 0);
	close(sv[1]);
	return 0;
}
