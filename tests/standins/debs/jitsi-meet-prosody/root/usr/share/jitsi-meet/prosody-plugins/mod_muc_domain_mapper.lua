-- mod_muc_domain_mapper: placeholder of the STAND-IN jitsi-meet-prosody (tests/standins/README.md).
module:log("info", "stand-in module muc_domain_mapper");
