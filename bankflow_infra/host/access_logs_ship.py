"""``access-logs-ship --dir DIR --name access.log --prefix access-logs/<droplet>``: nginx's rotated
access logs into the backups bucket (Marco Civil da Internet art. 15), from a systemd timer.

Stdlib only. For each rotated file (``access.log-<stamp>``, oldest first): read it safely
(``access_logs.py``) into a gzip in a root-only spool, upload it with rclone and the droplet's
Spaces key (the current release's ``backup/backup.json`` and ``secrets/rclone.conf``, as the
database backups), check the object's size and MD5, and only then remove the local file.

- Never overwrite: the object's name is the file's name plus its text's sha256, so a re-run finds
  the same object there (checked, nothing uploaded twice); an object of that name with other
  content is an error and the local file is kept.
- Nothing lost: a run killed at any point leaves the local file (removed last); an object
  written by a killed upload is either absent (S3 writes are all-or-nothing) or complete.
- A failed upload fails the run (exit 1, the unit shows failed) and the file waits for the next
  run; the other files are still tried.
Retention is the bucket's: a lifecycle rule expires the prefix (components/backups.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Final

from ..contract import exit_codes
from ..contract.release import BACKUP_CONFIG_FILE
from . import state as st
from .access_logs import (
    SETTLE_SECONDS,
    Refused,
    compress_rotated,
    object_name,
    open_log_dir,
    remove_rotated,
    rotated_names,
)
from .backups.archive import digest_file
from .backups.config import BackupConfig, BackupFailed, BackupUsageError, ensure_private_dir, parse_config
from .backups.storage import Bucket, open_bucket, verify_remote
from .context import Context

COMMAND: Final = "access-logs-ship"
LOCK_NAME: Final = "access-logs.lock"
SPOOL_NAME: Final = "access-logs-spool"  # under state/ (root only): the gzip being uploaded
_PREFIX_RE: Final = re.compile(r"^[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*$")
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,100}$")


@dataclass
class ShipReport:
    shipped: list[str] = field(default_factory=list)  # one line per file now in the bucket
    kept: list[str] = field(default_factory=list)  # left for a later run, with the reason
    failed: list[str] = field(default_factory=list)  # an upload or a check failed


def ship_one(
    bucket: Bucket, dir_fd: int, name: str, prefix: str, spool: Path, now: float, settle: float
) -> str:
    """One rotated file into the bucket, verified, then removed here. Raises Refused (left for a
    later run) or BackupFailed (the upload or its check failed; the file is kept)."""
    staged = spool / f"{name}.gz"
    try:
        rotated = compress_rotated(dir_fd, name, staged, now, settle)
        key = f"{prefix}/{object_name(rotated)}"
        local = digest_file(staged)
        existing = bucket.stat(key)
        if existing is None:
            bucket.upload(staged, key)
            how = "uploaded"
        elif (existing.size, existing.md5 or local.md5) != (local.size, local.md5):
            raise BackupFailed(
                f"{key} is already in bucket {bucket.name} with other content: never overwritten; {name} kept"
            )
        else:
            how = "already in the bucket (an earlier run stopped before removing it)"
        verify_remote(bucket, key, local)
        remove_rotated(dir_fd, rotated)
        return f"{name} -> {key}: {how}, {rotated.size} bytes of log, removed here"
    finally:
        staged.unlink(missing_ok=True)


def ship_access_logs(
    bucket: Bucket,
    directory: Path,
    log_name: str,
    prefix: str,
    spool: Path,
    settle: float = SETTLE_SECONDS,
    now: float | None = None,
) -> ShipReport:
    report = ShipReport()
    with open_log_dir(directory) as dir_fd:
        for name in rotated_names(os.listdir(dir_fd), log_name):
            try:
                report.shipped.append(
                    ship_one(bucket, dir_fd, name, prefix, spool, time.time() if now is None else now, settle)
                )
            except Refused as exc:
                report.kept.append(str(exc))
            except BackupFailed as exc:
                report.failed.append(f"{name}: {exc}")
    return report


def current_backup_config(ctx: Context) -> BackupConfig:
    """The serving release's bucket settings (the same bucket and key as the database dumps)."""
    current = st.read_current(ctx.paths)
    if current is None:
        raise BackupUsageError("no release deployed yet: no bucket to ship access logs to")
    path = ctx.paths.release_dir(current.release) / BACKUP_CONFIG_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupUsageError(f"release {current.release} has no {BACKUP_CONFIG_FILE}: no bucket") from None
    except ValueError as exc:
        raise BackupUsageError(f"{path}: not JSON ({exc})") from None
    return parse_config(document, str(path))


def check_arguments(args: argparse.Namespace) -> None:
    if not args.dir.is_absolute():
        raise BackupUsageError(f"--dir: {str(args.dir)!r} is not an absolute path")
    if not _NAME_RE.match(args.name):
        raise BackupUsageError(f"--name: {args.name!r} is not a file name (letters, digits, . _ -)")
    if not _PREFIX_RE.match(args.prefix):
        raise BackupUsageError(f"--prefix: {args.prefix!r} is not a bucket path like access-logs/<droplet>")
    if not 0 <= args.settle <= 3600:
        raise BackupUsageError(f"--settle: {args.settle} is not a number of seconds in 0..3600")


def cmd_access_logs_ship(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    check_arguments(args)
    bucket = open_bucket(ctx, current_backup_config(ctx))
    spool = ctx.paths.state / SPOOL_NAME
    ensure_private_dir(spool)
    try:
        with st.exclusive_lock(ctx.paths.state / LOCK_NAME, COMMAND, ctx.actor):
            report = ship_access_logs(bucket, args.dir, args.name, args.prefix, spool, args.settle)
    except st.LockBusy as exc:
        ctx.say(f"{COMMAND}: another run is shipping ({exc}); nothing done")
        return exit_codes.OK
    except Refused as exc:  # the directory itself
        raise BackupFailed(str(exc)) from None
    for line in report.shipped:
        ctx.say(f"{COMMAND}: {line}")
    for line in report.kept:
        ctx.say(f"{COMMAND}: kept {line}")
    for line in report.failed:
        ctx.complain(f"{COMMAND}: failed: {line} (retried next run)")
    if not report.shipped and not report.failed:
        ctx.say(f"{COMMAND}: nothing to ship in {args.dir}")
    return exit_codes.FAILED if report.failed else exit_codes.OK


Handler = Callable[[Context, argparse.Namespace, "BinaryIO | None"], int]
COMMANDS: Final[dict[str, tuple[Handler, bool]]] = {COMMAND: (cmd_access_logs_ship, False)}


def register(sub: Any) -> None:
    parser = sub.add_parser(COMMAND, help="upload nginx's rotated access logs to the backups bucket (timer)")
    parser.add_argument("--dir", type=Path, required=True, help="nginx's log directory on the host")
    parser.add_argument("--name", required=True, help="the access log's file name (access.log)")
    parser.add_argument("--prefix", required=True, help="folder in the bucket: access-logs/<droplet>")
    parser.add_argument(
        "--settle", type=float, default=SETTLE_SECONDS, help="seconds without a write before a file ships"
    )
