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
from bankflow_infra.render import managed
from bankflow_infra.settings import Settings

BACKUP_CONFIG_FILE: Final = release.BACKUP_CONFIG_FILE
RCLONE_CONFIG_FILE: Final = release.secret_path(release.RCLONE_CONFIG)
RCLONE_REMOTE: Final = "bankflow-backups"  # the remote's name inside rclone.conf
BACKUP_CONFIG_SCHEMA: Final = release.BACKUP_CONFIG_SCHEMA


def spaces_endpoint(region: str) -> str:
    """The S3 API endpoint of a DigitalOcean Spaces region (the BackupBucket component's too)."""
    return f"https://{region}.digitaloceanspaces.com"


# Issue 13: a managed database. No container, no pgBackRest (DigitalOcean's daily backups and PITR
# cover the cluster); the nightly logical dump connects to the cluster's direct port with TLS
# verify-full. Its own schema, so an agent that knows only 1-2 refuses it instead of looking for a
# postgres container. (The host agent reads the number too: it belongs beside BACKUP_CONFIG_SCHEMA
# in contract/release.py; kept here until that file takes it.)
MANAGED_BACKUP_CONFIG_SCHEMA: Final = 3


def backup_droplet(settings: Settings) -> str:
    """The droplet that runs the stack-wide backups when there are several (issue 13): droplet 1,
    by its DigitalOcean name, which DigitalOcean also makes its hostname. The others skip them."""
    return settings.resource_name("server")


def render_managed_backup_config(settings: Settings, database: managed.ManagedDatabase) -> str:
    """``backup/backup.json`` (schema 3) of a stack whose database is the managed cluster."""
    config = {
        "schema": MANAGED_BACKUP_CONFIG_SCHEMA,
        "stack": settings.stack,
        "bucket": settings.backup_bucket_name,
        "endpoint": spaces_endpoint(settings.backups.region),
        "local_days": settings.backups.local_days,
        "database": database.database,
        "user": database.user,  # the app role: it owns every object of the app's database
        "service": None,  # no postgres container
        "remote": RCLONE_REMOTE,
        "pitr": None,  # DigitalOcean's own PITR (restore = fork the cluster), not pgBackRest
        "backup_droplet": backup_droplet(settings),
        "managed_database": {
            "host": database.host,
            "port": database.port,  # direct, not the pool: pg_dump needs a session
            "sslmode": "verify-full",
            "ca_file": managed.host_tls_path(managed.DATABASE_CA_FILE),
            "passfile": managed.host_secret_path(managed.DATABASE_PGPASS_FILE),
            # pg_dump of the server's major version (15), pinned by digest: run as a one-off
            # container with ca_file and passfile mounted read-only (the droplet has no client).
            "client_image": catalog.POSTGRES_BASE_IMAGE,
        },
    }
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def render_backup_config(settings: Settings, database: managed.ManagedDatabase | None = None) -> str:
    """``backup/backup.json``: never holds a secret."""
    if database is not None:
        return render_managed_backup_config(settings, database)
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
        "pitr": render_pitr_section(settings),
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


PGBACKREST_CONFIG_FILE: Final = release.secret_path(release.PGBACKREST_CONFIG)
RETENTION_FULL: Final = 2  # full backups kept (with their WAL): weekly fulls -> about two weeks of PITR


def render_pitr_section(settings: Settings) -> dict[str, object]:
    """backup.json's ``pitr`` object: what the agent's restore needs to know about the cluster."""
    return {
        "stanza": release.PITR_STANZA,
        "data_dir": catalog.postgres_data_dir(settings),
        "container_data_dir": catalog.POSTGRES_CONTAINER_DATA,
        "postgres_uid": release.POSTGRES_UID,
        "archive_timeout": catalog.ARCHIVE_TIMEOUT_SECONDS,
        # False for a stack writing into another stack's bucket (a rebuild): it must never create
        # that repository's stanza (its fresh cluster would become what `restore --latest` finds).
        "owns_repository": settings.backups.bucket_stack == settings.stack,
    }


def render_pgbackrest_config(
    endpoint: str, bucket: str, access_key: str, secret_key: str, cipher_pass: str,
    retention_full: int = RETENTION_FULL,
) -> str:  # fmt: skip
    """``secrets/pgbackrest.conf`` (0600, owned by the container's postgres uid): the repository in
    the stack's bucket under ``/pgbackrest``, encrypted with the program's cipher pass.

    pgBackRest speaks S3 over TLS only; ``repo1-s3-uri-style=path`` like rclone (no per-bucket
    DNS name). Logs go to stderr only (the container's log): no log file on the data volume. The
    cluster (pg1-*) is in the stanza's section: the container's socket, port and PGDATA; a
    one-off restore container overrides pg1-path on its command line. Values were checked by
    BundleSecrets.validate (no newline).
    """
    host_port = endpoint.split("://", 1)[-1].rstrip("/")
    host, _, port = host_port.partition(":")
    lines = [
        "# BankFlow pgBackRest: Spaces key and repository cipher pass. 0600, uid "
        f"{release.POSTGRES_UID} (postgres in the image).",
        "[global]",
        "repo1-type=s3",
        f"repo1-s3-endpoint={host}",
        *([f"repo1-storage-port={port}"] if port else []),
        f"repo1-s3-bucket={bucket}",
        "repo1-s3-region=us-east-1",  # Spaces ignores the region in signatures' scope checks
        f"repo1-s3-key={access_key}",
        f"repo1-s3-key-secret={secret_key}",
        "repo1-s3-uri-style=path",
        "repo1-path=/pgbackrest",
        "repo1-cipher-type=aes-256-cbc",
        f"repo1-cipher-pass={cipher_pass}",
        f"repo1-retention-full={retention_full}",
        "start-fast=y",
        "log-level-console=off",
        "log-level-stderr=warn",
        "log-level-file=off",
        "",
        f"[{release.PITR_STANZA}]",  # the cluster's options are stanza-only in pgBackRest
        f"pg1-path={catalog.POSTGRES_CONTAINER_DATA}",
        "pg1-socket-path=/var/run/postgresql",
        f"pg1-port={catalog.POSTGRES_PORT}",
        f"pg1-user={catalog.DATABASE_USER}",
        "",
    ]
    return "\n".join(lines)
