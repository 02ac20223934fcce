"""``status``'s engine: one stack at a glance, gathered read-only from what already exists.

Sources, none of which changes anything:

- the stack outputs: origin, release, certificate expiry (``origin_cert_expires_on``);
- the committed ``Pulumi.<stack>.yaml`` (through ``stackfile``): droplet size and region;
- the host agent over SSH: ``releases --json`` (serving and kept releases), ``history --json``
  (the last deploys from the audit log), ``backups --json`` (newest dump and its age);
- the health probes (ops/health.py): every public service;
- the drift record of the last scheduled check (ops/status_drift.py), when the operator has it.

A source that cannot answer makes its own section an error; the others still show. The report
is a value; :func:`status_document` is the ``--json`` schema (``schema`` 1, README "status")
and ``ops/status_render.py`` draws the screen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from bankflow_infra.contract.outputs import StackOutputs
from bankflow_infra.ops.backups import newest_of, parse_rows
from bankflow_infra.ops.health import BACKUP_STALE_AFTER, HealthReport, certificate_warning, report_document
from bankflow_infra.ops.ssh import RemoteError, SshSession, ssh_session
from bankflow_infra.ops.status_drift import DRIFT_STALE_AFTER, DriftRecord
from bankflow_infra.stackfile import StackFileError, read_stack_file

STATUS_SCHEMA: Final = 1
DEPLOY_ACTIONS: Final = frozenset({"deploy", "rollback", "receive", "restore", "migrate"})
NOT_CONFIGURED: Final = "not configured"


@dataclass(frozen=True)
class Part:
    """One section's data, or why it is missing."""

    data: Any = None
    error: str | None = None


@dataclass(frozen=True)
class HostFacts:
    releases: Part
    deploys: Part
    backups: Part


@dataclass(frozen=True)
class StatusReport:
    stack: str
    outputs: StackOutputs
    generated_at: datetime
    server: Part
    host: HostFacts | None  # None: the stack has no server of its own
    health: Part  # data: HealthReport
    drift: Part  # data: DriftRecord, error when unreadable, neither when not given
    problems: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- gathering


def droplet_part(stack: str, project_dir: Path | None) -> Part:
    try:
        settings = read_stack_file(project_dir or Path.cwd(), stack).settings()
    except (StackFileError, ValueError) as error:
        return Part(error=str(error).splitlines()[0])
    server = settings.server
    return Part({"enabled": server.enabled, "size": server.size, "region": server.region})


def _agent_json(ssh: SshSession, args: list[str], stack: str) -> Part:
    done = ssh.run_agent(args, capture=True)
    if done.returncode != 0:
        detail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
        return Part(error=f"`bankflow-agent {' '.join(args)}` exited {done.returncode}: {detail[0]}")
    try:
        return Part(json.loads(done.stdout))
    except ValueError as error:
        return Part(error=f"unexpected `{args[0]} --json` answer from stack {stack!r}: {error}")


def _backups(ssh: SshSession, stack: str) -> Part:
    listed = _agent_json(ssh, ["backups", "--json"], stack)
    if listed.error is not None:
        return listed
    try:
        rows = parse_rows(stack, json.dumps(listed.data).encode())
    except RemoteError as error:
        return Part(error=str(error))
    return Part(newest_of([r for r in rows if r.get("stack") == stack]))


def query_host(outputs: StackOutputs, last: int, note: Callable[[str], None]) -> HostFacts:
    """Ask the droplet's agent, read-only. Raises RemoteError when SSH itself cannot be used."""
    with ssh_session(outputs, note=note) as ssh:
        releases = _agent_json(ssh, ["releases", "--json"], outputs.stack)
        deploys = _agent_json(ssh, ["history", "--json", "--last", str(last)], outputs.stack)
        backups = _backups(ssh, outputs.stack)
    if deploys.error is None:
        entries = deploys.data.get("entries") if isinstance(deploys.data, dict) else None
        deploys = Part(entries) if isinstance(entries, list) else Part(error="unexpected `history` answer")
    return HostFacts(releases, deploys, backups)


# --------------------------------------------------------------------------- judging (pure)


