"""pgBackRest on the droplet: backups, the repository's state, the archive's health. Stdlib only.

pgBackRest runs in the postgres image (files/postgres/Dockerfile), never on the host: as the
image's ``postgres`` user (``su-exec postgres`` inside the running container, or a one-off
``docker compose run --user postgres`` container when the cluster is stopped), with the config
the agent installs as ``secrets/pgbackrest.conf`` (0600, uid 70) and compose mounts at
pgbackrest's default path. Every argv holds options and names only: the Spaces key and the cipher
pass are in that file.

    bankflow-agent pitr-backup [--type full|diff|incr]   stanza-create when the repository has
                                                          none (idempotent), then the backup
    bankflow-agent pitr-backups [--json]                  ``pgbackrest info``: sets, WAL range
    bankflow-agent pitr-status --json                     newest backup + archive health
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Final

from ...contract.release import PGBACKREST_CONFIG
from ..context import Context
from ..runtime import RuntimeFailure
from .config import BackupFailed, BackupUsageError, LiveDatabase, PitrConfig

BACKUP_TIMEOUT: Final = 4 * 3600.0
INFO_TIMEOUT: Final = 300.0
BACKUP_TYPES: Final = ("full", "diff", "incr")
TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


def require_pitr(ctx: Context, live: LiveDatabase) -> PitrConfig:
    """The release's PITR settings, and the pgBackRest config on disk: a clear refusal otherwise."""
    pitr = live.config.pitr
    if pitr is None:
        raise BackupUsageError(
            f"release {live.release} was rendered without point-in-time recovery (backup.json schema 1): "
            "deploy a release rendered with it"
        )
    conf = ctx.paths.secrets / PGBACKREST_CONFIG
    if not conf.is_file():
        raise BackupUsageError(
            f"no pgBackRest configuration on this host ({conf} is missing): the release was rendered "
            "without backup_cipher_pass or the Spaces key; nothing changed"
        )
    return pitr


def as_postgres(argv: list[str]) -> list[str]:
    """``su-exec`` ships in the postgres Alpine image (its entrypoint uses it): pgBackRest must run
    as the cluster's owner, and ``docker compose exec`` runs as root."""
    return ["su-exec", "postgres", *argv]


def pgbackrest(pitr: PitrConfig, *args: str) -> list[str]:
    return ["pgbackrest", f"--stanza={pitr.stanza}", *args]


def exec_pgbackrest(ctx: Context, live: LiveDatabase, pitr: PitrConfig, *args: str, timeout: float) -> str:
    """pgbackrest in the running postgres container."""
    argv = as_postgres(pgbackrest(pitr, *args))
    return ctx.runtime.exec(live.base, live.config.service, argv, timeout=timeout)


def tool_pgbackrest(
    ctx: Context,
    live: LiveDatabase,
    pitr: PitrConfig,
    *args: str,
    mounts: dict[str, str] | None = None,
    timeout: float = INFO_TIMEOUT,
) -> str:
    """pgbackrest in a one-off container of the postgres image: works with the cluster stopped."""
    argv = pgbackrest(pitr, *args)
    return ctx.runtime.run_tool(
        live.base, live.config.service, argv, mounts or {}, user="postgres", timeout=timeout
    )


@dataclass(frozen=True)
class BackupSet:
    label: str
    type: str
    start: dt.datetime
    stop: dt.datetime
    size: int  # bytes of the database at backup time


@dataclass(frozen=True)
class RepoInfo:
    """What ``pgbackrest info --output=json`` says about the stanza."""

    status_code: int
    status_message: str
    sets: tuple[BackupSet, ...]  # oldest first
    wal_min: str | None
    wal_max: str | None

    @property
    def ok(self) -> bool:
        return self.status_code == 0

    def newest(self) -> BackupSet | None:
        return self.sets[-1] if self.sets else None


def _utc(seconds: Any) -> dt.datetime:
    return dt.datetime.fromtimestamp(int(seconds), dt.UTC)


def parse_info(text: str, stanza: str) -> RepoInfo:
    """The stanza's entry of ``pgbackrest info --output=json`` (a list of stanzas)."""
    try:
        # strict=False: with a wrong cipher pass, the message quotes undecryptable bytes
        stanzas = json.loads(text, strict=False)
    except ValueError as exc:
        return RepoInfo(99, f"pgbackrest info answered no JSON ({exc})", (), None, None)
    entry = (
        next((s for s in stanzas if isinstance(s, dict) and s.get("name") == stanza), None)
        if isinstance(stanzas, list)
        else None
    )
    if entry is None:
        return RepoInfo(1, "missing stanza", (), None, None)
    status = entry.get("status") or {}
    sets = tuple(
        BackupSet(
            b["label"],
            b["type"],
            _utc(b["timestamp"]["start"]),
            _utc(b["timestamp"]["stop"]),
            int(b.get("info", {}).get("size", 0)),
        )
        for b in entry.get("backup") or []
    )
    archives = [a for a in entry.get("archive") or [] if a.get("min")]
    # the repository's own status says why ("[CryptoError] ...", "missing stanza path")
    repos = [r.get("status", {}) for r in entry.get("repo") or [] if isinstance(r, dict)]
    details = [str(r.get("message", "")) for r in repos if r.get("code", 0) != 0 and r.get("message")]
    message = str(status.get("message", ""))
    return RepoInfo(
        int(status.get("code", 99)),
        "; ".join(details) if details else message,
        tuple(sorted(sets, key=lambda s: s.stop)),
        archives[-1].get("min") if archives else None,
        archives[-1].get("max") if archives else None,
    )


