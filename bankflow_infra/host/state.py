"""The agent's state on the host: the lock, the audit log, the release state files.

The layout itself (``HostPaths``: which folder and state file is where) is ``contract.layout``;
durable writes are ``files.py`` (re-exported here for the command modules).

Stdlib only. The state files and what happens when one is lost or garbled:

- ``current.json`` (which release serves): rebuildable -- the live upstream include names the
  release nginx serves, and ``reconcile`` rewrites this file from it.
- ``history.json`` (activations, what ``rollback`` targets) and ``base.json`` (digests of the
  running base services): not rebuildable from the live host, so each write keeps the previous
  generation as ``<name>.1``; a garbled file is read from that generation, named in a warning.

A garbled file is :class:`StateCorrupt` naming the file and what is wrong (``{}`` included),
never a ``KeyError``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..contract.layout import HostPaths
from .files import (  # re-exported: the command modules use these through ``state``
    WriteFailed as WriteFailed,
)
from .files import (
    copy_bundle as copy_bundle,
)
from .files import (
    lock_down_secrets as lock_down_secrets,
)
from .files import (
    mirror_files as mirror_files,
)
from .files import (
    restore as restore,
)
from .files import (
    snapshot as snapshot,
)
from .files import (
    write_atomic as write_atomic,
)
from .files import (
    write_in_place as write_in_place,
)
from .files import (
    write_json as write_json,
)

# --------------------------------------------------------------------------- lock


class LockBusy(RuntimeError):
    pass


def lock_holder_text(raw: str) -> str:
    """What the lock file says about its holder, for the refusal message."""
    try:
        holder = json.loads(raw)
    except ValueError:
        holder = None
    if not isinstance(holder, dict):
        return f"pid {raw.strip() or 'unknown'}"
    return (
        f"{holder.get('action', 'a command')} by {holder.get('actor', 'unknown')} "
        f"(pid {holder.get('pid', '?')}) since {holder.get('since', '?')}"
    )


@contextlib.contextmanager
def exclusive_lock(path: Path, action: str = "deploy", who: str = "unknown") -> Iterator[None]:
    """Non-blocking flock: a second deploy fails at once instead of queueing behind the first.

    The holder (action, actor, pid, since) is written into the lock file, so a refusal names it.
    The kernel drops the lock when the process dies, so a crashed deploy never wedges the host.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raw = os.pread(fd, 512, 0).decode("utf-8", "replace")
            raise LockBusy(f"{lock_holder_text(raw)} holds the lock ({path})") from exc
        holder = {"action": action, "actor": who, "pid": os.getpid(), "since": utc_now()}
        os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):  # a full disk must not stop the one command that fixes it
            os.pwrite(fd, (json.dumps(holder, sort_keys=True) + "\n").encode(), 0)
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


def audit(
    path: Path, who: str, action: str, release: str | None, result: str, message: str, **extra: object
) -> bool:
    """Append one JSON line (O_APPEND keeps concurrent writers' lines whole); whether it was written.

    The keys time, actor, action, release, result, message are the format's; ``extra`` only adds
    keys (``attempt``, ``pid``). A full disk never turns a done switch into a failed one: the
    caller says on stderr that the line is missing.
    """
    line = json.dumps(
        {
            **extra,
            "time": utc_now(),
            "actor": who,
            "action": action,
            "release": release,
            "result": result,
            "message": message,
        },
        sort_keys=True,
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o640)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
    except OSError:
        return False
    return True


# --------------------------------------------------------------------------- reading state files


class StateCorrupt(ValueError):
    """A state file that cannot be used; the message names it and says what is wrong."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"state file {path} {problem}")
        self.path = path


_MISSING: Any = object()


def read_json(path: Path, default: Any = _MISSING) -> Any:
    """The file's JSON; ``default`` when it is missing (or :class:`StateCorrupt` without one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if default is _MISSING:
            raise StateCorrupt(path, "is missing") from None
        return default
    except (OSError, UnicodeDecodeError) as exc:
        raise StateCorrupt(path, f"cannot be read ({exc})") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise StateCorrupt(
            path, f"is not valid JSON ({exc.__class__.__name__}: {exc}; {len(text)} bytes)"
        ) from None


def previous_generation(path: Path) -> Path:
    return path.with_name(path.name + ".1")


