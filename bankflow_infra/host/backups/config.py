"""What backups act on: the current release's ``backup/backup.json``, its postgres service and
the app services that use it; the errors of the backup commands and their lock. Stdlib only.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ...contract.grammar import STACK_NAME
from ...contract.layout import HostPaths
from ...contract.release import BACKUP_CONFIG_FILE
from .. import state as st
from ..context import Context
from ..manifest import Manifest, load_manifest
from ..release_dir import projects
from ..runtime import Project

# The bundle's files (bankflow_infra/render/backup.py; a test checks the names agree).
LOCK_NAME: Final = "backup.lock"  # in the state dir: one backup or restore at a time

_IDENT_RE: Final = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")
_SERVICE_RE: Final = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_BUCKET_RE: Final = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_ENDPOINT_RE: Final = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/?$")
_REMOTE_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BackupFailed(Exception):
    """A step failed; the message is safe to print (names, sizes, tails of tool errors)."""


class BackupUsageError(ValueError):
    """Bad input (exit 2); a ValueError so the agent's main reports it like its own usage errors."""


class BackupSkipped(Exception):
    """Not this droplet's job: several droplets, and backups run on ``backup_droplet`` only (exit 0)."""


def skip_reason(backup_droplet: str | None, hostname: str) -> str | None:
    """Why this droplet does not take the stack's backups; None when it does (or there is one)."""
    if backup_droplet is None or backup_droplet == hostname:
        return None
    return (f"this droplet ({hostname}) is not {backup_droplet}, which takes the stack's backups: "
            "nothing to do here")


class BackupLocked(Exception):
    """Another backup or restore holds the backup lock (exit 3)."""


@dataclass(frozen=True)
class PitrConfig:
    """backup.json's ``pitr`` object (schema 2): where pgBackRest restores and who owns the data."""

    stanza: str
    data_dir: str | None  # host dir of the cluster (bind mount); None: a named volume, no PITR restore
    container_data_dir: str  # the same dir inside the postgres container (PGDATA)
    postgres_uid: int  # owner of the data dir and of pgbackrest.conf (uid 70 in the Alpine image)
    archive_timeout: int  # seconds: the RPO bound
    owns_repository: bool = True  # False: another stack's repository (a rebuild): no stanza-create


# backup.json of a stack whose database is DigitalOcean's managed cluster (issue 13, rendered by
# render/backup.py render_managed_backup_config): its own schema, so an older agent refuses it.
MANAGED_SCHEMA: Final = 3


@dataclass(frozen=True)
class ManagedDatabase:
    """backup.json's ``managed_database`` (schema 3): the cluster the nightly dump reaches over TLS
    verify-full (host/backups/managed_dump.py). Files are host paths the agent installed."""

    host: str  # the cluster's private hostname (VPC); its certificate must name it
    port: int  # the direct port (not the connection pool's: pg_dump needs a session)
    ca_file: str  # DigitalOcean's CA certificate (PEM), under layout.TLS_DIR
    passfile: str  # libpq's password file (0600), under layout.SECRETS_DIR
    client_image: str  # the postgres image whose pg_dump runs (the droplet has no client)


@dataclass(frozen=True)
class BackupConfig:
    stack: str
    bucket: str
    endpoint: str
    local_days: int
    database: str
    user: str
    service: str
    remote: str
    pitr: PitrConfig | None = None  # None: a schema 1 file (a release rendered before PITR), or managed
    managed: ManagedDatabase | None = None  # None: the database is the release's postgres service
    backup_droplet: str | None = None  # several droplets: only this one (its hostname) backs up


