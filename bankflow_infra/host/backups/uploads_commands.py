"""The uploads subcommands of the agent: ``uploads-backup``, ``uploads-snapshots [--json]`` and
``uploads-migrate``; their argparse registration, exit codes and audit lines (like ``backup``).
Stdlib only.

    bankflow-agent uploads-backup              restic snapshot of the uploads tree into the stack's
                                               bucket (repository created on first use); the
                                               systemd timer runs it every 5 minutes
    bankflow-agent uploads-snapshots [--json]  the repository's snapshots of this stack, newest first
    bankflow-agent uploads-status              JSON: newest snapshot (time, age), count (health)
    bankflow-agent uploads-check [--read-data-percent N]
                                               restic check: the repository's structure, and N% of
                                               the data read back and verified
    bankflow-agent uploads-migrate --volume DIR
                                               move the root disk's uploads onto the data volume
                                               once (uploads_migrate.py); the bootstrap runs it
    bankflow-agent uploads-seed [--source-stack OTHER] [--to-time 'YYYY-MM-DD HH:MM:SSZ']
                                               fill an EMPTY uploads tree (a new NFS share) with a
                                               snapshot; resumable (uploads_seed.py)
    bankflow-agent uploads-aside [--source-stack OTHER] [--to-time 'YYYY-MM-DD HH:MM:SSZ']
                                               a snapshot restored BESIDE the live uploads
                                               (.bankflow-restored-<time>-<id>), nothing else touched

Exit codes: 0 done, 1 a step failed (nothing live changed), 2 bad input or configuration (no
uploads.json, no password file), 3 another backup or restore holds the backup lock.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Final

from ...contract import grammar
from ...contract.exit_codes import FAILED, LOCKED, OK, USAGE
from ..context import Context
from ..runtime import RuntimeFailure
from .config import BackupFailed, BackupLocked, BackupSkipped, BackupUsageError, backup_lock
from .pitr_restore import parse_target_time
from .uploads import backup_uploads, check_uploads, snapshot_rows, uploads_status
from .uploads_migrate import migrate_uploads
from .uploads_seed import AsideResult, Request, SeedResult, aside_uploads, seed_uploads


def cmd_uploads_backup(ctx: Context, _args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    try:
        with backup_lock(ctx.paths, ctx.actor, "uploads-backup"):
            result = backup_uploads(ctx)
    except BackupLocked as exc:
        return _end(ctx, "uploads-backup", "refused", str(exc), LOCKED)
    except BackupSkipped as exc:  # several droplets on one share: another one backs it up
        ctx.say(f"uploads-backup: {exc}")
        return OK
    except BackupUsageError as exc:
        return _end(ctx, "uploads-backup", "refused", str(exc), USAGE)
    except (BackupFailed, OSError) as exc:
        return _end(ctx, "uploads-backup", "failed", f"failed: {_describe(exc)}", FAILED)
    done = f"snapshot {result.snapshot_id[:8]} ({result.files} files, {result.bytes} bytes)"
    message = f"uploads-backup: done: {done}"
    if result.created_repository:
        message += "; created the repository"
    ctx.say(message)
    ctx.audit("uploads-backup", None, "ok", message)
    return OK


def cmd_uploads_snapshots(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    try:
        rows = snapshot_rows(ctx)
    except BackupUsageError as exc:
        ctx.complain(f"uploads-snapshots: {exc}")
        return USAGE
    except BackupFailed as exc:
        ctx.complain(f"uploads-snapshots: {exc}")
        return FAILED
    if args.json:
        ctx.say(json.dumps(rows, indent=2))
    elif not rows:
        ctx.say("no uploads snapshots")
    for row in [] if args.json else rows:
        ctx.say(f"{row['id'][:8]}  {row['time']}  {', '.join(row['paths'])}")
    return OK


def cmd_uploads_status(ctx: Context, _args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    """Always JSON: read by health and alerts (newest snapshot time and age, count)."""
    try:
        ctx.say(json.dumps(uploads_status(ctx), indent=2, sort_keys=True))
    except BackupUsageError as exc:
        ctx.complain(f"uploads-status: {exc}")
        return USAGE
    except BackupFailed as exc:
        ctx.complain(f"uploads-status: {exc}")
        return FAILED
    return OK


def cmd_uploads_check(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    try:
        with backup_lock(ctx.paths, ctx.actor, "uploads-check"):
            result = check_uploads(ctx, args.read_data_percent)
    except BackupLocked as exc:
        return _end(ctx, "uploads-check", "refused", str(exc), LOCKED)
    except BackupUsageError as exc:
        return _end(ctx, "uploads-check", "refused", str(exc), USAGE)
    except (BackupFailed, OSError) as exc:
        return _end(ctx, "uploads-check", "failed", f"failed: {_describe(exc)}", FAILED)
    ctx.say(f"uploads-check: {result}")
    ctx.audit("uploads-check", None, "ok", result)
    return OK


def cmd_uploads_migrate(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    try:
        with backup_lock(ctx.paths, ctx.actor, "uploads-migrate"):
            message = migrate_uploads(ctx, Path(args.volume))
    except BackupLocked as exc:
        return _end(ctx, "uploads-migrate", "refused", str(exc), LOCKED)
    except BackupUsageError as exc:
        return _end(ctx, "uploads-migrate", "refused", f"{exc}; the uploads stay where they are", USAGE)
    except (BackupFailed, RuntimeFailure, OSError) as exc:
        text = f"failed: {_describe(exc)}; the root disk's tree still serves, run again to resume"
        return _end(ctx, "uploads-migrate", "failed", text, FAILED)
    ctx.say(f"uploads-migrate: {message}")
    ctx.audit("uploads-migrate", None, "ok", message)
    return OK


def _request(args: argparse.Namespace) -> Request:
    """--source-stack and --to-time of uploads-seed/uploads-aside, checked before anything runs."""
    if args.source_stack is not None and not grammar.STACK_NAME.fullmatch(args.source_stack):
        raise BackupUsageError(
            f"--source-stack: {args.source_stack!r} is not a stack name ({grammar.STACK_NAME_RULE})"
        )
    when = None if args.to_time is None else parse_target_time(args.to_time, dt.datetime.now(dt.UTC))
    return Request(args.source_stack, when)


def _snapshot_into_tree(
    ctx: Context, args: argparse.Namespace, action: str, run: Callable[[Context, Request], Any]
) -> tuple[int, Any]:
    """uploads-seed/uploads-aside up to their result: (exit code, the result or None)."""
    try:
        request = _request(args)
        with backup_lock(ctx.paths, ctx.actor, action):
            return OK, run(ctx, request)
    except BackupLocked as exc:
        return _end(ctx, action, "refused", str(exc), LOCKED), None
    except BackupUsageError as exc:
        return _end(ctx, action, "refused", f"{exc}; none of the uploads was touched", USAGE), None
    except (BackupFailed, OSError) as exc:
        return _end(
            ctx, action, "failed", f"failed: {_describe(exc)}; none of the uploads was touched", FAILED
        ), None


def _snapshot_words(result: SeedResult | AsideResult) -> str:
    when = result.snapshot_time.isoformat(timespec="seconds")
    size = f"{result.files} files, {result.bytes} bytes"
    return f"snapshot {result.snapshot_id[:8]} of stack {result.stack} ({when}): {size}"


def cmd_uploads_seed(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    code, result = _snapshot_into_tree(ctx, args, "uploads-seed", seed_uploads)
    if code != OK:
        return code
    message = f"done: {_snapshot_words(result)}" + (" (resumed)" if result.resumed else "")
    ctx.say(f"uploads-seed: {message}")
    ctx.audit("uploads-seed", None, "ok", message)
    return OK


def cmd_uploads_aside(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    code, result = _snapshot_into_tree(ctx, args, "uploads-aside", aside_uploads)
    if code != OK:
        return code
    message = (
        f"done: {_snapshot_words(result)}, at {result.path} (root's only); the live uploads were not "
        "touched. Copy back what you need, then remove it"
    )
    ctx.say(f"uploads-aside: {message}")
    ctx.audit("uploads-aside", None, "ok", message)
    return OK


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and not isinstance(exc, BackupFailed):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return str(exc)


def _end(ctx: Context, action: str, result: str, message: str, code: int) -> int:
    ctx.complain(f"{action}: {message}")
    ctx.audit(action, None, result, message)
    return code


Handler = Callable[[Context, argparse.Namespace, "BinaryIO | None"], int]

# subcommand -> (handler, whether it runs under the agent's deploy lock); see agent.COMMANDS.
COMMANDS: Final[dict[str, tuple[Handler, bool]]] = {
    "uploads-backup": (cmd_uploads_backup, False),  # the backup lock only: never blocks a deploy
    "uploads-snapshots": (cmd_uploads_snapshots, False),
    "uploads-status": (cmd_uploads_status, False),
    "uploads-check": (cmd_uploads_check, False),
    # the deploy lock only while the apps are stopped for the final pass (uploads_migrate.py)
    "uploads-migrate": (cmd_uploads_migrate, False),
    "uploads-seed": (cmd_uploads_seed, False),  # the backup lock: one seed, backup or restore at a time
    "uploads-aside": (cmd_uploads_aside, False),
}
AUDITED: Final = frozenset(
    {"uploads-backup", "uploads-check", "uploads-migrate", "uploads-seed", "uploads-aside"}
)


def _percent(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 100:
        raise argparse.ArgumentTypeError(f"expected a whole percentage 0-100, got {text!r}")
    return int(text)


def register(sub: Any) -> None:
    sub.add_parser("uploads-backup", help="snapshot the uploaded files into the bucket's restic repository")
    listing = sub.add_parser("uploads-snapshots", help="the uploads repository's snapshots, newest first")
    listing.add_argument("--json", action="store_true")
    sub.add_parser("uploads-status", help="newest uploads snapshot (time, age) and count, as JSON")
    check = sub.add_parser("uploads-check", help="restic check of the uploads repository")
    check.add_argument(
        "--read-data-percent",
        type=_percent,
        default=0,
        metavar="0-100",
        help="also read back and verify this share of the stored data",
    )
    migrate = sub.add_parser(
        "uploads-migrate", help="move the uploads onto the data volume (once; resumable)"
    )
    migrate.add_argument("--volume", required=True, help="the data volume's mount point (/mnt/bankflow-data)")
    seed = sub.add_parser(
        "uploads-seed", help="fill an empty uploads tree (a new shared share) with a snapshot (resumable)"
    )
    aside = sub.add_parser(
        "uploads-aside", help="a snapshot restored beside the live uploads, nothing else touched"
    )
    for parser in (seed, aside):
        parser.add_argument("--source-stack", help="whose snapshots (default: this stack's)")
        parser.add_argument("--to-time", help="'YYYY-MM-DD HH:MM:SSZ' (UTC): the snapshot at or before it")
