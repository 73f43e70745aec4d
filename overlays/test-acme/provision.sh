#!/bin/sh
# Tests only: pebble's units (see overlay.toml; pebble itself is a late file from the build
# host). openssl makes pebble's HTTPS certificate at boot.
set -eu
apt-get install -q --no-install-recommends openssl
systemctl enable appliance-test-pebble-ca.service appliance-test-pebble.service
