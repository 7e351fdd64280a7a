-- noreply.lua - access checks HELO names only: milterd tells the MTA not
-- to wait for an answer at connect and MAIL (SMFIP_NR_CONN, NR_MAIL),
-- which no plugin checks, but does wait at HELO and RCPT; a sender its
-- parser refuses at such an unanswered MAIL is refused at each RCPT.
dofile(lib)

local c = open()
send(c, "connect", SMFIR_CONTINUE, mt.conninfo, "client.example", "127.0.0.7")
ok(mt.test_option(c, SMFIP_NR_CONN), "no reply to connect asked")
ok(mt.test_option(c, SMFIP_NR_MAIL), "no reply to MAIL asked")
ok(not mt.test_option(c, SMFIP_NR_HELO), "HELO answered (helo_deny)")
ok(not mt.test_option(c, SMFIP_NR_RCPT), "RCPT answered")
send(c, "helo refused", SMFIR_REPLYCODE, mt.helo, "bad.example")
send(c, "helo", SMFIR_CONTINUE, mt.helo, "client.example")
send(c, "mail", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
send(c, "rcpt", SMFIR_CONTINUE, mt.rcptto, "<b@example.net>")
send(c, "abort", nil, mt.abort)
send(c, "mail, a sender the parser refuses", SMFIR_CONTINUE, mt.mailfrom,
     "<a b@example.org>")
send(c, "rcpt after it", SMFIR_REPLYCODE, mt.rcptto, "<b@example.net>")
send(c, "second rcpt after it", SMFIR_REPLYCODE, mt.rcptto,
     "<c@example.net>")
send(c, "abort", nil, mt.abort)
send(c, "mail again", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
send(c, "rcpt accepted again", SMFIR_CONTINUE, mt.rcptto, "<b@example.net>")
step("disconnect")
mt.disconnect(c)
