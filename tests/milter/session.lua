-- session.lua - every callback maps onto its hook; macros present reach
-- the plugins (client name, j, daemon address, AUTH, queue id), and the
-- probe plugin reports what it saw.
dofile(lib)

local c = open()
mt.macro(c, SMFIC_CONNECT, "j", "mx.milter.test", "{daemon_addr}",
	 "127.0.0.1", "{client_port}", "40001")
send(c, "connect", SMFIR_CONTINUE, mt.conninfo, "client.example",
     "127.0.0.7")
ok(mt.test_option(c, SMFIP_HDR_LEADSPC), "exact header spacing asked for")
ok(mt.test_option(c, SMFIP_SKIP), "SKIP asked for")
ok(mt.test_action(c, SMFIF_ADDHDRS), "ADDHDRS asked for")
ok(mt.test_action(c, SMFIF_SETSYMLIST), "SETSYMLIST asked for")
ok(not mt.test_action(c, SMFIF_CHGBODY), "CHGBODY not asked for")
-- scripted and probe are modules that do not declare their edits: every
-- action is asked for, to be safe.
for _, a in ipairs({ {SMFIF_CHGHDRS, "CHGHDRS"}, {SMFIF_ADDRCPT, "ADDRCPT"},
		     {SMFIF_DELRCPT, "DELRCPT"}, {SMFIF_CHGFROM, "CHGFROM"},
		     {SMFIF_QUARANTINE, "QUARANTINE"} }) do
	ok(mt.test_action(c, a[1]), a[2] .. " asked for (undeclared edits)")
end
send(c, "helo", SMFIR_CONTINUE, mt.helo, "client.example")
mt.macro(c, SMFIC_MAIL, "{auth_authen}", "alice", "{auth_type}", "PLAIN",
	 "i", "4XyzQ1")
send(c, "mail", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>", "BODY=8BITMIME")
send(c, "rcpt 1", SMFIR_CONTINUE, mt.rcptto, "<b@example.net>")
send(c, "rcpt 2", SMFIR_CONTINUE, mt.rcptto, "<c@example.net>")
send(c, "data", SMFIR_CONTINUE, mt.data)
send(c, "header Subject", nil, mt.header, "Subject", "hello  there")
send(c, "header From", nil, mt.header, "From", "A <a@example.org>")
-- miltertest adds the one space an MTA keeps under SMFIP_HDR_LEADSPC; a
-- second one is the client's and must survive.
send(c, "header X-Spaced", nil, mt.header, "X-Spaced", " spaced")
send(c, "eoh", SMFIR_CONTINUE, mt.eoh)
send(c, "body", SMFIR_CONTINUE, mt.bodystring, "line one\r\nline two\r\n")
send(c, "eom", SMFIR_CONTINUE, mt.eom)
local p = probe(c)
has(p, "ip=127.0.0.7 ", "client address from the connect callback")
has(p, "rdns=client.example ", "client name from the connect callback")
has(p, "helo=client.example ", "helo name")
has(p, "auth=alice relaying=1 ", "{auth_authen} makes the client relaying")
has(p, "host=mx.milter.test ", "j macro is our host name")
has(p, "local=127.0.0.1 ", "{daemon_addr} is the local address")
has(p, "from=a@example.org ", "sender")
has(p, "rcpts=b@example.net,c@example.net ", "both recipients")
has(p, "hdrs=3 ", "three header fields")
-- "Subject: hello  there\r\n" 23, "From: A <a@example.org>\r\n" 25,
-- "X-Spaced:  spaced\r\n" 19, "\r\n" 2, body 20: spacing as sent.
has(p, "size=89 ", "message size, exact header spacing kept")
has(p, "subject=hello  there ", "subject value")
has(p, "qid=4XyzQ1 ", "queue id macro")
has(p, "milter=1", "host_milter flag")
ok(string.sub(p, 1, 1) == " ", "added value carries its leading space")

-- A second message in the same session: a fresh transaction.
mt.macro(c, SMFIC_MAIL, "i", "4XyzQ2")
send(c, "mail 2", SMFIR_CONTINUE, mt.mailfrom, "<d@example.org>")
send(c, "rcpt 2.1", SMFIR_CONTINUE, mt.rcptto, "<e@example.net>")
send(c, "header 2", nil, mt.header, "Subject", "second")
send(c, "eoh 2", SMFIR_CONTINUE, mt.eoh)
send(c, "body 2", SMFIR_CONTINUE, mt.bodystring, "x\r\n")
send(c, "eom 2", SMFIR_CONTINUE, mt.eom)
p = probe(c)
has(p, "from=d@example.org ", "second sender")
has(p, "rcpts=e@example.net ", "only the second message's recipient")
has(p, "qid=4XyzQ2 ", "second queue id")
step("disconnect")
mt.disconnect(c)
