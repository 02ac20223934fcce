"""The backup subcommands of the agent: ``backup``, ``backups [--json]``, ``restore``; their
argparse registration, exit codes and audit lines. Stdlib only.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO, Final

from ...contract.exit_codes import FAILED, LOCKED, OK, USAGE
from .. import state as st
from ..context import Context
from ..runtime import RuntimeFailure
from . import pitr_commands
from .archive import backup_rows, format_age
from .config import (
    BackupFailed,
    BackupLocked,
    BackupSkipped,
    BackupUsageError,
    backup_lock,
    check_bucket,
    check_endpoint,
    load_live_database,
)
from .dump import run_backup
from .restore import DEFAULT_DEADLINE, HEALTH_TIMEOUT, RestoreFailed, RestoreRequest, run_restore
from .storage import open_bucket


def cmd_backup(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    try:
        with backup_lock(ctx.paths, ctx.actor, "backup"):
            result = run_backup(ctx)
    except BackupLocked as exc:
        return _refuse(ctx, "backup", str(exc), LOCKED)
    except BackupSkipped as exc:  # several droplets: another one takes the stack's dump
        ctx.say(f"backup: {exc}")
        return OK
    except (BackupFailed, RuntimeFailure, OSError) as exc:
        message = f"backup: failed: {_describe_failure(exc)}"
        ctx.complain(message)
        ctx.audit("backup", None, "failed", message)
        return FAILED
    message = (
        f"backup: done: {result.key} ({result.size} bytes, sha256 {result.sha256}) uploaded and verified"
    )
    if result.pruned:
        message += f"; removed local files older than the local retention: {', '.join(result.pruned)}"
    ctx.say(message)
    ctx.audit("backup", None, "ok", message)
    return OK


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, BackupFailed | RuntimeFailure):
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
    return f"{type(exc).__name__}: {exc}"


def _refuse(ctx: Context, action: str, message: str, code: int) -> int:
    ctx.complain(f"{action}: {message}")
    ctx.audit(action, None, "refused", message)
    return code


class RestoreCancelled(BackupFailed):
    """SIGTERM/SIGINT, or the deadline's alarm: the restore stops where it is (apps restarted)."""