def parse_config(document: Any, source: str) -> BackupConfig:
    problems: list[str] = []
    doc = document if isinstance(document, dict) else {}
    if not isinstance(document, dict):
        problems.append("expected a JSON object")

    def text(key: str, pattern: re.Pattern[str]) -> str:
        value = doc.get(key)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            problems.append(f"{key}: refused {value!r}")
            return ""
        return value

    config = BackupConfig(
        stack=text("stack", STACK_NAME),
        bucket=text("bucket", _BUCKET_RE),
        endpoint=text("endpoint", _ENDPOINT_RE),
        local_days=0,
        database=text("database", _IDENT_RE),
        # DigitalOcean's user names may hold '-' (render/managed.py); a managed schema has no service
        user=text("user", _IDENT_RE if doc.get("schema") != MANAGED_SCHEMA else _ROLE_RE),
        service=text("service", _SERVICE_RE) if doc.get("schema") != MANAGED_SCHEMA else "",
        remote=text("remote", _REMOTE_RE),
    )
    days = doc.get("local_days")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 3650:
        problems.append(f"local_days: expected a whole number of days in 1..3650, got {days!r}")
        days = 1
    managed, droplet, pitr = None, None, None
    if doc.get("schema") == MANAGED_SCHEMA:
        managed, droplet = _parse_managed(doc, problems), _parse_backup_droplet(doc, problems)
    else:
        pitr = _parse_pitr(doc, problems)
    if problems:
        raise BackupUsageError(f"invalid backup configuration {source}: " + "; ".join(problems))
    return BackupConfig(**{**config.__dict__, "local_days": days, "pitr": pitr, "managed": managed,
                           "backup_droplet": droplet})


_LABEL: Final = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE: Final = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_ROLE_RE: Final = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")
_ABSOLUTE_RE: Final = re.compile(r"^/[A-Za-z0-9._/-]{1,200}$")
_IMAGE_RE: Final = re.compile(r"^[a-z0-9][a-z0-9./_:-]{0,200}(?:@sha256:[0-9a-f]{64})?$")


