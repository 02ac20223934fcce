"""Backup files by name: dump names and their times, checksums, local retention, the listing.

Stdlib only; pure functions (no host, no bucket).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ...contract.backups import DUMP_KEY
from ...contract.grammar import STACK_NAME

DUMP_MAGIC: Final = b"PGDMP"  # the first bytes of every pg_dump custom-format archive
TIME_FORMAT: Final = "%Y%m%dT%H%M%SZ"
_STACK: Final = STACK_NAME.pattern
KEY_RE: Final = re.compile(rf"^{DUMP_KEY.pattern}$")  # the contract's dump name
_LOCAL_RE: Final = re.compile(
    rf"^\.?bankflow-{_STACK}-(?P<time>\d{{8}}T\d{{6}}Z)\.(?:dump|globals\.sql|sha256)(?:\.partial)?$"
)


@dataclass(frozen=True)
class RemoteObject:
    """An object in the bucket, as rclone lists it."""

    key: str
    size: int
    md5: str | None


def dump_name(stack: str, when: dt.datetime) -> str:
    """``bankflow-<stack>-<UTC time>``: the dump is ``<name>.dump``, then ``.globals.sql``, ``.sha256``."""
    return f"bankflow-{stack}-{when.astimezone(dt.UTC).strftime(TIME_FORMAT)}"


def time_of(name: str) -> dt.datetime | None:
    """The UTC time in a dump's (or a sidecar file's) name; None for any other name."""
    match = KEY_RE.match(name) or _LOCAL_RE.match(name)
    if match is None:
        return None
    return dt.datetime.strptime(match.group("time"), TIME_FORMAT).replace(tzinfo=dt.UTC)


def sidecar_keys(key: str) -> tuple[str, str]:
    """(globals, checksum) keys of a dump key."""
    base = key.removesuffix(".dump")
    return f"{base}.globals.sql", f"{base}.sha256"


@dataclass(frozen=True)
class FileDigest:
    size: int
    sha256: str
    md5: str


def digest_file(path: Path) -> FileDigest:
    sha256, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            sha256.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return FileDigest(size, sha256.hexdigest(), md5.hexdigest())


def checksum_text(entries: Mapping[str, str]) -> str:
    """``sha256sum`` format: ``sha256sum -c`` verifies the files by hand too."""
    return "".join(f"{digest}  {name}\n" for name, digest in entries.items())


def parse_checksums(text: str) -> dict[str, str]:
    result: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and re.fullmatch(r"[0-9a-f]{64}", parts[0]):
            result[parts[1].lstrip("*")] = parts[0]
    return result


def local_prune_plan(names: Sequence[str], now: dt.datetime, local_days: int) -> list[str]:
    """Local backup files older than ``local_days`` days (by the time in their name). Any file
    whose name is not a backup's is never selected."""
    cutoff = now - dt.timedelta(days=local_days)
    doomed = []
    for name in names:
        when = time_of(name)
        if when is not None and when < cutoff:
            doomed.append(name)
    return sorted(doomed)



def backup_rows(objects: Sequence[RemoteObject], now: dt.datetime) -> list[dict[str, Any]]:
    """The dumps of a listing, newest first; sidecar files and foreign objects left out."""
    rows = []
    for obj in objects:
        match = KEY_RE.match(obj.key)
        when = time_of(obj.key)
        if match is None or when is None:
            continue
        rows.append(
            {
                "key": obj.key,
                "stack": match.group("stack"),
                "time": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "size": obj.size,
                "age_seconds": max(0, int((now - when).total_seconds())),
            }
        )
    return sorted(rows, key=lambda r: (r["time"], r["key"]), reverse=True)


def format_age(seconds: int) -> str:
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 48 * 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    return f"{seconds // 86400}d{(seconds % 86400) // 3600:02d}h"

