#!/bin/sh
# MongoDB 4.4 from MongoDB's own bionic repository, its key checked against the pinned
# fingerprint; every package at the pinned version and held there. The configuration is ours
# (replica set rs01, 127.0.0.1 only); mongod is never started here, so no database ships.
# 4.4 runs on CPUs without AVX (5.0 and later do not), so no CPU check is needed.
set -eu

need() { /usr/local/lib/appliance/need-var "$1"; }

repo=$(need MONGODB_REPO)
key_url=$(need MONGODB_KEY_URL)
key_fpr=$(need MONGODB_KEY_FINGERPRINT)
version=$(need MONGODB_VERSION)

/usr/local/lib/appliance/apt-key-pinned repo mongodb-org "$key_url" "$key_fpr" "$repo" arch=amd64
apt-get update -q

packages="mongodb-org mongodb-org-server mongodb-org-shell mongodb-org-mongos mongodb-org-tools"
# A pin the repository no longer serves: say which, and how to refresh it, before apt-get
# fails with its own words.
# shellcheck disable=SC2086 # one word per package
/usr/local/lib/appliance/apt-pin-check mongodb_version "$version" $packages
pinned=
for p in $packages; do
	pinned="$pinned $p=$version"
done
# tzdata: our mongod.conf's processManagement.timeZoneInfo reads /usr/share/zoneinfo, which
# mongod refuses to start without and minbase does not have.
# shellcheck disable=SC2086 # one word per package
apt-get install -q --no-install-recommends $pinned tzdata
# shellcheck disable=SC2086
apt-mark hold $packages

# Our configuration (the package's /etc/mongod.conf is a conffile: replaced, not edited).
install -m 0644 /usr/share/appliance/mongodb/mongod.conf /etc/mongod.conf

# The shell must run on 18.04: fail here rather than at the first boot.
mongo --version

# mongod is enabled by its package (multi-user.target); the replica set with Rocket.Chat.
systemctl enable mongod.service appliance-mongo-rs.service

# No database may ship: every instance initiates its own replica set.
if [ -n "$(find /var/lib/mongodb -mindepth 1 -print -quit 2>/dev/null)" ]; then
	echo "mongodb: /var/lib/mongodb is not empty after provisioning; the image must not ship a database" >&2
	exit 1
fi
echo "mongodb: mongodb-org $version installed and held"
