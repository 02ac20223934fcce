"""Durable file writes on the host: full write, fsync, rename, fsync of the directory.

Stdlib only. nginx and the next agent run read these files, so a crash or a full disk must leave
either the old content or the new one, never half a file:

- :func:`write_atomic` loops on short writes (``os.write`` may write less than asked), fsyncs
  the temp file, renames it over the target and fsyncs the directory (the rename itself is only
  durable once the directory is). Any ``OSError`` (ENOSPC, EIO, EDQUOT...) removes the temp file
  and raises :class:`WriteFailed` naming the file: the target is untouched.
- :func:`write_in_place` is for the one file that must keep its inode (a single-file bind mount):
  it proves the space first with a scratch copy, so a full disk fails before truncating.
- :func:`check_free_space` is what a deploy calls before it touches anything.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..contract.layout import SECRET_DIR_MODE, SECRET_FILE_MODE

TEMP_MARK = ".tmp-"  # every temp name holds it (".<name>.tmp-<pid>"): reconcile prunes leftovers


class WriteFailed(OSError):
    """A file could not be written; nothing was replaced. The message names the file."""

    def __init__(self, path: Path, cause: OSError) -> None:
        reason = cause.strerror or str(cause)
        name = errno.errorcode.get(cause.errno or 0, "")
        super().__init__(
            cause.errno, f"cannot write {path}: {reason}{f' ({name})' if name else ''}; nothing was replaced"
        )
        self.path = path

    def __str__(self) -> str:
        return str(self.strerror)


def temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}")


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until every byte is written: one call may write fewer bytes than asked."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:  # pragma: no cover - a regular file never returns 0 for a non-empty write
            raise OSError(errno.EIO, "write returned 0")
        view = view[written:]


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temp file created with ``mode`` from the start (a secret is never readable)."""
    tmp = temp_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)  # O_CREAT's mode is masked by umask
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, WriteFailed):
            raise
        raise WriteFailed(path, exc) from None


def write_json(path: Path, value: object) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def write_in_place(path: Path, data: bytes, mode: int) -> None:
    """Overwrite keeping the inode: a single-file bind mount (origin.key) still sees the new content.

    A scratch copy is written (and fsynced) first, so ENOSPC/EIO fail before the file is
    truncated; only a disk filled by someone else in between could still cut it short.
    """
    scratch = temp_name(path)
    write_atomic(scratch, data, mode)
    scratch.unlink()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        try:
            os.fchmod(fd, mode)
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise WriteFailed(path, exc) from None


def lock_down_secrets(directory: Path) -> None:
    """0700 on a secrets dir and 0600 on its files, whatever mode they arrived with."""
    if directory.is_dir():
        os.chmod(directory, SECRET_DIR_MODE)
        for path in directory.iterdir():
            if path.is_file():
                os.chmod(path, SECRET_FILE_MODE)


def mirror_files(
    source: Path,
    target: Path,
    mode: int | None,
    keep: frozenset[str] = frozenset(),
    in_place: frozenset[str] = frozenset(),
) -> None:
    """Make ``target`` hold exactly ``source``'s files (recursively), except names in ``keep``.

    ``mode`` None keeps each source file's mode. Unchanged files are not rewritten. Contents
    are never printed or logged. A missing ``source`` is an error, never "delete everything".
    Names in ``in_place`` are overwritten keeping their inode (single-file bind mounts).
    """
    if not source.is_dir():
        raise FileNotFoundError(errno.ENOENT, f"{source} is missing: refusing to empty {target}")
    wanted: set[str] = set()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = path.relative_to(source).as_posix()
        if rel in keep:
            continue
        wanted.add(rel)
        dest = target / rel
        data = path.read_bytes()
        file_mode = mode if mode is not None else path.stat().st_mode & 0o777
        if dest.is_file() and dest.read_bytes() == data and dest.stat().st_mode & 0o777 == file_mode:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        (write_in_place if rel in in_place and dest.is_file() else write_atomic)(dest, data, file_mode)
    for path in sorted((p for p in target.rglob("*") if p.is_file()), reverse=True):
        rel = path.relative_to(target).as_posix()
        if rel not in wanted and rel not in keep:
            path.unlink()


def same_files(source: Path, target: Path, ignore: frozenset[str] = frozenset()) -> bool:
    """Whether ``target`` holds exactly ``source``'s files (names in ``ignore`` aside)."""
    return {k: v for k, v in snapshot(source).items() if k not in ignore} == {
        k: v for k, v in snapshot(target).items() if k not in ignore
    }


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """relative path -> (content, mode) of every file: what a failed switch restores."""
    if not directory.is_dir():
        return {}
    return {
        p.relative_to(directory).as_posix(): (p.read_bytes(), p.stat().st_mode & 0o777)
        for p in directory.rglob("*")
        if p.is_file() and TEMP_MARK not in p.name
    }


