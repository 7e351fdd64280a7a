-- edits.lua - every edit a plugin can ask for is replayed at end of
-- message through smfi_*, and the decision trace is inserted at the top.
-- The probe plugin makes its edits when the Subject says "edit me".
dofile(lib)

local c = open()
send(c, "connect", SMFIR_CONTINUE, mt.conninfo, "client.example", "127.0.0.7")
send(c, "mail", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
send(c, "rcpt b", SMFIR_CONTINUE, mt.rcptto, "<b@example.net>")
send(c, "rcpt c", SMFIR_CONTINUE, mt.rcptto, "<c@Example.NET>")
send(c, "header Subject", nil, mt.header, "Subject", "please edit me")
send(c, "header X-Remove", nil, mt.header, "X-Remove", "bye")
send(c, "eoh", SMFIR_CONTINUE, mt.eoh)
send(c, "body", SMFIR_CONTINUE, mt.bodystring, "hello\r\n")
send(c, "eom", SMFIR_CONTINUE, mt.eom)
ok(mt.eom_check(c, MT_HDRADD, "X-Added", " yes"), "header added (smfi_addheader)")
ok(mt.eom_check(c, MT_HDRINSERT, "X-Inserted", " first", 1),
   "header inserted at index 1 (smfi_insheader)")
ok(mt.eom_check(c, MT_HDRCHANGE, "Subject", " changed"),
   "header changed (smfi_chgheader)")
ok(mt.eom_check(c, MT_HDRDELETE, "X-Remove"), "header deleted (smfi_chgheader NULL)")
ok(mt.eom_check(c, MT_RCPTADD, "<added@example.net>"), "recipient added (smfi_addrcpt)")
ok(mt.eom_check(c, MT_RCPTDELETE, "<c@Example.NET>"),
   "recipient removed with the exact string received (smfi_delrcpt)")
ok(mt.eom_check(c, MT_QUARANTINE, "probe says so"), "quarantined (smfi_quarantine)")
ok(mt.eom_check(c, MT_HDRINSERT, "X-Gatehouse-Trace"), "trace header inserted")
local t = mt.getheader(c, "X-Gatehouse-Trace", 0)
ok(t ~= nil, "trace header value")
mt.echo("X-Gatehouse-Trace:" .. t)
has(t, "probe=pass(8 edits)", "trace names the plugin's result")
local p = probe(c)
has(p, "rcpts=b@example.net,!c@Example.NET,added@example.net ",
    "plugins see the removal and the addition")
has(p, "from=new@example.org ", "sender changed (smfi_chgfrom)")

-- No "edit me": nothing but the probe's report and the trace.
send(c, "mail 2", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
send(c, "rcpt 2", SMFIR_CONTINUE, mt.rcptto, "<b@example.net>")
send(c, "header 2", nil, mt.header, "Subject", "plain")
send(c, "eoh 2", SMFIR_CONTINUE, mt.eoh)
send(c, "eom 2", SMFIR_CONTINUE, mt.eom)
ok(not mt.eom_check(c, MT_HDRADD, "X-Added"), "no edit asked, none made")
ok(not mt.eom_check(c, MT_RCPTDELETE, "<c@Example.NET>"), "no recipient removed")
ok(mt.eom_check(c, MT_HDRINSERT, "X-Gatehouse-Trace"), "trace header again")
step("disconnect")
mt.disconnect(c)
