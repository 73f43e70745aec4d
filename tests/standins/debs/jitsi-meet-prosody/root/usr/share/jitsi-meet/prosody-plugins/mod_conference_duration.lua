-- mod_conference_duration: placeholder of the STAND-IN jitsi-meet-prosody (tests/standins/README.md).
module:log("info", "stand-in module conference_duration");
