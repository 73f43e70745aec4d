-- mod_limits_exception: placeholder of the STAND-IN jitsi-meet-prosody (tests/standins/README.md).
module:log("info", "stand-in module limits_exception");
