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
3. refuse a snapshot without a single file (a lost share is backed up empty every 5 minutes:
   the newest snapshot is then the empty one, and "done: 0 files" would hide that);
4. write a journal naming the source, the scratch, its file count and bytes; move each top entry
   of the restored tree into place (one rename each); check the tree then holds exactly that
   count and those bytes; remove the scratch and the journal.

Interrupted anywhere, the next run of the same command finishes the job: before the journal, only
the scratch exists (it is removed and the restore starts again); after it, the remaining renames
are done. Nothing is ever deleted from the tree except this command's scratch. The tree is
writable by the apps, so nothing in it is trusted that root did not make: the journal and the
scratch must be root's own (not links, owner and mode checked) and the restored tree must lie
inside the scratch, or the command stops.

``uploads-aside``: the same restore into scratch, then ONE rename of the restored tree to
``<uploads>/.bankflow-restored-<snapshot time>-<id>`` beside the live files, which it never
touches: a point in time of a shared tree (no swap possible) for an operator to copy back what was
lost, as the managed database's restore forks the cluster instead of overwriting it. The uploads
backup leaves these names out (``uploads.NOT_UPLOADS_PATTERNS``): a copy set aside is not new
data. The copy is made 0700 (root's; the apps cannot read or change what was deliberately
deleted).
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
from .uploads import (
    ASIDE_PREFIX,
    FILESYSTEM_ENTRIES,
    JOURNAL_NAME,
    JOURNAL_TEMP_PREFIX,
    SCRATCH_PREFIX,
    choose_snapshot,
    restore_snapshot_into,
)
from .uploads_restic import Restic, Snapshot, UploadsConfig, load_uploads_config, open_restic


@dataclass(frozen=True)
class Request:
    """What to restore: ``source_stack`` None = the stack's own snapshots; ``target_time`` None =
    the newest."""

    source_stack: str | None
    target_time: dt.datetime | None


@dataclass(frozen=True)
class SeedResult:
    stack: str
    snapshot_id: str
    snapshot_time: dt.datetime
    files: int
    bytes: int
    resumed: bool


@dataclass(frozen=True)
class AsideResult:
    stack: str
    snapshot_id: str
    snapshot_time: dt.datetime
    path: Path
    files: int
    bytes: int


def seed_uploads(ctx: Context, request: Request) -> SeedResult:
    """Fill the empty uploads tree with the requested snapshot; resumes an interrupted seed of the
    same request. The caller holds the backup lock."""
    config, live = _open_tree(ctx, "uploads-seed")
    stack = request.source_stack or config.stack
    journal = _read_journal(live)
    if journal is not None:
        _require_same_request(live, journal, request, stack)
        ctx.say(
            f"uploads-seed: resuming the seed of snapshot {journal['snapshot'][:8]} ({live / JOURNAL_NAME})"
        )
        return _finish(live, journal, resumed=True)
    _require_empty(live)
    _remove_stale_scratch(live)
    restic = open_restic(ctx, config)
    chosen = _choose(restic, config.repository, stack, request.target_time)
    scratch = _restore_to_scratch(ctx, restic, live, chosen, stack)
    journal = _journal(live, scratch, chosen, stack, request)
    write_atomic(live / JOURNAL_NAME, json.dumps(journal).encode(), 0o600)
    return _finish(live, journal, resumed=False)


def aside_uploads(ctx: Context, request: Request) -> AsideResult:
    """Put the requested snapshot BESIDE the live uploads, in
    ``<uploads>/.bankflow-restored-<snapshot time>-<id>``, touching nothing else: the files of a
    point in time on a tree that cannot be swapped (a share every droplet mounts), to copy back
    by hand what was lost. The caller holds the backup lock."""
    config, live = _open_tree(ctx, "uploads-aside")
    stack = request.source_stack or config.stack
    if os.path.lexists(live / JOURNAL_NAME):
        raise BackupUsageError(
            f"a seed is half done in {live} ({live / JOURNAL_NAME}): run uploads-seed to finish it first"
        )
    _remove_stale_scratch(live)
    restic = open_restic(ctx, config)
    chosen = _choose(restic, config.repository, stack, request.target_time)
    target = live / f"{ASIDE_PREFIX}{chosen.time.strftime('%Y%m%dT%H%M%SZ')}-{chosen.id[:8]}"
    if os.path.lexists(target):
        raise BackupUsageError(f"snapshot {chosen.id[:8]} is already set aside at {target}")
    scratch = _restore_to_scratch(ctx, restic, live, chosen, stack)
    try:
        inner = scratch / chosen.paths[0].lstrip("/")
        files, size = _restored_totals(scratch, inner, chosen, stack)
        os.chmod(inner, 0o700)  # root's: the apps share this tree
        os.rename(inner, target)  # one rename: the tree appears whole or not at all
        fsync_dir(live)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return AsideResult(stack, chosen.id, chosen.time, target, files, size)


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