def problems_of(report: StatusReport, now: datetime) -> list[str]:
    """What needs attention, one line each ([] when all is well)."""
    found: list[str] = []
    health = report.health.data
    if report.health.error:
        found.append(f"health: {report.health.error}")
    elif isinstance(health, HealthReport) and not health.healthy:
        found.append("unhealthy: " + ", ".join(r.service for r in health.results if not r.healthy))
    if report.host is not None:
        for name, part in (("releases", report.host.releases), ("deploys", report.host.deploys),
                           ("backup", report.host.backups)):
            if part.error:
                found.append(f"{name}: {part.error}")
        newest = report.host.backups.data
        if report.host.backups.error is None and newest is None:
            found.append("backup: no backup of this stack in the bucket")
        elif isinstance(newest, datetime) and now - newest > BACKUP_STALE_AFTER:
            found.append(f"backup: the newest is {(now - newest).total_seconds() / 3600:.0f} h old")
    warning = certificate_warning(report.outputs.origin_cert_expires_on, now)
    if warning:
        found.append(warning.removeprefix("WARNING: "))
    drift = report.drift.data
    if report.drift.error:
        found.append(f"drift: {report.drift.error}")
    elif isinstance(drift, DriftRecord):
        if drift.drifted:
            found.append(f"drift: the stack drifted (checked {drift.checked_at:%Y-%m-%d %H:%M} UTC)")
        elif drift.drifted is None:
            found.append("drift: the last check could not run its preview")
        if now - drift.checked_at > DRIFT_STALE_AFTER:
            found.append(f"drift: the last check is {(now - drift.checked_at).days} day(s) old")
    return found


def certificate_days(expires_on: str | None, now: datetime) -> int | None:
    if expires_on is None:
        return None
    try:
        expiry = datetime.fromisoformat(expires_on.replace("Z", "+00:00"))
    except ValueError:
        return None
    return ((expiry if expiry.tzinfo else expiry.replace(tzinfo=UTC)) - now) // timedelta(days=1)


# --------------------------------------------------------------------------- the --json document


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _releases_document(host: HostFacts | None) -> dict[str, Any]:
    if host is None:
        return {"serving": None, "kept": [], "error": None}
    rows = host.releases.data if isinstance(host.releases.data, list) else []
    serving = next((r.get("release") for r in rows if isinstance(r, dict) and r.get("current")), None)
    return {"serving": serving, "kept": rows, "error": host.releases.error}


def _deploys_document(host: HostFacts | None) -> dict[str, Any]:
    if host is None:
        return {"entries": [], "error": None}
    entries = host.deploys.data or []
    return {"entries": [e for e in entries if isinstance(e, dict) and e.get("action") in DEPLOY_ACTIONS],
            "error": host.deploys.error}


def _backup_document(host: HostFacts | None, now: datetime) -> dict[str, Any]:
    newest = host.backups.data if host is not None else None
    age = (now - newest) if isinstance(newest, datetime) else None
    return {
        "newest": _iso(newest) if isinstance(newest, datetime) else None,
        "age_hours": round(age.total_seconds() / 3600, 1) if age is not None else None,
        "stale": (age > BACKUP_STALE_AFTER) if age is not None else None,
        "error": host.backups.error if host is not None else None,
    }


def _drift_document(part: Part) -> dict[str, Any]:
    record = part.data
    if not isinstance(record, DriftRecord):
        return {"state": "error" if part.error else "unknown", "checked_at": None, "run_url": None,
                "problems": [], "error": part.error}
    state = {True: "drifted", False: "clean", None: "unknown"}[record.drifted]
    return {"state": state, "checked_at": _iso(record.checked_at), "run_url": record.run_url,
            "problems": list(record.problems), "error": None}


def status_document(report: StatusReport) -> dict[str, Any]:
    """The ``status --json`` document (schema 1; README "status" describes every key)."""
    o, now = report.outputs, report.generated_at
    health = report.health.data
    return {
        "schema": STATUS_SCHEMA,
        "stack": report.stack,
        "environment": o.environment,
        "generated_at": _iso(now),
        "server": {"own": o.ssh is not None, "origin_stack": o.origin_stack, "origin_ip": o.origin_ip,
                   **({"enabled": None, "size": None, "region": None} | (report.server.data or {})),
                   "error": report.server.error},
        "releases": _releases_document(report.host),
        "deploys": _deploys_document(report.host),
        "health": (report_document(health) if isinstance(health, HealthReport)
                   else {"healthy": None, "probes": [], "error": report.health.error}),
        "backup": _backup_document(report.host, now),
        "archive": {"state": NOT_CONFIGURED, "lag_seconds": None},
        "certificate": {"expires_on": o.origin_cert_expires_on,
                        "days_left": certificate_days(o.origin_cert_expires_on, now),
                        "warning": certificate_warning(o.origin_cert_expires_on, now)},
        "drift": _drift_document(report.drift),
        "problems": report.problems,
    }
