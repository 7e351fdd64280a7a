-- shadow_body.lua - a plugin in shadow mode is logged, not obeyed; a
-- body past body_max (64 octets here) is cut and the MTA asked to SKIP
-- the rest; with fail_action = "reject" a missed deadline rejects.
dofile(lib)

local function script(c, hook, spec)
	send(c, "XSCRIPT " .. hook .. " " .. spec, SMFIR_CONTINUE, mt.unknown,
	     "XSCRIPT " .. hook .. " " .. spec)
end

mt.set_timeout(15)
local c = open()
send(c, "connect", SMFIR_CONTINUE, mt.conninfo, "client.example", "127.0.0.7")
send(c, "mail", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
script(c, "rcpt", "DENY:550:5.1.1:would refuse")
send(c, "rcpt refused in shadow mode passes", SMFIR_CONTINUE, mt.rcptto,
     "<b@example.net>")
send(c, "header", nil, mt.header, "Subject", "big")
send(c, "eoh", SMFIR_CONTINUE, mt.eoh)
send(c, "body over body_max", SMFIR_SKIP, mt.bodystring, string.rep("0123456789", 20) .. "\r\n")
send(c, "eom", SMFIR_CONTINUE, mt.eom)
local p = probe(c)
-- "Subject: big\r\n" 14 + "\r\n" 2 + 64 body octets
has(p, "size=80 ", "plugins see body_max octets of the body")
has(p, "rcpts=b@example.net ", "shadow DENY kept the recipient")

send(c, "mail 2", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
script(c, "rcpt", "AGAIN:never")
send(c, "rcpt past the deadline is rejected", SMFIR_REPLYCODE, mt.rcptto,
     "<slow@example.net>")
step("disconnect")
mt.disconnect(c)
