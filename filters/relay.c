/*
 * relay.c - relay rights by client address (Haraka's relay plugin, its
 * access control list part).
 *
 * At connect_init, before any other hook, a client whose address lies in
 * one of the `clients` networks gets conn->relaying set: the core then
 * accepts its recipients for any domain when no rcpt plugin objects
 * (a CONT at rcpt counts as acceptance only for a relaying client; see
 * the verdict table).  Nothing is ever refused here.
 *
 * IPv4 clients that reach an IPv6 socket arrive as ::ffff:a.b.c.d; they
 * are compared as the IPv4 address they are.
 */
#include "config.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "filter.h"

struct relay_conf {
	struct gh_strlist clients;
};

static const struct gh_directive relay_directives[] = {
	{ "clients", GH_DT_STRLIST, offsetof(struct relay_conf, clients),
	  "[ ]", 0, 0, NULL,
	  "networks that may relay: \"192.0.2.0/24\", \"2001:db8::/32\", "
	  "or one address" },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL }
};

/* One network, and its text for the logs. */
struct relay_net {
	struct gh_net net;
	const char *text;
};

struct relay_data {
	struct relay_net *nets;
	size_t nnets;
};

static const struct relay_net *
relay_match(const struct relay_data *d, const struct gh_conn *conn)
{
	size_t i;

	for (i = 0; i < d->nnets; i++)
		if (gh_net_match(&d->nets[i].net, conn))
			return &d->nets[i];
	return NULL;
}

static enum gh_verdict
relay_connect_init(struct gh_call *c)
{
	const struct relay_net *n = relay_match(c->plugin->data, c->conn);

	if (n == NULL) {
		gh_result(c, GH_SKIP, "%s not in clients", c->conn->remote_ip);
		return GH_CONT;
	}
	c->conn->relaying = 1;
	gh_clog(c, GH_LOG_DEBUG, "%s may relay (clients entry %s)",
		c->conn->remote_ip, n->text);
	gh_result(c, GH_PASS, "relaying: %s in %s", c->conn->remote_ip,
		  n->text);
	return GH_CONT;
}

static int
relay_init(struct gh_plugin *p, char *err, size_t errlen)
{
	const struct relay_conf *cf = p->conf;
	struct relay_data *d = calloc(1, sizeof(*d));
	size_t i;

	if (d == NULL || (cf->clients.n > 0 && (d->nets = calloc(
	    cf->clients.n, sizeof(*d->nets))) == NULL)) {
		free(d);
		snprintf(err, errlen, "%s: out of memory", p->name);
		return -1;
	}
	p->data = d;
	for (i = 0; i < cf->clients.n; i++) {
		d->nets[i].text = cf->clients.v[i];
		if (gh_net_parse(cf->clients.v[i], &d->nets[i].net) != 0) {
			snprintf(err, errlen, "%s: clients: \"%s\" is not an "
				 "IP address or network (ADDR/BITS)", p->name,
				 cf->clients.v[i]);
			return -1;
		}
	}
	d->nnets = cf->clients.n;
	return 0;
}

static void
relay_fini(struct gh_plugin *p)
{
	struct relay_data *d = p->data;

	if (d == NULL)
		return;
	free(d->nets);
	free(d);
	p->data = NULL;
}

static const struct gh_hook_entry relay_hooks[] = {
	{ GH_HOOK_CONNECT_INIT, relay_connect_init },
	{ 0, NULL }
};

const struct gh_module gh_module_relay = {
	.abi = GH_ABI_VERSION,
	.name = "relay",
	.description = "let clients from listed networks relay",
	.doc =
"A client whose address lies in one of the `clients` networks may relay:\n"
"at connect_init, before every other hook, the connection is marked as\n"
"relaying (Haraka: connection.relaying).  For such a client a recipient\n"
"that no rcpt plugin accepted or refused is accepted for any domain;\n"
"for every other client it is refused with 550 5.7.1 (see `relayd -R`).\n"
"host_list, for instance, answers CONT for a domain it does not know\n"
"when the client may relay.\n"
"\n"
"Entries are IPv4 or IPv6 addresses or networks (ADDR/BITS).  An IPv4\n"
"client seen as ::ffff:a.b.c.d on an IPv6 socket matches IPv4 entries.\n"
"relay never refuses anything; it records relay=pass or relay=skip in\n"
"the decision trace.  A bad entry stops start-up (relayd -t says which).\n"
"\n"
"Put relay first in `plugins` so that every later plugin sees the flag.\n"
"\n"
"Example:\n"
"\n"
"    plugins = [ \"relay\", \"host_list\", \"smtp_forward\" ];\n"
"    relay = { clients = [ \"127.0.0.0/8\", \"::1\", \"192.0.2.0/24\" ]; };\n",
	.directives = relay_directives,
	.conf_size = sizeof(struct relay_conf),
	.hooks = relay_hooks,
	.init = relay_init,
	.fini = relay_fini,
	.edits = GH_EDITS_NONE,
};
