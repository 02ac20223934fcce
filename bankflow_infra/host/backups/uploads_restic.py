"""The uploads' restic repository: the release's ``backup/uploads.json``, the secret env file, and
restic itself (init, backup, snapshots, restore). Stdlib only.

No secret is ever in an argv: the repository password and the Spaces key come from
``secrets/uploads-restic.env`` (0600) and reach restic only through the child's environment, which
holds nothing else but PATH, HOME and the cache dir (no AWS_*/RESTIC_* variable of the caller
can redirect it). ``/proc/<pid>/environ`` is readable by root and the same user only.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from ...contract.grammar import STACK_NAME
from ...contract.uploads import UPLOADS_CONFIG_FILE, UPLOADS_SECRET_ENV, UPLOADS_SECRET_NAMES, UPLOADS_TAG
from .. import state as st
from ..context import Context
from ..runtime import error_tail
from .config import BackupFailed, BackupUsageError
from .storage import RCLONE_PATH, ProcessRunner, run_process

RESTIC_TIMEOUT: Final = 2 * 3600.0
LIST_TIMEOUT: Final = 300.0
_REPO_RE: Final = re.compile(
    r"^s3:https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/uploads$"
)
_DROPLET_RE: Final = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")  # a droplet's hostname
_NO_REPO: Final = "Is there a repository at the following location?"
_WRONG_PASSWORD: Final = "wrong password or no key found"  # noqa: S105 - restic message
_TIME_RE: Final = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class UploadsConfig:
    stack: str
    repository: str  # s3:<endpoint>/<bucket>/uploads, no secret
    uploads_dir: Path  # the real tree (on the data volume when the stack has one)
    on_data_volume: bool
    backup_droplet: str | None = None  # a share several droplets mount: only this one backs it up


@dataclass(frozen=True)
class Snapshot:
    id: str
    time: dt.datetime  # UTC
    paths: tuple[str, ...]


def parse_uploads_config(document: Any, source: str) -> UploadsConfig:
    doc = document if isinstance(document, dict) else {}
    problems = [] if isinstance(document, dict) else ["expected a JSON object"]
    stack, repo, where = doc.get("stack"), doc.get("repository"), doc.get("uploads_dir")
    if not isinstance(stack, str) or not STACK_NAME.fullmatch(stack):
        problems.append(f"stack: refused {stack!r}")
    if not isinstance(repo, str) or not _REPO_RE.fullmatch(repo):
        problems.append(f"repository: refused {repo!r} (want s3:https://HOST/BUCKET/uploads)")
    if not isinstance(where, str) or not where.startswith("/") or ".." in where.split("/") or where == "/":
        problems.append(f"uploads_dir: refused {where!r} (want an absolute path)")
    if not isinstance(doc.get("on_data_volume"), bool):
        problems.append(f"on_data_volume: expected true or false, got {doc.get('on_data_volume')!r}")
    droplet = doc.get("backup_droplet")
    if droplet is not None and (not isinstance(droplet, str) or not _DROPLET_RE.fullmatch(droplet)):
        problems.append(f"backup_droplet: expected a droplet's hostname or null, got {droplet!r}")
    if problems:
        raise BackupUsageError(f"invalid uploads backup configuration {source}: " + "; ".join(problems))
    return UploadsConfig(str(stack), str(repo), Path(str(where)), bool(doc["on_data_volume"]),
                         str(droplet) if droplet is not None else None)


def load_uploads_config(ctx: Context) -> UploadsConfig:
    current = st.read_current(ctx.paths)
    if current is None:
        raise BackupUsageError("no release deployed yet: no uploads backup configuration")
    path = ctx.paths.release_dir(current.release) / UPLOADS_CONFIG_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BackupUsageError(
            f"release {current.release} has no {UPLOADS_CONFIG_FILE}: deploy a release rendered with "
            "uploads backups (the stack needs uploads_repo_password and a Spaces key)"
        ) from None
    except ValueError as exc:
        raise BackupUsageError(f"{path}: not JSON ({exc})") from None
    return parse_uploads_config(document, str(path))


def read_secret_env(path: Path) -> dict[str, str]:
    """The restic password and the Spaces key; the message names the file, never a value."""
    if not path.is_file():
        raise BackupUsageError(
            f"no uploads repository password on this host ({path} is missing): the release was rendered "
            "without uploads_repo_password or without a Spaces key; restic is not run"
        )
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise BackupFailed(f"refusing {path}: mode {mode:o} lets other users read the repository password")
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, value = line.partition("=")
        if sep and name in UPLOADS_SECRET_NAMES and value:
            values[name] = value
    missing = [n for n in UPLOADS_SECRET_NAMES if n not in values]
    if missing:
        raise BackupUsageError(f"{path}: no value for {', '.join(missing)}; restic is not run")
    return values


@dataclass
class Restic:
    """restic against one repository; every argv holds names and paths only."""

    repository: str
    host: str  # restic's --host: the stack, stable across droplet replacements
    secrets: dict[str, str]
    home: Path  # HOME and cache, root only
    runner: ProcessRunner = run_process
    binary: str = "restic"

    def run(self, what: str, args: Sequence[str], timeout: float = RESTIC_TIMEOUT) -> str:
        env = {
            "PATH": RCLONE_PATH,
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "RESTIC_CACHE_DIR": str(self.home / "cache"),
            **self.secrets,
        }
        done = self.runner([self.binary, "--repo", self.repository, *args], env=env, timeout=timeout)
        if done.returncode == 0:
            return done.stdout
        tail = error_tail(done.stderr) or error_tail(done.stdout) or "no message"
        if _WRONG_PASSWORD in done.stderr:
            raise BackupFailed(
                f"{what}: the repository password in {UPLOADS_SECRET_ENV} does not open the uploads "
                f"repository {self.repository} (restic: wrong password or no key found)"
            )
        if _NO_REPO in done.stderr:
            raise RepositoryMissing(f"{what}: there is no uploads repository at {self.repository}")
        if done.returncode < 0 or done.returncode in (124, 137):
            raise BackupFailed(f"{what}: restic was stopped ({tail})")
        raise BackupFailed(
            f"{what} (repository {self.repository}) failed: restic exited {done.returncode}: {tail}"
        )

    def ensure_repository(self) -> bool:
        """True when this call created the repository (idempotent: an existing one is kept)."""
        try:
            self.run("opening the repository", ["cat", "config"], LIST_TIMEOUT)
            return False
        except RepositoryMissing:
            self.run("creating the repository", ["init"], LIST_TIMEOUT)
            return True

    def snapshots(self, of_host: str | None = None) -> list[Snapshot]:
        """This stack's snapshots (or ``of_host``'s: a rebuild restoring the original), oldest first."""
        out = self.run(
            "listing snapshots",
            ["snapshots", "--json", "--host", of_host or self.host, "--tag", UPLOADS_TAG],
            LIST_TIMEOUT,
        )
        try:
            entries = json.loads(out) if out.strip() else []
        except ValueError as exc:
            raise BackupFailed(f"listing snapshots: unexpected restic output ({exc})") from None
        found = [s for s in (_snapshot(e) for e in entries if isinstance(e, dict)) if s is not None]
        return sorted(found, key=lambda s: s.time)


class RepositoryMissing(BackupFailed):
    """restic found no repository at the location (not yet initialised)."""


def parse_restic_time(text: str) -> dt.datetime:
    """restic's RFC 3339 times carry nanoseconds, which Python 3.11's fromisoformat refuses."""
    match = _TIME_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"not a restic time: {text!r}")
    fraction = (match.group(2) or "0")[:6].ljust(6, "0")
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return dt.datetime.fromisoformat(f"{match.group(1)}.{fraction}{zone}").astimezone(dt.UTC)


def _snapshot(entry: dict[str, Any]) -> Snapshot | None:
    ident, when, paths = entry.get("id"), entry.get("time"), entry.get("paths")
    if not isinstance(ident, str) or not isinstance(when, str) or not isinstance(paths, list):
        return None
    try:
        return Snapshot(ident, parse_restic_time(when), tuple(str(p) for p in paths))
    except ValueError:
        return None


def open_restic(ctx: Context, config: UploadsConfig) -> Restic:
    secrets = read_secret_env(ctx.paths.secrets / UPLOADS_SECRET_ENV)
    home = ctx.paths.state / "restic"
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    # run_process is this module's global, looked up at call time: tests wrap it to record or kill restic
    return Restic(config.repository, config.stack, secrets, home, run_process)
