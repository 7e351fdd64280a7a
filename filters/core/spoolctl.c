/*
 * spoolctl.c - `relayd -q COMMAND`: list and change the spool of the
 * configured `spool` plugin, while relayd runs or not.
 *
 *   list                  id, age, size, attempts, next attempt, sender,
 *                         recipients, last error; HOLD when held
 *   count                 messages, recipients, deferred, held
 *   flush [domain]        make every message (with a recipient in
 *                         domain, ".domain" for its subdomains too) due
 *                         now and write DIR/flush, which wakes the
 *                         running workers to deliver them at once.
 *   hold ID | release ID  stop / resume delivering a message
 *   delete ID             remove a message, without a bounce
 *
 * A change takes the queue file's lock (flock, as the workers do): a
 * message being delivered right now is "busy" and left alone.  The new
 * file is written, fdatasynced and renamed over the old one, then the
 * directory is fsynced, so a crash leaves the old or the new envelope.
 */
#include "config.h"

#include <sys/types.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "core.h"
#include "spoolq.h"

struct ctl {
	char qdir[PATH_MAX];
	char tdir[PATH_MAX];
	char trigger[PATH_MAX];		/* DIR/flush: see spool.c */
	int qdirfd;
};

/*
 * Wake the running workers: each watches DIR/flush (inotify) and scans
 * at once when it is written, as Postfix's `postqueue -f` wakes its
 * queue manager.  Without a running relayd nothing reads it; its start
 * tries every message anyway.
 */
