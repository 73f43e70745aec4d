#!/bin/sh
# Rebuild the initramfs with the module list of this overlay.
set -eu
printf '%s\n' virtio_pci virtio_blk virtio_scsi sd_mod ext4 >>/etc/initramfs-tools/modules
update-initramfs -u -k all
