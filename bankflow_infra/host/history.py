"""``history [--json] [--last N]``: the last actions on this host, from the audit log. Read-only.

Stdlib only; no lock (it only reads). ``state/audit.log`` holds one JSON object per line with
the keys ``time, actor, action, release, result, message`` (``state.audit``). Keys this module
does not know are ignored, so the writer may add some. Two are understood when present:

- ``attempt`` (an id) and ``phase`` (``start`` or ``end``): a start line and the end line of the
  same attempt become ONE entry (the end's result and message, ``ended`` its time); a start
  with no end yet is shown as ``unfinished`` -- still running, or the agent was killed.

A line that is not a JSON object is counted (``skipped``), never fatal: one torn line must not
hide the rest of the history. Only the last :data:`READ_LIMIT_BYTES` of the file are read, so a
years-old log costs the same as a new one.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Final

from ..contract.exit_codes import OK
from .context import Context

DEFAULT_LAST: Final = 10
MAX_LAST: Final = 1000
READ_LIMIT_BYTES: Final = 1 << 20  # ~5000 lines of ~200 bytes: far more than MAX_LAST entries
KNOWN_KEYS: Final = ("time", "actor", "action", "release", "result", "message")
UNFINISHED: Final = "unfinished"


def last_count(text: str) -> int:
    """argparse type of --last: 1..MAX_LAST."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_LAST:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number in 1..{MAX_LAST}")
    return value


@dataclass(frozen=True)
class History:
    entries: list[dict[str, Any]]  # oldest first
    skipped: int  # lines that were not a JSON object


def _tail_lines(path: Path) -> list[bytes]:
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            start = max(0, size - READ_LIMIT_BYTES)
            handle.seek(start)
            data = handle.read()
    except FileNotFoundError:
        return []
    lines = data.splitlines()
    # Reading from the middle of the file starts mid-line: that partial line is not an entry.
    return lines[1:] if start > 0 and lines else lines


def _entry(raw: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {key: raw.get(key) for key in KNOWN_KEYS}
    entry["attempt"] = raw.get("attempt") if isinstance(raw.get("attempt"), str) else None
    entry["ended"] = entry["time"]
    return entry


def merge_entries(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Audit records (oldest first) as entries: start+end of one attempt merged, a lone start
    marked unfinished, every other record as it is."""
    entries: list[dict[str, Any]] = []
    open_attempts: dict[str, dict[str, Any]] = {}
    for raw in records:
        entry = _entry(raw)
        phase, attempt = raw.get("phase"), entry["attempt"]
        if attempt is not None and phase == "start":
            entry["result"], entry["ended"] = UNFINISHED, None
            open_attempts[attempt] = entry
            entries.append(entry)
        elif attempt is not None and phase == "end" and attempt in open_attempts:
            started = open_attempts.pop(attempt)
            for key in ("result", "message"):
                started[key] = entry[key]
            started["release"] = entry["release"] or started["release"]
            started["ended"] = entry["time"]
        else:
            entries.append(entry)
    return entries


def read_history(audit_log: Path) -> History:
    records: list[dict[str, Any]] = []
    skipped = 0
    for line in _tail_lines(audit_log):
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        if isinstance(record, dict):
            records.append(record)
        elif line.strip():
            skipped += 1
    return History(merge_entries(records), skipped)


def format_text(entries: list[dict[str, Any]], skipped: int) -> list[str]:
    if not entries:
        return ["no actions recorded yet"]
    lines = []
    for e in entries:
        release = e["release"] or "-"
        cells = (e["time"], e["actor"], e["action"], release, e["result"], e["message"] or "")
        lines.append("  ".join(str(cell) for cell in cells))
    if skipped:
        lines.append(f"({skipped} unreadable line(s) of the audit log skipped)")
    return lines


def cmd_history(ctx: Context, args: argparse.Namespace, _stdin: BinaryIO | None = None) -> int:
    history = read_history(ctx.paths.audit_log)
    newest_first = list(reversed(history.entries))[: args.last]
    if args.json:
        ctx.say(json.dumps({"entries": newest_first, "skipped": history.skipped}, indent=2))
        return OK
    for line in format_text(newest_first, history.skipped):
        ctx.say(line)
    return OK


def register(sub: Any) -> None:
    parser = sub.add_parser("history", help="the last actions on this host (audit log), newest first")
    parser.add_argument("--json", action="store_true", help="one JSON document")
    parser.add_argument("--last", type=last_count, default=DEFAULT_LAST, metavar="N",
                        help=f"how many entries (default {DEFAULT_LAST}, at most {MAX_LAST})")


# subcommand -> (handler, takes the deploy lock): merged into agent.COMMANDS.
COMMANDS: Final = {"history": (cmd_history, False)}
