-- abort.lua - the MTA aborts a message half-way (in the header, in the
-- body): nothing of it leaks into the next message of the session.
dofile(lib)

local c = open()
send(c, "connect", SMFIR_CONTINUE, mt.conninfo, "client.example", "127.0.0.7")
send(c, "mail 1", SMFIR_CONTINUE, mt.mailfrom, "<one@example.org>")
send(c, "rcpt 1", SMFIR_CONTINUE, mt.rcptto, "<r1@example.net>")
send(c, "header 1", nil, mt.header, "X-Junk", "from message one")
send(c, "abort in the header", nil, mt.abort)

send(c, "mail 2", SMFIR_CONTINUE, mt.mailfrom, "<two@example.org>")
send(c, "rcpt 2", SMFIR_CONTINUE, mt.rcptto, "<r2@example.net>")
send(c, "header 2", nil, mt.header, "Subject", "two")
send(c, "eoh 2", SMFIR_CONTINUE, mt.eoh)
send(c, "body 2", SMFIR_CONTINUE, mt.bodystring, "half a body\r\n")
send(c, "abort in the body", nil, mt.abort)

send(c, "mail 3", SMFIR_CONTINUE, mt.mailfrom, "<three@example.org>")
send(c, "rcpt 3", SMFIR_CONTINUE, mt.rcptto, "<r3@example.net>")
send(c, "header 3", nil, mt.header, "Subject", "three")
send(c, "eoh 3", SMFIR_CONTINUE, mt.eoh)
send(c, "body 3", SMFIR_CONTINUE, mt.bodystring, "body three\r\n")
send(c, "eom 3", SMFIR_CONTINUE, mt.eom)
local p = probe(c)
has(p, "from=three@example.org ", "sender of the message that ended")
has(p, "rcpts=r3@example.net ", "only its recipient")
has(p, "hdrs=1 ", "only its header")
-- "Subject: three\r\n" 16 + "\r\n" 2 + "body three\r\n" 12
has(p, "size=30 ", "only its octets")
has(p, "subject=three ", "its subject")
step("disconnect")
mt.disconnect(c)
