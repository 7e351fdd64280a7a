-- declared.lua - built-in plugins that declare they make no edits
-- (access, headers) and no trace header: milterd asks the MTA for no
-- edit action at all, for headers but not the body, and for no reply at
-- end of header; a header refusal is end of message's answer.
dofile(lib)

local c = open()
send(c, "connect", SMFIR_CONTINUE, mt.conninfo, "client.example", "127.0.0.7")
for _, a in ipairs({ {SMFIF_ADDHDRS, "ADDHDRS"}, {SMFIF_CHGHDRS, "CHGHDRS"},
		     {SMFIF_ADDRCPT, "ADDRCPT"}, {SMFIF_DELRCPT, "DELRCPT"},
		     {SMFIF_CHGFROM, "CHGFROM"},
		     {SMFIF_QUARANTINE, "QUARANTINE"},
		     {SMFIF_CHGBODY, "CHGBODY"} }) do
	ok(not mt.test_action(c, a[1]), a[2] .. " not asked for")
end
ok(mt.test_action(c, SMFIF_SETSYMLIST), "SETSYMLIST asked for")
ok(not mt.test_option(c, SMFIP_NOHDRS), "headers asked (data_headers hook)")
ok(mt.test_option(c, SMFIP_NOBODY), "no body asked (no data_post hook)")
ok(mt.test_option(c, SMFIP_NR_EOH), "no reply to end of header asked")
-- access has no list: it says nothing at connect, HELO or MAIL.
ok(mt.test_option(c, SMFIP_NR_CONN), "no reply to connect asked")
ok(mt.test_option(c, SMFIP_NR_HELO), "no reply to HELO asked")
ok(mt.test_option(c, SMFIP_NR_MAIL), "no reply to MAIL asked")
send(c, "helo", SMFIR_CONTINUE, mt.helo, "client.example")
send(c, "mail", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
send(c, "rcpt", SMFIR_CONTINUE, mt.rcptto, "<b@example.net>")
send(c, "header From", nil, mt.header, "From", "<a@example.org>")
send(c, "header Subject", nil, mt.header, "Subject", "no date here")
send(c, "eoh", nil, mt.eoh)
send(c, "eom", nil, mt.eom)
ok(mt.getreply(c) == SMFIR_REPLYCODE, "eom: refused for its headers")
step("disconnect")
mt.disconnect(c)
