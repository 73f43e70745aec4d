#!/bin/sh
# Jitsi Meet for the placeholder domain jitsi.appliance.invalid, unattended (debconf answers
# in /usr/share/appliance/jitsi/debconf-selections):
#   Jitsi's packages from Jitsi's repository and Prosody from prosody.im's (prosody_repo set:
#   18.04, whose own 0.10 is too old) or from the base's own archive (prosody_repo empty: 24.04's
#   universe has 0.12), each repository's key checked against its pinned fingerprint; every
#   package at its pinned version, held there; the Java runtime (jitsi_java_package: OpenJDK
#   11 on 18.04, 17 on 24.04) and nginx from Ubuntu's archive; coturn from Ubuntu's archive as the TURN server, configured
#   by appliance-firstboot (/etc/turnserver.conf, this instance's secret), its user in ssl-cert
#   for the certificate; not jitsi-meet-turnserver, which would take nginx's port 443 over.
# Then the secrets the packages left in debconf are blanked, and the list of files that name
# the placeholder (/usr/share/appliance/jitsi-domain-files, for appliance-firstboot) is checked
# against what the packages really wrote.
set -eu

need() { /usr/local/lib/appliance/need-var "$1"; }

jitsi_repo=$(need JITSI_REPO)
jitsi_key_url=$(need JITSI_KEY_URL)
jitsi_key_fpr=$(need JITSI_KEY_FINGERPRINT)
meet=$(need JITSI_MEET_VERSION)
web=$(need JITSI_MEET_WEB_VERSION)
jicofo=$(need JICOFO_VERSION)
jvb=$(need JITSI_VIDEOBRIDGE2_VERSION)
# Empty: the base's own archive has the Prosody Jitsi needs (no repository, no key).
prosody_repo=${APPLIANCE_VAR_PROSODY_REPO:-}
prosody=$(need PROSODY_VERSION)
# Packages Prosody recommends that this release's Prosody needs (installed without recommends).
prosody_extra=${APPLIANCE_VAR_PROSODY_EXTRA_PACKAGES:-}
java=$(need JITSI_JAVA_PACKAGE)

domain=jitsi.appliance.invalid
list=/usr/share/appliance/jitsi-domain-files
lib=/usr/local/lib/appliance

if [ -n "$prosody_repo" ]; then
	"$lib/apt-key-pinned" repo prosody "$(need PROSODY_KEY_URL)" "$(need PROSODY_KEY_FINGERPRINT)" "$prosody_repo"
fi
"$lib/apt-key-pinned" repo jitsi "$jitsi_key_url" "$jitsi_key_fpr" "$jitsi_repo"
apt-get update -q
# Pins these repositories no longer serve, named before apt-get fails on them.
"$lib/apt-pin-check" prosody_version "$prosody" prosody
"$lib/apt-pin-check" jitsi_videobridge2_version "$jvb" jitsi-videobridge2
"$lib/apt-pin-check" jicofo_version "$jicofo" jicofo
"$lib/apt-pin-check" jitsi_meet_web_version "$web" jitsi-meet-web jitsi-meet-web-config jitsi-meet-prosody
"$lib/apt-pin-check" jitsi_meet_version "$meet" jitsi-meet

# jitsi-videobridge2's postinst runs `sysctl --system`: in this chroot that would set the
# build host's kernel parameters (/proc/sys is the host's). Stand sysctl aside meanwhile; its
# settings (/etc/sysctl.d/20-jvb-udp-buffers.conf) apply when the appliance boots.
dpkg-divert --local --rename --divert /sbin/sysctl.appliance-build --add /sbin/sysctl
ln -sf /bin/true /sbin/sysctl
restore_sysctl() {
	rm -f /sbin/sysctl
	dpkg-divert --local --rename --divert /sbin/sysctl.appliance-build --remove /sbin/sysctl
}
trap restore_sysctl EXIT