@contextmanager
def cancellable(deadline: float) -> Iterator[None]:
    """SIGTERM, SIGINT and an alarm at the deadline stop the restore: the running step is
    interrupted (its child process killed), the apps start again, the locks are released."""

    def stop(signum: int, _frame: object) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):
            signal.signal(sig, signal.SIG_IGN)  # once: the apps' restart is not interrupted
        name = signal.Signals(signum).name
        what = "the deadline passed" if signum == signal.SIGALRM else f"cancelled ({name})"
        raise RestoreCancelled(f"{what}: the restore stopped")

    try:
        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)}
    except ValueError:  # not the main thread (tests driving the agent from a thread)
        yield
        return
    signal.setitimer(signal.ITIMER_REAL, max(deadline, 0.001))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_backups(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    live = load_live_database(ctx)
    bucket_name, endpoint = _opt(args, "bucket", check_bucket), _opt(args, "endpoint", check_endpoint)
    try:
        bucket = open_bucket(ctx, live.config, bucket_name, endpoint)
        rows = backup_rows(bucket.list(), dt.datetime.now(dt.UTC))
    except BackupFailed as exc:
        ctx.complain(f"backups: {exc}")
        return FAILED
    if args.json:
        ctx.say(json.dumps(rows, indent=2))
        return OK
    if not rows:
        ctx.say(f"no backups in bucket {bucket.name}")
    for row in rows:
        ctx.say(f"{row['key']}  {row['size']:>14} bytes  {format_age(row['age_seconds']):>8} ago")
    return OK


def _opt(args: argparse.Namespace, name: str, check: Callable[[str], str]) -> str | None:
    value = getattr(args, name, None)
    return check(value) if value is not None else None


def cmd_restore(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    if getattr(args, "discard_previous", False):
        return pitr_commands.cmd_discard_previous(ctx, args)
    target = pitr_commands.pitr_target(args, dt.datetime.now(dt.UTC))
    if target is not None:
        return pitr_commands.cmd_pitr_restore(ctx, args, target)
    if not args.source:
        raise BackupUsageError(
            "restore: give --from KEY|latest, --to-time, --latest, --backup-set or --discard-previous"
        )
    if not args.yes:
        raise BackupUsageError("restore replaces the database with the dump: confirm with --yes")
    bucket_name = _opt(args, "bucket", check_bucket)
    endpoint = _opt(args, "endpoint", check_endpoint)
    if (bucket_name is None) != (endpoint is None):
        raise BackupUsageError("--bucket and --endpoint go together")
    request = RestoreRequest(
        args.source,
        bucket_name,
        endpoint,
        args.health_timeout,
        getattr(args, "of_stack", None),
        args.allow_other_stack,
        args.deadline,
    )
    try:
        with backup_lock(ctx.paths, ctx.actor, "restore"), cancellable(args.deadline):
            result = run_restore(ctx, request)
    except (BackupLocked, st.LockBusy) as exc:
        return _refuse(ctx, "restore", str(exc), LOCKED)
    except BackupUsageError as exc:
        return _refuse(ctx, "restore", f"{exc}; nothing changed", USAGE)
    except (BackupFailed, RuntimeFailure, OSError) as exc:
        message = f"restore: failed: {_describe_failure(exc)}; the database is unchanged"
        extra = exc.problems if isinstance(exc, RestoreFailed) else []
        if extra:
            message += "; ATTENTION: " + "; ".join(extra)
        ctx.complain(message)
        ctx.audit("restore", None, "failed", message)
        return FAILED
    message = f"restore: done: database {result.key} restored ({result.size} bytes)"
    if result.previous:
        message += (
            f"; the previous database is kept as {result.previous}: drop it once the data is confirmed "
            f"(DROP DATABASE {result.previous})"
        )
    if result.problems:
        message += "; ATTENTION: " + "; ".join(result.problems)
    print(message, file=ctx.out if result.apps_healthy else ctx.err, flush=True)
    ctx.audit("restore", None, "ok" if result.apps_healthy else "failed", message
    )
    return OK if result.apps_healthy else FAILED


Handler = Callable[[Context, argparse.Namespace, "BinaryIO | None"], int]

# subcommand -> (handler, whether it runs under the agent's deploy lock); see agent.COMMANDS.
COMMANDS: Final[dict[str, tuple[Handler, bool]]] = {
    "backup": (cmd_backup, False),  # its own lock: a 2-hour dump never blocks a deploy
    "backups": (cmd_backups, False),
    # the deploy lock only while the apps are stopped (restore.py): a slow download never
    # blocks a rollback mid-incident
    "restore": (cmd_restore, False),
    **pitr_commands.COMMANDS,
}
# not under the deploy lock, still on record
AUDITED: Final = frozenset({"backup", "restore"}) | pitr_commands.AUDITED


def register(sub: Any) -> None:
    """Add ``backup``, ``backups``, ``restore`` and the PITR commands to the agent's sub-parsers."""
    pitr_commands.register(sub)
    sub.add_parser("backup", help="dump the database, upload it to the bucket, verify, prune local dumps")
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--bucket", help="another bucket (emergency rebuild: the original stack's)")
    where.add_argument("--endpoint", help="that bucket's S3 endpoint, https://REGION.digitaloceanspaces.com")
    listing = sub.add_parser("backups", parents=[where], help="the bucket's dumps, newest first")
    listing.add_argument("--json", action="store_true")
    restore = sub.add_parser(
        "restore", parents=[where], help="replace the database with a dump from the bucket"
    )
    restore.add_argument("--from", dest="source", metavar="KEY", help="a dump key, or 'latest'")
    pitr_commands.add_restore_arguments(restore)
    restore.add_argument("--yes", action="store_true", help="required: the database is replaced")
    restore.add_argument(
        "--of-stack",
        help="with --from latest: whose dumps (default: this host's stack; a rebuild: the original)",
    )
    restore.add_argument("--health-timeout", type=float, default=HEALTH_TIMEOUT, help=argparse.SUPPRESS)
    restore.add_argument(
        "--allow-other-stack",
        action="store_true",
        help="restore a dump of another stack (replaces this stack's data with that stack's)",
    )
    restore.add_argument(
        "--deadline",
        type=float,
        default=DEFAULT_DEADLINE,
        help="seconds: the restore gives up (apps started again, locks released) by then",
    )
