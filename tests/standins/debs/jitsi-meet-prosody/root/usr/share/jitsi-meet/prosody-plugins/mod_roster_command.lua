-- mod_roster_command of the STAND-IN jitsi-meet-prosody (tests/standins/README.md): written
-- for the stand-in, the one command of the real plugin (which jitsi-meet-prosody ships) that
-- jitsi-meet-prosody's postinst runs:
--     prosodyctl mod_roster_command subscribe CONTACT USER
-- puts CONTACT in USER's roster with subscription "both", stored by Prosody's own roster
-- manager. A prosodyctl command only (Prosody 0.12 and later run it; the 18.04 stand-in's
-- prosodyctl does the same itself); loaded into a host, it does nothing.
if module:get_host() ~= "*" then
	module:log("error", "roster_command is a prosodyctl command; remove it from modules_enabled");
	return;
end

local jid = require "util.jid";
local rostermanager = require "core.rostermanager";
local storagemanager = require "core.storagemanager";
local usermanager = require "core.usermanager";

local function subscribe(contact, user)
	contact, user = jid.prep(contact), jid.prep(user);
	if not contact or not user then
		return nil, "usage: prosodyctl mod_roster_command subscribe CONTACT_JID USER_JID";
	end
	local username, host = jid.split(user);
	if not username or not prosody.hosts[host] then
		return nil, "the host of " .. user .. " is not a VirtualHost of this configuration";
	end
	storagemanager.initialize_host(host);
	usermanager.initialize_host(host);
	local roster, err = rostermanager.load_roster(username, host);
	if not roster then
		return nil, "cannot load the roster of " .. user .. ": " .. tostring(err);
	end
	local item = roster[contact] or { groups = {} };
	item.subscription = "both";
	item.ask = nil;
	roster[contact] = item;
	local ok, serr = rostermanager.save_roster(username, host, roster);
	if not ok then
		return nil, "cannot save the roster of " .. user .. ": " .. tostring(serr);
	end
	return true;
end

function module.command(arg)
	if arg[1] ~= "subscribe" then
		print("The stand-in mod_roster_command has only: subscribe CONTACT_JID USER_JID");
		return 1;
	end
	local ok, err = subscribe(arg[2], arg[3]);
	if not ok then
		print(err);
		return 1;
	end
	return 0;
end
