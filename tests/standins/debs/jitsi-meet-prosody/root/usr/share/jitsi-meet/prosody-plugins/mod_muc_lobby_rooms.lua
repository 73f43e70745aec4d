-- mod_muc_lobby_rooms: placeholder of the STAND-IN jitsi-meet-prosody (tests/standins/README.md).
module:log("info", "stand-in module muc_lobby_rooms");