def restore(directory: Path, files: Mapping[str, tuple[bytes, int]], in_place: bool = False) -> None:
    """Put a :func:`snapshot` back: new files go, changed ones get their old content and mode."""
    for path in sorted((p for p in directory.rglob("*") if p.is_file()), reverse=True):
        if path.relative_to(directory).as_posix() not in files:
            path.unlink()
    for rel, (content, mode) in files.items():
        dest = directory / rel
        if dest.is_file() and dest.read_bytes() == content and dest.stat().st_mode & 0o777 == mode:
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        (write_in_place if in_place and dest.is_file() else write_atomic)(dest, content, mode)


def copy_bundle(source: Path, target: Path) -> None:
    """Copy a bundle into ``releases/<release>`` (temp dir + rename: never half a release)."""
    tmp = temp_name(target)
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        _copy_tree(source, tmp)
        lock_down_secrets(tmp / "secrets")
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise WriteFailed(target, exc) from None


def _copy_tree(source: Path, target: Path) -> None:
    """Files and modes (symlinks followed); the first error stops it (copytree would collect
    them into one shutil.Error and lose the errno)."""
    target.mkdir(mode=0o755)
    for path in sorted(source.rglob("*")):
        dest = target / path.relative_to(source)
        if path.is_dir():
            dest.mkdir(mode=0o755, exist_ok=True)
        elif path.is_file():
            shutil.copyfile(path, dest)
            shutil.copymode(path, dest)


def tree_size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def check_free_space(directory: Path, needed: int, what: str) -> None:
    """Refuse (ENOSPC, naming the directory and both figures) when ``needed`` bytes do not fit."""
    stats = os.statvfs(directory)
    free = stats.f_bavail * stats.f_frsize
    if free < needed:
        raise WriteFailed(
            directory,
            OSError(
                errno.ENOSPC,
                f"{what} needs {needed // 1024} KiB, {free // 1024} KiB free on the file system of "
                f"{directory}; free some space first",
            ),
        )


# --------------------------------------------------------------------------- undo snapshots


@dataclass(frozen=True)
class Snapshot:
    """A directory as it was, kept by HARD LINKS in ``store``: every write here replaces a file by
    rename (a new inode), so the old inode lives on in the store, and putting it back needs no
    new data blocks -- a revert still works on a disk a failed write has just filled. Files that
    are rewritten in place (``in_memory``) are kept as bytes instead."""

    directory: Path
    store: Path
    linked: frozenset[str]
    in_memory: Mapping[str, tuple[bytes, int]]


def take_snapshot(directory: Path, store: Path, in_place: frozenset[str] = frozenset()) -> Snapshot:
    shutil.rmtree(store, ignore_errors=True)
    store.mkdir(parents=True, mode=0o700)
    linked: set[str] = set()
    in_memory: dict[str, tuple[bytes, int]] = {}
    files = sorted(p for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else []
    for path in files:
        rel = path.relative_to(directory).as_posix()
        if TEMP_MARK in path.name:
            continue
        if rel in in_place:
            in_memory[rel] = (path.read_bytes(), path.stat().st_mode & 0o777)
            continue
        (store / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(path, store / rel)
        linked.add(rel)
    return Snapshot(directory, store, frozenset(linked), in_memory)


def put_back(snapshot: Snapshot) -> None:
    """Make the directory hold the snapshot's files again (by rename of hard links)."""
    directory, kept = snapshot.directory, snapshot.linked | set(snapshot.in_memory)
    try:
        for path in sorted((p for p in directory.rglob("*") if p.is_file()), reverse=True):
            if path.relative_to(directory).as_posix() not in kept and TEMP_MARK not in path.name:
                path.unlink()
        for rel in sorted(snapshot.linked):
            source, dest = snapshot.store / rel, directory / rel
            if dest.exists() and os.path.samefile(source, dest):
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = temp_name(dest)
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            os.link(source, tmp)
            os.replace(tmp, dest)
        for rel, (content, mode) in snapshot.in_memory.items():
            dest = directory / rel
            if not (dest.is_file() and dest.read_bytes() == content):
                _overwrite(dest, content, mode)
        fsync_dir(directory)
    except OSError as exc:
        if isinstance(exc, WriteFailed):
            raise
        raise WriteFailed(directory, exc) from None


def _overwrite(path: Path, data: bytes, mode: int) -> None:
    # truncating frees the file's blocks first, so the old content fits where the new one was
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
