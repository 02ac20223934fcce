"""The one-time move of the uploads from the droplet's root disk onto the data volume. Stdlib only.

The app containers mount ``/opt/bankflow/uploads`` (``HostPaths.uploads``) in every release.
After the move that path is a symlink to ``<volume>/uploads`` (``layout.DATA_UPLOADS_DIR``), so a
release rendered before the move -- a rollback target -- sees the volume's tree too, never the
stale root-disk copy; Docker resolves the symlink each time a container starts.

The steps, each safe to interrupt (the next run looks at what is there and resumes):

1. copy the root disk's tree into ``<volume>/.uploads-migrating`` while the apps run (the bulk);
2. with the app services stopped (a running container keeps writing into the directory it was
   started with): copy what changed, remove what was deleted, then verify EVERY file of both trees
   by size and sha256 (the same set of files and directories, the same bytes);
3. rename the root disk's tree to ``/opt/bankflow/uploads.root-disk`` (kept: never deleted here),
   rename the staging dir to ``<volume>/uploads``, point the symlink at it (temp link + rename);
4. start the app services again.

A kill before step 3 leaves the root disk's tree in place and serving (the staging dir is resumed
by the next run); a kill inside step 3 leaves a state the next run completes (the root-disk copy
exists, the symlink not yet). The apps are stopped only for step 2 and 3: the delta plus reading
both trees once (downtime ~ tree size / disk read speed; once per droplet).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from ...contract.layout import DATA_UPLOADS_NAME
from .. import state as st
from ..context import Context
from ..files import fsync_dir
from ..manifest import load_manifest
from ..release_dir import projects
from ..switch import restart_apps
from .config import BackupFailed, BackupUsageError

HEALTH_TIMEOUT: Final = 120.0
_TMP_SUFFIX: Final = ".bankflow-migrating"  # a file being copied; an unfinished one is replaced


def migrate_uploads(ctx: Context, volume: Path) -> str:
    """Move the uploads onto ``volume`` once; returns what was done (one line)."""
    if not volume.is_dir():
        raise BackupUsageError(f"--volume {volume}: not a directory (is the data volume mounted?)")
    old, kept = ctx.paths.uploads, ctx.paths.uploads_root_disk_copy
    vol, stage = volume / DATA_UPLOADS_NAME, volume / f".{DATA_UPLOADS_NAME}-migrating"
    if old.is_symlink():
        if Path(os.readlink(old)) != vol:
            raise BackupUsageError(f"{old} is a symlink to {os.readlink(old)}, not to {vol}: fix it by hand")
        vol.mkdir(mode=0o755, exist_ok=True)
        return f"nothing to do: {old} already points at {vol}"
    if not os.path.lexists(old):
        with _apps_stopped(ctx):  # a run killed inside the switch left them stopped
            return _finish_switch(old, kept, vol, stage)
    if _has_entries(vol):
        if _has_entries(old):
            raise BackupUsageError(
                f"both {old} and {vol} hold files: refusing to merge two trees; move one aside by hand"
            )
        old.rmdir()
        _link(old, vol)
        return f"{old} now points at the data volume's existing tree {vol}"
    if vol.is_dir():
        vol.rmdir()  # empty: made by hand or an older bootstrap
    copied = sync_tree(old, stage)
    ctx.say(f"uploads-migrate: copied {copied} files while the apps run; stopping the apps for the last pass")
    with _apps_stopped(ctx):
        sync_tree(old, stage)
        files, size = verify_trees(old, stage)
        os.rename(old, kept)
        os.rename(stage, vol)
        _link(old, vol)
    return (
        f"moved {files} files ({size} bytes) onto the data volume ({vol}), each verified by size and sha256; "
        f"the root disk's copy is kept as {kept}: remove it once the apps are checked"
    )


def _finish_switch(old: Path, kept: Path, vol: Path, stage: Path) -> str:
    if not vol.is_dir():
        if os.path.lexists(kept):
            if not stage.is_dir():
                raise BackupFailed(
                    f"{old} is missing and neither {vol} nor {stage} exists; the tree is {kept}"
                )
            os.rename(stage, vol)  # verified before the root disk's tree was renamed
        else:
            vol.mkdir(mode=0o755)  # a fresh host: no uploads yet
    _link(old, vol)
    return f"{old} points at {vol}" + (f" (resumed; the root disk's copy is {kept})" if kept.exists() else "")


def _has_entries(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _link(link: Path, target: Path) -> None:
    """``link`` -> ``target`` atomically: a temp symlink renamed over the (absent) name."""
    temp = link.with_name(f".{link.name}.bankflow-link")
    if os.path.lexists(temp):
        temp.unlink()
    temp.symlink_to(target)
    os.rename(temp, link)
    fsync_dir(link.parent)


def sync_tree(source: Path, target: Path) -> int:
    """Make ``target`` a copy of ``source`` (modes, times, owners when root); files whose size and
    mtime already match are left alone. Returns how many files were copied."""
    target.mkdir(mode=0o700, parents=True, exist_ok=True)
    copied = 0
    for directory, dirs, files in os.walk(source):
        here = Path(directory)
        there = target / here.relative_to(source)
        wanted = set(dirs) | set(files)
        for name in sorted(os.listdir(there)):
            if name not in wanted:
                _remove(there / name)
        for name in dirs:
            if (here / name).is_symlink():
                raise BackupFailed(f"{here / name} is a symlink: uploads hold files and directories only")
            (there / name).mkdir(exist_ok=True)
        for name in files:
            copied += _copy_file(here / name, there / name)
        _copy_meta(here, there)
    return copied


def _copy_file(src: Path, dst: Path) -> int:
    info = src.lstat()
    if src.is_symlink() or not src.is_file():
        raise BackupFailed(f"{src} is not a regular file: uploads hold files and directories only")
    if dst.is_file() and not dst.is_symlink():
        have = dst.lstat()
        if have.st_size == info.st_size and have.st_mtime_ns == info.st_mtime_ns:
            return 0
    temp = dst.with_name(dst.name + _TMP_SUFFIX)
    shutil.copyfile(src, temp)
    _copy_meta(src, temp)
    with open(temp, "rb") as handle:
        os.fsync(handle.fileno())
    os.rename(temp, dst)
    return 1


def _copy_meta(src: Path, dst: Path) -> None:
    info = src.lstat()
    os.chmod(dst, info.st_mode & 0o7777)
    if os.geteuid() == 0:
        os.chown(dst, info.st_uid, info.st_gid)
    os.utime(dst, ns=(info.st_atime_ns, info.st_mtime_ns))


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def tree_digest(root: Path) -> dict[str, tuple[str, int, str]]:
    """relative path -> (kind, size, sha256) of every entry under ``root``."""
    entries: dict[str, tuple[str, int, str]] = {}
    for directory, dirs, files in os.walk(root):
        here = Path(directory)
        for name in dirs:
            entries[str((here / name).relative_to(root))] = ("dir", 0, "")
        for name in files:
            path = here / name
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            entries[str(path.relative_to(root))] = ("file", path.lstat().st_size, digest.hexdigest())
    return entries


def verify_trees(source: Path, copy: Path) -> tuple[int, int]:
    """Both trees hold the same entries with the same sizes and sha256; returns (files, bytes)."""
    want, have = tree_digest(source), tree_digest(copy)
    wrong = sorted(p for p in set(want) | set(have) if want.get(p) != have.get(p))
    if wrong:
        shown = ", ".join(wrong[:5]) + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "")
        raise BackupFailed(f"verification of the copy in {copy} failed for {shown}; nothing was switched")
    files = [v for v in want.values() if v[0] == "file"]
    return len(files), sum(v[1] for v in files)


@contextmanager
def _apps_stopped(ctx: Context) -> Iterator[None]:
    """The serving release's app services stopped (under the deploy lock), then started again."""
    current = st.read_current(ctx.paths)
    if current is None:  # no release yet (a fresh droplet's bootstrap): nothing writes uploads
        yield
        return
    with st.exclusive_lock(ctx.paths.lock, "uploads-migrate", ctx.actor):
        manifest = load_manifest(ctx.paths.release_dir(current.release))
        app_manifest = load_manifest(ctx.paths.release_dir(current.app_release))
        app, _ = projects(ctx.paths, current.app_release, app_manifest)
        ctx.runtime.stop(app)
        try:
            yield
        finally:
            problems = restart_apps(ctx, current.release, manifest, app, HEALTH_TIMEOUT)
            if problems:
                ctx.complain("uploads-migrate: ATTENTION: " + "; ".join(problems))


