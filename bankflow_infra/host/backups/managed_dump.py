"""The nightly dump of a managed PostgreSQL cluster (issue 13): pg_dump from droplet 1, over TLS
verify-full, into the same bucket as today. Stdlib only.

There is no postgres container to ``exec`` into and the droplet has no PostgreSQL client: pg_dump
runs in a one-off container of the pinned postgres image (backup.json ``managed_database.
client_image``, the server's major version), host network, as root, with only what it needs
mounted: the CA and the password file read-only, the backups directory for its output. It
connects to the cluster's private host on its direct port (a connection pool in transaction mode
cannot carry pg_dump's snapshot session).

- TLS: ``PGSSLMODE=verify-full`` with ``PGSSLROOTCERT`` = DigitalOcean's CA: the server's
  certificate must chain to it AND name the host; a wrong CA or host fails the dump before a
  byte of data moves.
- The password never reaches a command line or the environment: libpq reads the release's
  pgpass file (``PGPASSFILE``, 0600, rendered by render/managed.py).
- A dump that stops halfway (pg_dump killed, the connection cut, a timeout) leaves nothing:
  pg_dump writes ``.<name>.partial``, removed on any failure, renamed only after pg_dump
  succeeded; the upload starts only after that (dump.py), the checksum file last.
- Several droplets: only ``backup_droplet`` (droplet 1, by hostname) dumps; the others' timers
  skip (config.skip_reason), so one dump a night reaches the bucket.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from ..runtime import error_tail
from .config import BackupConfig, BackupFailed, ManagedDatabase
from .database import DUMP_TIMEOUT
from .storage import RCLONE_PATH, ProcessRunner, run_process

PG_DUMP: Final = "pg_dump"  # inside the client image
DOCKER: Final = "docker"
CONNECT_TIMEOUT_SECONDS: Final = 15
# The globals sidecar of a managed dump: the roles are the cluster's (the stack's DatabaseUser),
# not ours to dump (pg_dumpall needs rights DigitalOcean's users do not have). Kept so every dump
# has the same three files and the restore tools stay one path.
MANAGED_GLOBALS: Final = (
    "-- bankflow: managed PostgreSQL (DigitalOcean). Roles belong to the cluster and are created by\n"
    "-- the stack (DatabaseUser); nothing to restore from here.\n"
)


def dump_environment(managed: ManagedDatabase) -> dict[str, str]:
    """libpq's settings inside the container, nothing inherited that could redirect or weaken it."""
    return {
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": managed.ca_file,
        "PGPASSFILE": managed.passfile,
        "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS),
        "PGAPPNAME": "bankflow-backup",
    }


def dump_argv(managed: ManagedDatabase, config: BackupConfig, output: Path) -> list[str]:
    """``docker run`` of the client image: the same paths inside as outside (read-only but the
    output directory), the variables by name only (-e NAME takes the value from our environment)."""
    mounts = [f"{managed.ca_file}:{managed.ca_file}:ro", f"{managed.passfile}:{managed.passfile}:ro",
              f"{output.parent}:{output.parent}"]
    return [
        DOCKER, "run", "--rm", "--network", "host", "--user", "0:0", "--read-only", "--cap-drop", "ALL",
        *(arg for mount in mounts for arg in ("--volume", mount)),
        *(arg for name in dump_environment(managed) for arg in ("--env", name)),
        managed.client_image,
        PG_DUMP, "--format=custom", "--no-password", "--host", managed.host, "--port", str(managed.port),
        "--username", config.user, "--dbname", config.database, "--file", str(output),
    ]  # fmt: skip


def dump_managed(
    config: BackupConfig, partial: Path, final: Path, runner: ProcessRunner | None = None
) -> None:
    """pg_dump -Fc of ``config.database`` on the managed cluster into ``final``, or nothing at all."""
    managed = config.managed
    assert managed is not None
    for path, what in ((managed.ca_file, "CA certificate"), (managed.passfile, "password file")):
        if not Path(path).is_file():
            raise BackupFailed(f"the managed database's {what} {path} is missing: deploy the release again")
    partial.unlink(missing_ok=True)
    try:
        env = {"PATH": RCLONE_PATH, **dump_environment(managed)}
        done = (runner or run_process)(dump_argv(managed, config, partial), env=env, timeout=DUMP_TIMEOUT)
        if done.returncode != 0:
            raise BackupFailed(
                f"pg_dump of {config.database} on {managed.host}:{managed.port} (TLS verify-full) exited "
                f"{done.returncode}: {error_tail(done.stderr or done.stdout)}")
        os.chmod(partial, 0o600)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
