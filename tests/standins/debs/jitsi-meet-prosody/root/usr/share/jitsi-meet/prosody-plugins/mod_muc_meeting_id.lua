-- mod_muc_meeting_id: placeholder of the STAND-IN jitsi-meet-prosody (tests/standins/README.md).
module:log("info", "stand-in module muc_meeting_id");
