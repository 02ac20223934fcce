"""Point-in-time restore with pgBackRest: preview, maintenance page, apps and PostgreSQL stopped,
``pgbackrest restore`` into a sibling directory on the same filesystem, swap by rename, recovery
to the target, checks, apps back. Any failure renames back and restarts the cluster that was
there: the database is exactly as it was. Stdlib only.

The previous cluster stays as ``<data dir>.previous-<restore id>`` until ``restore
--discard-previous``. Roles come with the cluster (a physical restore): no globals to apply.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .. import maintenance
from .. import state as st
from ..context import Context
from ..runtime import RuntimeFailure
from ..switch import restart_apps
from . import after_restore
from .config import BackupFailed, BackupUsageError, LiveDatabase, PitrConfig, load_live_database
from .database import PostgresClient
from .pitr import (
    INFO_TIMEOUT,
    TIME_FORMAT,
    BackupSet,
    RepoInfo,
    check_repository,
    exec_pgbackrest,
    repo_info,
    require_pitr,
    tool_pgbackrest,
)
from .uploads import PreparedUploads

RESTORE_MOUNT: Final = "/var/lib/postgresql/restore"  # the sibling dir inside the one-off container
RESTORE_TIMEOUT: Final = 4 * 3600.0
PROMOTE_TIMEOUT: Final = 1800.0  # replaying WAL up to the target, then promotion
TARGET_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z$")
_ID_RE: Final = re.compile(r"^[0-9]{8}t[0-9]{6}z$")


@dataclass(frozen=True)
class PitrTarget:
    kind: str  # "time" | "latest" | "set"
    time: dt.datetime | None = None
    label: str | None = None
    # The data is another stack's (a rebuild restoring its original, which archives into this
    # host's repository): that stack's uploads snapshots; None: this host's stack.
    source_stack: str | None = None

    def describe(self) -> str:
        if self.kind == "time" and self.time is not None:
            return f"the state at {self.time.strftime(TIME_FORMAT)} UTC"
        if self.kind == "set":
            return f"the end of backup set {self.label}"
        return "the newest archived WAL (latest)"


def parse_target_time(text: str, now: dt.datetime) -> dt.datetime:
    """``YYYY-MM-DD HH:MM:SSZ`` (UTC), not in the future."""
    if not TARGET_RE.match(text):
        raise BackupUsageError(f"--to-time: {text!r} is not 'YYYY-MM-DD HH:MM:SSZ' (UTC)")
    try:
        when = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        raise BackupUsageError(f"--to-time: {text!r} is not a valid date and time") from None
    if when > now:
        raise BackupUsageError(f"--to-time: {text} is in the future (now: {now.strftime(TIME_FORMAT)}Z)")
    return when


def choose_set(info: RepoInfo, target: PitrTarget) -> BackupSet:
    """The backup set the restore starts from: the newest one finished at or before the target."""
    if target.kind == "set":
        found = [s for s in info.sets if s.label == target.label]
        if not found:
            labels = ", ".join(s.label for s in info.sets)
            raise BackupUsageError(
                f"--backup-set: no set {target.label!r} in the repository (there are: {labels})"
            )
        return found[0]
    if target.kind == "time" and target.time is not None:
        usable = [s for s in info.sets if s.stop <= target.time]
        if not usable:
            oldest = info.sets[0].stop.strftime(TIME_FORMAT)
            raise BackupUsageError(
                f"--to-time: {target.time.strftime(TIME_FORMAT)}Z is before the oldest backup's end "
                f"({oldest}Z): the repository cannot go back that far"
            )
        return usable[-1]
    return info.sets[-1]


def restore_args(pitr: PitrConfig, target: PitrTarget, chosen: BackupSet) -> list[str]:
    """``pgbackrest restore`` into the sibling dir; restore_command stated explicitly so it names
    no path of the one-off container."""
    args = [
        f"--pg1-path={RESTORE_MOUNT}",
        f"--set={chosen.label}",
        f'--recovery-option=restore_command=pgbackrest --stanza={pitr.stanza} archive-get %f "%p"',
    ]
    if target.kind == "time" and target.time is not None:
        args += ["--type=time", f"--target={target.time.strftime(TIME_FORMAT)}+00", "--target-action=promote"]
    elif target.kind == "set":
        args += ["--type=immediate", "--target-action=promote"]
    return [*args, "restore"]


def new_restore_id(now: dt.datetime) -> str:
    return now.strftime("%Y%m%dt%H%M%Sz")


@dataclass
class PitrRestoreResult:
    restore_id: str
    backup_set: str
    previous: str
    apps_healthy: bool
    counts: dict[str, int]
    problems: list[str] = field(default_factory=list)


@dataclass
class Plan:
    """What the restore will do; printed (the preview) before anything changes."""

    live: LiveDatabase
    pitr: PitrConfig
    target: PitrTarget
    chosen: BackupSet
    data: Path
    restoring: Path
    previous: Path
    restore_id: str

    def preview(self) -> list[str]:
        return [
            f"restore: target: {self.target.describe()}",
            f"restore: backup set: {self.chosen.label} ({self.chosen.type}, finished "
            f"{self.chosen.stop.strftime(TIME_FORMAT)}Z), then the archived WAL",
            f"restore: stops: the apps of release {self.live.app.release} (maintenance page, 503) and "
            f"PostgreSQL ({self.live.config.service})",
            f"restore: restores into {self.restoring}, then swaps it in; the current cluster is kept "
            f"as {self.previous} until `restore --discard-previous`",
        ]


def plan_restore(ctx: Context, target: PitrTarget, now: dt.datetime) -> Plan:
    """Every check that needs no change: config, repository readable with this cipher pass, target."""
    live = load_live_database(ctx)
    pitr = require_pitr(ctx, live)
    if pitr.data_dir is None:
        raise BackupUsageError(
            "point-in-time restore needs PostgreSQL on the data volume (backup.json pitr.data_dir is "
            "null: a named Docker volume); give the server a volume"
        )
    info = repo_info(ctx, live, pitr)
    check_repository(info)
    chosen = choose_set(info, target)
    data = Path(pitr.data_dir)
    rid = new_restore_id(now)
    return Plan(
        live,
        pitr,
        target,
        chosen,
        data,
        data.with_name(f"{data.name}.restoring-{rid}"),
        data.with_name(f"{data.name}.previous-{rid}"),
        rid,
    )


def run_pitr_restore(
    ctx: Context, plan: Plan, health_timeout: float, promote_timeout: float = PROMOTE_TIMEOUT
) -> PitrRestoreResult:
    for line in plan.preview():
        ctx.say(line)
    with st.exclusive_lock(ctx.paths.lock, "restore", ctx.actor):
        problems: list[str] = []
        # Downloaded while the apps still serve; no snapshot for the target: refused, nothing stopped.
        uploads = after_restore.prepare_uploads(ctx, uploads_target(plan), plan.target.source_stack)
        try:
            maintenance.enable(ctx, plan.live.manifest, plan.live.release)
            try:
                ctx.say(f"restore: stop-apps: {plan.live.app.name}")
                ctx.runtime.stop(plan.live.app)
                counts = _swap_in(ctx, plan, promote_timeout, uploads)
            finally:
                healthy = _apps_back(ctx, plan.live, health_timeout, problems)
        finally:
            after_restore.drop_unused_uploads(uploads)  # a failure before the swap left it prepared
        return PitrRestoreResult(
            plan.restore_id, plan.chosen.label, str(plan.previous), healthy, counts, problems
        )


def _apps_back(ctx: Context, live: LiveDatabase, health_timeout: float, problems: list[str]) -> bool:
    """Apps started and nginx pointed at them (this also replaces the maintenance include)."""
    ctx.say(f"restore: start-apps: {live.app.name}")
    found = restart_apps(ctx, live.release, live.manifest, live.app, health_timeout)
    problems.extend(found)
    if found:  # restart_apps did not rewrite the include: the page stays up, say so
        problems.append("the maintenance page is still served: `bankflow-agent rollback` or a deploy ends it")
    return not found


def uploads_target(plan: Plan) -> dt.datetime | None:
    """The uploads snapshot to match the database: at or before the target time, the end of the
    chosen set, or the newest for --latest."""
    if plan.target.kind == "time":
        return plan.target.time
    return plan.chosen.stop if plan.target.kind == "set" else None


def _swap_in(
    ctx: Context, plan: Plan, promote_timeout: float, uploads: PreparedUploads | None
) -> dict[str, int]:
    runtime, live = ctx.runtime, plan.live
    swapped = False
    try:
        # Only this host's own cluster archives into the stanza: a rebuild's fresh cluster has
        # another system id, and `check` refuses it (pgBackRest checkStanzaInfoPg).
        if plan.target.kind == "latest" and plan.target.source_stack is None and _answers(ctx, live):
            ctx.say("restore: pgbackrest check: the current WAL segment is archived before the stop")
            exec_pgbackrest(ctx, live, plan.pitr, "check", timeout=INFO_TIMEOUT)
        ctx.say(f"restore: stop {live.config.service}")
        runtime.stop_services(live.base, [live.config.service])
        _fresh_dir(plan.restoring, plan.pitr.postgres_uid)
        ctx.say(f"restore: pgbackrest restore into {plan.restoring}")
        tool_pgbackrest(
            ctx,
            live,
            plan.pitr,
            *restore_args(plan.pitr, plan.target, plan.chosen),
            mounts={str(plan.restoring): RESTORE_MOUNT},
            timeout=RESTORE_TIMEOUT,
        )
        os.rename(plan.data, plan.previous)
        os.rename(plan.restoring, plan.data)
        swapped = True
        ctx.say(f"restore: swapped: {plan.data} is the restored cluster; the previous is {plan.previous}")
        after_restore.swap_uploads_in(ctx, uploads)
        runtime.start(live.base, [live.config.service])
        wait_promoted(ctx, live, promote_timeout)
        counts = consistency_counts(ctx, live)
        after_restore.reapply_roles(ctx, live)  # pg_authid came back as it was at the target
        return counts
    except (BackupFailed, RuntimeFailure, OSError) as exc:
        _roll_back(ctx, plan, swapped)
        after_restore.swap_uploads_back(ctx, uploads)
        raise BackupFailed(
            f"{_what(exc)}; rolled back: the previous cluster is running again, unchanged"
        ) from None


def _what(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return str(exc)


def _answers(ctx: Context, live: LiveDatabase) -> bool:
    try:
        return PostgresClient(ctx, live).psql("SELECT 1").strip() == "1"
    except RuntimeFailure:
        return False


def _fresh_dir(path: Path, uid: int) -> None:
    if path.exists():
        shutil.rmtree(path)  # a leftover of an interrupted restore: ours by its name
    path.mkdir(mode=0o700)
    os.chown(path, uid, uid)


def _roll_back(ctx: Context, plan: Plan, swapped: bool) -> None:
    """The cluster that was there goes back in place and runs again."""
    runtime, live = ctx.runtime, plan.live
    ctx.complain("restore: failed: rolling back to the previous cluster")
    try:
        runtime.stop_services(live.base, [live.config.service])
    except RuntimeFailure as exc:
        ctx.complain(f"restore: stopping the restored cluster: {exc}")
    if swapped:
        failed = plan.data.with_name(f"{plan.data.name}.failed-{plan.restore_id}")
        os.rename(plan.data, failed)
        os.rename(plan.previous, plan.data)
        shutil.rmtree(failed, ignore_errors=True)
    shutil.rmtree(plan.restoring, ignore_errors=True)
    runtime.start(live.base, [live.config.service])


def wait_promoted(ctx: Context, live: LiveDatabase, timeout: float, poll: float = 1.0) -> None:
    """Bounded wait until recovery reached the target and the cluster was promoted."""
    deadline = time.monotonic() + timeout
    pg = PostgresClient(ctx, live)
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            if pg.psql("SELECT pg_is_in_recovery()").strip() == "f":
                return
            last = "still in recovery"
        except RuntimeFailure as exc:
            last = str(exc)
        _sleep(ctx, poll)
    raise BackupFailed(f"the restored cluster did not finish recovery within {timeout:g}s ({last})")


def _sleep(ctx: Context, seconds: float) -> None:
    sleeper: Callable[[float], None] = time.sleep  # ctx.sleep is a no-op in tests: a real wait here
    sleeper(seconds)


def consistency_counts(ctx: Context, live: LiveDatabase) -> dict[str, int]:
    """Rows per table of the app database (the restored data is readable, every table of it)."""
    pg = PostgresClient(ctx, live)
    tables = pg.psql(
        "SELECT format('%I.%I', schemaname, tablename) FROM pg_tables WHERE schemaname NOT IN "
        "('pg_catalog', 'information_schema') ORDER BY 1",
        live.config.database,
    ).split()
    counts = {}
    for table in tables:
        counts[table] = int(pg.psql(f"SELECT count(*) FROM {table}", live.config.database).strip())  # noqa: S608
    ctx.say("restore: consistency: " + (", ".join(f"{t} {n} rows" for t, n in counts.items()) or "no tables"))
    return counts


def discard_previous(ctx: Context) -> list[str]:
    """Remove what earlier restores kept, nothing else: the clusters of point-in-time restores
    (``<data dir>.previous-<id>``) and the databases of dump restores (``<db>_before_restore_*``)."""
    live = load_live_database(ctx)
    pg = PostgresClient(ctx, live)
    removed = []
    for database in pg.leftovers(live.config.database):
        pg.drop(database)
        removed.append(f"database {database}")
    removed += after_restore.discard_previous_trees(ctx)  # uploads.previous-<id>
    pitr = live.config.pitr
    if pitr is None or pitr.data_dir is None:
        return removed
    data = Path(pitr.data_dir)
    for candidate in sorted(data.parent.iterdir()):
        prefix = f"{data.name}.previous-"
        if (
            candidate.name.startswith(prefix)
            and _ID_RE.match(candidate.name[len(prefix) :])
            and candidate.is_dir()
        ):
            shutil.rmtree(candidate)
            removed.append(str(candidate))
    return removed
