#!/bin/sh
# MongoDB 6.0 from MongoDB's own bionic repository, its key checked against the pinned
# fingerprint; every package at the pinned version and held there. The configuration is ours
# (replica set rs01, 127.0.0.1 only); mongod is never started here, so no database ships.
set -eu

need() { /usr/local/lib/appliance/need-var "$1"; }

repo=$(need MONGODB_REPO)
key_url=$(need MONGODB_KEY_URL)
key_fpr=$(need MONGODB_KEY_FINGERPRINT)
version=$(need MONGODB_VERSION)
mongosh_version=$(need MONGOSH_VERSION)

/usr/local/lib/appliance/apt-key-pinned repo mongodb-org "$key_url" "$key_fpr" "$repo" arch=amd64
apt-get update -q

packages="mongodb-org mongodb-org-database mongodb-org-server mongodb-org-mongos mongodb-org-tools"
pinned=
for p in $packages; do
	pinned="$pinned $p=$version"
done
# shellcheck disable=SC2086 # one word per package
apt-get install -q --no-install-recommends $pinned "mongodb-mongosh=$mongosh_version"
# shellcheck disable=SC2086
apt-mark hold $packages mongodb-mongosh

# Our configuration (the package's /etc/mongod.conf is a conffile: replaced, not edited).
install -m 0644 /usr/share/appliance/mongodb/mongod.conf /etc/mongod.conf

# mongosh must run on 18.04's glibc: fail here rather than at the first boot.
mongosh --version
# mongosh asks once whether to send telemetry; the appliance does not.
HOME=/root mongosh --nodb --quiet --norc --eval 'disableTelemetry()' >/dev/null ||
	echo "mongodb: warning: could not turn mongosh's telemetry off" >&2
rm -rf /root/.mongodb/mongosh/*_log

systemctl enable mongod.service appliance-mongodb-cpu-check.service appliance-mongo-rs.service

# No database may ship: every instance initiates its own replica set.
if [ -n "$(find /var/lib/mongodb -mindepth 1 -print -quit 2>/dev/null)" ]; then
	echo "mongodb: /var/lib/mongodb is not empty after provisioning; the image must not ship a database" >&2
	exit 1
fi
echo "mongodb: mongodb-org $version and mongosh $mongosh_version installed and held"
