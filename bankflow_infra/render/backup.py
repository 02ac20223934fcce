"""The backup client's files in the bundle: where dumps go (plain) and the key to get there (secret).

- ``backup/backup.json`` -- not secret, visible in ``plan``: the stack, the Spaces bucket and
  endpoint, how many days of dumps the droplet keeps, the database to dump. The host agent reads
  it from the current release dir (``bankflow_infra.host.backups``).
- ``secrets/rclone.conf`` -- the Spaces key as an rclone remote, installed 0600 under
  ``layout.SECRETS_DIR``. rclone reads it itself (``rclone --config FILE``), so the key is never
  in a command line (``ps`` shows those to every user) nor in the agent's environment. It holds
  no endpoint and no bucket: those come from backup.json (``--s3-endpoint``), so one file works
  for this stack's bucket and, in an emergency rebuild, for another stack's.

Why rclone (Debian/Ubuntu package ``rclone``): JSON listings with sizes and MD5 hashes
(``lsjson --hash``), its own size/hash check after every transfer, multipart uploads that keep
an MD5 for later checks, a config file for credentials, and one static binary -- the host needs
no Python library beside the stdlib-only agent.
"""

from __future__ import annotations

import json
from typing import Final

from bankflow_infra import catalog
from bankflow_infra.contract import release
from bankflow_infra.settings import Settings

BACKUP_CONFIG_FILE: Final = release.BACKUP_CONFIG_FILE
RCLONE_CONFIG_FILE: Final = release.secret_path(release.RCLONE_CONFIG)
RCLONE_REMOTE: Final = "bankflow-backups"  # the remote's name inside rclone.conf
BACKUP_CONFIG_SCHEMA: Final = release.BACKUP_CONFIG_SCHEMA


def spaces_endpoint(region: str) -> str:
    """The S3 API endpoint of a DigitalOcean Spaces region (the BackupBucket component's too)."""
    return f"https://{region}.digitaloceanspaces.com"


def render_backup_config(settings: Settings) -> str:
    """``backup/backup.json``: never holds a secret."""
    config = {
        "schema": BACKUP_CONFIG_SCHEMA,
        "stack": settings.stack,
        "bucket": settings.backup_bucket_name,
        "endpoint": spaces_endpoint(settings.backups.region),
        "local_days": settings.backups.local_days,
        "database": catalog.DATABASE_NAME,
        "user": catalog.DATABASE_USER,
        "service": "postgres",
        "remote": RCLONE_REMOTE,
    }
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def render_rclone_config(access_key: str, secret_key: str) -> str:
    """``secrets/rclone.conf``: one S3 remote with the Spaces key; endpoint given per command.

    The key values were checked by :meth:`BundleSecrets.validate` (no character that changes INI).

    ``provider = Other`` with path-style requests: Spaces serves both addressing styles, and
    path style needs no per-bucket DNS name (rclone's DigitalOcean preset forces virtual hosts).
    ``no_check_bucket``: a key limited to one bucket may not create or list buckets.
    """
    return (
        "# BankFlow database dumps: the Spaces key, read by rclone only (--config). 0600.\n"
        f"[{RCLONE_REMOTE}]\n"
        "type = s3\n"
        "provider = Other\n"
        "env_auth = false\n"
        f"access_key_id = {access_key}\n"
        f"secret_access_key = {secret_key}\n"
        "region = us-east-1\n"
        "force_path_style = true\n"
        "no_check_bucket = true\n"
        "acl = private\n"
    )
