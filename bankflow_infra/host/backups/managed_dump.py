"""The nightly dump of a managed PostgreSQL cluster (issue 13): pg_dump on droplet 1, over TLS
verify-full, into the same bucket as today. Stdlib only.

There is no postgres container to ``exec`` into: the host's ``pg_dump`` (package
postgresql-client, installed by host-setup.sh) connects to the cluster's private host on its
direct port (a connection pool in transaction mode cannot carry pg_dump's snapshot session).

- TLS: ``PGSSLMODE=verify-full`` with ``PGSSLROOTCERT`` = DigitalOcean's CA from the release
  (backup.json ``managed.ca_file``): the server's certificate must chain to it AND name the host;
  a wrong CA or host fails the dump before a byte of data moves.
- The password never reaches a command line or the environment: libpq reads it from a pgpass
  file (``PGPASSFILE``) written 0600 into a private 0700 directory and removed right after.
- A dump that stops halfway (pg_dump killed, the connection cut, a timeout) leaves nothing:
  pg_dump writes ``.<name>.partial``, removed on any failure, renamed only after pg_dump
  succeeded; the upload starts only after that (dump.py), the checksum file last.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from ..runtime import error_tail
from .config import BackupConfig, BackupFailed, ManagedDatabase
from .database import DUMP_TIMEOUT
from .storage import RCLONE_PATH, ProcessRunner, run_process

PG_DUMP: Final = "pg_dump"  # on PATH (postgresql-client); tests point it at PostgreSQL 15's
CONNECT_TIMEOUT_SECONDS: Final = 15
# The globals sidecar of a managed dump: the roles are the cluster's (the stack's DatabaseUser),
# not ours to dump (pg_dumpall needs rights DigitalOcean's users do not have). Kept so every dump
# has the same three files and the restore tools stay one path.
MANAGED_GLOBALS: Final = (
    "-- bankflow: managed PostgreSQL (DigitalOcean). Roles belong to the cluster and are created by\n"
    "-- the stack (DatabaseUser); nothing to restore from here.\n"
)


def pgpass_line(managed: ManagedDatabase, database: str, user: str, password: str) -> str:
    """One ``host:port:database:user:password`` line; ``:`` and ``\\`` escaped as libpq requires."""

    def escaped(value: str) -> str:
        return value.replace("\\", "\\\\").replace(":", "\\:")

    if "\n" in password or "\r" in password:
        raise BackupFailed("the managed database password file holds more than one line")
    fields = (managed.host, str(managed.port), database, user, password)
    return ":".join(escaped(field) for field in fields) + "\n"


def dump_environment(ca_file: Path, passfile: Path) -> dict[str, str]:
    """libpq's settings, and nothing inherited that could redirect or weaken the connection."""
    return {
        "PATH": RCLONE_PATH,
        "LC_ALL": "C.UTF-8",
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": str(ca_file),
        "PGPASSFILE": str(passfile),
        "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT_SECONDS),
        "PGAPPNAME": "bankflow-backup",
    }


def dump_argv(managed: ManagedDatabase, config: BackupConfig, output: Path) -> list[str]:
    return [PG_DUMP, "--format=custom", "--no-password", "--host", managed.host, "--port", str(managed.port),
            "--username", config.user, "--dbname", config.database, "--file", str(output)]  # fmt: skip


def _release_file(release_dir: Path, relative: str, what: str) -> Path:
    path = release_dir / relative
    if not path.is_file():
        raise BackupFailed(f"the release has no {what} at {relative} (backup.json managed)")
    return path


def dump_managed(
    config: BackupConfig,
    release_dir: Path,
    partial: Path,
    final: Path,
    runner: ProcessRunner | None = None,
    environment: Mapping[str, str] | None = None,
) -> None:
    """pg_dump -Fc of ``config.database`` on the managed cluster into ``final``, or nothing at all.

    ``environment``: extra variables for tests only (never set by the agent)."""
    managed = config.managed
    assert managed is not None
    ca_file = _release_file(release_dir, managed.ca_file, "managed database CA certificate")
    password = _release_file(release_dir, managed.password_file, "managed database password").read_text()
    partial.unlink(missing_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="bankflow-pgpass-") as private:
            passfile = Path(private) / "pgpass"
            descriptor = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(pgpass_line(managed, config.database, config.user, password.strip("\n")))
            env = {**dump_environment(ca_file, passfile), **(environment or {})}
            done = (runner or run_process)(dump_argv(managed, config, partial), env=env, timeout=DUMP_TIMEOUT)
        if done.returncode != 0:
            raise BackupFailed(
                f"pg_dump of {config.database} on {managed.host}:{managed.port} (TLS verify-full) exited "
                f"{done.returncode}: {error_tail(done.stderr or done.stdout)}")
        os.chmod(partial, 0o600)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
