"""The environment's Spaces bucket, through rclone: list, look up, upload, download, verify.

Stdlib only. Every argv holds paths and names only: the key is in ``secrets/rclone.conf`` (0600),
which only rclone reads, and rclone runs with a clean environment.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

from ...contract.release import RCLONE_CONFIG
from ..context import Context
from ..runtime import Completed, error_tail
from .archive import FileDigest, RemoteObject
from .config import BackupConfig, BackupFailed, BackupUsageError

TRANSFER_TIMEOUT: Final = 2 * 3600.0
LIST_TIMEOUT: Final = 120.0
# rclone: bounded retries and timeouts, no progress output; the same for every call. A
# black-holed S3 endpoint costs at most retries x low-level-retries x contimeout (2 x 3 x 10 s)
# per call, a stalled transfer --timeout (60 s without progress) per try; and every call also
# has a hard wall-clock limit (the process is killed), never more than what is left of a
# restore's deadline.
RCLONE_FLAGS: Final = (
    "--retries",
    "2",
    "--low-level-retries",
    "3",
    "--contimeout",
    "10s",
    "--timeout",
    "60s",
    "--stats",
    "0",
)
RCLONE_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class ProcessRunner(Protocol):
    def __call__(self, argv: Sequence[str], *, env: Mapping[str, str], timeout: float) -> Completed: ...


def run_process(argv: Sequence[str], *, env: Mapping[str, str], timeout: float) -> Completed:
    try:
        done = subprocess.run(
            list(argv),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Completed(124, "", f"timed out after {timeout:.0f}s")
    except OSError as exc:
        return Completed(127, "", f"{argv[0]}: {exc.strerror or exc}")
    return Completed(
        done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace")
    )


@dataclass
class Bucket:
    """One Spaces bucket through rclone. Every argv holds paths and names only."""

    config_file: Path  # rclone.conf, 0600: the only place the key is
    remote: str
    name: str
    endpoint: str
    home: Path  # rclone's HOME (cache), a root-only dir
    runner: ProcessRunner = run_process
    binary: str = "rclone"
    deadline: float | None = None  # time.monotonic() by which every call must be done (restore)

    def argv(self, *args: str) -> list[str]:
        return [
            self.binary,
            "--config",
            str(self.config_file),
            "--s3-endpoint",
            self.endpoint,
            *RCLONE_FLAGS,
            *args,
        ]

    def location(self, key: str = "") -> str:
        return f"{self.remote}:{self.name}" + (f"/{key}" if key else "")

    def _run(self, what: str, args: Sequence[str], timeout: float) -> str:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise BackupFailed(f"{what} (bucket {self.name}): the deadline has passed")
            timeout = min(timeout, remaining)
        env = {"PATH": RCLONE_PATH, "HOME": str(self.home), "LANG": "C.UTF-8"}
        done = self.runner(self.argv(*args), env=env, timeout=timeout)
        if done.returncode != 0:
            raise BackupFailed(
                f"{what} (bucket {self.name} at {self.endpoint}) failed: rclone exited {done.returncode}: "
                f"{error_tail(done.stderr) or error_tail(done.stdout) or 'no message'}"
            )
        return done.stdout

    def list(self) -> list[RemoteObject]:
        out = self._run(
            "listing", ["lsjson", "--files-only", "--hash", "--no-mimetype", self.location()], LIST_TIMEOUT
        )
        return [obj for obj in (_remote_object(e) for e in _json_list(out, "listing")) if obj is not None]

    def stat(self, key: str) -> RemoteObject | None:
        out = self._run(
            f"looking up {key}",
            ["lsjson", "--stat", "--hash", "--no-mimetype", self.location(key)],
            LIST_TIMEOUT,
        )
        try:
            entry = json.loads(out) if out.strip() else None
        except ValueError as exc:
            raise BackupFailed(f"looking up {key}: unexpected rclone output ({exc})") from None
        # S3 has no directories: rclone answers a missing key with a directory entry
        return _remote_object(entry) if isinstance(entry, dict) and not entry.get("IsDir") else None

    def upload(self, local: Path, key: str) -> None:
        self._run(f"uploading {key}", ["copyto", str(local), self.location(key)], TRANSFER_TIMEOUT)

    def download(self, key: str, local: Path) -> None:
        self._run(f"downloading {key}", ["copyto", self.location(key), str(local)], TRANSFER_TIMEOUT)


def _json_list(text: str, what: str) -> list[Any]:
    try:
        value = json.loads(text) if text.strip() else []
    except ValueError as exc:
        raise BackupFailed(f"{what}: unexpected rclone output ({exc})") from None
    if not isinstance(value, list):
        raise BackupFailed(f"{what}: unexpected rclone output (not a list)")
    return value


def _remote_object(entry: Any) -> RemoteObject | None:
    if not isinstance(entry, dict) or entry.get("IsDir"):
        return None
    key, size = entry.get("Path"), entry.get("Size")
    if not isinstance(key, str) or not isinstance(size, int):
        return None
    hashes = entry.get("Hashes") if isinstance(entry.get("Hashes"), dict) else {}
    md5 = hashes.get("md5") if isinstance(hashes, dict) else None
    return RemoteObject(key, size, md5 if isinstance(md5, str) and md5 else None)


def verify_remote(bucket: Bucket, key: str, local: FileDigest) -> RemoteObject:
    """The uploaded object must have the local file's size and, when the store reports one, MD5."""
    remote = bucket.stat(key)
    if remote is None:
        raise BackupFailed(f"upload verification: {key} is not in bucket {bucket.name} after the upload")
    if remote.size != local.size:
        raise BackupFailed(
            f"upload verification: {key} is {remote.size} bytes in bucket {bucket.name}, {local.size} locally"
        )
    if remote.md5 is not None and remote.md5 != local.md5:
        raise BackupFailed(
            f"upload verification: {key} has MD5 {remote.md5} in the bucket, {local.md5} locally"
        )
    return remote


def open_bucket(
    ctx: Context, config: BackupConfig, bucket: str | None = None, endpoint: str | None = None
) -> Bucket:
    conf = ctx.paths.secrets / RCLONE_CONFIG
    if not conf.is_file():
        raise BackupUsageError(
            f"no Spaces key on this host ({conf} is missing): the release was rendered without "
            "spaces_access_key/spaces_secret_key"
        )
    mode = conf.stat().st_mode & 0o777
    if mode & 0o077:
        raise BackupFailed(f"refusing {conf}: mode {mode:o} lets other users read the Spaces key (want 600)")
    home = ctx.paths.state / "rclone"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    # run_process looked up at call time: the tests record every rclone argv by replacing it
    return Bucket(
        conf, config.remote, bucket or config.bucket, endpoint or config.endpoint, home, run_process
    )

