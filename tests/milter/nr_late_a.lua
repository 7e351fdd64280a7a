-- nr_late_a.lua - run beside nr_late_b.lua, started 0.6 s after it: this
-- session holds milterd's only loop for four seconds at a recipient
-- (probe's stall_rcpt), so that B's MAIL, which the MTA does not wait
-- for, is still unanswered when milterd stops waiting for it.
dofile(lib)

mt.set_timeout(20)
local c = open()
send(c, "A connect", SMFIR_CONTINUE, mt.conninfo, "a.example", "127.0.0.8")
send(c, "A mail", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
-- Inline or on the loop thread, the answer comes late or as the fail
-- action: not checked here.
send(c, "A rcpt that holds the loop", nil, mt.rcptto, "<stall@example.net>")
mt.getreply(c)
step("A disconnect")
mt.disconnect(c)