debconf-set-selections /usr/share/appliance/jitsi/debconf-selections

# The web server and Java first: jitsi-meet-web-config configures the web server it finds
# installed, and jitsi-videobridge2 pre-depends on Java.
# shellcheck disable=SC2086 # one word per package
apt-get install -q --no-install-recommends "$java" nginx "prosody=$prosody" $prosody_extra
apt-get install -q --no-install-recommends \
	"jitsi-videobridge2=$jvb" "jicofo=$jicofo" \
	"jitsi-meet-web=$web" "jitsi-meet-web-config=$web" "jitsi-meet-prosody=$web" \
	"jitsi-meet=$meet"
apt-mark hold prosody jitsi-videobridge2 jicofo jitsi-meet-web jitsi-meet-web-config \
	jitsi-meet-prosody jitsi-meet

if dpkg-query -W -f '${db:Status-Abbrev}' jitsi-meet-turnserver 2>/dev/null | grep -q '^i'; then
	echo "jitsi: jitsi-meet-turnserver was installed; the appliance configures coturn itself" >&2
	exit 1
fi
# TURN: coturn from Ubuntu's archive (its unit is the overlay's coturn.service).
apt-get install -q --no-install-recommends coturn
usermod -a -G ssl-cert turnserver
systemctl enable coturn.service

# nginx's welcome page is not part of the appliance (firstboot writes its sites).
rm -f /etc/nginx/sites-enabled/default

# The secrets the packages generated are in the files firstboot rewrites, and in debconf:
# blank them there (firstboot sets the new ones, see jitsi-domain-files).
debconf-set-selections <<'EOF'
jicofo	jicofo/jicofo-authpassword	password
jitsi-videobridge2	jitsi-videobridge/jvbsecret	password
jitsi-meet-prosody	jitsi-meet-prosody/turn-secret	string
EOF
# debconf's backups of the databases still hold them.
rm -f /var/cache/debconf/config.dat-old /var/cache/debconf/passwords.dat-old

# The packages enable their services themselves (prosody, jicofo, jitsi-videobridge2, nginx);
# they start at boot after appliance-firstboot has written this machine's configuration.

# --- The list for firstboot must match what the packages wrote. ---
listed=/tmp/appliance-jitsi-listed
found=/tmp/appliance-jitsi-found
awk '$1 !~ /^#/ && NF >= 2 { print $1, $2 }' "$list" >"$listed"
bad=0
while read -r kind path; do
	if [ ! -e "$path" ] && [ ! -L "$path" ]; then
		case "$kind" in
		*\?) echo "jitsi: (optional, absent in these versions) $path" ;;
		*)
			echo "jitsi: $list lists $path ($kind), but the packages did not write it" >&2
			bad=1
			;;
		esac
	fi
done <"$listed"
encoded=$(printf '%s' "$domain" | sed 's/\./%2e/g')
{
	grep -rlF "$domain" /etc /var/lib/prosody /usr/local/share/ca-certificates 2>/dev/null || true
	find /etc /var/lib/prosody /usr/local/share/ca-certificates \
		\( -name "*$domain*" -o -name "*$encoded*" \) 2>/dev/null || true
} | sort -u >"$found"
while read -r path; do
	covered=no
	while read -r _kind entry; do
		case "$path" in
		"$entry" | "$entry"/*)
			covered=yes
			break
			;;
		esac
	done <"$listed"
	if [ "$covered" = no ]; then
		echo "jitsi: $path names $domain but is not in $list" >&2
		bad=1
	fi
done <"$found"
rm -f "$listed" "$found"
if [ "$bad" -ne 0 ]; then
	echo "jitsi: $list does not match what the Jitsi packages wrote (see above): fix the list" >&2
	exit 1
fi
echo "jitsi: jitsi-meet $meet (web $web, jicofo $jicofo, videobridge $jvb), prosody $prosody (${prosody_repo:-from the base archive}), $java installed for $domain"