static void
trigger_scan(const struct ctl *c)
{
	int fd = open(c->trigger, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
		      0600);

	if (fd < 0 || write(fd, "flush\n", 6) != 6)
		fprintf(stderr, "relayd: %s: %s (the workers deliver at "
			"their next scan)\n", c->trigger, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* The `dir` of the configured spool plugin, from its directive table. */
static const char *
spool_dir(const struct gh_config *cfg)
{
	const struct gh_directive *d;
	size_t i;

	for (i = 0; i < cfg->nplugins; i++) {
		const struct gh_plugin *p = &cfg->plugins[i];

		if (strcmp(p->mod->name, "spool") != 0)
			continue;
		for (d = p->mod->directives; d->name != NULL; d++)
			if (strcmp(d->name, "dir") == 0 &&
			    d->type == GH_DT_STRING)
				return *(const char *const *)
				    ((const char *)p->conf + d->offset);
	}
	return NULL;
}

static int
join(char *dst, size_t n, const char *a, const char *b)
{
	int r = snprintf(dst, n, "%s/%s", a, b);

	return r < 0 || (size_t)r >= n ? -1 : 0;
}

/* Once locked: does path still name the file open on fd?  Removed,
 * replaced, or moved to DIR/free for reuse by the worker that delivered
 * it (spool.c, file_retire) while we waited, it is not the message. */
static int
still_queued(int fd, const char *path)
{
	struct stat st, ps;

	return fstat(fd, &st) == 0 && st.st_nlink > 0 &&
	    stat(path, &ps) == 0 && ps.st_ino == st.st_ino &&
	    ps.st_dev == st.st_dev;
}

static int
valid_id(const char *id)
{
	size_t i;

	for (i = 0; id[i] != '\0'; i++)
		if (id[i] == '/' || id[i] == '.' || i > 60)
			return 0;
	return i > 0;
}

static int
domain_match(const char *mailbox, const char *domain)
{
	const char *at = strrchr(mailbox, '@');
	size_t dl, ml;

	if (domain == NULL)
		return 1;
	if (at == NULL)
		return 0;
	at++;
	if (domain[0] != '.')
		return strcasecmp(at, domain) == 0;
	dl = strlen(domain);
	ml = strlen(at);
	return strcasecmp(at, domain + 1) == 0 ||
	    (ml > dl && strcasecmp(at + ml - dl, domain) == 0);
}

/* Replace the file of id with envelope e, durably. */
static int
replace(const struct ctl *c, const char *id, int fd, struct spoolq_env *e)
{
	char tmp[PATH_MAX], dst[PATH_MAX], name[96];
	int nfd;

	snprintf(name, sizeof(name), "%s.ctl", id);
	if (join(tmp, sizeof(tmp), c->tdir, name) != 0 ||
	    join(dst, sizeof(dst), c->qdir, id) != 0)
		return -1;
	unlink(tmp);
	(void)fd;
	if (spoolq_rewrite(tmp, e, fd, &nfd) != 0)
		return -1;
	if (fdatasync(nfd) != 0 || rename(tmp, dst) != 0) {
		int saved = errno;

		close(nfd);
		unlink(tmp);
		errno = saved;
		return -1;
	}
	close(nfd);
	return fsync(c->qdirfd);
}

/* Open and lock the queue file of id; -1 with a message when busy. */
static int
open_locked(const struct ctl *c, const char *id, struct spoolq_env *e,
	    int verify)
{
	char path[PATH_MAX], why[256];
	int fd;

	if (!valid_id(id) || join(path, sizeof(path), c->qdir, id) != 0 ||
	    (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		fprintf(stderr, "relayd: %s: no such message\n", id);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0 || !still_queued(fd, path)) {
		fprintf(stderr, "relayd: %s: busy (being delivered), try "
			"again\n", id);
		close(fd);
		return -1;
	}
	if (spoolq_load(fd, e, verify, why, sizeof(why)) != 0) {
		fprintf(stderr, "relayd: %s: %s\n", id, why);
		close(fd);
		return -1;
	}
	return fd;
}

static int
strcmp_ptr(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The ids in the queue, oldest first; -1 when it cannot be read. */
static int
list_ids(const struct ctl *c, char ***out, size_t *n)
{
	DIR *dp = opendir(c->qdir);
	struct dirent *de;
	char **v = NULL, **nv;
	size_t cap = 0;

	*n = 0;
	*out = NULL;
	if (dp == NULL) {
		fprintf(stderr, "relayd: %s: %s\n", c->qdir, strerror(errno));
		return -1;
	}
	while ((de = readdir(dp)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		if (*n == cap) {
			cap = cap ? cap * 2 : 64;
			if ((nv = realloc(v, cap * sizeof(*v))) == NULL)
				break;
			v = nv;
		}
		if ((v[*n] = strdup(de->d_name)) == NULL)
			break;
		(*n)++;
	}
	closedir(dp);
	if (*n > 1)
		qsort(v, *n, sizeof(*v), strcmp_ptr);
	*out = v;
	return 0;
}

static int
cmd_list(const struct ctl *c, int count_only)
{
	char **ids, path[PATH_MAX], why[256];
	size_t n, i, j, nrcpts = 0, held = 0, deferred = 0, ok = 0;
	time_t now = time(NULL);
	struct spoolq_env e;
	struct stat st;
	int fd;

	if (list_ids(c, &ids, &n) != 0)
		return 1;
	for (i = 0; i < n; i++) {
		if (join(path, sizeof(path), c->qdir, ids[i]) != 0 ||
		    (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			goto next;
		if (spoolq_load(fd, &e, 0, why, sizeof(why)) != 0 ||
		    fstat(fd, &st) != 0) {
			if (!count_only)
				printf("%s  (unreadable: %s)\n", ids[i], why);
			close(fd);
			goto next;
		}
		close(fd);
		ok++;
		nrcpts += e.nrcpts;
		held += e.hold != 0;
		deferred += e.attempts > 0;
		if (!count_only) {
			printf("%s  %s age %llds  %lld octets  attempts %lld  "
			       "next %s%llds\n  from <%s>\n", e.id,
			       e.hold ? "HOLD " : "",
			       (long long)(now - e.arrival),
			       (long long)st.st_size, e.attempts,
			       e.next <= now ? "now, due since " : "in ",
			       e.next <= now ? (long long)(now - e.next) :
			       (long long)(e.next - now), e.from);
			if (e.route == SPOOLQ_ROUTE_MX)
				printf("  route: MX of each recipient's "
				       "domain\n");
			for (j = 0; j < e.nrcpts; j++)
				printf("  to <%s>\n", e.rcpts[j]);
			if (e.error[0] != '\0')
				printf("  last error: %s\n", e.error);
		}
		spoolq_env_free(&e);
next:
		free(ids[i]);
	}
	free(ids);
	if (count_only)
		printf("%zu messages, %zu recipients, %zu deferred, %zu held\n",
		       ok, nrcpts, deferred, held);
	else if (ok == 0)
		printf("queue is empty\n");
	return 0;
}

static int
cmd_flush(const struct ctl *c, const char *domain)
{
	char **ids;
	size_t n, i, j, done = 0, busy = 0;
	struct spoolq_env e;
	int fd;

	if (list_ids(c, &ids, &n) != 0)
		return 1;
	for (i = 0; i < n; i++) {
		char path[PATH_MAX];

		if (join(path, sizeof(path), c->qdir, ids[i]) != 0 ||
		    (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
			goto next;
		if (flock(fd, LOCK_EX | LOCK_NB) != 0 ||
		    !still_queued(fd, path)) {
			busy++;
			close(fd);
			goto next;
		}
		if (spoolq_load(fd, &e, 1, path, sizeof(path)) != 0) {
			close(fd);
			goto next;
		}
		for (j = 0; j < e.nrcpts; j++)
			if (domain_match(e.rcpts[j], domain))
				break;
		if (!e.hold && j < e.nrcpts && e.next > 0) {
			e.next = 0;
			if (replace(c, ids[i], fd, &e) == 0)
				done++;
			else
				fprintf(stderr, "relayd: %s: %s\n", ids[i],
					strerror(errno));
		}
		spoolq_env_free(&e);
		close(fd);
next:
		free(ids[i]);
	}
	free(ids);
	if (done > 0)
		trigger_scan(c);
	printf("%zu messages due now%s", done, busy ? "" : "\n");
	if (busy)
		printf(" (%zu being delivered)\n", busy);
	return 0;
}

static int
cmd_one(const struct ctl *c, const char *cmd, const char *id)
{
	struct spoolq_env e;
	char path[PATH_MAX];
	int fd, rc = 0;

	if ((fd = open_locked(c, id, &e, strcmp(cmd, "delete") != 0)) < 0)
		return 1;
	if (strcmp(cmd, "delete") == 0) {
		if (join(path, sizeof(path), c->qdir, id) != 0 ||
		    unlink(path) != 0 || fsync(c->qdirfd) != 0) {
			fprintf(stderr, "relayd: %s: %s\n", id,
				strerror(errno));
			rc = 1;
		} else
			printf("%s deleted\n", id);
	} else {
		e.hold = strcmp(cmd, "hold") == 0;
		if (!e.hold)
			e.next = 0;
		if (replace(c, id, fd, &e) != 0) {
			fprintf(stderr, "relayd: %s: %s\n", id,
				strerror(errno));
			rc = 1;
		} else
			printf("%s %s\n", id, e.hold ? "held" : "released");
	}
	spoolq_env_free(&e);
	close(fd);
	return rc;
}

int
spoolq_command(const struct gh_config *cfg, int argc, char **argv)
{
	const char *dir = spool_dir(cfg);
	struct ctl c;
	int rc = 2;

	if (dir == NULL) {
		fprintf(stderr, "relayd: the configuration has no spool "
			"plugin\n");
		return 2;
	}
	memset(&c, 0, sizeof(c));
	if (join(c.qdir, sizeof(c.qdir), dir, "queue") != 0 ||
	    join(c.tdir, sizeof(c.tdir), dir, "tmp") != 0 ||
	    join(c.trigger, sizeof(c.trigger), dir, "flush") != 0 ||
	    (c.qdirfd = open(c.qdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) <
	    0) {
		fprintf(stderr, "relayd: %s/queue: %s\n", dir,
			strerror(errno));
		return 1;
	}
	if (argc == 1 && strcmp(argv[0], "list") == 0)
		rc = cmd_list(&c, 0);
	else if (argc == 1 && strcmp(argv[0], "count") == 0)
		rc = cmd_list(&c, 1);
	else if ((argc == 1 || argc == 2) && strcmp(argv[0], "flush") == 0)
		rc = cmd_flush(&c, argc == 2 ? argv[1] : NULL);
	else if (argc == 2 && (strcmp(argv[0], "hold") == 0 ||
	    strcmp(argv[0], "release") == 0 || strcmp(argv[0], "delete") == 0))
		rc = cmd_one(&c, argv[0], argv[1]);
	else
		fprintf(stderr, "usage: relayd -q list | count | flush "
			"[domain] | hold ID | release ID | delete ID [-c file]"
			"\n");
	close(c.qdirfd);
	return rc;
}
