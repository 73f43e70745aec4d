#!/bin/sh
# MongoDB from MongoDB's own repository for the base's release (the profile's mongodb_repo),
# its key checked against the pinned fingerprint; the server's packages (mongodb_packages) at
# mongodb_version and the others (mongodb_other_pins: the shell mongosh, versioned on its own
# since MongoDB 6.0) at theirs, all held there. The configuration is ours (replica set rs01,
# 127.0.0.1 only); mongod is never started here, so no database ships. The shell the replica
# set initiation runs (mongodb_shell: `mongo` up to 5.0, `mongosh` from 6.0, which has no
# legacy shell) is checked here and named for mongodb-rs-initiate.
# The release-specific parts are variables only: 4.4 on 18.04 (no AVX needed), 8.0 on 24.04.
set -eu

need() { /usr/local/lib/appliance/need-var "$1"; }

repo=$(need MONGODB_REPO)
key_url=$(need MONGODB_KEY_URL)
key_fpr=$(need MONGODB_KEY_FINGERPRINT)
version=$(need MONGODB_VERSION)
packages=$(need MONGODB_PACKAGES)
shell=$(need MONGODB_SHELL)
# "PACKAGE=VERSION ...": may be empty (4.4's shell is one of mongodb_packages).
other_pins=${APPLIANCE_VAR_MONGODB_OTHER_PINS:-}

/usr/local/lib/appliance/apt-key-pinned repo mongodb-org "$key_url" "$key_fpr" "$repo" arch=amd64
apt-get update -q

# A pin the repository no longer serves: say which, and how to refresh it, before apt-get
# fails with its own words.
# shellcheck disable=SC2086 # one word per package
/usr/local/lib/appliance/apt-pin-check mongodb_version "$version" $packages
pinned=
held=$packages
for p in $packages; do
	pinned="$pinned $p=$version"
done
for pin in $other_pins; do
	case "$pin" in
	?*=?*) ;;
	*)
		echo "mongodb: mongodb_other_pins: '$pin' is not PACKAGE=VERSION" >&2
		exit 1
		;;
	esac
	/usr/local/lib/appliance/apt-pin-check mongodb_other_pins "${pin#*=}" "${pin%%=*}"
	pinned="$pinned $pin"
	held="$held ${pin%%=*}"
done
# tzdata: our mongod.conf's processManagement.timeZoneInfo reads /usr/share/zoneinfo, which
# mongod refuses to start without and minbase does not have.
# shellcheck disable=SC2086 # one word per package
apt-get install -q --no-install-recommends $pinned tzdata
# shellcheck disable=SC2086
apt-mark hold $held

# Our configuration (the package's /etc/mongod.conf is a conffile: replaced, not edited).
install -m 0644 /usr/share/appliance/mongodb/mongod.conf /etc/mongod.conf

# The shell must run on this release: fail here rather than at the first boot. Its path is
# what mongodb-rs-initiate runs.
shell_path=$(command -v "$shell") || {
	echo "mongodb: mongodb_shell '$shell' is not installed by these packages" >&2
	exit 1
}
"$shell_path" --version
printf '%s\n' "$shell_path" >/usr/share/appliance/mongodb/shell

# mongod is enabled by its package (multi-user.target); the replica set with Rocket.Chat.
systemctl enable mongod.service appliance-mongo-rs.service

# No database may ship: every instance initiates its own replica set.
if [ -n "$(find /var/lib/mongodb -mindepth 1 -print -quit 2>/dev/null)" ]; then
	echo "mongodb: /var/lib/mongodb is not empty after provisioning; the image must not ship a database" >&2
	exit 1
fi
echo "mongodb: mongodb-org $version ($held) installed and held; shell $shell_path"
