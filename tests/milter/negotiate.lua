-- negotiate.lua - with no plugin needing the message, milterd asks the
-- MTA to skip DATA, headers, body and unknown commands, and still stamps
-- the trace header at end of message.
dofile(lib)

local c = open()
send(c, "connect", SMFIR_CONTINUE, mt.conninfo, "client.example", "127.0.0.7")
ok(mt.test_option(c, SMFIP_NOHDRS), "no headers asked")
ok(mt.test_option(c, SMFIP_NOBODY), "no body asked")
ok(mt.test_option(c, SMFIP_NOEOH), "no end of header asked")
ok(mt.test_option(c, SMFIP_NODATA), "no DATA asked")
ok(mt.test_option(c, SMFIP_NOUNKNOWN), "no unknown commands asked")
-- Nothing to check at connect, HELO or MAIL: no reply to wait for.
ok(mt.test_option(c, SMFIP_NR_CONN), "no reply to connect asked")
ok(mt.test_option(c, SMFIP_NR_HELO), "no reply to HELO asked")
ok(mt.test_option(c, SMFIP_NR_MAIL), "no reply to MAIL asked")
-- No plugin edits; the trace header needs ADDHDRS and nothing else.
ok(mt.test_action(c, SMFIF_ADDHDRS), "ADDHDRS asked for (trace header)")
for _, a in ipairs({ {SMFIF_CHGHDRS, "CHGHDRS"}, {SMFIF_ADDRCPT, "ADDRCPT"},
		     {SMFIF_DELRCPT, "DELRCPT"}, {SMFIF_CHGFROM, "CHGFROM"},
		     {SMFIF_QUARANTINE, "QUARANTINE"},
		     {SMFIF_CHGBODY, "CHGBODY"} }) do
	ok(not mt.test_action(c, a[1]), a[2] .. " not asked for")
end
send(c, "mail", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
send(c, "rcpt", SMFIR_CONTINUE, mt.rcptto, "<b@example.net>")
send(c, "eom", SMFIR_CONTINUE, mt.eom)
ok(mt.eom_check(c, MT_HDRINSERT, "X-Gatehouse-Trace", " none", 0),
   "trace header at the top, no plugin results")
step("disconnect")
mt.disconnect(c)
