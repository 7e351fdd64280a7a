/*
 * bridge.c - libmilter's callbacks: the MTA's side of milterd.
 *
 * Each callback copies its arguments and the macros of its stage into a
 * job, posts it to the session's loop thread (loop.c) and waits for the
 * verdict with a deadline: reply_timeout, eom_timeout at end of message,
 * both below the MTA's own (Postfix: milter_command_timeout 30 s,
 * milter_content_timeout 300 s).  On expiry the callback answers
 * fail_action and logs it.  While end of message waits, smfi_progress
 * restarts the MTA's timer.
 *
 * Verdicts map onto libmilter as follows, at the scope of the callback
 * (the connection at connect and helo, one recipient at envrcpt, the
 * message from data on):
 *
 *   CONT, OK, STOP       SMFIS_CONTINUE
 *   DENY                 the reply (5xx), SMFIS_REJECT
 *   DENYDISCONNECT       the same: a milter cannot make a 5xx close
 *   DENYSOFT             the reply (4xx), SMFIS_TEMPFAIL
 *   DISCONNECT,
 *   DENYSOFTDISCONNECT   421, SMFIS_TEMPFAIL: the MTA closes the session
 *
 * The reply's class always matches the return code (libmilter silently
 * drops a 4xx with REJECT), '%' is doubled and the text holds no CR or LF
 * (smfi_setreply(3)).  Edits plugins made are replayed at end of message,
 * the only time libmilter allows them.
 *
 * Where the MTA already did the work, hooks differ from relayd's: the MTA
 * decides relaying, so rcpt's CONT accepts (loop.c); a milter cannot tell
 * HELO from EHLO, so the helo hook runs (plugins bind both, as Haraka's
 * do); capabilities, auth, max_data_exceeded and the queue hooks never
 * run (the MTA answers EHLO, authenticates, enforces sizes and queues);
 * {auth_authen} stands for a successful AUTH.
 */
#include "config.h"

#include <errno.h>
#include <libmilter/mfapi.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "milterd.h"

/* libmilter's reply line bound (MAXREPLYLEN). */
#define REPLY_TEXT_MAX 980
/* How often a waiting end of message tells the MTA it is alive: every
 * 10 s, or a quarter of eom_timeout when that is shorter. */
#define PROGRESS_EVERY 10


/* The macros each stage copies (Postfix only sends those with a value). */
static const char *const connect_macros[] = {
	"j", "{daemon_name}", "{daemon_addr}", "{daemon_port}",
	"{client_addr}", "{client_port}", "{client_name}", "{client_ptr}",
	"{if_addr}", NULL
};
static const char *const helo_macros[] = {
	"{tls_version}", "{cipher}", "{cipher_bits}", "{cert_subject}",
	"{cert_issuer}", NULL
};
static const char *const mail_macros[] = {
	"i", "{auth_type}", "{auth_authen}", "{auth_author}", "{mail_addr}",
	NULL
};
static const char *const rcpt_macros[] = {
	"i", "{rcpt_mailer}", "{rcpt_addr}", NULL
};
static const char *const msg_macros[] = { "i", NULL };

/* What we ask the MTA to send, stage by stage: our list replaces the
 * MTA's defaults, so it names every macro above. */
static const struct {
	int stage;
	const char *list;
} symlists[] = {
	{ SMFIM_CONNECT, "j {daemon_name} {daemon_addr} {daemon_port} "
	  "{client_addr} {client_port} {client_name} {client_ptr} {if_addr}" },
	{ SMFIM_HELO, "{tls_version} {cipher} {cipher_bits} {cert_subject} "
	  "{cert_issuer}" },
	{ SMFIM_ENVFROM, "i {auth_type} {auth_authen} {auth_author} "
	  "{mail_addr}" },
	{ SMFIM_ENVRCPT, "i {rcpt_mailer} {rcpt_addr}" },
	{ SMFIM_DATA, "i" },
	{ SMFIM_EOH, "i" },
	{ SMFIM_EOM, "i" },
};

#define MILTERD_ACTIONS (SMFIF_ADDHDRS | SMFIF_CHGHDRS | SMFIF_ADDRCPT | \
	SMFIF_DELRCPT | SMFIF_CHGFROM | SMFIF_QUARANTINE | SMFIF_SETSYMLIST)

/* ------------------------------------------------------------------ */
/* Sessions and jobs.                                                  */

