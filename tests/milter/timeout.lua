-- timeout.lua - plugins that miss reply_timeout (2 s here) or
-- eom_timeout (3 s) get fail_action (tempfail): the recipient is not
-- kept, the pending chain is cancelled when the next command comes, and
-- a plugin that answers in time still counts.
dofile(lib)

local function script(c, hook, spec)
	send(c, "XSCRIPT " .. hook .. " " .. spec, SMFIR_CONTINUE, mt.unknown,
	     "XSCRIPT " .. hook .. " " .. spec)
end

mt.set_timeout(15)
local c = open()
send(c, "connect", SMFIR_CONTINUE, mt.conninfo, "client.example", "127.0.0.7")
send(c, "mail", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
script(c, "rcpt", "AGAIN:never")
send(c, "rcpt past the deadline tempfails", SMFIR_REPLYCODE, mt.rcptto,
     "<slow@example.net>")
script(c, "rcpt", "AGAIN:OK:50")
send(c, "rcpt answered after 50 ms", SMFIR_CONTINUE, mt.rcptto,
     "<b@example.net>")
send(c, "header", nil, mt.header, "Subject", "one")
send(c, "eoh", SMFIR_CONTINUE, mt.eoh)
send(c, "eom", SMFIR_CONTINUE, mt.eom)
local p = probe(c)
has(p, "rcpts=b@example.net ", "the timed-out recipient was not kept")

script(c, "data_post", "AGAIN:never")
send(c, "mail 2", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
send(c, "rcpt 2", SMFIR_CONTINUE, mt.rcptto, "<b@example.net>")
send(c, "header 2", nil, mt.header, "Subject", "slow")
send(c, "eoh 2", SMFIR_CONTINUE, mt.eoh)
send(c, "eom 2", nil, mt.eom)
ok(mt.getreply(c) == SMFIR_REPLYCODE, "eom past its deadline: a reply")
ok(mt.eom_check(c, MT_SMTPREPLY, "451", "4.7.1",
		"Temporary failure in mail filter, try again later"),
   "eom past its deadline: 451 4.7.1")

script(c, "data_post", "CONT")
send(c, "mail 3", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
send(c, "rcpt 3", SMFIR_CONTINUE, mt.rcptto, "<c@example.net>")
send(c, "header 3", nil, mt.header, "Subject", "fast")
send(c, "eoh 3", SMFIR_CONTINUE, mt.eoh)
send(c, "eom 3", SMFIR_CONTINUE, mt.eom)
p = probe(c)
has(p, "rcpts=c@example.net ", "the session goes on after a timeout")
step("disconnect")
mt.disconnect(c)
