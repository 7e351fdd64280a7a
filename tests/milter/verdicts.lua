-- verdicts.lua - each verdict at each stage becomes the right libmilter
-- answer and reply.  The scripted plugin takes its verdicts from
-- "XSCRIPT hook SPEC", which reaches it as an unknown SMTP command.
dofile(lib)

local function script(c, hook, spec)
	send(c, "XSCRIPT " .. hook .. " " .. spec, SMFIR_CONTINUE, mt.unknown,
	     "XSCRIPT " .. hook .. " " .. spec)
end

-- One message through to end of message; returns after eom.
local function message(c, n)
	send(c, "mail " .. n, SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
	send(c, "rcpt " .. n, SMFIR_CONTINUE, mt.rcptto, "<b@example.net>")
	send(c, "header " .. n, nil, mt.header, "Subject", "verdict " .. n)
	send(c, "eoh " .. n, SMFIR_CONTINUE, mt.eoh)
	send(c, "body " .. n, SMFIR_CONTINUE, mt.bodystring, "x\r\n")
	send(c, "eom " .. n, nil, mt.eom)
end

local function eom_reply(c, code, enh, text, name)
	ok(mt.getreply(c) == SMFIR_REPLYCODE, name .. ": a reply")
	ok(mt.eom_check(c, MT_SMTPREPLY, code, enh, text),
	   name .. ": " .. code .. " " .. enh .. " " .. text)
end

local c = open()
send(c, "connect", SMFIR_CONTINUE, mt.conninfo, "client.example", "127.0.0.7")
send(c, "unknown, no opinion", SMFIR_CONTINUE, mt.unknown, "FOO bar")

script(c, "helo", "DENY:550:5.7.1:bad helo")
send(c, "helo refused", SMFIR_REPLYCODE, mt.helo, "bad.example")
script(c, "helo", "CONT")
send(c, "helo", SMFIR_CONTINUE, mt.helo, "good.example")

script(c, "mail", "DENYSOFT")
send(c, "mail tempfailed", SMFIR_REPLYCODE, mt.mailfrom, "<a@example.org>")
script(c, "mail", "CONT")
send(c, "mail", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")

script(c, "rcpt", "DENY:550:5.1.1:no such user")
send(c, "rcpt refused", SMFIR_REPLYCODE, mt.rcptto, "<nobody@example.net>")
script(c, "rcpt", "CONT")
send(c, "rcpt CONT is accepted inside an MTA", SMFIR_CONTINUE, mt.rcptto,
     "<b@example.net>")
script(c, "rcpt_ok", "DENYSOFT")
send(c, "rcpt_ok tempfails", SMFIR_REPLYCODE, mt.rcptto, "<c@example.net>")
script(c, "rcpt_ok", "CONT")
script(c, "data", "DENY")
send(c, "data refused", SMFIR_REPLYCODE, mt.data)
script(c, "data", "CONT")

script(c, "data_headers", "DENY:550:5.7.1:bad headers")
send(c, "mail h", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
send(c, "rcpt h", SMFIR_CONTINUE, mt.rcptto, "<b@example.net>")
send(c, "header h", nil, mt.header, "Subject", "x")
-- SMFIP_NR_EOH: the header verdict is end of message's answer (the MTA
-- answers DATA only after the dot anyway).
ok(mt.test_option(c, SMFIP_NR_EOH), "no reply to end of header asked")
send(c, "eoh", nil, mt.eoh)
send(c, "body h", SMFIR_CONTINUE, mt.bodystring, "x\r\n")
send(c, "eom refused for its headers", nil, mt.eom)
eom_reply(c, "550", "5.7.1", "bad headers", "data_headers DENY at eom")
script(c, "data_headers", "CONT")

script(c, "data_post", "DENY:554:5.7.1:spam 100% sure")
message(c, 1)
eom_reply(c, "554", "5.7.1", "spam 100%% sure", "DENY, '%' doubled")
script(c, "data_post", "DENYSOFT:451:4.7.1:later please")
message(c, 2)
eom_reply(c, "451", "4.7.1", "later please", "DENYSOFT")
script(c, "data_post", "DISCONNECT")
message(c, 3)
eom_reply(c, "421", "4.7.0", "Closing connection", "DISCONNECT")
script(c, "data_post", "DENYSOFTDISCONNECT")
message(c, 4)
eom_reply(c, "421", "4.7.1", "Message temporarily rejected",
	  "DENYSOFTDISCONNECT")
script(c, "data_post", "DENYDISCONNECT")
message(c, 5)
eom_reply(c, "550", "5.7.1", "Message rejected", "DENYDISCONNECT")
script(c, "data_post", "DENY:450:4.1.1:wrong class")
message(c, 6)
eom_reply(c, "550", "5.7.1", "wrong class", "a 4xx given with DENY")
script(c, "data_post", "DENYSOFT:550:5.1.1:wrong class")
message(c, 7)
eom_reply(c, "450", "4.7.1", "wrong class", "a 5xx given with DENYSOFT")
script(c, "data_post", "OK")
message(c, 8)
ok(mt.getreply(c) == SMFIR_CONTINUE, "OK at data_post accepts")
script(c, "data_post", "STOP")
message(c, 9)
ok(mt.getreply(c) == SMFIR_CONTINUE, "STOP at data_post accepts")

script(c, "unrecognized_command", "DENY")
send(c, "unknown refused", SMFIR_REPLYCODE, mt.unknown, "FOO bar")
step("disconnect")
mt.disconnect(c)
