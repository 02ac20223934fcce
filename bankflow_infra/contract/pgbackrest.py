"""pgBackRest facts both sides read: the stanza name (wave 3's shared decision) and a parser of
pgBackRest 2.45's ``info --output=json`` (the host's backup watch judges the newest backup's age
with it, the restore drill picks the backup to restore). Stdlib only.

Checked against real output of the installed pgbackrest 2.45 (tests/host/watch/data/): a list
of stanzas, each with ``status`` ({code, message}; 0 is ok), ``repo`` (per repository status),
``backup`` (label, type full/diff/incr, ``timestamp`` {start, stop} in epoch seconds, ``error``),
``archive`` (min/max WAL) and ``db`` (PostgreSQL version, system id). A stanza pgBackRest cannot
read (missing, a wrong cipher pass, a damaged backup.info) has a non-zero code and the reason in
its repo status message -- with the undecryptable bytes copied in raw, control characters
included, so the JSON is read with ``strict=False`` and messages are made printable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from .release import PITR_STANZA

STANZA: Final = PITR_STANZA  # one name: contract.release (the rendered config, compose, the agent)
MAX_MESSAGE_CHARS: Final = 200


class InfoError(ValueError):
    """pgBackRest's answer names a problem, or is not what 2.45 prints."""


@dataclass(frozen=True)
class NewestBackup:
    label: str
    type: str  # full, diff, incr
    stop_time: datetime


def clean(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A tool's message made printable and short (pgBackRest quotes binary garbage from a file it
    could not decrypt)."""
    first = next((line for line in text.strip().splitlines() if line.strip()), "")
    printable = "".join(ch if ch.isprintable() else "?" for ch in first)
    return printable[:limit] + ("..." if len(printable) > limit else "")


def parse_info(text: str, stanza: str = STANZA) -> NewestBackup | None:
    """The newest good backup of ``stanza`` in pgBackRest 2.45's ``info --output=json``; None when
    the repository holds none. Raises InfoError when pgBackRest reports the stanza in error
    (missing, unreadable: a wrong cipher pass, a corrupted backup.info)."""
    try:
        # strict=False: pgBackRest 2.45 copies raw control characters into its messages (the
        # garbage of a file it could not decrypt), which strict JSON refuses.
        document = json.loads(text, strict=False)
    except ValueError as exc:
        raise InfoError(f"pgbackrest info: not JSON ({exc})") from None
    entry = next((e for e in document if isinstance(e, dict) and e.get("name") == stanza), None) \
        if isinstance(document, list) else None  # fmt: skip
    if entry is None:
        raise InfoError(f"pgbackrest info: no stanza {stanza!r} in the answer")
    status = entry.get("status") or {}
    if status.get("code") != 0:
        messages = [r.get("status", {}).get("message", "") for r in entry.get("repo") or []]
        detail = next((m for m in messages if m and m != "ok"), status.get("message", ""))
        code = status.get("code")
        raise InfoError(f"pgbackrest info: stanza {stanza!r}: code {code}: {clean(str(detail))}")
    good = [b for b in entry.get("backup") or [] if isinstance(b, dict) and not b.get("error")]
    if not good:
        return None
    try:
        newest = max(good, key=lambda b: int(b["timestamp"]["stop"]))
        return NewestBackup(str(newest["label"]), str(newest["type"]),
                            datetime.fromtimestamp(int(newest["timestamp"]["stop"]), UTC))  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {exc}"
        raise InfoError(f"pgbackrest info: unexpected backup entry ({problem})") from None
