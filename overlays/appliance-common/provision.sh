#!/bin/sh
# The tools the helpers of this overlay need (the 18.04 cloud image has them all already).
set -eu
apt-get install -q --no-install-recommends ca-certificates curl gnupg
mkdir -p /var/lib/appliance/motd.d
