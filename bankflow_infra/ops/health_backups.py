"""``health --backups``'s recovery facts beyond the nightly dumps: the newest pgBackRest backup
and the WAL-archive lag (the droplet's ``bankflow-agent pitr-status --json``, over SSH), and the
last restore drill (the ``restore-drill`` workflow's runs, through the GitHub CLI).

Judged with the limits the droplet's backup watch alerts on (``contract/alerts.py``): a backup
older than 26 h, an archive lag over 5 minutes, a last drill that failed or no passing drill in
8 days are warnings. Every fetch is a seam (a callable) so the judgement is a pure function.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bankflow_infra.contract.alerts import (
    ARCHIVE_LAG_LIMIT_SECONDS,
    BACKUP_MAX_AGE_SECONDS,
    DRILL_MAX_AGE_SECONDS,
)
from bankflow_infra.contract.outputs import StackOutputs
from bankflow_infra.ops.ssh import RemoteError, ssh_session

DRILL_WORKFLOW: Final = "restore-drill.yml"
GH_TIMEOUT_SECONDS: Final = 30.0

PitrStatus = Callable[[], dict[str, Any]]  # the agent's pitr-status document
DrillRuns = Callable[[], list[dict[str, Any]]]  # `gh run list --json ...` rows, newest first


@dataclass(frozen=True)
class PitrReport:
    newest: dict[str, Any] | None  # label, type, stop_time
    backup_age: timedelta | None
    lag_seconds: int | None
    archive: dict[str, Any]
    warnings: tuple[str, ...]
    error: str | None = None


@dataclass(frozen=True)
class DrillReport:
    last: dict[str, Any] | None  # the newest completed run: conclusion, createdAt, url
    last_passed: datetime | None
    warnings: tuple[str, ...]
    error: str | None = None


def _time(value: Any, where: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected an ISO-8601 time, got {value!r}")
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_pitr_status(stack: str, stdout: bytes) -> dict[str, Any]:
    """The agent's ``pitr-status --json`` (wave 3's interface), checked: ``newest_backup`` (null or
    {label, type, stop_time}) and ``archive`` ({last_archived_time, last_failed_time,
    failed_count, lag_seconds})."""
    try:
        document = json.loads(stdout)
        if not isinstance(document, dict) or not isinstance(document.get("archive"), dict):
            raise TypeError("expected an object with 'archive'")
        newest = document.get("newest_backup")
        if newest is not None:
            if not isinstance(newest, dict) or not isinstance(newest.get("label"), str):
                raise TypeError("newest_backup: expected null or {label, type, stop_time}")
            _time(newest.get("stop_time"), "newest_backup.stop_time")
        lag = document["archive"].get("lag_seconds")
        if lag is not None and (isinstance(lag, bool) or not isinstance(lag, int | float)):
            raise TypeError(f"archive.lag_seconds: expected a number, got {lag!r}")
    except (ValueError, TypeError) as error:
        raise RemoteError(f"unexpected `pitr-status --json` answer from stack {stack!r}: {error}") from None
    return document


def judge_pitr(document: dict[str, Any], now: datetime) -> PitrReport:
    newest, archive = document.get("newest_backup"), document["archive"]
    warnings = []
    age = None
    if newest is None:
        warnings.append("WARNING: no pgBackRest backup in the repository")
    else:
        age = now - _time(newest["stop_time"], "newest_backup.stop_time")
        if age.total_seconds() > BACKUP_MAX_AGE_SECONDS:
            warnings.append(f"WARNING: newest pgBackRest backup is {age.total_seconds() / 3600:.1f} h old, "
                            f"past {BACKUP_MAX_AGE_SECONDS // 3600} h")  # fmt: skip
    lag = archive.get("lag_seconds")
    if lag is None:
        warnings.append("WARNING: WAL archive lag unknown")
    elif lag > ARCHIVE_LAG_LIMIT_SECONDS:
        failures = f"{archive.get('failed_count', '?')} failures, last {archive.get('last_failed_time')}"
        limit = ARCHIVE_LAG_LIMIT_SECONDS // 60
        warnings.append(f"WARNING: WAL archive lag {lag:.0f} s, over {limit} min ({failures})")
    return PitrReport(newest, age, None if lag is None else int(lag), archive, tuple(warnings))


def pitr_report(fetch: PitrStatus, now: datetime | None = None) -> PitrReport:
    try:
        document = fetch()
    except Exception as error:  # the host cannot be asked: reported, it does not hide the probes
        return PitrReport(None, None, None, {}, (), f"{type(error).__name__}: {error}")
    return judge_pitr(document, now or datetime.now(UTC))


def fetch_pitr_status(outputs: StackOutputs, note: Callable[[str], None] = lambda _t: None) -> dict[str, Any]:
    with ssh_session(outputs, note=note) as session:
        done = session.run_agent(["pitr-status", "--json"], capture=True)
    if done.returncode != 0:
        raise RemoteError(f"`pitr-status --json` on stack {outputs.stack!r} exited {done.returncode}")
    return parse_pitr_status(outputs.stack, done.stdout)


# --------------------------------------------------------------------------- the last drill


def judge_drills(runs: Sequence[dict[str, Any]], now: datetime) -> DrillReport:
    """``runs``: `gh run list --workflow restore-drill.yml --json conclusion,status,createdAt,url`."""
    completed = [r for r in runs if r.get("status") == "completed"]
    last = completed[0] if completed else None
    passed = [_time(r.get("createdAt"), "createdAt") for r in completed if r.get("conclusion") == "success"]
    last_passed = max(passed, default=None)
    warnings = []
    if last is not None and last.get("conclusion") != "success":
        warnings.append(f"WARNING: the last restore drill {last.get('conclusion')} ({last.get('url')})")
    if last_passed is None:
        warnings.append("WARNING: no passing restore drill on record")
    elif (now - last_passed).total_seconds() > DRILL_MAX_AGE_SECONDS:
        days = (now - last_passed).days
        warnings.append(f"WARNING: the last passing restore drill is {days} days old, past "
                        f"{DRILL_MAX_AGE_SECONDS // 86400} days")  # fmt: skip
    return DrillReport(last, last_passed, tuple(warnings))


def drill_report(fetch: DrillRuns, now: datetime | None = None) -> DrillReport:
    try:
        runs = fetch()
        return judge_drills(runs, now or datetime.now(UTC))
    except Exception as error:  # no gh, not logged in, no network: said, never fatal
        return DrillReport(None, None, (), f"{type(error).__name__}: {error}")


def fetch_drill_runs(
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
) -> list[dict[str, Any]]:
    """The drill workflow's last runs, newest first, from the GitHub CLI (the operator's login)."""
    argv = ["gh", "run", "list", "--workflow", DRILL_WORKFLOW, "--limit", "20",
            "--json", "conclusion,status,createdAt,url"]  # fmt: skip
    try:
        done = run(argv, capture_output=True, text=True, timeout=GH_TIMEOUT_SECONDS, check=False)
    except FileNotFoundError:
        raise RuntimeError("the GitHub CLI (gh) is not installed: the last drill is unknown") from None
    if done.returncode != 0:
        tail = (done.stderr or "").strip().splitlines()
        raise RuntimeError(f"gh run list exited {done.returncode}: {tail[-1] if tail else ''}")
    rows = json.loads(done.stdout)
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise ValueError("gh run list: expected a JSON list of runs")
    return rows


# --------------------------------------------------------------------------- reporting (pure)


def pitr_lines(report: PitrReport) -> list[str]:
    if report.error is not None:
        return [f"WARNING: pgBackRest status unknown: {report.error}"]
    lines = []
    if report.newest is not None and report.backup_age is not None:
        hours = report.backup_age.total_seconds() / 3600
        lines.append(f"newest pgBackRest backup: {report.newest.get('type')} {report.newest['label']}, "
                     f"{hours:.1f} h old (finished {report.newest['stop_time']})")  # fmt: skip
    if report.lag_seconds is not None:
        archived = report.archive.get("last_archived_time")
        lines.append(f"WAL archive lag: {report.lag_seconds} s (last archived {archived}, "
                     f"{report.archive.get('failed_count', 0)} failures)")  # fmt: skip
    return lines + list(report.warnings)


def drill_lines(report: DrillReport) -> list[str]:
    if report.error is not None:
        return [f"WARNING: last restore drill unknown: {report.error}"]
    lines = []
    if report.last is not None:
        lines.append(f"last restore drill: {report.last.get('conclusion')} at {report.last.get('createdAt')} "
                     f"({report.last.get('url')})")  # fmt: skip
    return lines + list(report.warnings)


def pitr_document(report: PitrReport) -> dict[str, Any]:
    return {
        "newest_backup": report.newest,
        "backup_age_hours": round(report.backup_age.total_seconds() / 3600, 1) if report.backup_age else None,
        "archive": report.archive,
        "archive_lag_seconds": report.lag_seconds,
        "warnings": list(report.warnings),
        "error": report.error,
    }


def drill_document(report: DrillReport) -> dict[str, Any]:
    return {
        "last": report.last,
        "last_passed": report.last_passed.strftime("%Y-%m-%dT%H:%M:%SZ") if report.last_passed else None,
        "warnings": list(report.warnings),
        "error": report.error,
    }