def repo_info(ctx: Context, live: LiveDatabase, pitr: PitrConfig) -> RepoInfo:
    """The repository as pgBackRest sees it, read through a one-off container (the cluster may be
    down). A wrong cipher pass or key shows as a non-zero status code with pgBackRest's message."""
    try:
        text = tool_pgbackrest(ctx, live, pitr, "--output=json", "info")
    except RuntimeFailure as exc:
        raise BackupFailed(f"pgbackrest info failed: {exc}") from None
    return parse_info(text, pitr.stanza)


def check_repository(info: RepoInfo) -> None:
    """Refuse a repository pgBackRest cannot read (wrong cipher pass, wrong key, no stanza)."""
    if not info.ok:
        raise BackupUsageError(
            f"the pgBackRest repository cannot be read: {info.status_message or 'unknown error'} "
            "(a wrong or missing cipher pass in secrets/pgbackrest.conf reads as an unreadable "
            "repository); nothing was stopped or changed"
        )
    if not info.sets:
        raise BackupUsageError("the pgBackRest repository holds no backup yet: run pitr-backup first")


FULL_EVERY: Final = dt.timedelta(days=7)  # with repo1-retention-full=2: about two weeks of PITR


def auto_type(info: RepoInfo, now: dt.datetime) -> str:
    """The nightly timer's choice: a full backup weekly (or when there is none), else incremental."""
    fulls = [s for s in info.sets if s.type == "full"]
    if not fulls or now - fulls[-1].stop >= FULL_EVERY - dt.timedelta(hours=6):
        return "full"
    return "incr"


@dataclass(frozen=True)
class PitrBackupResult:
    label: str
    type: str
    created_stanza: bool


def run_pitr_backup(ctx: Context, live: LiveDatabase, pitr: PitrConfig, kind: str) -> PitrBackupResult:
    """stanza-create when the repository has no stanza (idempotent), then a backup. pgBackRest
    itself turns a diff/incr without a full backup into a full one."""
    if kind not in (*BACKUP_TYPES, "auto"):
        raise BackupUsageError(f"--type: expected one of {', '.join(BACKUP_TYPES)} or auto, got {kind!r}")
    info = repo_info(ctx, live, pitr)
    if kind == "auto":
        kind = auto_type(info, dt.datetime.now(dt.UTC))
    created = False
    if info.status_message in ("missing stanza path", "missing stanza"):
        if not pitr.owns_repository:
            raise BackupFailed(
                f"the repository this stack archives into (another stack's bucket, {live.config.bucket}) has "
                f"no stanza {pitr.stanza}: a stack that does not own it never creates it. Restore the source "
                "stack's data first (restore --latest --source-stack STACK), or check backups.bucketStack"
            )
        ctx.say(f"pitr-backup: stanza {pitr.stanza} is new: stanza-create")
        exec_pgbackrest(ctx, live, pitr, "stanza-create", timeout=INFO_TIMEOUT)
        created = True
    elif not info.ok:
        check_repository(info)
    exec_pgbackrest(ctx, live, pitr, f"--type={kind}", "backup", timeout=BACKUP_TIMEOUT)
    newest = repo_info(ctx, live, pitr).newest()
    if newest is None:
        raise BackupFailed("pgbackrest backup exited 0 but the repository lists no backup")
    return PitrBackupResult(newest.label, newest.type, created)


def archive_stats(ctx: Context, live: LiveDatabase) -> dict[str, Any]:
    """pg_stat_archiver, the archive's health as PostgreSQL itself counts it."""
    argv = [
        "psql",
        "-X",
        "-q",
        "-At",
        "-F",
        "|",
        "--no-password",
        "-U",
        live.config.user,
        "-d",
        "postgres",
        "-c",
        "SELECT coalesce(extract(epoch FROM last_archived_time)::bigint::text, ''), "
        "coalesce(extract(epoch FROM last_failed_time)::bigint::text, ''), failed_count, "
        "extract(epoch FROM now())::bigint FROM pg_stat_archiver",
    ]
    row = ctx.runtime.exec(live.base, live.config.service, argv, timeout=60).strip().split("|")
    archived, failed, count, now = ([*row, "", "", "0", "0"])[:4]

    def iso(value: str) -> str | None:
        return _utc(value).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None

    lag = int(now) - int(archived) if archived else None
    return {
        "last_archived_time": iso(archived),
        "last_failed_time": iso(failed),
        "failed_count": int(count or 0),
        "lag_seconds": lag,
    }


def pitr_status(ctx: Context) -> dict[str, Any]:
    """For health and alerts (wave 3 interface): newest backup and the archive's health.
    ``lag_seconds`` is the time since the last WAL segment was archived (an idle database
    archives nothing: compare with archive_timeout, which bounds it while there are writes)."""
    from .config import load_live_database

    live = load_live_database(ctx)
    pitr = require_pitr(ctx, live)
    info = repo_info(ctx, live, pitr)
    newest = info.newest()
    return {
        "newest_backup": None
        if newest is None
        else {
            "label": newest.label,
            "type": newest.type,
            "stop_time": newest.stop.strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
        "repository": {"ok": info.ok, "message": info.status_message, "backups": len(info.sets)},
        "archive": archive_stats(ctx, live),
    }
