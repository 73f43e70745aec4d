-- mod_external_services: placeholder of the STAND-IN jitsi-meet-prosody (tests/standins/README.md).
module:log("info", "stand-in module external_services");