def _restored_totals(scratch: Path, inner: Path, chosen: Snapshot, stack: str) -> tuple[int, int]:
    """Files and bytes the snapshot restored (a filesystem's own entries left out); a snapshot
    without a single file is refused (and its scratch removed)."""
    files, size = tree_totals(inner, skip=FILESYSTEM_ENTRIES)
    if files == 0:
        shutil.rmtree(scratch, ignore_errors=True)
        raise BackupUsageError(
            f"snapshot {chosen.id[:8]} of stack {stack} ({chosen.time.isoformat(timespec='seconds')}) holds "
            "no file: nothing to restore. A lost share is backed up empty every 5 minutes: give --to-time "
            "from before the loss (bankflow-agent uploads-snapshots lists them)"
        )
    return files, size


def _remove_stale_scratch(live: Path) -> None:
    for stale in _scratch_dirs(live):  # a seed or aside killed before its journal or rename
        shutil.rmtree(stale)


def _journal(live: Path, scratch: Path, chosen: Snapshot, stack: str, request: Request) -> dict[str, Any]:
    inner = scratch / chosen.paths[0].lstrip("/")
    files, size = _restored_totals(scratch, inner, chosen, stack)
    return {
        "stack": stack,
        "to_time": None if request.target_time is None else request.target_time.isoformat(),
        "scratch": scratch.name,
        "inner": inner.relative_to(live).as_posix(),
        "snapshot": chosen.id,
        "snapshot_time": chosen.time.isoformat(),
        "files": files,
        "bytes": size,
    }


def _finish(live: Path, journal: dict[str, Any], resumed: bool) -> SeedResult:
    inner = _trusted_inner(live, journal)
    if inner is not None:
        for entry in sorted(inner.iterdir()):
            if entry.name not in FILESYSTEM_ENTRIES:  # the target has its own (or none)
                _move_into_place(entry, live / entry.name)
        fsync_dir(live)
    files, size = tree_totals(live, skip=_own_names(live))
    if (files, size) != (journal["files"], journal["bytes"]):
        raise BackupFailed(
            f"after moving snapshot {journal['snapshot'][:8]} into {live}: {files} files, {size} bytes; "
            f"the snapshot restored {journal['files']} files, {journal['bytes']} bytes. Something else "
            f"writes into {live}: find it and stop it. Every entry of the snapshot is in place; to accept "
            f"the tree as it is, remove {live / JOURNAL_NAME} and {live / journal['scratch']}"
        )
    shutil.rmtree(live / journal["scratch"], ignore_errors=True)
    (live / JOURNAL_NAME).unlink()
    fsync_dir(live)
    when = dt.datetime.fromisoformat(journal["snapshot_time"])
    return SeedResult(journal["stack"], journal["snapshot"], when, files, size, resumed)


def _move_into_place(source: Path, target: Path) -> None:
    # The seed started on an empty tree: a name there now was written by something else since, and
    # nothing is moved over it. (os.rename would replace a file silently; the window between this
    # check and the rename is what remains, for a tree nothing should write to during a seed.)
    if os.path.lexists(target):
        raise BackupFailed(
            f"{target} appeared in the uploads tree during the seed and is not from the snapshot: nothing "
            f"was moved over it. Stop whatever writes there, move {target} out of the tree, then run "
            "uploads-seed again (it resumes)"
        )
    os.rename(source, target)


