"""nginx's rotated access logs on the host: found, read and removed without following anything
the nginx container planted.

Stdlib only. The shipper runs as root (it reads the Spaces key), but the directory it works in
is the nginx container's (``logs/nginx``, owned by nginx's uid, mounted read-write into that
container only). So, whatever the container leaves there:
- the directory is opened once, ``O_NOFOLLOW``; every file is opened relative to it, ``O_NOFOLLOW``
  and ``O_NONBLOCK`` (a planted symlink is refused, a FIFO never blocks the run);
- only a regular file with a single link is read (a hard link to another file is refused);
- a file is removed only if the name still points at the very inode that was read and uploaded.
A file nginx may still be writing (modified within the settle time, or open in any process) is
left for the next run, as is any file whose upload was not verified.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final

# logrotate's `dateext` + `dateformat -%Y%m%dT%H%M%S` (files/logrotate/bankflow-access-logs)
ROTATED_STAMP: Final = r"-\d{8}T\d{6}"
SETTLE_SECONDS: Final = 60.0  # no write for this long: nginx has reopened its log elsewhere
CHUNK: Final = 1 << 20
_OPEN_FLAGS: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Refused(Exception):
    """A rotated file this run will not read (not a plain file, still written, ...)."""


@dataclass(frozen=True)
class Rotated:
    """A rotated log file as it was read: what the upload and the removal are checked against."""

    name: str
    device: int
    inode: int
    size: int  # bytes of log text read
    sha256: str  # of the log text (names the object: the same text never makes two objects)


def rotated_names(names: list[str], log_name: str) -> list[str]:
    """The rotated files of ``log_name`` among a directory's entries, oldest first."""
    pattern = re.compile(rf"^{re.escape(log_name)}{ROTATED_STAMP}$")
    return sorted(name for name in names if pattern.match(name))


def object_name(rotated: Rotated) -> str:
    """The object's name under the prefix: unique per file and per content."""
    return f"{rotated.name}.{rotated.sha256[:16]}.gz"


@contextmanager
def open_log_dir(directory: Path) -> Iterator[int]:
    """The log directory as a descriptor; a symlink in its place is refused."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        raise Refused(f"cannot open the log directory {directory}: {exc.strerror or exc}") from None
    try:
        yield fd
    finally:
        os.close(fd)


def held_open(device: int, inode: int, proc: Path = Path("/proc")) -> bool:
    """Whether any other process has this file open (nginx keeps writing a renamed log until it
    reopens it). Our own descriptors do not count: the caller holds the file open to check it."""
    own = str(os.getpid())
    for fd_dir in proc.glob("[0-9]*/fd"):
        if fd_dir.parent.name == own:
            continue
        try:
            entries = list(fd_dir.iterdir())
        except OSError:  # the process ended, or it is not ours to see
            continue
        for entry in entries:
            try:
                target = entry.stat()
            except OSError:
                continue
            if (target.st_dev, target.st_ino) == (device, inode):
                return True
    return False


def compress_rotated(dir_fd: int, name: str, spool: Path, now: float, settle: float) -> Rotated:
    """Read ``name`` (relative to the directory) into ``spool`` as gzip; refused when unsafe to
    read or not finished. The gzip stream carries no name or time, so the same text always gives
    the same bytes (a re-run after a crash uploads an identical object, or finds it there)."""
    try:
        fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        raise Refused(f"{name}: not opened ({exc.strerror or exc}; a symlink is never followed)") from None
    with os.fdopen(fd, "rb") as source:
        before = os.fstat(fd)
        _check_finished(name, before, now, settle)
        digest = hashlib.sha256()
        size = 0
        with spool.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
            while chunk := source.read(CHUNK):
                digest.update(chunk)
                packed.write(chunk)
                size += len(chunk)
            os.fsync(raw.fileno())
        after = os.fstat(fd)
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or size != before.st_size:
        raise Refused(f"{name}: changed while it was read (still written?); left for the next run")
    return Rotated(name, before.st_dev, before.st_ino, size, digest.hexdigest())


def _check_finished(name: str, info: os.stat_result, now: float, settle: float) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise Refused(f"{name}: not a regular file")
    if info.st_nlink != 1:
        raise Refused(f"{name}: has {info.st_nlink} links (a hard link is never read)")
    if now - info.st_mtime < settle:
        age = now - info.st_mtime
        raise Refused(f"{name}: written {age:.0f}s ago; left until it settles ({settle:.0f}s)")
    if held_open(info.st_dev, info.st_ino):
        raise Refused(f"{name}: still open in a process (nginx has not reopened its log yet)")


def remove_rotated(dir_fd: int, rotated: Rotated) -> None:
    """Remove the file that was uploaded, and only that one (by inode, never through a link)."""
    try:
        current = os.stat(rotated.name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if (current.st_dev, current.st_ino, current.st_size) != (rotated.device, rotated.inode, rotated.size):
        raise Refused(f"{rotated.name}: replaced or changed since it was uploaded; not removed")
    os.unlink(rotated.name, dir_fd=dir_fd)
