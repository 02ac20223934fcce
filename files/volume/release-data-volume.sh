#!/usr/bin/env bash
# Release the data volume before DigitalOcean detaches it: stop every container that uses it
# (PostgreSQL) and unmount it, so no write is lost and the filesystem is clean on the next host.
#
# Runs over SSH as the `delete` of the remote step `host-release-data-volume`
# (bankflow_infra/components/remote_deploy.py), which Pulumi deletes before the VolumeAttachment
# on a replacement, a retire or a destroy. It needs nothing but docker and util-linux: not the
# host agent, which may be mid-change. Safe to run twice: an unmounted volume is left alone.
#
# usage: release-data-volume.sh MOUNT_POINT
set -euo pipefail

mount_point=${1:?usage: release-data-volume.sh MOUNT_POINT}
# How long each container gets to shut down cleanly (PostgreSQL checkpoints on SIGTERM).
stop_timeout=${BANKFLOW_STOP_TIMEOUT:-120}

if ! mountpoint -q -- "$mount_point"; then
  echo "release-data-volume: $mount_point is not mounted; nothing to do"
  exit 0
fi

# Every running container with a bind mount at or below the mount point.
users=()
if command -v docker >/dev/null 2>&1; then
  while read -r id; do
    [[ -n $id ]] || continue
    sources=$(docker inspect --format '{{range .Mounts}}{{println .Source}}{{end}}' "$id")
    while read -r source; do
      if [[ $source == "$mount_point" || $source == "$mount_point"/* ]]; then
        users+=("$id")
        break
      fi
    done <<<"$sources"
  done < <(docker ps --quiet --no-trunc)
fi

if ((${#users[@]} > 0)); then
  echo "release-data-volume: stopping ${#users[@]} container(s) using $mount_point"
  docker stop --time "$stop_timeout" "${users[@]}" >/dev/null
fi

sync
umount -- "$mount_point"
echo "release-data-volume: $mount_point unmounted"
