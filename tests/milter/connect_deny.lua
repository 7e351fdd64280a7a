-- connect_deny.lua - a plugin refusing the connection at connect: the
-- MTA gets a reply and REJECT for the whole session.
dofile(lib)

local c = open()
send(c, "connect refused", SMFIR_REPLYCODE, mt.conninfo, "client.example",
     "127.0.0.7")
step("disconnect")
mt.disconnect(c)
