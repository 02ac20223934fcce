"""The uploads backup's files in the bundle (issue 11: uploads are data).

- ``backup/uploads.json`` -- not secret, visible in ``plan``: the stack, the restic repository
  (``s3:<Spaces endpoint>/<bucket>/uploads``, the stack's existing backups bucket), the uploads
  tree (on the data volume when the stack has one), the schedule.
- ``secrets/uploads-restic.env`` -- RESTIC_PASSWORD (``BundleSecrets.uploads_repo_password``) and
  the droplet's Spaces key, installed 0600. The agent hands them to restic in the child's
  environment only: never in an argv.
- ``host/bankflow-uploads-backup.{service,timer}`` -- ``bankflow-agent uploads-backup`` every
  5 minutes (the bootstrap installs and enables them).

Without ``uploads_repo_password`` or a Spaces key none of these files is rendered, and the
agent's uploads commands refuse with an error naming the missing file.

Why restic and not rclone onto versioned objects: restic encrypts the repository (AES-256 +
Poly1305) with a key only the password opens, and the droplet holds that password only as a
0600 file -- Spaces server-side encryption or plain versioning would leave the statements
readable to anyone with the bucket key. Every snapshot has a time, so "the tree as it was at T"
is one snapshot (a versioned bucket has per-object versions only: rebuilding a whole tree at a
time, deletions included, would be ours to write). Content-defined chunking deduplicates: a
5-minute schedule costs only what changed. ``restic check`` verifies the repository's structure
(and with ``--read-data`` every byte). One Debian package, no Python dependency on the host.
"""

from __future__ import annotations

import json
from typing import Final

from bankflow_infra.contract import release
from bankflow_infra.contract.layout import AGENT_BIN, DATA_UPLOADS_DIR, UPLOADS_DIR
from bankflow_infra.contract.uploads import (
    UPLOADS_CONFIG_FILE,
    UPLOADS_CONFIG_SCHEMA,
    UPLOADS_REPOSITORY_PATH,
    UPLOADS_RPO_SECONDS,
    UPLOADS_SCHEDULE,
    UPLOADS_SECRET_ENV,
)
from bankflow_infra.render.backup import backup_droplet, spaces_endpoint
from bankflow_infra.render.host_files import fill_template
from bankflow_infra.render.managed import SharedUploads
from bankflow_infra.render.model import BundleSecrets
from bankflow_infra.settings import Settings

UPLOADS_SECRET_FILE: Final = release.secret_path(UPLOADS_SECRET_ENV)
UPLOADS_SERVICE: Final = "host/bankflow-uploads-backup.service"
UPLOADS_TIMER: Final = "host/bankflow-uploads-backup.timer"


def uploads_dir(settings: Settings) -> str:
    """Where the uploaded files really are: the data volume when the stack has one."""
    return DATA_UPLOADS_DIR if settings.server.volume_size_gb > 0 else UPLOADS_DIR


def restic_repository(settings: Settings) -> str:
    endpoint = spaces_endpoint(settings.backups.region)
    return f"s3:{endpoint}/{settings.backup_bucket_name}/{UPLOADS_REPOSITORY_PATH}"


def _shared_keys(settings: Settings, shared: SharedUploads) -> dict[str, object]:
    """Issue 13: the uploads are the NFS share every droplet mounts; one droplet backs it up."""
    return {
        "shared": True,
        "nfs_source": shared.nfs_source,
        "backup_droplet": backup_droplet(settings),
        "note": f"on the shared NFS share {shared.nfs_source}, mounted at {UPLOADS_DIR} on every droplet",
    }


def render_uploads_config(settings: Settings, shared: SharedUploads | None = None) -> str:
    """``backup/uploads.json``: never holds a secret."""
    on_volume = settings.server.volume_size_gb > 0 and shared is None
    config = {
        "schema": UPLOADS_CONFIG_SCHEMA,
        "stack": settings.stack,
        "repository": restic_repository(settings),
        "uploads_dir": UPLOADS_DIR if shared is not None else uploads_dir(settings),
        "on_data_volume": on_volume,
        # said where people look: a stack without a volume keeps its uploads on the droplet disk
        "note": "on the data volume"
        if on_volume
        else "on the droplet's root disk: this stack has no data volume (server.volumeSizeGb 0)",
        "schedule": UPLOADS_SCHEDULE,
        "rpo_seconds": UPLOADS_RPO_SECONDS,
        **(_shared_keys(settings, shared) if shared is not None else {}),
    }
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def render_uploads_secret(password: str, access_key: str, secret_key: str) -> str:
    """``secrets/uploads-restic.env``; the values were checked by :meth:`BundleSecrets.validate`
    (no newline, no '=' in the password), so each line is exactly one NAME=value."""
    return f"RESTIC_PASSWORD={password}\nAWS_ACCESS_KEY_ID={access_key}\nAWS_SECRET_ACCESS_KEY={secret_key}\n"


def enabled(secrets: BundleSecrets) -> bool:
    return secrets.uploads_repo_password is not None and secrets.has_spaces_key


def uploads_files(
    settings: Settings, secrets: BundleSecrets, shared: SharedUploads | None = None
) -> dict[str, str]:
    """Bundle path -> text of the plain files (config and units); none when not enabled."""
    if not enabled(secrets):
        return {}
    return {
        UPLOADS_CONFIG_FILE: render_uploads_config(settings, shared),
        UPLOADS_SERVICE: fill_template("systemd/bankflow-uploads-backup.service", {"AGENT_BIN": AGENT_BIN}),
        UPLOADS_TIMER: fill_template("systemd/bankflow-uploads-backup.timer", {"SCHEDULE": UPLOADS_SCHEDULE}),
    }


def uploads_secret_files(secrets: BundleSecrets) -> dict[str, str]:
    """Bundle path -> text of the secret file; none when not enabled."""
    password = secrets.uploads_repo_password
    access, secret = secrets.spaces_access_key, secrets.spaces_secret_key
    if password is None or access is None or secret is None:
        return {}
    return {UPLOADS_SECRET_FILE: render_uploads_secret(password, access, secret)}
