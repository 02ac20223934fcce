"""The agent's PITR subcommands (``pitr-backup``, ``pitr-backups``, ``pitr-status``) and the PITR
forms of ``restore`` (``--to-time``, ``--latest``, ``--backup-set``, ``--discard-previous``).
Stdlib only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any, BinaryIO, Final

from ...contract import grammar
from ...contract.exit_codes import FAILED, LOCKED, OK, USAGE
from .. import state as st
from ..context import Context
from ..runtime import RuntimeFailure
from .config import BackupFailed, BackupLocked, BackupUsageError, backup_lock, load_live_database
from .pitr import TIME_FORMAT, pitr_status, repo_info, require_pitr, run_pitr_backup
from .pitr_restore import (
    PROMOTE_TIMEOUT,
    PitrTarget,
    discard_previous,
    parse_target_time,
    plan_restore,
    run_pitr_restore,
)


def _fail(ctx: Context, action: str, exc: BaseException, audit: bool = True) -> int:
    if isinstance(exc, BackupLocked | st.LockBusy):
        code, result = LOCKED, "refused"
    elif isinstance(exc, BackupUsageError):
        code, result = USAGE, "refused"
    else:
        code, result = FAILED, "failed"
    message = f"{action}: {result}: {exc}"
    ctx.complain(message)
    if audit:
        ctx.audit(action, None, result, message)
    return code


def cmd_pitr_backup(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    try:
        with backup_lock(ctx.paths, ctx.actor, "pitr-backup"):
            live = load_live_database(ctx)
            try:
                pitr = require_pitr(ctx, live)
            except BackupUsageError as exc:
                if not args.if_configured:
                    raise
                ctx.say(f"pitr-backup: skipped: {exc}")  # the timer on a release without PITR
                return OK
            result = run_pitr_backup(ctx, live, pitr, args.type)
    except (BackupLocked, BackupUsageError, BackupFailed, RuntimeFailure, OSError) as exc:
        return _fail(ctx, "pitr-backup", exc)
    message = f"pitr-backup: done: backup set {result.label} ({result.type})"
    ctx.say(message)
    ctx.audit("pitr-backup", None, "ok", message)
    return OK


def cmd_pitr_backups(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    try:
        live = load_live_database(ctx)
        info = repo_info(ctx, live, require_pitr(ctx, live))
    except (BackupUsageError, BackupFailed, RuntimeFailure) as exc:
        return _fail(ctx, "pitr-backups", exc, audit=False)
    rows = [
        {
            "label": s.label,
            "type": s.type,
            "start": s.start.strftime(TIME_FORMAT) + "Z",
            "stop": s.stop.strftime(TIME_FORMAT) + "Z",
            "size": s.size,
        }
        for s in info.sets
    ]
    if args.json:
        ctx.say(
            json.dumps(
                {
                    "ok": info.ok,
                    "message": info.status_message,
                    "backups": rows,
                    "wal": {"min": info.wal_min, "max": info.wal_max},
                },
                indent=2,
            )
        )
        return OK if info.ok else FAILED
    if not info.ok:
        ctx.complain(f"pitr-backups: the repository cannot be read: {info.status_message}")
        return FAILED
    for row in reversed(rows):
        ctx.say(f"{row['label']}  {row['type']:<4}  finished {row['stop']}  {row['size']:>14} bytes")
    ctx.say(f"WAL archived: {info.wal_min or '-'} .. {info.wal_max or '-'}")
    return OK


def cmd_pitr_status(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    try:
        status = pitr_status(ctx)
    except (BackupUsageError, BackupFailed, RuntimeFailure) as exc:
        return _fail(ctx, "pitr-status", exc, audit=False)
    ctx.say(json.dumps(status, indent=2, sort_keys=True))
    return OK


def pitr_target(args: argparse.Namespace, now: dt.datetime) -> PitrTarget | None:
    """The PITR form asked for, or None (the dump form: --from)."""
    chosen = [name for name in ("to_time", "latest", "backup_set") if getattr(args, name, None)]
    if len(chosen) > 1 or (chosen and getattr(args, "source", None)):
        raise BackupUsageError("choose one of --from, --to-time, --latest, --backup-set")
    source_stack = _source_stack(args, bool(chosen))
    if not chosen:
        return None
    if args.to_time:
        return PitrTarget("time", time=parse_target_time(args.to_time, now), source_stack=source_stack)
    if args.backup_set:
        return PitrTarget("set", label=str(args.backup_set), source_stack=source_stack)
    return PitrTarget("latest", source_stack=source_stack)


def _source_stack(args: argparse.Namespace, pitr_form: bool) -> str | None:
    """--source-stack, checked: a stack name, with a point-in-time form only."""
    value = getattr(args, "source_stack", None)
    if value is None:
        return None
    if not pitr_form:
        raise BackupUsageError(
            "--source-stack goes with --to-time, --latest or --backup-set (a dump: --of-stack)"
        )
    if not grammar.is_stack_name(value):
        raise BackupUsageError(f"--source-stack: {value!r} is not a stack name ({grammar.STACK_NAME_RULE})")
    return str(value)


def cmd_pitr_restore(ctx: Context, args: argparse.Namespace, target: PitrTarget) -> int:
    now = dt.datetime.now(dt.UTC)
    try:
        with backup_lock(ctx.paths, ctx.actor, "restore"):
            plan = plan_restore(ctx, target, now)
            if not args.yes:
                for line in plan.preview():
                    ctx.say(line)
                raise BackupUsageError("this replaces the database: confirm with --yes (nothing changed)")
            result = run_pitr_restore(ctx, plan, args.health_timeout, args.promote_timeout)
    except (BackupLocked, st.LockBusy, BackupUsageError, BackupFailed, RuntimeFailure, OSError) as exc:
        return _fail(ctx, "restore", exc)
    message = (
        f"restore: done: restored to {target.describe()} from backup set {result.backup_set}; the "
        f"previous cluster is kept as {result.previous} (`restore --discard-previous` removes it)"
    )
    if result.problems:
        message += "; ATTENTION: " + "; ".join(result.problems)
    (ctx.say if result.apps_healthy else ctx.complain)(message)
    ctx.audit("restore", None, "ok" if result.apps_healthy else "failed", message)
    return OK if result.apps_healthy else FAILED


def cmd_discard_previous(ctx: Context, args: argparse.Namespace) -> int:
    if getattr(args, "source_stack", None) is not None:
        return _fail(ctx, "restore", BackupUsageError("--source-stack does not go with --discard-previous"))
    try:
        with backup_lock(ctx.paths, ctx.actor, "restore"):
            removed = discard_previous(ctx)
    except (BackupLocked, BackupUsageError, RuntimeFailure, OSError) as exc:
        return _fail(ctx, "restore", exc)
    message = "restore: discarded " + (
        ", ".join(removed) if removed else "nothing (no previous cluster kept)"
    )
    ctx.say(message)
    ctx.audit("restore", None, "ok", message)
    return OK


Handler = Any
COMMANDS: Final[dict[str, tuple[Handler, bool]]] = {
    "pitr-backup": (cmd_pitr_backup, False),
    "pitr-backups": (cmd_pitr_backups, False),
    "pitr-status": (cmd_pitr_status, False),
}
AUDITED: Final = frozenset({"pitr-backup"})


def register(sub: Any) -> None:
    backup = sub.add_parser("pitr-backup", help="pgBackRest backup (stanza-create when needed)")
    backup.add_argument(
        "--type",
        choices=("full", "diff", "incr", "auto"),
        default="incr",
        help="auto: full weekly (or when there is none), else incr (the nightly timer)",
    )
    backup.add_argument(
        "--if-configured",
        action="store_true",
        help="exit 0 when the release has no PITR (the timer runs on every release)",
    )
    listing = sub.add_parser("pitr-backups", help="pgBackRest backup sets and the archived WAL range")
    listing.add_argument("--json", action="store_true")
    status = sub.add_parser("pitr-status", help="newest backup and archive health (JSON)")
    status.add_argument("--json", action="store_true", help="the only format (for symmetry)")


def add_restore_arguments(restore: Any) -> None:
    """The PITR forms on the existing ``restore`` parser."""
    restore.add_argument("--to-time", metavar="'YYYY-MM-DD HH:MM:SSZ'", help="point in time (UTC)")
    restore.add_argument("--latest", action="store_true", help="up to the newest archived WAL")
    restore.add_argument("--backup-set", metavar="LABEL", help="the end of one pgBackRest backup set")
    restore.add_argument(
        "--discard-previous",
        action="store_true",
        help="remove the cluster kept by the last point-in-time restore",
    )
    restore.add_argument(
        "--source-stack",
        metavar="STACK",
        help="with --to-time/--latest/--backup-set: the data is STACK's, which archives into this "
        "host's repository (a rebuild: the original stack): STACK's uploads snapshots",
    )
    restore.add_argument("--promote-timeout", type=float, default=PROMOTE_TIMEOUT, help=argparse.SUPPRESS)
