-- Prosody's main configuration as the STAND-IN prosody package of the appliance builder's
-- test harness ships it (tests/standins/README.md): the parts Jitsi's packages rely on.
admins = { }
modules_enabled = {
	"roster"; "saslauth"; "tls"; "dialback"; "disco"; "posix"; "ping"; "register";
}
pidfile = "/run/prosody/prosody.pid"
authentication = "internal_hashed"
log = {
	info = "/var/log/prosody/prosody.log";
	error = "/var/log/prosody/prosody.err";
}
certificates = "certs"

VirtualHost "localhost"

Include "conf.d/*.cfg.lua"
