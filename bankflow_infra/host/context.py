"""What every agent command works with: the host's paths, the runtime, the switch options, the
actor for the audit log, and the output streams; and the errors a command raises.

Stdlib only. The CLI entry (``agent.py``) builds one :class:`Context` per run and maps the errors
to exit codes; the command modules only take it.
"""

from __future__ import annotations

import errno
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from ..contract.layout import HostPaths
from ..contract.upstreams import DEFAULT_CANDIDATE_URL
from . import state as st
from .files import WriteFailed
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
    # the most a drain waits for in-flight requests before stopping a release; None: the
    # manifest's drain_seconds of the services being stopped
    drain: float | None = None
    keep: int = 5
    fresh: bool = False  # start new app containers even when the app fingerprint is unchanged
    candidate_url: str = DEFAULT_CANDIDATE_URL  # nginx's loopback verify listener, seen from the host
    watch: float = 5.0  # seconds of checks after the public switch; a failure reverts
    # a rolling deploy's switch (switch-staged): the roll ran the migrations once, before it began
    skip_migrate: bool = False


@dataclass
class Context:
    paths: HostPaths
    runtime: Runtime
    options: Options
    actor: str
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    sleep: Callable[[float], None] = time.sleep
    output_lost: bool = False  # a write to stdout/stderr failed (closed pipe, hung-up terminal)
    attempt: str = ""  # ties this command's audit lines together (journal.py)
    ended: bool = False  # an end line of this attempt was written

    def audit(self, action: str, release: str | None, result: str, message: str) -> None:
        """This attempt's end line in the audit log (said on stderr when the disk refuses it)."""
        extra: dict[str, object] = {}
        if self.attempt:
            extra = {"attempt": self.attempt, "phase": "end", "pid": os.getpid()}
        self.ended = True
        if not st.audit(self.paths.audit_log, self.actor, action, release, result, message, **extra):
            self.complain(f"{action}: the audit line could not be written to {self.paths.audit_log}")

    def say(self, message: str) -> None:
        self._print(message, self.out)

    def complain(self, message: str) -> None:
        self._print(message, self.err)

    def _print(self, message: str, stream: TextIO) -> None:
        # A dropped SSH session closes our stdout/stderr: the outcome of a switch must not depend
        # on whether anyone still reads it (the audit log keeps the record).
        try:
            print(message, file=stream, flush=True)
        except (BrokenPipeError, OSError, ValueError):
            self.output_lost = True


class StepFailed(Exception):
    """A step of a release switch failed; the switch puts the previous release back."""

    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"step '{step}' failed: {detail}")
        self.step = step


class UsageError(Exception):
    """Bad input found before anything changed (exit 2)."""


def describe(exc: BaseException) -> str:
    """An error for a message: our own errors as they are, anything else with its type."""
    if isinstance(exc, RuntimeFailure | ManifestError | WriteFailed):
        return str(exc)
    if isinstance(exc, OSError) and exc.strerror:
        name = errno.errorcode.get(exc.errno or 0, "")
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}" + (f" ({name})" if name else "")
    return f"{type(exc).__name__}: {exc}"
