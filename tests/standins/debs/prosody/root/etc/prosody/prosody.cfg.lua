-- Prosody's main configuration as the STAND-IN prosody package of the appliance builder's
-- test harness ships it (tests/standins/README.md): Ubuntu 18.04's real Prosody 0.10 with
-- the settings of the packaged default configuration that Jitsi's packages rely on (c2s
-- encryption required, internal_hashed accounts, certificates in certs/, conf.d included).
-- Not daemonized: prosody.service runs it in the foreground.
admins = { }
modules_enabled = {
	"roster"; "saslauth"; "tls"; "dialback"; "disco"; "private"; "vcard"; "version";
	"uptime"; "time"; "ping"; "register"; "posix";
}
allow_registration = false
daemonize = false
pidfile = "/run/prosody/prosody.pid"
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = false
authentication = "internal_hashed"
log = {
	info = "/var/log/prosody/prosody.log";
	error = "/var/log/prosody/prosody.err";
	{ levels = { "error" }; to = "syslog"; };
}
certificates = "certs"

VirtualHost "localhost"

Include "conf.d/*.cfg.lua"
