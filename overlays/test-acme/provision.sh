#!/bin/sh
# Tests only: pebble and its units (see overlay.toml).
set -eu
apt-get install -q --no-install-recommends pebble openssl
systemctl enable appliance-test-pebble-ca.service appliance-test-pebble.service
