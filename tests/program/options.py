"""Resource options the shared Recorder does not keep (ignore_changes, custom timeouts), read from
the engine's RegisterResource requests while a plan runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bankflow_infra.ops.mocks import RecordingMonitor


@dataclass(frozen=True)
class Options:
    ignore_changes: tuple[str, ...]
    delete_timeout: str


@contextlib.contextmanager
def recorded_options() -> Iterator[dict[str, Options]]:
    """name -> Options of every resource registered inside the block."""
    seen: dict[str, Options] = {}
    original = RecordingMonitor.RegisterResource

    def register(self: RecordingMonitor, request: Any) -> Any:
        timeouts = request.customTimeouts
        seen[request.name] = Options(tuple(request.ignoreChanges), timeouts.delete if timeouts else "")
        return original(self, request)

    RecordingMonitor.RegisterResource = register  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        RecordingMonitor.RegisterResource = original  # type: ignore[method-assign]
