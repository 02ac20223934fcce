"""Every attempt, on record: an audit line when it starts and one when it ends, and the switch's
intent journal in between.

Stdlib only. ``begin`` writes the ``started`` audit line (keys of the audit format plus
``attempt``, ``phase`` = start and ``pid``) before the command does anything; ``end`` writes
the result line with the same ``attempt`` and ``phase`` = end (``history.py`` merges the
pair). A switch also writes ``state/intent.json`` (durably) before it changes anything and
updates its step as it goes; a SIGKILL leaves that file behind, and the next command's
reconciliation (``reconcile.py``) closes the attempt with an ``interrupted`` line that names
the step. A "started" line without an end is therefore an attempt still running, or one whose
process died before any later command ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from ..contract.layout import HostPaths
from . import state as st

INTENT_NAME: Final = "intent.json"
STARTED: Final = "started"
INTERRUPTED: Final = "interrupted"


def intent_file(paths: HostPaths) -> Path:
    return paths.state / INTENT_NAME


def new_attempt_id() -> str:
    return f"{st.utc_now().replace(':', '').replace('-', '')}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class Attempt:
    """One command that changes the host: its id ties the start and end audit lines together."""

    id: str
    action: str
    actor: str
    release: str | None = None

    def begin(self, paths: HostPaths, message: str) -> bool:
        return st.audit(
            paths.audit_log,
            self.actor,
            self.action,
            self.release,
            STARTED,
            message,
            attempt=self.id,
            phase="start",
            pid=os.getpid(),
        )

    def end(self, paths: HostPaths, result: str, message: str, release: str | None = None) -> bool:
        return st.audit(
            paths.audit_log,
            self.actor,
            self.action,
            release or self.release,
            result,
            message,
            attempt=self.id,
            phase="end",
            pid=os.getpid(),
        )


@dataclass(frozen=True)
class Intent:
    """What a switch set out to do, written before it acts: enough to close it after a crash."""

    attempt: str
    action: str
    actor: str
    release: str
    app_release: str
    previous: str | None  # the release serving when it started
    previous_app: str | None
    step: str
    started: str
    pid: int


def write_intent(paths: HostPaths, intent: Intent) -> None:
    st.write_json(intent_file(paths), asdict(intent))


def update_step(paths: HostPaths, intent: Intent, step: str) -> Intent:
    moved = Intent(**{**asdict(intent), "step": step})
    write_intent(paths, moved)
    return moved


def read_intent(paths: HostPaths) -> Intent | None:
    """The journal of an unfinished switch; a garbled one is still an interrupted attempt."""
    path = intent_file(paths)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Intent(**{k: data[k] for k in Intent.__dataclass_fields__})
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return Intent("unknown", "switch", "unknown", "unknown", "unknown", None, None, "unknown", "?", 0)


def clear_intent(paths: HostPaths) -> None:
    with contextlib.suppress(FileNotFoundError):
        intent_file(paths).unlink()


def open_attempts(paths: HostPaths, limit: int = 2000) -> list[Mapping[str, object]]:
    """``started`` audit lines without an end line of the same attempt (newest last)."""
    try:
        lines = paths.audit_log.read_text(encoding="utf-8", errors="replace").splitlines()[-limit:]
    except FileNotFoundError:
        return []
    started: dict[str, Mapping[str, object]] = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        attempt = entry.get("attempt") if isinstance(entry, dict) else None
        if not isinstance(attempt, str):
            continue
        if entry.get("result") == STARTED:
            started[attempt] = entry
        else:
            started.pop(attempt, None)
    return list(started.values())


def describe_open(entry: Mapping[str, object], running: bool) -> str:
    what = f"{entry.get('action')} {entry.get('release') or ''}".strip()
    state = "still running" if running else "no end (interrupted)"
    return (
        f"attempt {entry.get('attempt')}: {what} by {entry.get('actor')} started {entry.get('time')} "
        f"(pid {entry.get('pid')}): {state}"
    )
