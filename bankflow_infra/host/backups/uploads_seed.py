"""``uploads-seed``: fill an EMPTY uploads tree with another stack's uploads snapshot. Stdlib only.

Why it exists: a scaled stack's uploads are a Network File Storage share mounted at the uploads
directory itself (issue 13). A mount point cannot be renamed, so the restore's swap by rename
(``uploads.py``) cannot put a snapshot in its place; and a stack moving to the scaled shape
(docs/RUNBOOK-managed-database.md) starts on a new, empty share that must receive the old
stack's uploads before customers move. Seeding works INSIDE the tree, never over anything:

1. refuse unless the tree holds nothing but this command's own scratch and journal (a seed
   never replaces or merges into uploads: an operator copies by hand what must be merged);
2. restore the chosen snapshot (``--source-stack``'s, at or before ``--to-time``) with restic's
   ``--verify`` (every file read back after writing) into a scratch dir in the tree itself: the
   same filesystem, so the next step is renames, and nothing lands on the root disk;
3. write a journal naming the scratch, its file count and bytes; move each top entry of the
   restored tree into place (one rename each); check the tree then holds exactly that count and
   those bytes; remove the scratch and the journal.

Interrupted anywhere, the next run finishes the job: before the journal, only the scratch exists
(it is removed and the restore starts again); after it, the remaining renames are done. Nothing
is ever deleted from the tree except this command's scratch.

``uploads-aside``: the same restore into scratch, then ONE rename of the restored tree to
``<uploads>/.bankflow-restored-<snapshot time>-<id>`` beside the live files, which it never
touches: a point in time of a shared tree (no swap possible) for an operator to copy back what was
lost, as the managed database's restore forks the cluster instead of overwriting it. The uploads
backup leaves these names out (``uploads.SEED_PATTERNS``): a copy set aside is not new data.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ..context import Context
from ..files import fsync_dir, write_atomic
from .config import BackupFailed, BackupUsageError
from .uploads import ASIDE_PREFIX, JOURNAL_NAME, SCRATCH_PREFIX, choose_snapshot, restore_snapshot_into
from .uploads_restic import Restic, Snapshot, UploadsConfig, load_uploads_config, open_restic

# a filesystem's own entry (ext4 volumes have one; an NFS share may show the server's)
IGNORED: Final = frozenset({"lost+found"})


@dataclass(frozen=True)
class SeedResult:
    snapshot_id: str
    snapshot_time: dt.datetime
    files: int
    bytes: int
    resumed: bool


@dataclass(frozen=True)
class AsideResult:
    snapshot_id: str
    snapshot_time: dt.datetime
    path: Path
    files: int
    bytes: int


def seed_uploads(ctx: Context, source_stack: str, target_time: dt.datetime | None) -> SeedResult:
    """Fill the empty uploads tree with ``source_stack``'s snapshot at or before ``target_time``
    (None: its newest); resumes an interrupted seed. The caller holds the backup lock."""
    config, live = _open_tree(ctx, "uploads-seed")
    journal = _read_journal(live)
    if journal is not None:
        ctx.say(
            f"uploads-seed: resuming the seed of snapshot {journal['snapshot'][:8]} ({live / JOURNAL_NAME})"
        )
        return _finish(ctx, live, journal, resumed=True)
    _require_empty(live)
    _remove_stale_scratch(live)
    restic = open_restic(ctx, config)
    chosen = _choose(restic, config.repository, source_stack, target_time)
    scratch = _restore_to_scratch(ctx, restic, live, chosen, source_stack)
    journal = _journal(live, scratch, chosen)
    write_atomic(live / JOURNAL_NAME, json.dumps(journal).encode(), 0o600)
    return _finish(ctx, live, journal, resumed=False)


def aside_uploads(ctx: Context, source_stack: str, target_time: dt.datetime | None) -> AsideResult:
    """Put ``source_stack``'s snapshot at or before ``target_time`` BESIDE the live uploads, in
    ``<uploads>/.bankflow-restored-<snapshot time>-<id>``, touching nothing else: the files of a
    point in time on a tree that cannot be swapped (a share every droplet mounts), to copy back
    by hand what was lost. The caller holds the backup lock."""
    config, live = _open_tree(ctx, "uploads-aside")
    if (live / JOURNAL_NAME).exists():
        raise BackupUsageError(
            f"a seed is half done in {live} ({live / JOURNAL_NAME}): run uploads-seed to finish it first"
        )
    _remove_stale_scratch(live)
    restic = open_restic(ctx, config)
    chosen = _choose(restic, config.repository, source_stack, target_time)
    target = live / f"{ASIDE_PREFIX}{chosen.time.strftime('%Y%m%dT%H%M%SZ')}-{chosen.id[:8]}"
    if os.path.lexists(target):
        raise BackupUsageError(f"snapshot {chosen.id[:8]} is already set aside at {target}")
    scratch = _restore_to_scratch(ctx, restic, live, chosen, source_stack)
    try:
        inner = scratch / chosen.paths[0].lstrip("/")
        files, size = tree_totals(inner)
        os.rename(inner, target)  # one rename: the tree appears whole or not at all
        fsync_dir(live)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return AsideResult(chosen.id, chosen.time, target, files, size)


def _open_tree(ctx: Context, command: str) -> tuple[UploadsConfig, Path]:
    config = load_uploads_config(ctx)
    here = socket.gethostname()
    if config.backup_droplet not in (None, here):  # two droplets on one share would race
        raise BackupUsageError(
            f"this droplet ({here}) is not {config.backup_droplet}, which takes the "
            f"stack's backups of the shared uploads: run {command} there"
        )
    live = config.uploads_dir
    if live.is_symlink() or not live.is_dir():
        raise BackupUsageError(f"the uploads directory {live} is missing or not a directory")
    return config, live


def _choose(restic: Restic, repository: str, stack: str, target_time: dt.datetime | None) -> Snapshot:
    chosen = choose_snapshot(
        restic.snapshots(stack), target_time, f"repository {repository} for stack {stack}"
    )
    if len(chosen.paths) != 1:
        raise BackupFailed(
            f"snapshot {chosen.id[:8]} holds {len(chosen.paths)} paths, expected the uploads dir"
        )
    return chosen


def _restore_to_scratch(ctx: Context, restic: Restic, live: Path, chosen: Snapshot, stack: str) -> Path:
    """The snapshot restored (restic ``--verify``) into a new scratch dir in the tree itself (the
    same filesystem: what follows is renames); a failure removes the scratch."""
    scratch = live / f"{SCRATCH_PREFIX}{dt.datetime.now(dt.UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    ctx.say(
        f"uploads: restoring snapshot {chosen.id[:8]} of stack {stack} "
        f"({chosen.time.isoformat(timespec='seconds')}) into {scratch}"
    )
    scratch.mkdir(mode=0o700)
    try:
        restore_snapshot_into(restic, chosen, scratch)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return scratch


def _remove_stale_scratch(live: Path) -> None:
    for stale in _scratch_dirs(live):  # a seed or aside killed before its journal or rename
        shutil.rmtree(stale)


def _journal(live: Path, scratch: Path, chosen: Snapshot) -> dict[str, Any]:
    inner = scratch / chosen.paths[0].lstrip("/")
    files, size = tree_totals(inner)
    return {
        "scratch": scratch.name,
        "inner": inner.relative_to(live).as_posix(),
        "snapshot": chosen.id,
        "snapshot_time": chosen.time.isoformat(),
        "files": files,
        "bytes": size,
    }


def _finish(ctx: Context, live: Path, journal: dict[str, Any], resumed: bool) -> SeedResult:
    inner = live / journal["inner"]
    if inner.is_dir():
        for entry in sorted(inner.iterdir()):
            _move_into_place(entry, live / entry.name)
        fsync_dir(live)
    files, size = tree_totals(live, skip=_own_names(live))
    if (files, size) != (journal["files"], journal["bytes"]):
        raise BackupFailed(
            f"after moving snapshot {journal['snapshot'][:8]} into {live}: {files} files, {size} bytes; "
            f"the snapshot restored {journal['files']} files, {journal['bytes']} bytes. Something else "
            f"writes into {live}: stop it and look before anything else ({live / JOURNAL_NAME} is kept)"
        )
    shutil.rmtree(live / journal["scratch"], ignore_errors=True)
    (live / JOURNAL_NAME).unlink()
    fsync_dir(live)
    when = dt.datetime.fromisoformat(journal["snapshot_time"])
    return SeedResult(journal["snapshot"], when, files, size, resumed)


def _move_into_place(source: Path, target: Path) -> None:
    if os.path.lexists(target):
        # the seed started on an empty tree: something else wrote this name since. os.rename
        # would replace a file silently, so nothing is moved over it.
        raise BackupFailed(
            f"{target} appeared in the uploads tree during the seed: nothing was moved over it; stop "
            f"whatever writes there, then run uploads-seed again (it resumes)"
        )
    os.rename(source, target)


def _require_empty(live: Path) -> None:
    found = sorted(e.name for e in live.iterdir() if e.name not in _own_names(live))
    if found:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise BackupUsageError(
            f"the uploads directory {live} is not empty ({len(found)} entries: {shown}): uploads-seed only "
            "fills an empty tree and never replaces or merges uploads; for a stack's own uploads use "
            "`bankflow-infra restore` (data volume) or copy the files you need by hand"
        )


def _own_names(live: Path) -> frozenset[str]:
    return frozenset({JOURNAL_NAME, *IGNORED, *(p.name for p in _scratch_dirs(live))})


def _scratch_dirs(live: Path) -> list[Path]:
    return [
        p for p in live.iterdir() if p.name.startswith(SCRATCH_PREFIX) and p.is_dir() and not p.is_symlink()
    ]


_JOURNAL_KEYS: Final = {
    "scratch": str,
    "inner": str,
    "snapshot": str,
    "snapshot_time": str,
    "files": int,
    "bytes": int,
}


def _read_journal(live: Path) -> dict[str, Any] | None:
    path = live / JOURNAL_NAME
    if not path.is_file():
        return None
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BackupFailed(f"{path}: not JSON ({exc}); look at {live} before removing it") from None
    if (
        not isinstance(journal, dict)
        or any(not isinstance(journal.get(key), kind) for key, kind in _JOURNAL_KEYS.items())
        or not journal["scratch"].startswith(SCRATCH_PREFIX)
        or "/" in journal["scratch"]
        or not journal["inner"].startswith(journal["scratch"] + "/")
        or ".." in journal["inner"].split("/")
    ):
        raise BackupFailed(
            f"{path}: not a seed journal this command wrote; look at {live} before removing it"
        )
    return journal


def tree_totals(root: Path, skip: frozenset[str] = frozenset()) -> tuple[int, int]:
    """Regular files under ``root`` and their bytes (top-level names in ``skip`` left out)."""
    files = size = 0
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == str(root):
            dirnames[:] = [d for d in dirnames if d not in skip]
            filenames = [f for f in filenames if f not in skip]
        for name in filenames:
            status = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(status.st_mode):
                files += 1
                size += status.st_size
    return files, size
