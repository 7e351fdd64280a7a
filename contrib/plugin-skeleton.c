/*
 * skeleton.c - a gatehouse plugin: say in one line what it does.
 *
 * Written by `relayd -p skeleton` as a starting point.  The
 * contract is filters/filter.h: a plugin is this one file, which
 * exports one constant module descriptor (name, description,
 * manual, directive table, hook table, init, fini); everything
 * else is static.  The core parses and checks the settings,
 * orders the chain and runs the loop.
 *
 * This example refuses the recipients listed in `refuse` at the
 * rcpt hook and leaves every other decision to the chain.
 *
 * Two ways to build it, from this same file:
 *  - built in: save it as filters/skeleton.c and add skeleton to
 *    GH_PLUGINS in Makefile.am.  The generated filters/modules.c
 *    refers to the descriptor by its built-in name,
 *    gh_module_skeleton: each built-in plugin needs a symbol of
 *    its own.
 *  - as a shared object:
 *      cc -shared -fPIC -I GATEHOUSE/filters \
 *          -o skeleton.so skeleton.c
 *    then copy skeleton.so into plugin_dir.  relayd dlopen()s
 *    PLUGIN_DIR/skeleton.so and looks up `gh_module` (the name a
 *    loadable plugin exports), then gh_module_skeleton, so this
 *    file needs no change.  The ABI version is checked before
 *    anything else is read.
 *
 * Then list it in `plugins = [ ..., "skeleton" ];`, give it a
 * group `skeleton = { ... };` and check with `relayd -t`;
 * `relayd -h skeleton` prints the manual below, then the
 * directive table.
 */
#include <stddef.h>
#include <stdio.h>
#include <strings.h>

#include "filter.h"

/* The group `skeleton = { ... };`, filled from the directive table. */
struct skeleton_conf {
	struct gh_strlist refuse;
	const char *message;
};

static const struct gh_directive skeleton_directives[] = {
	{ "refuse", GH_DT_STRLIST, offsetof(struct skeleton_conf, refuse),
	  "[ ]", 0, 1000, NULL,
	  "recipients to refuse with 550 5.1.1 (any case)" },
	{ "message", GH_DT_STRING, offsetof(struct skeleton_conf, message),
	  "\"mailbox unavailable\"", 0, 0, NULL,
	  "the text of the refusal" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

/* Once per worker, after the configuration was checked: refuse
 * what the directive table cannot express, with a reason. */
static int
skeleton_init(struct gh_plugin *p, char *err, size_t errlen)
{
	const struct skeleton_conf *conf = p->conf;
	size_t i;

	for (i = 0; i < conf->refuse.n; i++) {
		if (conf->refuse.v[i][0] == '\0') {
			snprintf(err, errlen, "%s.refuse: empty mailbox",
			    p->name);
			return -1;
		}
	}
	return 0;
}

/* RFC 5321 3.3: a recipient we will not accept gets a 550. */
static enum gh_verdict
skeleton_rcpt(struct gh_call *c)
{
	const struct skeleton_conf *conf = c->plugin->conf;
	const char *mailbox = c->path->addr.mailbox;
	size_t i;

	for (i = 0; i < conf->refuse.n; i++) {
		if (strcasecmp(mailbox, conf->refuse.v[i]) == 0) {
			gh_clog(c, GH_LOG_INFO, "refused recipient <%s>",
			    mailbox);
			gh_result(c, GH_FAIL, "refused %s", mailbox);
			gh_reply(c, 550, "5.1.1", "%s", conf->message);
			return GH_DENY;
		}
	}
	return GH_CONT;
}

static const struct gh_hook_entry skeleton_hooks[] = {
	{ GH_HOOK_RCPT, skeleton_rcpt },
	{ 0, NULL }
};

const struct gh_module gh_module_skeleton = {
	.abi = GH_ABI_VERSION,
	.name = "skeleton",
	.description = "refuses the recipients it is given",
	.doc =
	    "At the rcpt hook, skeleton refuses each recipient\n"
	    "listed in `refuse` with 550 5.1.1 and the text\n"
	    "of `message`; other recipients go on down the\n"
	    "chain.\n"
	    "\n"
	    "Directives:\n"
	    "  refuse = [ ];\n"
	    "      mailboxes to refuse, in any case\n"
	    "  message = \"mailbox unavailable\";\n"
	    "      the text of the refusal\n"
	    "\n"
	    "Example:\n"
	    "  plugins = [ \"skeleton\" ];\n"
	    "  skeleton = {\n"
	    "    refuse = [ \"abuse@example.test\" ];\n"
	    "  };\n",
	.directives = skeleton_directives,
	.conf_size = sizeof(struct skeleton_conf),
	.hooks = skeleton_hooks,
	.init = skeleton_init,
};
