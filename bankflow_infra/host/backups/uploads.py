"""Uploads backups and restores with restic: what the agent's commands and the restore
orchestrator (``restore``, issue 11) call. Stdlib only.

    backup_uploads(ctx)                      one restic snapshot of the uploads tree
    prepare_uploads_restore(ctx, when)       the snapshot at or before ``when`` (None: the newest)
                                             restored into a sibling dir; the live tree untouched
    swap_in_uploads / swap_back_uploads      rename the prepared tree in / put the previous back
    discard_previous_uploads(ctx)            remove the kept ``uploads.previous-<id>`` trees
    uploads_status(ctx)                      newest snapshot time and count, for health

The restored tree is prepared beside the live one on the same filesystem (the data volume on a
stack with one), so the swap is two renames; the previous tree is kept as
``<uploads>.previous-<restore id>`` until ``discard_previous_uploads``. The callers hold the backup
lock (``config.backup_lock``): one backup or restore at a time. The app services must be stopped
around a swap (a running container keeps the directory it was started with).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ...contract.uploads import UPLOADS_TAG
from ..context import Context
from ..files import TEMP_MARK, fsync_dir
from .config import BackupFailed, BackupSkipped, BackupUsageError, skip_reason
from .uploads_restic import Restic, Snapshot, UploadsConfig, load_uploads_config, open_restic

_RESTORING = "restoring"  # .<uploads>-restoring-<id>: restic's scratch target, removed when done
# uploads_seed.py's names inside the tree: its scratch, its journal (and the journal's temp file
# while it is written), the trees it set aside; and a filesystem's own entry at the tree's root (a
# share's or a volume's lost+found). None of them is an upload: the backup leaves them out (a copy
# set aside, or half a restore, is not new data) and a seed never moves one into place.
SCRATCH_PREFIX: Final = ".bankflow-seeding-"
ASIDE_PREFIX: Final = ".bankflow-restored-"
JOURNAL_NAME: Final = ".bankflow-seed.json"
JOURNAL_TEMP_PREFIX: Final = f".{JOURNAL_NAME}{TEMP_MARK}"
FILESYSTEM_ENTRIES: Final = frozenset({"lost+found"})
NOT_UPLOADS_PATTERNS: Final = (
    f"{SCRATCH_PREFIX}*",
    f"{ASIDE_PREFIX}*",
    JOURNAL_NAME,
    f"{JOURNAL_TEMP_PREFIX}*",
    *sorted(FILESYSTEM_ENTRIES),
)


@dataclass(frozen=True)
class UploadsBackup:
    snapshot_id: str
    files: int
    bytes: int
    created_repository: bool


@dataclass
class PreparedUploads:
    restore_id: str
    snapshot_id: str
    snapshot_time: dt.datetime
    live: Path  # the uploads tree the apps use
    path: Path  # the restored tree, a sibling of live until swapped in
    previous: Path  # where swap_in_uploads moves the live tree
    # What swap_in_uploads did, so that swap_back_uploads undoes exactly that and nothing else (a
    # second call, or one before any swap, must never move the live tree): None = not swapped in,
    # else whether there was a live tree to keep as `previous`.
    swapped_with_live: bool | None = None


def backup_uploads(ctx: Context) -> UploadsBackup:
    """One snapshot of the uploads tree (the repository is created on first use)."""
    config = load_uploads_config(ctx)
    skipped = skip_reason(config.backup_droplet, socket.gethostname())
    if skipped is not None:  # the NFS share several droplets mount: one backs it up
        raise BackupSkipped(skipped)
    _require_tree(config)
    restic = open_restic(ctx, config)
    created = restic.ensure_repository()
    out = restic.run(
        "backing up the uploads",
        [
            "backup",
            "--json",
            "--host",
            config.stack,
            "--tag",
            UPLOADS_TAG,
            "--one-file-system",
            # a pattern that starts with / is matched from the filesystem's root down, one path
            # element per element (restic internal/filter): these are the tree's top-level names
            *(f"--exclude={config.uploads_dir}/{pattern}" for pattern in NOT_UPLOADS_PATTERNS),
            str(config.uploads_dir),
        ],
    )
    summary = _summary(out)
    snapshot_id = summary.get("snapshot_id")
    if not isinstance(snapshot_id, str):
        raise BackupFailed("backing up the uploads: restic reported no snapshot id")
    files = int(summary.get("total_files_processed") or 0)
    size = int(summary.get("total_bytes_processed") or 0)
    return UploadsBackup(snapshot_id, files, size, created)


def _require_tree(config: UploadsConfig) -> None:
    if config.uploads_dir.is_symlink() or not config.uploads_dir.is_dir():
        hint = (
            " (the data volume's tree: run `bankflow-agent uploads-migrate`)" if config.on_data_volume else ""
        )
        raise BackupUsageError(
            f"the uploads directory {config.uploads_dir} is missing or not a directory{hint}"
        )


def _summary(out: str) -> dict[str, Any]:
    for line in reversed(out.splitlines()):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("message_type") == "summary":
            return entry
    raise BackupFailed("backing up the uploads: restic printed no summary")


def choose_snapshot(snapshots: list[Snapshot], when: dt.datetime | None, where: str) -> Snapshot:
    """The newest snapshot taken at or before ``when`` (None: the newest of all)."""
    if not snapshots:
        raise BackupUsageError(f"no uploads snapshots in {where}: nothing to restore")
    if when is None:
        return snapshots[-1]
    if when.tzinfo is None:
        raise BackupUsageError(f"target time {when.isoformat()} has no time zone (give it in UTC)")
    before = [s for s in snapshots if s.time <= when]
    if not before:
        first = snapshots[0].time.isoformat(timespec="seconds")
        wanted = when.astimezone(dt.UTC).isoformat(timespec="seconds")
        raise BackupUsageError(
            f"target time {wanted} is before the first uploads "
            f"snapshot ({first}) in {where}: the uploads cannot be restored to that time"
        )
    return before[-1]


def prepare_uploads_restore(
    ctx: Context, target_time: dt.datetime | None, of_stack: str | None = None
) -> PreparedUploads:
    """Restore the chosen snapshot into a sibling of the live tree, verified by restic; the live
    tree is not touched (a failure or a kill leaves only a scratch dir the next call removes).

    Snapshots are per stack (restic's --host); ``of_stack``: another stack's, for a rebuild that
    restores the original stack's uploads (the repository is the environment's bucket's)."""
    config = load_uploads_config(ctx)
    restic = open_restic(ctx, config)
    stack = of_stack or config.stack
    where = f"repository {config.repository} for stack {stack}"
    chosen = choose_snapshot(restic.snapshots(stack), target_time, where)
    if len(chosen.paths) != 1:
        raise BackupFailed(
            f"snapshot {chosen.id[:8]} holds {len(chosen.paths)} paths, expected the uploads dir"
        )
    live = config.uploads_dir
    restore_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    _remove_scratch(live)
    scratch = live.parent / f".{live.name}-{_RESTORING}-{restore_id}"
    prepared = PreparedUploads(
        restore_id,
        chosen.id,
        chosen.time,
        live,
        live.parent / f"{live.name}.restore-{restore_id}",
        live.parent / f"{live.name}.previous-{restore_id}",
    )
    ctx.say(f"uploads: restoring snapshot {chosen.id[:8]} of {chosen.time.isoformat(timespec='seconds')}")
    try:
        scratch.mkdir(mode=0o700, parents=True)
        restore_snapshot_into(restic, chosen, scratch)
        os.rename(scratch / chosen.paths[0].lstrip("/"), prepared.path)
    except BaseException:
        shutil.rmtree(prepared.path, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return prepared


def restore_snapshot_into(restic: Restic, chosen: Snapshot, scratch: Path) -> None:
    """restic's restore of ``chosen`` under ``scratch``, every file read back (``--verify``)."""
    restic.run(
        f"restoring snapshot {chosen.id[:8]}", ["restore", chosen.id, "--target", str(scratch), "--verify"]
    )
    inner = scratch / chosen.paths[0].lstrip("/")
    if not inner.is_dir() or inner.is_symlink():
        raise BackupFailed(f"restoring snapshot {chosen.id[:8]}: restic left no directory {chosen.paths[0]}")


def _remove_scratch(live: Path) -> None:
    """Scratch dirs of restores that were killed: ours by their name, never the live tree."""
    prefix = f".{live.name}-{_RESTORING}-"
    if live.parent.is_dir():
        for entry in live.parent.iterdir():
            if entry.name.startswith(prefix) and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)


def swap_in_uploads(ctx: Context, prepared: PreparedUploads) -> None:
    """The prepared tree becomes the live one; the live one is kept as ``prepared.previous``."""
    had_live = os.path.lexists(prepared.live)
    if had_live:
        os.rename(prepared.live, prepared.previous)
    try:
        os.rename(prepared.path, prepared.live)
    except OSError:
        if had_live:
            os.rename(prepared.previous, prepared.live)
        raise
    prepared.swapped_with_live = had_live
    fsync_dir(prepared.live.parent)
    ctx.say(
        f"uploads: swapped in snapshot {prepared.snapshot_id[:8]}; the previous tree is {prepared.previous}"
    )


def swap_back_uploads(ctx: Context, prepared: PreparedUploads) -> None:
    """Undo swap_in_uploads (or, before it ran, drop the prepared tree): the live tree is the one
    from before the restore again."""
    if prepared.swapped_with_live is not None:  # swapped in: the live tree is the restored one
        os.rename(prepared.live, prepared.path)
        if prepared.swapped_with_live:
            os.rename(prepared.previous, prepared.live)
        prepared.swapped_with_live = None
    shutil.rmtree(prepared.path, ignore_errors=True)  # never the live tree: see swapped_with_live
    fsync_dir(prepared.live.parent)
    ctx.say(f"uploads: the tree from before restore {prepared.restore_id} is live again")


def discard_previous_uploads(ctx: Context) -> list[str]:
    """Remove every kept previous tree (after a confirmed restore); returns their names."""
    live = load_uploads_config(ctx).uploads_dir
    prefix = f"{live.name}.previous-"
    removed = []
    if live.parent.is_dir():
        for entry in sorted(live.parent.iterdir()):
            if entry.name.startswith(prefix) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
                removed.append(entry.name)
    return removed


def uploads_status(ctx: Context) -> dict[str, Any]:
    """The newest snapshot (time, age) and the count, for health and alerts."""
    config = load_uploads_config(ctx)
    snapshots = open_restic(ctx, config).snapshots()
    newest = snapshots[-1] if snapshots else None
    now = dt.datetime.now(dt.UTC)
    return {
        "repository": config.repository,
        "uploads_dir": str(config.uploads_dir),
        "on_data_volume": config.on_data_volume,
        "count": len(snapshots),
        "newest_snapshot": None
        if newest is None
        else {
            "id": newest.id,
            "time": newest.time.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "age_seconds": int((now - newest.time).total_seconds()),
        },
    }


def check_uploads(ctx: Context, read_data_percent: int = 0) -> str:
    """``restic check``: the repository's structure (and with a percentage, that share of the
    data read back and verified); raises BackupFailed when restic finds an error."""
    config = load_uploads_config(ctx)
    args = ["check"] + ([f"--read-data-subset={read_data_percent}%"] if read_data_percent else [])
    out = open_restic(ctx, config).run("checking the uploads repository", args)
    return out.strip().splitlines()[-1] if out.strip() else "no errors were found"


def snapshot_rows(ctx: Context) -> list[dict[str, Any]]:
    config = load_uploads_config(ctx)
    return [
        {
            "id": s.id,
            "time": s.time.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "paths": list(s.paths),
        }
        for s in reversed(open_restic(ctx, config).snapshots())
    ]


