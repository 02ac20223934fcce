"""Releases and the bundle manifest: what the renderer writes and the agent runs.

A release is one rendered bundle; its id is the first :data:`RELEASE_ID_LENGTH` hex digits of
the bundle's sha256. postgres, redis and nginx form the long-lived base compose project; the app
services of each release run as their own project, so two releases run side by side.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Final

from .alerts import ALERTS_FILE
from .uploads import UPLOADS_SECRET_ENV

RELEASE_ID_LENGTH: Final = 12
_RELEASE_ID: Final = re.compile(rf"[0-9a-f]{{{RELEASE_ID_LENGTH}}}")

MANIFEST_NAME: Final = "release.json"  # in every bundle: what the agent needs, never a secret
MANIFEST_SCHEMA: Final = 1

BASE_PROJECT: Final = "bankflow"  # long-lived base project: postgres, redis, nginx
APP_PROJECT_PREFIX: Final = "bankflow-app-"  # + release id: one compose project per app release
RELEASE_ENV_VAR: Final = "BANKFLOW_RELEASE"  # the agent sets it to the release id for compose


def release_id(digest: str) -> str:
    """The short release id of a bundle digest (sha256 hex)."""
    return digest[:RELEASE_ID_LENGTH]


def is_release_id(value: str) -> bool:
    return _RELEASE_ID.fullmatch(value) is not None


def app_project_name(release: str) -> str:
    return f"{APP_PROJECT_PREFIX}{release}"


def release_alias(service: str, release: str) -> str:
    """Network alias of an app service of one release: unique while two releases run side by side."""
    return f"{service}-{release}"


# Bundle paths that both the renderer and the agent name (the rest the agent learns from the
# manifest). Files under SECRETS_BUNDLE_DIR are installed 0600 into HostPaths.secrets.
SECRETS_BUNDLE_DIR: Final = "secrets"
ORIGIN_KEY: Final = "origin.key"
REGISTRY_PASSWORD: Final = "registry-password"  # noqa: S105 - a file name, not a password
RCLONE_CONFIG: Final = "rclone.conf"
BACKUP_CONFIG_FILE: Final = "backup/backup.json"
# 2: the "pitr" object (pgBackRest continuous archiving); schema 1 files (no PITR) still parse.
BACKUP_CONFIG_SCHEMA: Final = 2
# pgBackRest (continuous archiving, point-in-time restore). The config holds the Spaces key and
# the repository's cipher pass: 0600, owned by the postgres image's postgres user (uid 70 in the
# Alpine image: `id postgres` in postgres:15-alpine), because PostgreSQL's archive_command runs
# pgbackrest as that user inside the container and must read it.
PGBACKREST_CONFIG: Final = "pgbackrest.conf"
PGBACKREST_CONTAINER_CONFIG: Final = "/etc/pgbackrest/pgbackrest.conf"  # pgbackrest's default path
PITR_STANZA: Final = "bankflow"
POSTGRES_UID: Final = 70
# Secrets the app containers never read: rotating them must not restart the apps.
NON_APP_SECRETS: Final = frozenset(
    {ORIGIN_KEY, REGISTRY_PASSWORD, RCLONE_CONFIG, PGBACKREST_CONFIG, UPLOADS_SECRET_ENV, ALERTS_FILE}
)


def secret_path(name: str) -> str:
    """The bundle path of a secret file."""
    return f"{SECRETS_BUNDLE_DIR}/{name}"


def is_secret_path(path: str) -> bool:
    return path.startswith(f"{SECRETS_BUNDLE_DIR}/")


def digest_files(files: Iterable[tuple[str, int, bytes]]) -> str:
    """The bundle digest: sha256 over (path, octal mode, content) in path order, each part
    length-prefixed so no two different bundles produce the same byte stream. The renderer
    digests what it renders, the agent what it received: one definition for both."""
    digest = hashlib.sha256()
    for path, mode, content in sorted(files, key=lambda f: f[0]):
        for part in (path.encode(), f"{mode:o}".encode(), content):
            digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()

# The maintenance listener inside the nginx container (render/nginx.py): answers every request
# with 503, the maintenance page and Retry-After. During a restore the host agent points every
# app upstream at it (host/maintenance.py), the same include switch + reload as a release switch.
MAINTENANCE_LISTEN: Final = "127.0.0.1:8082"
MAINTENANCE_RETRY_AFTER: Final = 300  # seconds: what Retry-After tells clients
