"""The backups listing the host agent answers over SSH (``backups --json``), read and checked.

Used by ``restore`` (to show which dump replaces the database) and by ``health --backups`` (the
newest dump's age).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from bankflow_infra.contract.outputs import StackOutputs
from bankflow_infra.ops.ssh import RemoteError, ssh_session

TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%SZ"


def parse_rows(stack: str, stdout: bytes) -> list[dict[str, Any]]:
    """The agent's ``backups --json`` answer (newest first), checked."""
    try:
        rows = json.loads(stdout)
        if not isinstance(rows, list):
            raise TypeError("not a list")
        for row in rows:
            if (
                not isinstance(row, dict)
                or not isinstance(row.get("key"), str)
                or not isinstance(row.get("time"), str)
            ):
                raise TypeError(f"bad row {row!r}")
            datetime.strptime(row["time"], TIME_FORMAT)
    except (ValueError, TypeError) as error:
        raise RemoteError(f"unexpected `backups --json` answer from stack {stack!r}: {error}") from None
    return rows


def newest_of(rows: Sequence[dict[str, Any]]) -> datetime | None:
    times = [datetime.strptime(r["time"], TIME_FORMAT).replace(tzinfo=UTC) for r in rows]
    return max(times, default=None)


def newest_backup_time(
    outputs: StackOutputs, note: Callable[[str], None] = lambda _text: None
) -> datetime | None:
    """When the newest dump in the stack's bucket was taken (None: the bucket holds none), read
    over SSH with the agent's ``backups --json``; for ``check_health(newest_backup=...)``.
    Raises when the host cannot be asked (health reports that as a backup problem)."""
    with ssh_session(outputs, note=note) as session:
        done = session.run_agent(["backups", "--json"], capture=True)
    if done.returncode != 0:
        raise RemoteError(f"`backups --json` on stack {outputs.stack!r} exited {done.returncode}")
    # Only this stack's own dumps prove that this stack's database is being backed up.
    return newest_of([r for r in parse_rows(outputs.stack, done.stdout) if r.get("stack") == outputs.stack])