static struct msess *
sess_get(SMFICTX *ctx)
{
	struct msess *s = smfi_getpriv(ctx);
	pthread_condattr_t ca;

	if (s != NULL)
		return s;
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	/* A loop thread of the current generation, for the whole session
	 * (a reload does not move it). */
	if ((s->loop = gen_attach()) == NULL) {
		pthread_cond_destroy(&s->cv);
		free(s);
		return NULL;
	}
	gh_make_id(s->id, sizeof(s->id));
	if (smfi_setpriv(ctx, s) != MI_SUCCESS) {
		gen_detach(s->loop);
		pthread_cond_destroy(&s->cv);
		free(s);
		return NULL;
	}
	return s;
}

static struct job *
job_new(struct msess *s, enum job_kind kind)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		return NULL;
	j->kind = kind;
	j->s = s;
	return j;
}

static int
macros_copy(SMFICTX *ctx, struct job *j, const char *const *names)
{
	struct macro *m;
	char name[64], *v;

	for (; *names != NULL; names++) {
		/* smfi_getsymval takes a writable string. */
		snprintf(name, sizeof(name), "%s", *names);
		if ((v = smfi_getsymval(ctx, name)) == NULL)
			continue;
		if ((m = calloc(1, sizeof(*m))) == NULL)
			return -1;
		m->name = strdup(name);
		m->value = strdup(v);
		m->next = j->macros;
		j->macros = m;
		if (m->name == NULL || m->value == NULL)
			return -1;
	}
	return 0;
}

/* Wait for j with a deadline.  Returns 0 when answered; -1 when the
 * deadline passed (the job is then the loop thread's to free). */
static int
job_wait(SMFICTX *ctx, struct job *j, long long timeout, int progress)
{
	struct loop *l = j->s->loop;
	struct timespec deadline, now, until;
	time_t every = (time_t)(timeout / 4);
	int rc = 0;

	every = every < 1 ? 1 : every > PROGRESS_EVERY ? PROGRESS_EVERY :
	    every;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += (time_t)timeout;
	pthread_mutex_lock(&l->mu);
	while (!j->done) {
		until = deadline;
		if (progress) {
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec + every < deadline.tv_sec) {
				until = now;
				until.tv_sec += every;
			}
		}
		if (pthread_cond_timedwait(&j->s->cv, &l->mu, &until) !=
		    ETIMEDOUT || j->done)
			continue;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > deadline.tv_sec ||
		    (now.tv_sec == deadline.tv_sec &&
		     now.tv_nsec >= deadline.tv_nsec)) {
			/* A claimed job is being answered right now. */
			if (j->claimed)
				continue;
			j->abandoned = 1;
			rc = -1;
			break;
		}
		pthread_mutex_unlock(&l->mu);
		/* Restarts the MTA's timer (Postfix milter_content_timeout). */
		smfi_progress(ctx);
		gh_log(GH_LOG_DEBUG, "%s end of message: progress sent",
		       j->s->id);
		pthread_mutex_lock(&l->mu);
	}
	pthread_mutex_unlock(&l->mu);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Replies.                                                            */

static int
enh_ok(const char *e, char cls)
{
	int a, b, c, n = 0;

	if (strspn(e, "0123456789.") != strlen(e))
		return 0;
	return sscanf(e, "%1d.%3d.%3d%n", &a, &b, &c, &n) == 3 &&
	    e[n] == '\0' && a == cls - '0';
}

