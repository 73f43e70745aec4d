#!/bin/sh
set -eu
apt-get install -q --no-install-recommends nginx prosody