def _require_empty(live: Path) -> None:
    found = sorted(e.name for e in live.iterdir() if e.name not in _own_names(live))
    if found:
        shown = ", ".join(found[:3]) + (", ..." if len(found) > 3 else "")
        raise BackupUsageError(
            f"the uploads directory {live} is not empty ({len(found)} entries: {shown}): uploads-seed only "
            "fills an empty tree and never replaces or merges uploads; for a stack's own uploads use "
            "`bankflow-infra restore` (data volume), `uploads-aside` (a shared share) or copy by hand"
        )


def _own_names(live: Path) -> frozenset[str]:
    temp = {e.name for e in live.iterdir() if e.name.startswith(JOURNAL_TEMP_PREFIX)}
    return frozenset({JOURNAL_NAME, *FILESYSTEM_ENTRIES, *temp, *(p.name for p in _scratch_dirs(live))})


def _roots_own(path: Path, kind: int) -> bool:
    """``path`` is of ``kind`` (stat.S_IFDIR/S_IFREG), not a link, and owned by this (root) user:
    something the apps sharing the tree could not have planted."""
    try:
        status = path.lstat()
    except FileNotFoundError:
        return False
    return stat.S_IFMT(status.st_mode) == kind and status.st_uid == os.geteuid()


def _scratch_dirs(live: Path) -> list[Path]:
    return [p for p in live.iterdir() if p.name.startswith(SCRATCH_PREFIX) and _roots_own(p, stat.S_IFDIR)]


def _trusted_inner(live: Path, journal: dict[str, Any]) -> Path | None:
    """The restored tree the journal names, checked to lie inside root's scratch through real
    directories only (no link leads the renames elsewhere); None when already emptied away."""
    scratch, inner = live / str(journal["scratch"]), live / str(journal["inner"])
    if not os.path.lexists(scratch):
        return None
    if not _roots_own(scratch, stat.S_IFDIR):
        raise BackupFailed(f"{scratch} is not a directory of root's: refusing to move anything out of it")
    if not os.path.lexists(inner):
        return None
    if os.path.realpath(inner) != os.path.join(os.path.realpath(scratch), inner.relative_to(scratch)):
        raise BackupFailed(f"{inner} leads outside {scratch} (a link): refusing to move anything out of it")
    return inner


def _require_same_request(live: Path, journal: dict[str, Any], request: Request, stack: str) -> None:
    wanted = None if request.target_time is None else request.target_time.isoformat()
    if journal["stack"] != stack or journal["to_time"] != wanted:
        given = f"--source-stack {journal['stack']}" + (
            f" --to-time '{dt.datetime.fromisoformat(journal['to_time']).strftime('%Y-%m-%d %H:%M:%SZ')}'"
            if journal["to_time"]
            else ""
        )
        raise BackupUsageError(
            f"a seed of stack {journal['stack']}'s snapshot {journal['snapshot'][:8]} is half done in "
            f"{live}: run it again as it was given ({given}) to finish it"
        )


_JOURNAL_KEYS: Final = {
    "stack": str,
    "scratch": str,
    "inner": str,
    "snapshot": str,
    "snapshot_time": str,
    "files": int,
    "bytes": int,
}


def _read_journal(live: Path) -> dict[str, Any] | None:
    path = live / JOURNAL_NAME
    if not os.path.lexists(path):
        return None
    if not _roots_own(path, stat.S_IFREG) or path.lstat().st_mode & 0o077:
        raise BackupFailed(
            f"{path} is not a journal this command wrote (a link, or not root's 0600 file): look "
            f"at it and at {live} before removing it"
        )
    try:
        journal = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise BackupFailed(f"{path}: not JSON ({exc}); look at it and at {live} before removing it") from None
    if (
        not isinstance(journal, dict)
        or any(not isinstance(journal.get(key), kind) for key, kind in _JOURNAL_KEYS.items())
        or not isinstance(journal.get("to_time"), str | None)
        or not journal["scratch"].startswith(SCRATCH_PREFIX)
        or "/" in journal["scratch"]
        or not journal["inner"].startswith(journal["scratch"] + "/")
        or ".." in journal["inner"].split("/")
    ):
        raise BackupFailed(
            f"{path}: not a seed journal this command wrote; look at it and at {live} before removing it"
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