static void
set_reply(SMFICTX *ctx, struct msess *s, int code, const char *enh,
	  const char *text)
{
	char rcode[8], xcode[16], msg[REPLY_TEXT_MAX + 1];
	size_t i, o = 0;
	char cls = (char)('0' + code / 100);

	snprintf(rcode, sizeof(rcode), "%03d", code);
	snprintf(xcode, sizeof(xcode), "%s", enh != NULL && enh_ok(enh, cls) ?
		 enh : cls == '5' ? "5.7.1" : "4.7.1");
	for (i = 0; text != NULL && text[i] != '\0'; i++) {
		unsigned char ch = (unsigned char)text[i];

		if (o + 2 >= sizeof(msg))
			break;
		if (ch == '%') {
			/* A lone '%' makes libmilter drop the text. */
			msg[o++] = '%';
			msg[o++] = '%';
		} else {
			msg[o++] = (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch;
		}
	}
	msg[o] = '\0';
	if (smfi_setreply(ctx, rcode, xcode, o > 0 ? msg : NULL) !=
	    MI_SUCCESS)
		gh_log(GH_LOG_WARN, "%s libmilter refused the reply %s %s",
		       s != NULL ? s->id : "-", rcode, xcode);
}

static sfsistat
answer(SMFICTX *ctx, struct msess *s, const struct job *j)
{
	int code = j->code;

	switch (j->verdict) {
	case GH_DENY:
	case GH_DENYDISCONNECT:
		set_reply(ctx, s, code / 100 == 5 ? code : 550, j->enh,
			  j->text);
		return SMFIS_REJECT;
	case GH_DENYSOFT:
		set_reply(ctx, s, code / 100 == 4 ? code : 451, j->enh,
			  j->text);
		return SMFIS_TEMPFAIL;
	case GH_DISCONNECT:
	case GH_DENYSOFTDISCONNECT:
		/* A 421 with TEMPFAIL makes the MTA end the session. */
		set_reply(ctx, s, 421, j->enh, j->text);
		return SMFIS_TEMPFAIL;
	default:
		return SMFIS_CONTINUE;
	}
}

static sfsistat
fail_answer(SMFICTX *ctx, struct msess *s, const char *stage)
{
	static const char *const names[] = { "tempfail", "reject", "accept" };
	int fa = s != NULL ? s->loop->conf->fail_action : FAIL_TEMPFAIL;

	gh_log(GH_LOG_WARN, "%s no verdict at %s in time: answering %s",
	       s != NULL ? s->id : "-", stage, names[fa]);
	switch (fa) {
	case FAIL_REJECT:
		set_reply(ctx, s, 550, "5.7.1",
			  "Message refused: mail filter unavailable");
		return SMFIS_REJECT;
	case FAIL_ACCEPT:
		return SMFIS_CONTINUE;
	default:
		set_reply(ctx, s, 451, "4.7.1",
			  "Temporary failure in mail filter, try again later");
		return SMFIS_TEMPFAIL;
	}
}

/* Post j and wait; the answer for the MTA. */
static sfsistat
post_wait(SMFICTX *ctx, struct msess *s, struct job *j, const char *stage)
{
	sfsistat r;

	loop_run(s->loop, j);
	if (job_wait(ctx, j, s->loop->conf->reply_timeout, 0) != 0)
		return fail_answer(ctx, s, stage);
	r = answer(ctx, s, j);
	job_free(j);
	return r;
}

/* fail_answer, unless the MTA waits for no answer at this stage (nr). */
static sfsistat
stage_fail(SMFICTX *ctx, struct msess *s, const char *stage, unsigned long nr)
{
	if (s != NULL && (s->nr_steps & nr))
		return SMFIS_NOREPLY;
	return fail_answer(ctx, s, stage);
}

/* post_wait at a stage the MTA does not wait on (nr, an SMFIP_NR_* flag
 * negotiated): no plugin hooks it, so there is no verdict to lose, and
 * libmilter must send nothing. */
static sfsistat
post_nowait(SMFICTX *ctx, struct msess *s, struct job *j, const char *stage,
	    unsigned long nr)
{
	if (!(s->nr_steps & nr))
		return post_wait(ctx, s, j, stage);
	j->unanswered = 1;
	loop_run(s->loop, j);
	/* Still waited for: libmilter must not read the next command
	 * before this one's chain has fed the session. */
	if (job_wait(ctx, j, s->loop->conf->reply_timeout, 0) != 0)
		gh_log(GH_LOG_WARN, "%s %s not done in time", s->id, stage);
	else
		job_free(j);
	return SMFIS_NOREPLY;
}

/* Start a job with its stage's macros; NULL (after logging) when memory
 * is short: the caller answers fail_action. */
static struct job *
job_begin(SMFICTX *ctx, struct msess *s, enum job_kind kind,
	  const char *const *macros)
{
	struct job *j;

	if (s == NULL || (j = job_new(s, kind)) == NULL) {
		gh_log(GH_LOG_ERR, "out of memory for a milter callback");
		return NULL;
	}
	if (macros != NULL && macros_copy(ctx, j, macros) != 0) {
		gh_log(GH_LOG_ERR, "out of memory copying macros");
		job_free(j);
		return NULL;
	}
	return j;
}

static void
message_clear(struct msess *s)
{
	free(s->hbuf);
	s->hbuf = NULL;
	s->hlen = s->hcap = 0;
	s->htoobig = 0;
	s->body = 0;
	s->body_cut = 0;
}

/* ------------------------------------------------------------------ */
/* Negotiation.                                                        */

/*
 * What a generation's plugins need from the MTA, worked out once when its
 * runtime is made: the actions their declared edits take (a module that
 * declares nothing may make any edit, so it gets all of them), plus
 * SMFIF_ADDHDRS for the trace header; and the stages no plugin has a hook
 * for, which the MTA is asked not to send.
 */
void
bridge_plan(struct loop *l)
{
	const struct gh_runtime *rt = l->rt;
	unsigned long acts = SMFIF_SETSYMLIST;
	unsigned long steps = SMFIP_HDR_LEADSPC | SMFIP_SKIP | SMFIP_NR_HDR;
	unsigned edits = 0, e;
	size_t h, i;

	for (h = 0; h < GH_HOOK_COUNT; h++)
		for (i = 0; i < rt->nbound[h]; i++) {
			e = rt->bound[h][i].plugin->mod->edits;
			edits |= e == 0 ? GH_EDITS_ALL : e;
		}
	if (l->conf->trace_header != NULL && l->conf->trace_header[0] != '\0')
		edits |= GH_EDITS_ADDHDR;
	if (edits & GH_EDITS_ADDHDR)
		acts |= SMFIF_ADDHDRS;
	if (edits & GH_EDITS_CHGHDR)
		acts |= SMFIF_CHGHDRS;
	if (edits & GH_EDITS_ADDRCPT)
		acts |= SMFIF_ADDRCPT;
	if (edits & GH_EDITS_DELRCPT)
		acts |= SMFIF_DELRCPT;
	if (edits & GH_EDITS_CHGFROM)
		acts |= SMFIF_CHGFROM;
	if (edits & GH_EDITS_QUARANTINE)
		acts |= SMFIF_QUARANTINE;
	if (!gh_runtime_has_hook(rt, GH_HOOK_DATA))
		steps |= SMFIP_NODATA;
	if (!gh_runtime_has_hook(rt, GH_HOOK_UNRECOGNIZED_COMMAND))
		steps |= SMFIP_NOUNKNOWN;
	if (!gh_runtime_has_hook(rt, GH_HOOK_DATA_POST)) {
		steps |= SMFIP_NOBODY;
		if (!gh_runtime_has_hook(rt, GH_HOOK_DATA_HEADERS))
			steps |= SMFIP_NOHDRS | SMFIP_NOEOH;
	}
	/* The header verdict waits for end of message: an MTA answers the
	 * DATA command only after the final dot (RFC 5321 4.1.1.4), so a
	 * refusal at EOH reaches the client at the same moment, and the
	 * round trip is saved. */
	steps |= SMFIP_NR_EOH;
	/* A stage no plugin checks still feeds the session (the client,
	 * its HELO name, the sender), but has no answer to give: the MTA
	 * need not wait for one.  A sender our parser refuses at such a
	 * MAIL is refused at each RCPT instead (loop.c). */
	if (!gh_runtime_has_hook(rt, GH_HOOK_CONNECT_INIT) &&
	    !gh_runtime_has_hook(rt, GH_HOOK_LOOKUP_RDNS) &&
	    !gh_runtime_has_hook(rt, GH_HOOK_CONNECT))
		steps |= SMFIP_NR_CONN;
	if (!gh_runtime_has_hook(rt, GH_HOOK_HELO) &&
	    !gh_runtime_has_hook(rt, GH_HOOK_EHLO))
		steps |= SMFIP_NR_HELO;
	if (!gh_runtime_has_hook(rt, GH_HOOK_MAIL))
		steps |= SMFIP_NR_MAIL;
	l->actions = acts;
	l->steps = steps;
}

/* Ask for what the session's generation planned, never more than the
 * MTA offers. */
static sfsistat
cb_negotiate(SMFICTX *ctx, unsigned long f0, unsigned long f1,
	     unsigned long f2, unsigned long f3, unsigned long *pf0,
	     unsigned long *pf1, unsigned long *pf2, unsigned long *pf3)
{
	struct msess *s = sess_get(ctx);
	char list[256];
	size_t i;

	(void)f2;
	(void)f3;
	if (s == NULL)
		return SMFIS_TEMPFAIL;
	*pf0 = s->loop->actions & f0;
	*pf1 = s->loop->steps & f1;
	*pf2 = 0;
	*pf3 = 0;
	s->leadspc = (*pf1 & SMFIP_HDR_LEADSPC) != 0;
	s->nr_hdr = (*pf1 & SMFIP_NR_HDR) != 0;
	s->nr_eoh = (*pf1 & SMFIP_NR_EOH) != 0;
	s->can_skip = (*pf1 & SMFIP_SKIP) != 0;
	s->nr_steps = *pf1 & (SMFIP_NR_CONN | SMFIP_NR_HELO | SMFIP_NR_MAIL);
	gh_log(GH_LOG_DEBUG, "%s negotiated actions 0x%lx steps 0x%lx "
	       "(MTA offered 0x%lx 0x%lx)", s->id, *pf0, *pf1, f0, f1);
	if (*pf0 & SMFIF_SETSYMLIST) {
		for (i = 0; i < sizeof(symlists) / sizeof(symlists[0]); i++) {
			snprintf(list, sizeof(list), "%s", symlists[i].list);
			if (smfi_setsymlist(ctx, symlists[i].stage, list) !=
			    MI_SUCCESS)
				gh_log(GH_LOG_WARN, "%s cannot request macros "
				       "for stage %d", s->id,
				       symlists[i].stage);
		}
	}
	return SMFIS_CONTINUE;
}

/* ------------------------------------------------------------------ */
/* SMTP stages.                                                        */

static sfsistat
cb_connect(SMFICTX *ctx, char *host, _SOCK_ADDR *sa)
{
	struct msess *s = sess_get(ctx);
	struct job *j = job_begin(ctx, s, JOB_CONNECT, connect_macros);
	size_t salen = 0;

	if (j == NULL)
		return stage_fail(ctx, s, "connect", SMFIP_NR_CONN);
	j->arg = strdup(host != NULL ? host : "");
	if (sa != NULL && sa->sa_family == AF_INET)
		salen = sizeof(struct sockaddr_in);
	else if (sa != NULL && sa->sa_family == AF_INET6)
		salen = sizeof(struct sockaddr_in6);
	if (salen > 0) {
		memcpy(&j->sa, sa, salen);
		j->have_sa = 1;
	}
	return post_nowait(ctx, s, j, "connect", SMFIP_NR_CONN);
}

static sfsistat
cb_helo(SMFICTX *ctx, char *name)
{
	struct msess *s = smfi_getpriv(ctx);
	struct job *j = job_begin(ctx, s, JOB_HELO, helo_macros);

	if (j == NULL)
		return stage_fail(ctx, s, "helo", SMFIP_NR_HELO);
	j->arg = strdup(name != NULL ? name : "");
	return post_nowait(ctx, s, j, "helo", SMFIP_NR_HELO);
}

/* "<addr>" then the ESMTP parameters, as gh_path_parse reads them. */
static char *
path_join(char **argv)
{
	size_t n = 3, i;
	char *p;
	int bracket;

	for (i = 0; argv[i] != NULL; i++)
		n += strlen(argv[i]) + 1;
	if ((p = malloc(n)) == NULL)
		return NULL;
	bracket = argv[0] != NULL && argv[0][0] != '<';
	snprintf(p, n, "%s%s%s", bracket ? "<" : "", argv[0] ? argv[0] : "",
		 bracket ? ">" : "");
	for (i = 1; argv[0] != NULL && argv[i] != NULL; i++) {
		strcat(p, " ");
		strcat(p, argv[i]);
	}
	return p;
}

static sfsistat
cb_envfrom(SMFICTX *ctx, char **argv)
{
	struct msess *s = smfi_getpriv(ctx);
	struct job *j = job_begin(ctx, s, JOB_MAIL, mail_macros);

	if (j == NULL || (j->arg = path_join(argv)) == NULL) {
		job_free(j);
		return stage_fail(ctx, s, "mail", SMFIP_NR_MAIL);
	}
	message_clear(s);
	return post_nowait(ctx, s, j, "mail", SMFIP_NR_MAIL);
}

static sfsistat
cb_envrcpt(SMFICTX *ctx, char **argv)
{
	struct msess *s = smfi_getpriv(ctx);
	struct job *j = job_begin(ctx, s, JOB_RCPT, rcpt_macros);

	if (j == NULL || (j->arg = path_join(argv)) == NULL ||
	    (j->raw = strdup(argv[0] ? argv[0] : "")) == NULL) {
		job_free(j);
		return fail_answer(ctx, s, "rcpt");
	}
	return post_wait(ctx, s, j, "rcpt");
}

static sfsistat
cb_data(SMFICTX *ctx)
{
	struct msess *s = smfi_getpriv(ctx);
	struct job *j = job_begin(ctx, s, JOB_DATA, msg_macros);

	if (j == NULL)
		return fail_answer(ctx, s, "data");
	return post_wait(ctx, s, j, "data");
}

static sfsistat
cb_unknown(SMFICTX *ctx, const char *cmd)
{
	struct msess *s = smfi_getpriv(ctx);
	struct job *j = job_begin(ctx, s, JOB_UNKNOWN, NULL);

	if (j == NULL || (j->arg = strdup(cmd != NULL ? cmd : "")) == NULL) {
		job_free(j);
		return fail_answer(ctx, s, "unknown");
	}
	return post_wait(ctx, s, j, "unknown");
}

/* ------------------------------------------------------------------ */
/* The message.                                                        */

static int
hbuf_put(struct msess *s, const char *p, size_t n)
{
	size_t want = s->hlen + n;
	char *nb;

	if (want > s->hcap) {
		size_t cap = s->hcap ? s->hcap * 2 : 4096;

		while (cap < want)
			cap *= 2;
		if ((nb = realloc(s->hbuf, cap)) == NULL)
			return -1;
		s->hbuf = nb;
		s->hcap = cap;
	}
	memcpy(s->hbuf + s->hlen, p, n);
	s->hlen += n;
	return 0;
}

/*
 * One header field as it arrived: "Name:" and the value, with its
 * leading space exactly as sent when SMFIP_HDR_LEADSPC is on (else the
 * usual single space), folding line ends made CRLF.  The block goes to
 * the loop thread at end of header in one job.
 */
static sfsistat
cb_header(SMFICTX *ctx, char *name, char *value)
{
	struct msess *s = smfi_getpriv(ctx);
	sfsistat cont;
	size_t i, bound;
	int rc;

	if (s == NULL)
		return SMFIS_CONTINUE;
	cont = s->nr_hdr ? SMFIS_NOREPLY : SMFIS_CONTINUE;
	bound = (size_t)s->loop->conf->max_header_size;
	if (s->htoobig)
		return cont;
	if (s->hlen + strlen(name) + strlen(value) + 4 > bound) {
		s->htoobig = 1;
		return cont;
	}
	rc = hbuf_put(s, name, strlen(name)) | hbuf_put(s, ":", 1);
	if (!s->leadspc)
		rc |= hbuf_put(s, " ", 1);
	for (i = 0; value[i] != '\0'; i++) {
		if (value[i] == '\r' && value[i + 1] == '\n')
			continue;
		if (value[i] == '\n')
			rc |= hbuf_put(s, "\r\n", 2);
		else
			rc |= hbuf_put(s, value[i] == '\r' ? " " : &value[i],
				       1);
	}
	rc |= hbuf_put(s, "\r\n", 2);
	if (rc != 0)
		s->htoobig = 1;	/* out of memory: refuse, never truncate */
	return cont;
}

static sfsistat
cb_eoh(SMFICTX *ctx)
{
	struct msess *s = smfi_getpriv(ctx);
	struct job *j = job_begin(ctx, s, JOB_EOH, msg_macros);

	if (j == NULL)
		return fail_answer(ctx, s, "eoh");
	j->data = s->hbuf;
	j->len = s->hlen;
	j->flag = s->htoobig;
	s->hbuf = NULL;
	s->hlen = s->hcap = 0;
	if (s->nr_eoh) {
		/* The loop thread stores the block; the data_headers verdict
		 * is end of message's answer. */
		j->noreply = 1;
		loop_run(s->loop, j);
		return SMFIS_NOREPLY;
	}
	return post_wait(ctx, s, j, "eoh");
}

/* Body chunks go to the loop thread without waiting: they cannot be
 * refused.  Past body_max nothing more is kept and the MTA is asked to
 * skip the rest (SMFIS_SKIP), so big bodies cost nothing. */
static sfsistat
cb_body(SMFICTX *ctx, unsigned char *buf, size_t len)
{
	struct msess *s = smfi_getpriv(ctx);
	uint64_t max;
	struct job *j;
	size_t take;

	if (s == NULL)
		return SMFIS_CONTINUE;
	max = (uint64_t)s->loop->conf->body_max;
	if (s->body >= max)
		return s->can_skip ? SMFIS_SKIP : SMFIS_CONTINUE;
	take = (uint64_t)len > max - s->body ? (size_t)(max - s->body) : len;
	s->body += take;
	if ((j = job_begin(ctx, s, JOB_BODY, NULL)) == NULL ||
	    (j->data = malloc(take ? take : 1)) == NULL) {
		job_free(j);
		return fail_answer(ctx, s, "body");
	}
	memcpy(j->data, buf, take);
	j->len = take;
	j->flag = take < len;
	loop_run(s->loop, j);
	if (take < len) {
		gh_log(GH_LOG_INFO, "%s body over body_max (%lld octets): "
		       "plugins see the first %lld", s->id, (long long)max,
		       (long long)max);
		return s->can_skip ? SMFIS_SKIP : SMFIS_CONTINUE;
	}
	return SMFIS_CONTINUE;
}

/* An edit's header value: a leading space when we negotiated exact
 * spacing, since the MTA then adds none. */
static char *
hvalue(const struct msess *s, const char *v)
{
	size_t n = strlen(v) + 2;
	char *p = malloc(n);

	if (p != NULL)
		snprintf(p, n, "%s%s", s->leadspc && v[0] != ' ' &&
			 v[0] != '\t' ? " " : "", v);
	return p;
}

static char *
bracketed(const char *mailbox)
{
	size_t n = strlen(mailbox) + 3;
	char *p = malloc(n);

	if (p != NULL)
		snprintf(p, n, "<%s>", mailbox);
	return p;
}

static int
edit_apply(SMFICTX *ctx, struct msess *s, const struct xedit *e)
{
	char *v = NULL, *a = NULL;
	int rc = MI_FAILURE;

	switch (e->kind) {
	case GH_EDIT_HDR_ADD:
		if ((v = hvalue(s, e->value)) != NULL)
			rc = smfi_addheader(ctx, e->name, v);
		break;
	case GH_EDIT_HDR_INSERT:
		if ((v = hvalue(s, e->value)) != NULL)
			rc = smfi_insheader(ctx, (int)e->idx, e->name, v);
		break;
	case GH_EDIT_HDR_CHANGE:
		/* A NULL value deletes the header (smfi_chgheader(3)). */
		if (e->value == NULL || (v = hvalue(s, e->value)) != NULL)
			rc = smfi_chgheader(ctx, e->name, (int)e->idx, v);
		break;
	case GH_EDIT_RCPT_ADD:
		if ((a = bracketed(e->name)) != NULL)
			rc = smfi_addrcpt(ctx, a);
		break;
	case GH_EDIT_RCPT_DEL:
		rc = smfi_delrcpt(ctx, e->name);
		break;
	case GH_EDIT_FROM:
		if ((a = bracketed(e->name)) != NULL)
			rc = smfi_chgfrom(ctx, a, NULL);
		break;
	case GH_EDIT_QUARANTINE:
		rc = smfi_quarantine(ctx, e->name[0] ? e->name :
				     (char *)"quarantined by gatehouse");
		break;
	}
	free(v);
	free(a);
	return rc == MI_SUCCESS ? 0 : -1;
}

static const char *
edit_name(enum gh_edit_kind k)
{
	static const char *const names[] = {
		"add header", "insert header", "change header",
		"add recipient", "remove recipient", "change sender",
		"quarantine"
	};

	return names[k];
}

static sfsistat
eom_apply(SMFICTX *ctx, struct msess *s, const struct job *j)
{
	const struct xedit *e;
	char *v;

	for (e = j->edits; e != NULL; e = e->next) {
		if (edit_apply(ctx, s, e) == 0)
			continue;
		/* A plugin's edit that cannot be made (the MTA did not
		 * grant the action) must not let the message through
		 * unchanged: try later, and say why in the log. */
		gh_log(GH_LOG_ERR, "%s cannot %s \"%s\": the MTA refused the "
		       "milter action", s->id, edit_name(e->kind), e->name);
		set_reply(ctx, s, 451, "4.3.0",
			  "Cannot apply the mail filter's changes, try again "
			  "later");
		return SMFIS_TEMPFAIL;
	}
	if (j->trace != NULL) {
		/* At the top, as a trace field (RFC 5322 3.6.7). */
		if ((v = hvalue(s, j->trace)) == NULL ||
		    smfi_insheader(ctx, 0, (char *)s->loop->conf->trace_header, v) !=
		    MI_SUCCESS)
			gh_log(GH_LOG_WARN, "%s cannot insert the trace "
			       "header", s->id);
		free(v);
	}
	return SMFIS_CONTINUE;
}

static sfsistat
cb_eom(SMFICTX *ctx)
{
	struct msess *s = smfi_getpriv(ctx);
	struct job *j = job_begin(ctx, s, JOB_EOM, msg_macros);
	sfsistat r;

	if (j == NULL)
		return fail_answer(ctx, s, "eom");
	message_clear(s);
	loop_run(s->loop, j);
	if (job_wait(ctx, j, s->loop->conf->eom_timeout, 1) != 0)
		return fail_answer(ctx, s, "eom");
	r = answer(ctx, s, j);
	if (r == SMFIS_CONTINUE)
		r = eom_apply(ctx, s, j);
	job_free(j);
	return r;
}

static sfsistat
cb_abort(SMFICTX *ctx)
{
	struct msess *s = smfi_getpriv(ctx);
	struct job *j;

	if (s == NULL)
		return SMFIS_CONTINUE;
	message_clear(s);
	if ((j = job_begin(ctx, s, JOB_ABORT, NULL)) != NULL)
		loop_run(s->loop, j);
	return SMFIS_CONTINUE;
}

/* The session's last callback: the loop thread frees it after its
 * queued jobs. */
static sfsistat
cb_close(SMFICTX *ctx)
{
	struct msess *s = smfi_getpriv(ctx);
	struct job *j;

	if (s == NULL)
		return SMFIS_CONTINUE;
	smfi_setpriv(ctx, NULL);
	message_clear(s);
	if ((j = job_begin(ctx, s, JOB_CLOSE, NULL)) == NULL) {
		/* Cannot hand it over: leaking beats freeing what the
		 * loop thread may still hold. */
		return SMFIS_CONTINUE;
	}
	loop_run(s->loop, j);
	return SMFIS_CONTINUE;
}

/* ------------------------------------------------------------------ */

static struct smfiDesc desc = {
	.xxfi_name = (char *)"gatehouse",
	.xxfi_version = SMFI_VERSION,
	.xxfi_flags = MILTERD_ACTIONS,
	.xxfi_connect = cb_connect,
	.xxfi_helo = cb_helo,
	.xxfi_envfrom = cb_envfrom,
	.xxfi_envrcpt = cb_envrcpt,
	.xxfi_header = cb_header,
	.xxfi_eoh = cb_eoh,
	.xxfi_body = cb_body,
	.xxfi_eom = cb_eom,
	.xxfi_abort = cb_abort,
	.xxfi_close = cb_close,
	.xxfi_unknown = cb_unknown,
	.xxfi_data = cb_data,
	.xxfi_negotiate = cb_negotiate,
};

static int
socket_chmod(const char *spec, const char *mode, char *err, size_t errlen)
{
	const char *path;
	char *end;
	long m;

	if (mode == NULL || mode[0] == '\0')
		return 0;
	if (strncmp(spec, "unix:", 5) == 0)
		path = spec + 5;
	else if (strncmp(spec, "local:", 6) == 0)
		path = spec + 6;
	else
		return 0;
	m = strtol(mode, &end, 8);
	if (*end != '\0' || m < 0 || m > 07777) {
		snprintf(err, errlen, "socket_mode \"%s\": expected octal, "
			 "e.g. \"0660\"", mode);
		return -1;
	}
	if (chmod(path, (mode_t)m) != 0) {
		snprintf(err, errlen, "chmod %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}

int
bridge_register(const struct milterd_conf *conf, char *err, size_t errlen)
{
	if (smfi_register(desc) != MI_SUCCESS) {
		snprintf(err, errlen, "smfi_register failed");
		return -1;
	}
	if (smfi_setconn((char *)conf->socket) != MI_SUCCESS) {
		snprintf(err, errlen, "socket \"%s\": not a milter socket "
			 "(unix:/path or inet:port@host)", conf->socket);
		return -1;
	}
	/* 1: remove a stale Unix socket left by a previous run. */
	if (smfi_opensocket(1) != MI_SUCCESS) {
		snprintf(err, errlen, "cannot listen on %s: %s", conf->socket,
			 strerror(errno));
		return -1;
	}
	return socket_chmod(conf->socket, conf->socket_mode, err, errlen);
}
