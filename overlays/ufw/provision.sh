#!/bin/sh
# Install ufw and bake its rules as files: `ufw allow` on a disabled firewall only writes
# /etc/ufw/user.rules and user6.rules, and ENABLED=yes makes ufw load them at boot.
set -eu
apt-get install -q --no-install-recommends ufw
for rule in $APPLIANCE_VAR_UFW_ALLOW; do
  ufw allow "$rule"
done
sed -i 's/^ENABLED=.*/ENABLED=yes/' /etc/ufw/ufw.conf
grep -qx 'DEFAULT_INPUT_POLICY="DROP"' /etc/default/ufw
