"""The agent's files on the host: atomic writes, the lock, the audit log, the release state.

The layout itself (``HostPaths``: which folder and state file is where) is ``contract.layout``.

Stdlib only. Every write is atomic (temp file + rename in the same directory), so a crash
mid-write leaves the previous content, never half a file -- nginx and the next agent run both
read these files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contract.layout import SECRET_DIR_MODE, SECRET_FILE_MODE, HostPaths

# --------------------------------------------------------------------------- atomic files


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write via a temp file created with ``mode`` from the start (a secret is never readable)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by umask
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def write_json(path: Path, value: object) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def lock_down_secrets(directory: Path) -> None:
    """0700 on a secrets dir and 0600 on its files, whatever mode they arrived with."""
    if directory.is_dir():
        os.chmod(directory, SECRET_DIR_MODE)
        for path in directory.iterdir():
            if path.is_file():
                os.chmod(path, SECRET_FILE_MODE)


def write_in_place(path: Path, data: bytes, mode: int) -> None:
    """Overwrite keeping the inode: a single-file bind mount (origin.key) still sees the new content.

    Not atomic, so only for files a reader picks up at a later, deliberate moment (reload/recreate).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def mirror_files(
    source: Path, target: Path, mode: int | None, keep: frozenset[str] = frozenset(), in_place: bool = False
) -> None:
    """Make ``target`` hold exactly ``source``'s files (recursively), except names in ``keep``.

    ``mode`` None keeps each source file's mode. Unchanged files are not rewritten. Contents
    are never printed or logged.
    """
    wanted: set[str] = set()
    if source.is_dir():
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
            (write_in_place if in_place and dest.is_file() else write_atomic)(dest, data, file_mode)
    for path in sorted((p for p in target.rglob("*") if p.is_file()), reverse=True):
        rel = path.relative_to(target).as_posix()
        if rel not in wanted and rel not in keep:
            path.unlink()


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """relative path -> (content, mode) of every file: what a failed switch restores."""
    if not directory.is_dir():
        return {}
    return {
        p.relative_to(directory).as_posix(): (p.read_bytes(), p.stat().st_mode & 0o777)
        for p in directory.rglob("*")
        if p.is_file()
    }


def restore(directory: Path, files: Mapping[str, tuple[bytes, int]]) -> None:
    for path in sorted((p for p in directory.rglob("*") if p.is_file()), reverse=True):
        if path.relative_to(directory).as_posix() not in files:
            path.unlink()
    for rel, (content, mode) in files.items():
        dest = directory / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(dest, content, mode)


def copy_bundle(source: Path, target: Path) -> None:
    """Copy a bundle into ``releases/<release>`` (temp dir + rename: never half a release)."""
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(source, tmp, symlinks=False)
    lock_down_secrets(tmp / "secrets")
    os.replace(tmp, target)


# --------------------------------------------------------------------------- lock


class LockBusy(RuntimeError):
    pass


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Non-blocking flock: a second deploy fails at once instead of queueing behind the first.

    The kernel drops the lock when the process dies, so a crashed deploy never wedges the host.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise LockBusy(f"another deploy is running (pid {holder})") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- audit


def actor(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """Who acted: --actor, BANKFLOW_ACTOR (set by automation), the sudo caller, the login user."""
    env = os.environ if env is None else env
    for value in (explicit, env.get("BANKFLOW_ACTOR"), env.get("SUDO_USER"), env.get("USER")):
        if value:
            return value
    return f"uid:{os.getuid()}"


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def audit(path: Path, who: str, action: str, release: str | None, result: str, message: str) -> None:
    """Append one JSON line; O_APPEND keeps concurrent writers' lines whole."""
    line = json.dumps(
        {
            "time": utc_now(),
            "actor": who,
            "action": action,
            "release": release,
            "result": result,
            "message": message,
        },
        sort_keys=True,
    )
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- release state


@dataclass(frozen=True)
class Current:
    release: str
    app_release: str  # whose app containers serve it (an nginx-only change keeps the old ones)
    fingerprint: str


def read_current(paths: HostPaths) -> Current | None:
    data = read_json(paths.current_file, None)
    if not isinstance(data, dict):
        return None
    return Current(str(data["release"]), str(data["app_release"]), str(data.get("fingerprint", "")))


def write_current(paths: HostPaths, current: Current) -> None:
    write_json(
        paths.current_file,
        {
            "release": current.release,
            "app_release": current.app_release,
            "fingerprint": current.fingerprint,
            "since": utc_now(),
        },
    )


def read_history(paths: HostPaths) -> list[dict[str, str]]:
    data = read_json(paths.history_file, [])
    return [dict(entry) for entry in data] if isinstance(data, list) else []


def append_history(paths: HostPaths, entry: Mapping[str, str], limit: int = 200) -> None:
    history = [*read_history(paths), {**entry, "time": utc_now()}]
    write_json(paths.history_file, history[-limit:])


def read_base(paths: HostPaths) -> dict[str, str]:
    data = read_json(paths.base_file, {})
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def write_base(paths: HostPaths, digests: Mapping[str, str]) -> None:
    write_json(paths.base_file, dict(digests))


def releases_by_recency(history: list[dict[str, str]]) -> list[str]:
    """Distinct releases, most recently activated first."""
    seen: list[str] = []
    for entry in reversed(history):
        release = entry.get("release", "")
        if release and release not in seen:
            seen.append(release)
    return seen


def previous_release(history: list[dict[str, str]], current: str | None) -> str | None:
    """The most recently activated release other than ``current``: what a bare rollback targets."""
    for release in releases_by_recency(history):
        if release != current:
            return release
    return None
