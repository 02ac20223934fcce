#!/usr/bin/env bash
# Grow the data volume's ext4 filesystem to the volume's size, online (PostgreSQL keeps running).
#
# A larger bankflow:server.volumeSizeGb resizes the DigitalOcean volume in place, but the
# filesystem on it keeps its old size until resize2fs runs
# (https://docs.digitalocean.com/products/volumes/how-to/increase-size/). Runs over SSH as the
# remote step `host-grow-data-filesystem` (bankflow_infra/components/remote_deploy.py), whose
# trigger is the volume size. A filesystem that already fills the volume is left as it is.
#
# usage: grow-data-filesystem.sh MOUNT_POINT
set -euo pipefail

mount_point=${1:?usage: grow-data-filesystem.sh MOUNT_POINT}

device=$(findmnt --noheadings --output SOURCE --mountpoint "$mount_point") || {
  echo "grow-data-filesystem: $mount_point is not mounted" >&2
  exit 1
}
resize2fs "$device"
echo "grow-data-filesystem: $device at $mount_point fills its volume"
