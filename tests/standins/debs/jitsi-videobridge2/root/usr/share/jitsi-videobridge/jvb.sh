#!/bin/sh
# The STAND-IN videobridge (tests/standins/README.md): not Jitsi Videobridge. It reads the
# configuration the real one reads, checks that Java runs, logs the brewery account and stays
# running as the service.
set -eu
# shellcheck source=/dev/null
. /etc/jitsi/videobridge/config
java -version 2>&1 | head -n 1
echo "jvb (stand-in): XMPP domain $JVB_HOSTNAME, $(grep -c 'MUC_JIDS' /etc/jitsi/videobridge/jvb.conf) brewery"
exec sleep infinity
