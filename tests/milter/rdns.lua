-- rdns.lua - when the MTA has no name for the client ("[addr]"), milterd
-- looks it up itself (forward-confirmed, through the `dns` servers) before
-- lookup_rdns, as relayd does; a name from the MTA is taken as confirmed.
dofile(lib)

local c = open()
send(c, "connect, no name from the MTA", SMFIR_CONTINUE, mt.conninfo,
     "[127.0.0.10]", "127.0.0.10")
send(c, "mail", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
send(c, "rcpt", SMFIR_CONTINUE, mt.rcptto, "<b@example.net>")
send(c, "eom", SMFIR_CONTINUE, mt.eom)
local p = probe(c)
has(p, "rdns=host10.example.test ", "our own lookup found the name")
has(p, "rdns_status=confirmed ", "and confirmed it")
step("disconnect")
mt.disconnect(c)

c = open()
send(c, "connect, name from the MTA", SMFIR_CONTINUE, mt.conninfo,
     "mta-says.example", "127.0.0.10")
send(c, "mail", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
send(c, "rcpt", SMFIR_CONTINUE, mt.rcptto, "<b@example.net>")
send(c, "eom", SMFIR_CONTINUE, mt.eom)
p = probe(c)
has(p, "rdns=mta-says.example ", "the MTA's name wins")
has(p, "rdns_status=confirmed ", "taken as confirmed")
step("disconnect")
mt.disconnect(c)
