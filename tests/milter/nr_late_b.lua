-- nr_late_b.lua - a MAIL the MTA does not wait for (SMFIP_NR_MAIL) that
-- milterd cannot take in time, because another session holds the loop
-- (nr_late_a.lua): the MTA went on as if told CONTINUE, so when the loop
-- gets to it late the transaction stands, and the recipients after it
-- are accepted, not refused for want of a MAIL.
dofile(lib)

mt.set_timeout(20)
local c = open()
send(c, "B connect", SMFIR_CONTINUE, mt.conninfo, "client.example",
     "127.0.0.7")
ok(mt.test_option(c, SMFIP_NR_MAIL), "no reply to MAIL asked")
send(c, "B helo", SMFIR_CONTINUE, mt.helo, "client.example")
mt.sleep(1.5)
send(c, "B mail while the loop is held", SMFIR_CONTINUE, mt.mailfrom,
     "<b@example.org>")
send(c, "B rcpt after it: accepted", SMFIR_CONTINUE, mt.rcptto,
     "<b@example.net>")
send(c, "B second rcpt: accepted", SMFIR_CONTINUE, mt.rcptto,
     "<c@example.net>")
step("B disconnect")
mt.disconnect(c)
