"""What every agent command works with: the host's paths, the runtime, the switch options, the
actor for the audit log, and the output streams; and the errors a command raises.

Stdlib only. The CLI entry (``agent.py``) builds one :class:`Context` per run and maps the errors
to exit codes; the command modules only take it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from ..contract.layout import HostPaths
from .manifest import ManifestError
from .runtime import Runtime, RuntimeFailure
from .verify import DEFAULT_VERIFY_URL


@dataclass(frozen=True)
class Options:
    """How a release switch runs (deploy, rollback, receive --deploy)."""

    health_timeout: float = 120.0
    verify_url: str = DEFAULT_VERIFY_URL
    verify_timeout: float = 30.0
    settle: float = 1.0  # after `nginx -s reload` returns, before verifying (the master re-forks)
    drain: float = 5.0  # after the switch, before stopping the old release (in-flight requests)
    keep: int = 5
    fresh: bool = False  # start new app containers even when the app fingerprint is unchanged


@dataclass
class Context:
    paths: HostPaths
    runtime: Runtime
    options: Options
    actor: str
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    sleep: Callable[[float], None] = time.sleep

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)

    def complain(self, message: str) -> None:
        print(message, file=self.err, flush=True)


class StepFailed(Exception):
    """A step of a release switch failed; the switch puts the previous release back."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"step '{step}' failed: {detail}")
        self.step = step


class UsageError(Exception):
    """Bad input found before anything changed (exit 2)."""


def describe(exc: BaseException) -> str:
    """An error for a message: our own errors as they are, anything else with its type."""
    if isinstance(exc, RuntimeFailure | ManifestError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
