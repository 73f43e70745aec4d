#!/bin/sh
# Tests only: what the appliance's Rocket.Chat and Jitsi packages leave in an image, for the
# placeholder domain, in the shape their postinst scripts write it (see overlays/jitsi and
# /usr/share/appliance/jitsi-domain-files there), so that appliance-firstboot renames and
# re-keys Jitsi in the test image as on the appliance: prosody's hosts, certificates and the
# focus and jvb accounts (made with prosodyctl, as jicofo's and the videobridge's postinst
# do), jicofo's and the videobridge's configuration with their secrets, Jitsi Meet's config.js
# and nginx site. Jitsi's own programs are not in Debian: its web application is one page,
# jicofo and the videobridge are units that only run, and its prosody plugins are empty
# modules (prosody loads the rendered configuration; their code is Jitsi's, not ours).
set -eu

d=jitsi.appliance.invalid
auth=auth.$d
apt-get install -q --no-install-recommends openssl ca-certificates

secret() { head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
selfsigned() { # NAME KEY CERT
	openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=$1" \
		-keyout "$2" -out "$3" 2>/dev/null
}

# Jitsi's prosody plugins: empty modules under the names the configuration loads.
plugins=/usr/share/jitsi-meet/prosody-plugins
mkdir -p "$plugins"
for m in speakerstats conference_duration muc_lobby_rooms muc_meeting_id muc_domain_mapper \
	client_proxy speakerstats_component conference_duration_component; do
	printf -- '-- Tests only: stands in for Jitsi Meet'"'"'s mod_%s.\nmodule:log("debug", "stand-in module loaded");\n' "$m" \
		>"$plugins/mod_$m.lua"
done

# jitsi-meet-web and jitsi-meet-web-config.
mkdir -p /usr/share/jitsi-meet/static /etc/jitsi/meet
printf '<!DOCTYPE html>\n<title>Jitsi Meet</title>\n<p>jitsi-meet-stand-in</p>\n' >/usr/share/jitsi-meet/index.html
printf 'not found\n' >/usr/share/jitsi-meet/static/404.html
printf "var config = {\n    hosts: { domain: '%s', muc: 'conference.%s' },\n    bosh: '//%s/http-bind',\n};\n" \
	"$d" "$d" "$d" >"/etc/jitsi/meet/$d-config.js"
selfsigned "$d" "/etc/jitsi/meet/$d.key" "/etc/jitsi/meet/$d.crt"
cat >"/etc/nginx/sites-available/$d.conf" <<EOF
server {
    listen 443 ssl;
    server_name $d;
    ssl_certificate /etc/jitsi/meet/$d.crt;
    ssl_certificate_key /etc/jitsi/meet/$d.key;
    root /usr/share/jitsi-meet;
}
EOF
ln -sf "/etc/nginx/sites-available/$d.conf" "/etc/nginx/sites-enabled/$d.conf"

# jitsi-meet-prosody: the hosts, their certificates, the internal CA trust.
turn=$(secret)
cat >"/etc/prosody/conf.avail/$d.cfg.lua" <<EOF
plugin_paths = { "$plugins" }
external_service_secret = "$turn";
VirtualHost "$d"
    authentication = "anonymous"
    ssl = { key = "/etc/prosody/certs/$d.key"; certificate = "/etc/prosody/certs/$d.crt"; }
    c2s_require_encryption = false
Component "conference.$d" "muc"
Component "internal.$auth" "muc"
    admins = { "focus@$auth", "jvb@$auth" }
VirtualHost "$auth"
    ssl = { key = "/etc/prosody/certs/$auth.key"; certificate = "/etc/prosody/certs/$auth.crt"; }
    authentication = "internal_hashed"
Component "focus.$d" "client_proxy"
    target_address = "focus@$auth"
EOF
ln -sf "/etc/prosody/conf.avail/$d.cfg.lua" "/etc/prosody/conf.d/$d.cfg.lua"
for host in "$d" "$auth"; do
	selfsigned "$host" "/var/lib/prosody/$host.key" "/var/lib/prosody/$host.crt"
	chown prosody:prosody "/var/lib/prosody/$host.key" "/var/lib/prosody/$host.crt"
	ln -sf "/var/lib/prosody/$host.key" "/etc/prosody/certs/$host.key"
	ln -sf "/var/lib/prosody/$host.crt" "/etc/prosody/certs/$host.crt"
done
ln -sf "/var/lib/prosody/$auth.crt" "/usr/local/share/ca-certificates/$auth.crt"
update-ca-certificates

# jicofo's and the videobridge's postinst: their accounts, their configuration.
focus=$(secret)
jvb=$(secret)
prosodyctl register focus "$auth" "$focus"
prosodyctl register jvb "$auth" "$jvb"
mkdir -p /etc/jitsi/jicofo /etc/jitsi/videobridge
cat >/etc/jitsi/jicofo/jicofo.conf <<EOF
jicofo {
  xmpp: {
    client: {
      client-proxy: focus.$d
      xmpp-domain: $d
      domain: $auth
      username: focus
      password: "$focus"
    }
  }
}
EOF
printf 'JICOFO_HOST=localhost\nJICOFO_HOSTNAME=%s\n' "$d" >/etc/jitsi/jicofo/config
printf 'org.jitsi.jicofo.BRIDGE_MUC=JvbBrewery@internal.%s\n' "$auth" >/etc/jitsi/jicofo/sip-communicator.properties
cat >/etc/jitsi/videobridge/jvb.conf <<EOF
videobridge {
  http-servers {
    public {
      port = 9090
    }
  }
}
EOF
printf 'JVB_HOSTNAME=%s\nJVB_SECRET=%s\n' "$d" "$jvb" >/etc/jitsi/videobridge/config
cat >/etc/jitsi/videobridge/sip-communicator.properties <<EOF
org.jitsi.videobridge.xmpp.user.shard.DOMAIN=$auth
org.jitsi.videobridge.xmpp.user.shard.PASSWORD=$jvb
org.jitsi.videobridge.xmpp.user.shard.MUC_JIDS=JvbBrewery@internal.$auth
org.jitsi.videobridge.xmpp.user.shard.MUC_NICKNAME=$(cat /proc/sys/kernel/random/uuid)
EOF
chmod 0640 /etc/jitsi/jicofo/jicofo.conf /etc/jitsi/jicofo/config /etc/jitsi/videobridge/config \
	/etc/jitsi/videobridge/sip-communicator.properties /etc/jitsi/jicofo/sip-communicator.properties

systemctl enable rocketchat.service jicofo.service jitsi-videobridge2.service
