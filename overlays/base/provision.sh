#!/bin/sh
# The base every appliance image shares: cloud-init (with growpart to fill the disk), SSH, and
# DHCP when cloud-init finds no datasource (appliance-network-fallback.service).
set -eu
apt-get update -q
apt-get install -q --no-install-recommends \
  cloud-init cloud-guest-utils openssh-server dbus sudo
systemctl enable appliance-ssh-keygen.service appliance-network-fallback.service
# Ubuntu: cloud-init writes the network configuration for netplan, which renders it for
# systemd-networkd. Ubuntu's images have networkd enabled (its preset, 90-systemd.preset); a
# debootstrapped tree does not, and would boot without a network.
if [ -x /usr/sbin/netplan ]; then
  systemctl preset systemd-networkd.service
fi
