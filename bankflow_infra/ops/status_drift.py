"""The drift record: what the scheduled drift check (.github/workflows/drift.yml) found, as a file.

Where it is kept, and why: the drift job writes ``drift-<stack>.json`` as a workflow artifact
(and the same facts in its job summary and Slack message). ``bankflow-infra status STACK --drift
FILE`` reads the downloaded file (``gh run download --name drift-<stack>``), so status needs no
cloud credential and no state backend access to say whether the stack drifted: the preview that
found it needed them, reading its result does not. A commit status would need a GitHub token
with write access in a job that holds cloud credentials, and a file committed to the repository
would add a commit a day; an artifact is read-only history with its own retention.

Schema (``schema`` 1), one JSON object:

    schema       1
    stack        the stack checked
    checked_at   when (UTC, ISO 8601 "Z")
    drifted      true (the refreshed state differs from the program), false (no change), or
                 null (the preview itself failed: unknown)
    preview      the preview step's outcome (success, failure, ...)
    run_url      the workflow run, whose summary holds the diff (or null)
    problems     one line per finding (drift, certificate, backup age, health), [] when none
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from bankflow_infra.contract.outputs import OutputsError

DRIFT_SCHEMA: Final = 1
# The check runs daily: a record older than two days means the schedule stopped.
DRIFT_STALE_AFTER: Final = timedelta(hours=48)


@dataclass(frozen=True)
class DriftRecord:
    stack: str
    checked_at: datetime
    drifted: bool | None
    preview: str
    run_url: str | None
    problems: tuple[str, ...]

    def document(self) -> dict[str, Any]:
        return {
            "schema": DRIFT_SCHEMA,
            "stack": self.stack,
            "checked_at": self.checked_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "drifted": self.drifted,
            "preview": self.preview,
            "run_url": self.run_url,
            "problems": list(self.problems),
        }


def _field(document: dict[str, Any], name: str, types: tuple[type, ...], source: str) -> Any:
    value = document.get(name)
    if not isinstance(value, types):
        raise OutputsError(f"drift record {source}: {name!r} is missing or of the wrong type")
    return value


def parse_drift(document: Any, source: str) -> DriftRecord:
    if not isinstance(document, dict) or document.get("schema") != DRIFT_SCHEMA:
        raise OutputsError(f"drift record {source}: not a schema {DRIFT_SCHEMA} drift record "
                           "(written by `bankflow-infra notify drift`)")
    checked = _field(document, "checked_at", (str,), source)
    try:
        checked_at = datetime.fromisoformat(checked.replace("Z", "+00:00"))
    except ValueError:
        raise OutputsError(f"drift record {source}: checked_at {checked!r} is not a time") from None
    drifted = document.get("drifted")
    if drifted is not None and not isinstance(drifted, bool):
        raise OutputsError(f"drift record {source}: 'drifted' must be true, false or null")
    problems = _field(document, "problems", (list,), source)
    run_url = document.get("run_url")
    return DriftRecord(
        stack=_field(document, "stack", (str,), source),
        checked_at=checked_at if checked_at.tzinfo else checked_at.replace(tzinfo=UTC),
        drifted=drifted,
        preview=str(document.get("preview") or ""),
        run_url=run_url if isinstance(run_url, str) else None,
        problems=tuple(str(p) for p in problems),
    )


def read_drift(path: Path, stack: str) -> DriftRecord:
    """The drift record in ``path``, checked to be about ``stack``; OutputsError otherwise."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise OutputsError(f"cannot read the drift record {path}: {error}") from None
    record = parse_drift(document, str(path))
    if record.stack != stack:
        raise OutputsError(f"drift record {path} is about stack {record.stack!r}, not {stack!r}")
    return record
