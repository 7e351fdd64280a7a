-- reload_before.lua - the first configuration of the reload group:
-- access denies <first@example.net>, <second@example.net> passes.
-- reload_after.lua checks the opposite once the file changed and
-- milterd got SIGHUP (tests/integration/test_milterd.py).
dofile(lib)

local c = open()
send(c, "connect", SMFIR_CONTINUE, mt.conninfo, "client.example", "127.0.0.7")
send(c, "helo", SMFIR_CONTINUE, mt.helo, "client.example")
send(c, "mail", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
send(c, "first denied", SMFIR_REPLYCODE, mt.rcptto, "<first@example.net>")
send(c, "second accepted", SMFIR_CONTINUE, mt.rcptto, "<second@example.net>")
step("disconnect")
mt.disconnect(c)
