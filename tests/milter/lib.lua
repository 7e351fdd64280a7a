-- lib.lua - helpers shared by the miltertest scripts.
--
-- miltertest (run by tests/integration/test_milterd.py with
-- -D socket=inet:PORT@127.0.0.1 -D lib=PATH) plays the MTA.  It exits 1
-- without a word on a script error, so every step prints a line first
-- and every check prints "ok: NAME" or raises "FAILED: NAME"; the Python
-- side counts those lines.
--
-- milterd asks for SMFIP_HDR_LEADSPC; miltertest then sends a header
-- value with the single space after the colon in front, as an MTA does,
-- so scripts give values without it.

function step(name)
	mt.echo("step: " .. name)
end

function ok(cond, name)
	if not cond then
		error("FAILED: " .. name)
	end
	mt.echo("ok: " .. name)
end

function open()
	local c = mt.connect(socket, 40, 0.05)
	if c == nil then
		error("FAILED: cannot connect to " .. socket)
	end
	return c
end

-- Run one protocol step; it must not fail and must get reply `want`
-- (nil: do not check the reply).
function send(c, name, want, fn, ...)
	step(name)
	local err = fn(c, ...)
	ok(err == nil, name .. " sent" .. (err and (": " .. err) or ""))
	if want ~= nil then
		local r = mt.getreply(c)
		ok(r == want, name .. " answered " .. tostring(want) ..
		   " (got " .. tostring(r) .. ")")
	end
end

-- The X-Probe header the probe plugin added at end of message.
function probe(c)
	local v = mt.getheader(c, "X-Probe", 0)
	ok(v ~= nil, "X-Probe header added")
	mt.echo("X-Probe:" .. v)
	return v
end

function has(s, part, name)
	ok(string.find(s, part, 1, true) ~= nil, name .. ": has '" ..
	   part .. "'")
end
