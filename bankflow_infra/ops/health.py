"""``health``'s engine: probe every public service (ops/probes.py), then judge and report.

The report adds what the probes cannot see: the origin certificate's expiry (a month's warning)
and, when asked, the newest database dump's age (warned past 26 h). The table and the JSON
document are pure functions of the report.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from bankflow_infra.contract.alerts import BACKUP_MAX_AGE_SECONDS
from bankflow_infra.contract.outputs import OutputsError, StackOutputs
from bankflow_infra.ops import health_backups as recovery
from bankflow_infra.ops.health_fleet import LOAD_BALANCER_TARGET
from bankflow_infra.ops.probes import (
    Address,
    Mode,
    Policy,
    ProbeResult,
    edge_context,
    pinned_context,
    plan_probes,
    run_async,
    run_rounds,
)

# The seam for the backups piece: returns when the newest database dump was taken, or None
# when the bucket holds none (ops/backups.py asks the droplet).
NewestBackup = Callable[[], datetime | None]

# Backups run daily (bankflow:backups.timeUtc); 2 h of slack covers a slow dump and upload.
BACKUP_STALE_AFTER: Final = timedelta(seconds=BACKUP_MAX_AGE_SECONDS)


@dataclass(frozen=True)
class BackupAge:
    newest: datetime | None
    age: timedelta | None
    stale: bool
    error: str | None = None


@dataclass(frozen=True)
class HealthReport:
    stack: str
    mode: Mode
    results: tuple[ProbeResult, ...]
    rounds: int
    backup: BackupAge | None = None
    certificate_warning: str | None = None  # the origin certificate expires soon (or is unreadable)
    pitr: recovery.PitrReport | None = None  # --backups: newest pgBackRest backup, WAL archive lag
    drill: recovery.DrillReport | None = None  # --backups: the last restore drill
    # --backups on a managed database: its cluster (point in time is DigitalOcean's, not pgBackRest)
    managed_cluster: str | None = None

    @property
    def healthy(self) -> bool:
        return all(r.healthy for r in self.results)


# Origin CA certificates are not renewed automatically: warn a month ahead, time to `pulumi up`
# with a replaced certificate and deploy it.
CERT_WARN_BEFORE: Final = timedelta(days=30)


def certificate_warning(expires_on: str | None, now: datetime | None = None) -> str | None:
    """A warning when the origin certificate (output origin_cert_expires_on) expires within 30 days."""
    if expires_on is None:
        return None
    now = now or datetime.now(UTC)
    try:
        expiry = datetime.fromisoformat(expires_on.replace("Z", "+00:00"))
    except ValueError:
        return f"WARNING: origin_cert_expires_on {expires_on!r} is not a date; check the certificate by hand"
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    left = expiry - now
    if left <= timedelta(0):
        return (
            f"WARNING: the origin certificate EXPIRED on {expiry.date()}: "
            "Cloudflare (SSL strict) refuses the origin"
        )
    if left <= CERT_WARN_BEFORE:
        return (
            f"WARNING: the origin certificate expires on {expiry.date()} ({left.days} days): replace it "
            "(pulumi up -s STACK --replace <OriginCaCertificate URN>) and deploy"
        )
    return None


def backup_age(newest_backup: NewestBackup, now: datetime | None = None) -> BackupAge:
    now = now or datetime.now(UTC)
    try:
        newest = newest_backup()
    except Exception as error:  # a bucket problem is reported, it does not hide the probes
        return BackupAge(None, None, True, f"{type(error).__name__}: {error}")
    if newest is None:
        return BackupAge(None, None, True, "no backup found")
    age = now - newest
    return BackupAge(newest, age, age > BACKUP_STALE_AFTER)


def check_health(
    outputs: StackOutputs,
    mode: Mode = "edge",
    policy: Policy | None = None,
    resolve: Mapping[str, Address] | None = None,
    trust: ssl.SSLContext | None = None,
    newest_backup: NewestBackup | None = None,
    pitr_status: recovery.PitrStatus | None = None,
    drill_runs: recovery.DrillRuns | None = None,
    managed_cluster: str | None = None,
) -> HealthReport:
    """Probe the stack's services; ``trust`` replaces the edge trust roots (tests only).

    Raises OutputsError before probing anything when ``--origin`` has no origin to reach.
    """
    policy = policy or Policy()
    probes = plan_probes(outputs, mode, resolve)
    pinned = mode == "origin"
    if pinned:
        assert outputs.origin_certificate is not None  # plan_probes checked it
        try:
            context = pinned_context(outputs.origin_certificate, outputs.origin_pull_client)
        except ssl.SSLError as error:
            raise OutputsError(
                f"stack output 'origin_certificate' of stack {outputs.stack!r}: "
                f"not a usable certificate ({error})"
            ) from None
    else:
        context = trust or edge_context()
    results, rounds = run_async(run_rounds(probes, context, policy, pinned))
    backup = backup_age(newest_backup) if newest_backup is not None else None
    return HealthReport(
        outputs.stack, mode, results, rounds, backup, certificate_warning(outputs.origin_cert_expires_on),
        recovery.pitr_report(pitr_status) if pitr_status is not None else None,
        recovery.drill_report(drill_runs) if drill_runs is not None else None, managed_cluster,
    )  # fmt: skip


# --------------------------------------------------------------------------- reporting (pure)


def report_document(report: HealthReport) -> dict[str, Any]:
    backup: dict[str, Any] | None = None
    if report.backup is not None:
        b = report.backup
        backup = {
            "newest": b.newest.isoformat() if b.newest else None,
            "age_hours": round(b.age.total_seconds() / 3600, 1) if b.age is not None else None,
            "stale": b.stale,
            "stale_after_hours": BACKUP_STALE_AFTER.total_seconds() / 3600,
            "error": b.error,
        }
    return {
        "stack": report.stack,
        "mode": report.mode,
        "healthy": report.healthy,
        "rounds": report.rounds,
        "probes": [
            {
                "service": r.service,
                "target": r.target,  # null for a single-droplet stack
                "url": r.url,
                "connect": r.connect,
                "healthy": r.healthy,
                "status": r.status,
                "latency_ms": r.latency_ms,
                "attempts": r.attempts,
                "error": r.error,
            }
            for r in report.results
        ],
        "backup": backup,
        "certificate_warning": report.certificate_warning,
        "pitr": recovery.pitr_document(report.pitr) if report.pitr is not None
        else ({"managed_cluster": report.managed_cluster} if report.managed_cluster else None),
        "drill": recovery.drill_document(report.drill) if report.drill is not None else None,
    }


def format_table(report: HealthReport) -> str:
    via = "through Cloudflare" if report.mode == "edge" else "direct to the origin (pinned certificate)"
    fleet = any(r.target is not None for r in report.results)
    header = ("SERVICE", *(("TARGET",) if fleet else ()), "URL", "STATUS", "LATENCY_MS", "ERROR")
    rows = [
        (
            r.service,
            *((r.target or "-",) if fleet else ()),
            r.url + (f" via {r.connect}" if r.connect else ""),
            str(r.status) if r.status is not None else "-",
            f"{r.latency_ms:.0f}" if r.latency_ms is not None else "-",
            r.error or ("-" if r.healthy else "unhealthy"),
        )
        for r in report.results
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    lines = [
        f"health of stack {report.stack!r} {via}"
        + (f", after {report.rounds} rounds" if report.rounds > 1 else "")
    ]
    for row in (header, *rows):
        lines.append(
            "  ".join([*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)), row[-1]])
        )
    lines.append(summary_line(report.results))
    if report.backup is not None:
        lines.append(format_backup(report.backup))
    if report.pitr is not None:
        lines += recovery.pitr_lines(report.pitr)
    if report.managed_cluster is not None:
        lines.append(f"point in time: DigitalOcean's, of the managed cluster {report.managed_cluster} (daily "
                     "backups kept 7 days; `restore --to-time` forks it)")
    if report.drill is not None:
        lines += recovery.drill_lines(report.drill)
    if report.certificate_warning is not None:
        lines.append(report.certificate_warning)
    return "\n".join(lines) + "\n"


def summary_line(results: tuple[ProbeResult, ...]) -> str:
    """``healthy: n/n services`` (one droplet), or per target in a load-balanced stack."""
    targets = list(dict.fromkeys(r.target for r in results if r.target is not None))
    failing = [r.service + (f"@{r.target}" if r.target else "") for r in results if not r.healthy]
    if failing:
        return f"UNHEALTHY: {', '.join(failing)}"
    if not targets:
        return f"healthy: {len(results)}/{len(results)} services"
    droplets = [t for t in targets if t != LOAD_BALANCER_TARGET]
    balancer = " and the load balancer" if LOAD_BALANCER_TARGET in targets else ""
    return f"healthy: {len(results)}/{len(results)} probes on {len(droplets)} droplets{balancer}"


def format_backup(backup: BackupAge) -> str:
    if backup.newest is None or backup.age is None:
        return f"WARNING: newest backup unknown: {backup.error}"
    hours = backup.age.total_seconds() / 3600
    if backup.stale:
        return (
            f"WARNING: newest backup is {hours:.1f} h old (taken {backup.newest.isoformat()}), "
            f"past {BACKUP_STALE_AFTER.total_seconds() / 3600:.0f} h"
        )
    return f"newest backup: {hours:.1f} h old (taken {backup.newest.isoformat()})"


def with_wait_default(policy: Policy, deadline: float | None) -> Policy:
    """--deadline when given; otherwise 30 s for one check, 300 s when waiting for a deploy."""
    if deadline is not None:
        return replace(policy, deadline=deadline)
    return replace(policy, deadline=300.0 if policy.wait else 30.0)
