#!/bin/sh
# The STAND-IN focus (tests/standins/README.md): not Jicofo. It reads the configuration the
# real one reads, checks that Java runs and trusts the auth host's certificate (the keystore
# update-ca-certificates made), logs, and stays running as the service.
set -eu
# shellcheck source=/dev/null
. /etc/jitsi/jicofo/config
java -version 2>&1 | head -n 1
echo "jicofo (stand-in): focus@$JICOFO_AUTH_DOMAIN for $JICOFO_HOSTNAME"
exec sleep infinity