def _parse_managed(doc: dict[str, Any], problems: list[str]) -> ManagedDatabase | None:
    """Schema 3: ``managed_database`` checked field by field; no pgBackRest (``pitr`` null)."""
    if doc.get("pitr") is not None:
        problems.append("pitr: must be null with a managed database (no pgBackRest on the droplet)")
    raw = doc.get("managed_database")
    if not isinstance(raw, dict):
        problems.append("managed_database: expected an object {host, port, sslmode, ca_file, passfile, "
                        "client_image}")
        return None
    host, port, image = raw.get("host"), raw.get("port"), raw.get("client_image")
    before = len(problems)
    if not isinstance(host, str) or not _HOST_RE.fullmatch(host):
        problems.append(f"managed_database.host: expected a lower-case hostname, got {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        problems.append(f"managed_database.port: expected a port in 1..65535, got {port!r}")
    if raw.get("sslmode") != "verify-full":  # the only mode that checks the host name too
        problems.append(f"managed_database.sslmode: expected 'verify-full', got {raw.get('sslmode')!r}")
    for key in ("ca_file", "passfile"):
        value = raw.get(key)
        if not isinstance(value, str) or not _ABSOLUTE_RE.fullmatch(value) or ".." in value.split("/"):
            problems.append(f"managed_database.{key}: expected an absolute host path, got {value!r}")
    if not isinstance(image, str) or not _IMAGE_RE.fullmatch(image):
        problems.append(f"managed_database.client_image: expected an image reference, got {image!r}")
    if len(problems) > before:
        return None
    return ManagedDatabase(str(host), int(str(port)), str(raw["ca_file"]), str(raw["passfile"]), str(image))


def _parse_backup_droplet(doc: dict[str, Any], problems: list[str]) -> str | None:
    value = doc.get("backup_droplet")
    if value is None:
        return None
    if not isinstance(value, str) or not _HOST_RE.fullmatch(value):
        problems.append(f"backup_droplet: expected a droplet's hostname or null, got {value!r}")
        return None
    return value


_DIR_RE: Final = re.compile(r"^/[A-Za-z0-9._/-]{1,200}$")


def _parse_pitr(doc: dict[str, Any], problems: list[str]) -> PitrConfig | None:
    """Schema 1: no PITR. Schema 2: the ``pitr`` object, every field checked."""
    schema = doc.get("schema")
    if schema == 1:
        return None
    if schema != 2:
        problems.append(f"schema: expected 1 or 2, got {schema!r}")
        return None
    raw = doc.get("pitr")
    if not isinstance(raw, dict):
        problems.append("pitr: expected an object (stanza, data_dir, container_data_dir, postgres_uid, "
                        "archive_timeout)")  # fmt: skip
        return None
    stanza, data_dir, inside = raw.get("stanza"), raw.get("data_dir"), raw.get("container_data_dir")
    uid, timeout = raw.get("postgres_uid"), raw.get("archive_timeout")
    if not isinstance(stanza, str) or not _IDENT_RE.fullmatch(stanza):
        problems.append(f"pitr.stanza: refused {stanza!r}")
    if data_dir is not None and (not isinstance(data_dir, str) or not _DIR_RE.fullmatch(data_dir)
                                 or ".." in data_dir):  # fmt: skip
        problems.append(f"pitr.data_dir: expected an absolute host path or null, got {data_dir!r}")
    if not isinstance(inside, str) or not _DIR_RE.fullmatch(inside) or ".." in inside:
        problems.append(f"pitr.container_data_dir: expected an absolute path, got {inside!r}")
    if isinstance(uid, bool) or not isinstance(uid, int) or not 1 <= uid <= 65535:
        problems.append(f"pitr.postgres_uid: expected a uid in 1..65535, got {uid!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 300:
        problems.append(f"pitr.archive_timeout: expected seconds in 1..300, got {timeout!r}")
    owns = raw.get("owns_repository", True)  # absent in bundles rendered before it existed
    if not isinstance(owns, bool):
        problems.append(f"pitr.owns_repository: expected true or false, got {owns!r}")
    if len(problems):
        return None
    return PitrConfig(str(stanza), data_dir, str(inside), int(str(uid)), int(str(timeout)), owns is True)


def check_bucket(name: str) -> str:
    if not _BUCKET_RE.match(name):
        raise BackupUsageError(f"--bucket: {name!r} is not a bucket name")
    return name


def check_endpoint(url: str) -> str:
    if not _ENDPOINT_RE.match(url):
        raise BackupUsageError(f"--endpoint: {url!r} is not an http(s)://host[:port] URL")
    return url


@dataclass
class LiveDatabase:
    """What backup and restore act on: the current release's postgres and app services."""

    release: str
    manifest: Manifest
    config: BackupConfig
    base: Project  # holds the postgres service
    app: Project  # the app containers serving now
    app_manifest: Manifest


def load_live_database(ctx: Context) -> LiveDatabase:
    current = st.read_current(ctx.paths)
    if current is None:
        raise BackupUsageError("no release deployed yet: no database to back up or restore")
    bundle = ctx.paths.release_dir(current.release)
    manifest = load_manifest(bundle)
    path = bundle / BACKUP_CONFIG_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupUsageError(
            f"release {current.release} has no {BACKUP_CONFIG_FILE}: deploy a release rendered with backups"
        ) from None
    except ValueError as exc:
        raise BackupUsageError(f"{path}: not JSON ({exc})") from None
    config = parse_config(document, str(path))
    if config.managed is None and config.service not in manifest.base_services:
        raise BackupUsageError(f"{path}: service {config.service!r} is not a base service of the release")
    _, base = projects(ctx.paths, current.release, manifest)
    app_manifest = load_manifest(ctx.paths.release_dir(current.app_release))
    app, _ = projects(ctx.paths, current.app_release, app_manifest)
    return LiveDatabase(current.release, manifest, config, base, app, app_manifest)


@contextmanager
def backup_lock(paths: HostPaths, who: str = "unknown", action: str = "backup") -> Iterator[None]:
    try:
        with st.exclusive_lock(paths.state / LOCK_NAME, action, who):
            yield
    except st.LockBusy as exc:
        raise BackupLocked(f"another backup or restore is running: {exc}") from None


def ensure_private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
