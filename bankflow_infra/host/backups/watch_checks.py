"""What the backup watch judges, as pure functions of what PostgreSQL, pgBackRest and the audit
log answered. Stdlib only.

Three checks, each failing or not, with a one-line summary (never a secret):

- ``archive``: WAL archiving keeps up. **Archive lag** is the age of the oldest *completed* WAL
  segment that is still waiting for the archiver: PostgreSQL creates ``pg_wal/archive_status/
  <segment>.ready`` when a segment is complete and renames it to ``.done`` once
  ``archive_command`` succeeded, so the lag is ``now() - min(modification)`` over the ``.ready``
  files (``pg_ls_archive_statusdir()``), 0 when none waits. It fails above
  ``ARCHIVE_LAG_LIMIT_SECONDS``, or when ``archive_mode`` is off. ``pg_stat_archiver`` adds the
  facts for the message (last archived/failed segment and time, failed count, the current one).
- ``backup-age``: the newest pgBackRest backup (``info --output=json``, any type, not in error)
  stopped at most ``BACKUP_MAX_AGE_SECONDS`` ago; a repository pgBackRest cannot read fails it.
- ``run:<action>``: the last finished run of each action in ``WATCHED_RUNS`` (the audit log's
  end lines: ok, failed, interrupted) did not fail. A refused run (another one held the lock)
  counts as neither.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ...contract import pgbackrest
from ...contract.alerts import ARCHIVE_LAG_LIMIT_SECONDS, BACKUP_MAX_AGE_SECONDS
from ...contract.pgbackrest import STANZA, NewestBackup, clean

# One row, '|'-separated (psql -At). Times as epoch seconds: no locale or time zone to parse.
ARCHIVE_SQL: Final = (
    "SELECT current_setting('archive_mode'), "
    "coalesce((SELECT floor(extract(epoch FROM now() - min(modification)))::bigint "
    "FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'), 0), "
    "(SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'), "
    "coalesce(last_archived_wal, ''), "
    "coalesce(floor(extract(epoch FROM last_archived_time))::bigint::text, ''), "
    "coalesce(last_failed_wal, ''), "
    "coalesce(floor(extract(epoch FROM last_failed_time))::bigint::text, ''), "
    "failed_count, pg_walfile_name(pg_current_wal_lsn()) FROM pg_stat_archiver"
)


class WatchInputError(ValueError):
    """An answer the watch cannot read (it fails the check it belongs to, naming the source)."""


def parse_pgbackrest_info(text: str, stanza: str = STANZA) -> NewestBackup | None:
    try:
        return pgbackrest.parse_info(text, stanza)
    except pgbackrest.InfoError as exc:
        raise WatchInputError(str(exc)) from None


@dataclass(frozen=True)
class Check:
    key: str  # archive, backup-age, run:<action>
    failing: bool
    summary: str


@dataclass(frozen=True)
class ArchiveState:
    archive_mode: str
    lag_seconds: int  # age of the oldest completed segment not yet archived; 0: none waits
    waiting: int  # completed segments not yet archived
    last_archived_wal: str
    last_archived_time: datetime | None
    last_failed_wal: str
    last_failed_time: datetime | None
    failed_count: int
    current_wal: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "archive_mode": self.archive_mode,
            "lag_seconds": self.lag_seconds,
            "waiting_segments": self.waiting,
            "last_archived_wal": self.last_archived_wal or None,
            "last_archived_time": iso(self.last_archived_time),
            "last_failed_wal": self.last_failed_wal or None,
            "last_failed_time": iso(self.last_failed_time),
            "failed_count": self.failed_count,
            "current_wal": self.current_wal,
        }


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _epoch(text: str) -> datetime | None:
    return datetime.fromtimestamp(int(text), UTC) if text else None


def parse_archive_row(text: str) -> ArchiveState:
    fields = text.strip().split("|")
    if len(fields) != 9:
        raise WatchInputError(f"pg_stat_archiver: expected 9 fields, got {len(fields)}: {clean(text)!r}")
    mode, lag, waiting, archived, archived_at, failed, failed_at, failures, current = fields
    try:
        return ArchiveState(mode, max(int(lag), 0), int(waiting), archived, _epoch(archived_at), failed,
                            _epoch(failed_at), int(failures), current)  # fmt: skip
    except ValueError as exc:
        raise WatchInputError(f"pg_stat_archiver: unreadable row {clean(text)!r} ({exc})") from None


def last_runs(audit_lines: Iterable[str], actions: Sequence[str]) -> dict[str, dict[str, Any]]:
    """action -> its last end line (ok, failed, interrupted) in the audit log."""
    last: dict[str, dict[str, Any]] = {}
    for line in audit_lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line cut by a full disk: the next ones still count
        if (
            isinstance(entry, dict)
            and entry.get("action") in actions
            and entry.get("result") in ("ok", "failed", "interrupted")
        ):
            last[entry["action"]] = entry
    return last


def archive_check(state: ArchiveState | None, error: str | None = None) -> Check:
    if state is None:
        return Check("archive", True, f"WAL archiving unknown: {error}")
    if state.archive_mode == "off":
        return Check("archive", True, "WAL archiving is off (archive_mode=off): no point-in-time recovery")
    facts = (f"{state.waiting} segment(s) waiting, oldest {state.lag_seconds} s; last archived "
             f"{state.last_archived_wal or 'none'} at {iso(state.last_archived_time) or 'never'}; "
             f"{state.failed_count} failure(s), last {state.last_failed_wal or 'none'} at "
             f"{iso(state.last_failed_time) or 'never'}")  # fmt: skip
    if state.lag_seconds > ARCHIVE_LAG_LIMIT_SECONDS:
        return Check("archive", True, f"WAL archive lag over {ARCHIVE_LAG_LIMIT_SECONDS // 60} min: {facts}")
    return Check("archive", False, f"WAL archiving keeps up: {facts}")


def backup_age_check(newest: NewestBackup | None, now: datetime, error: str | None = None) -> Check:
    limit_h = BACKUP_MAX_AGE_SECONDS // 3600
    if error is not None:
        return Check("backup-age", True, f"newest database backup unknown: {error}")
    if newest is None:
        return Check("backup-age", True, "no database backup in the pgBackRest repository")
    age = (now - newest.stop_time).total_seconds()
    what = f"{newest.type} backup {newest.label} finished {iso(newest.stop_time)} ({age / 3600:.1f} h ago)"
    if age > BACKUP_MAX_AGE_SECONDS:
        return Check("backup-age", True, f"newest database backup is older than {limit_h} h: {what}")
    return Check("backup-age", False, f"newest database backup: {what}")


def run_checks(last: dict[str, dict[str, Any]], actions: Sequence[str]) -> list[Check]:
    checks = []
    for action in actions:
        entry = last.get(action)
        if entry is None:
            continue  # never ran here (or the feature is not deployed): the age check covers backups
        failed = entry.get("result") != "ok"
        summary = f"last {action} run {entry.get('result')} at {entry.get('time')}"
        if failed:
            summary += f": {clean(str(entry.get('message', '')))}"
        checks.append(Check(f"run:{action}", failed, summary))
    return checks
