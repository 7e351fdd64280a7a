-- reload_after.lua - after SIGHUP with the changed file: access now
-- denies <second@example.net> and lets <first@example.net> pass.  Run
-- again after a broken file and SIGHUP: the running configuration stays.
dofile(lib)

local c = open()
send(c, "connect", SMFIR_CONTINUE, mt.conninfo, "client.example", "127.0.0.7")
send(c, "helo", SMFIR_CONTINUE, mt.helo, "client.example")
send(c, "mail", SMFIR_CONTINUE, mt.mailfrom, "<a@example.org>")
send(c, "first accepted", SMFIR_CONTINUE, mt.rcptto, "<first@example.net>")
send(c, "second denied", SMFIR_REPLYCODE, mt.rcptto, "<second@example.net>")
step("disconnect")
mt.disconnect(c)