def write_generations(path: Path, value: object) -> None:
    """Write ``value``, keeping what the file held before as ``<name>.1`` (if it was valid)."""
    try:
        old = path.read_bytes()
        json.loads(old)
    except (OSError, ValueError):
        old = b""
    if old:
        write_atomic(previous_generation(path), old)
    write_json(path, value)


def read_generations(path: Path, check: Any, default: Any) -> tuple[Any, str | None]:
    """(value, warning): the file, else its previous generation (warned), else ``default``.

    ``check(value)`` raises ValueError for a value of the wrong shape. Both generations garbled is
    :class:`StateCorrupt` naming both.
    """
    problems = []
    for candidate in (path, previous_generation(path)):
        try:
            value = read_json(candidate)
            check(value)
        except StateCorrupt as exc:
            problems.append(str(exc))
            continue
        except ValueError as exc:
            problems.append(f"state file {candidate} {exc}")
            continue
        if candidate == path:
            return value, None
        return value, f"{problems[0]}; using the previous generation {candidate}"
    if all(p.endswith("is missing") for p in problems):
        return default, None
    raise StateCorrupt(path, "and its previous generation are unusable: " + "; ".join(problems))


# --------------------------------------------------------------------------- release state


@dataclass(frozen=True)
class Current:
    release: str
    app_release: str  # whose app containers serve it (an nginx-only change keeps the old ones)
    fingerprint: str


def parse_current(path: Path, data: object) -> Current:
    if not isinstance(data, dict):
        raise StateCorrupt(path, f"holds {type(data).__name__}, expected an object")
    missing = [k for k in ("release", "app_release") if not isinstance(data.get(k), str) or not data.get(k)]
    if missing:
        raise StateCorrupt(path, f"lacks {', '.join(missing)} (holds {json.dumps(data)[:120]})")
    return Current(str(data["release"]), str(data["app_release"]), str(data.get("fingerprint", "")))


def read_current(paths: HostPaths) -> Current | None:
    """The serving release, None when none was ever recorded; :class:`StateCorrupt` when garbled."""
    data = read_json(paths.current_file, None)
    return None if data is None else parse_current(paths.current_file, data)


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


def _check_history(value: object) -> None:
    if not isinstance(value, list) or not all(
        isinstance(e, dict) and isinstance(e.get("release"), str) for e in value
    ):
        raise ValueError("is not a list of {release, ...} entries")


def read_history_checked(paths: HostPaths) -> tuple[list[dict[str, str]], str | None]:
    data, warning = read_generations(paths.history_file, _check_history, [])
    return [{str(k): str(v) for k, v in entry.items()} for entry in data], warning


def read_history(paths: HostPaths) -> list[dict[str, str]]:
    return read_history_checked(paths)[0]


def append_history(paths: HostPaths, entry: Mapping[str, str], limit: int = 200) -> None:
    history = [*read_history(paths), {**entry, "time": utc_now()}]
    write_generations(paths.history_file, history[-limit:])


def _check_base(value: object) -> None:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("is not an object of service -> digest")


def read_base_checked(paths: HostPaths) -> tuple[dict[str, str], str | None]:
    data, warning = read_generations(paths.base_file, _check_base, {})
    return {str(k): str(v) for k, v in data.items()}, warning


def read_base(paths: HostPaths) -> dict[str, str]:
    return read_base_checked(paths)[0]


def write_base(paths: HostPaths, digests: Mapping[str, str]) -> None:
    write_generations(paths.base_file, dict(digests))


BASE_IMAGES_NAME = "base-images.json"  # in the state dir, beside base.json


def base_images_file(paths: HostPaths) -> Path:
    return paths.state / BASE_IMAGES_NAME


def read_base_images(paths: HostPaths) -> tuple[dict[str, str], str | None]:
    """service -> what its running container was created from (``Runtime.fingerprints``), as
    recorded by the last switch that applied it. Lost or garbled: ``{}`` (every service unknown,
    which the plan treats conservatively), never an error: nothing here is needed to serve."""
    try:
        data, warning = read_generations(base_images_file(paths), _check_base, {})
    except StateCorrupt as exc:
        return {}, str(exc)
    return {str(k): str(v) for k, v in data.items()}, warning


def write_base_images(paths: HostPaths, fingerprints: Mapping[str, str]) -> None:
    write_generations(base_images_file(paths), dict(fingerprints))


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
