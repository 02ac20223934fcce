"""Stack access: the pulumi CLI as one small typed engine.

Every pulumi command line the ops CLI runs or prints is built here (``stack output``, ``stack
ls``, ``config``, ``stack init``, ``config set/rm --path``, ``up``), and :class:`StackAccess`
runs them: read-only queries captured and bounded in time, changing steps streamed to the
terminal without a bound. Failures are typed (:class:`PulumiMissing`, :class:`PulumiTimedOut`,
:class:`PulumiFailed`, :class:`PulumiAnswerError`); each caller words them for its command.

Why not ``pulumi.automation`` (issue 9 asked; the SDK ships it): its ``LocalWorkspace`` runs this
same CLI (after a ``pulumi version`` check), so it removes no dependency, and it would change
what the commands do: ``stack_outputs`` and ``get_all_config`` always pass ``--show-secrets``
(every secret decrypted, the passphrase required, even for ``health``, which reads no secret);
its commands run without a timeout (a hung state backend would hang ``rebuild``); ``up`` runs
``pulumi up --yes --skip-preview`` with an event log, not the ``pulumi up -s STACK --yes`` the
plans print and the resume hints repeat, and skipping the preview loses the stop on a protected
resource; ``stack init --copy-config-from`` has no counterpart. The recording stand-in
(tests/ops/cli/rebuild/pulumi_standin.py) therefore stays a fake CLI.
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bankflow_infra import stackfile
from bankflow_infra.settings import NAMESPACE

PULUMI: Final = "pulumi"
# Bounded so a hung backend (e.g. a state bucket that does not answer) never hangs a command.
QUERY_TIMEOUT_SECONDS: Final = 120.0
STDERR_LIMIT: Final = 2000
INSTALL_URL: Final = "https://www.pulumi.com/docs/install/"

Runner = Callable[..., "subprocess.CompletedProcess[str]"]
ConfigValue = bool | str | None


class PulumiError(Exception):
    """A pulumi call that gave no usable answer; ``str()`` is the rebuild commands' wording."""


class PulumiMissing(PulumiError):
    def __init__(self) -> None:
        super().__init__(f"the pulumi CLI is not installed ({INSTALL_URL})")


class PulumiTimedOut(PulumiError):
    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = tuple(argv)
        super().__init__(f"`{shlex.join(argv)}` did not finish within {QUERY_TIMEOUT_SECONDS:.0f} s "
                         "(is the state backend reachable?)")


class PulumiFailed(PulumiError):
    def __init__(self, argv: Sequence[str], code: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.code = code
        self.detail = stderr.strip()[-STDERR_LIMIT:] or "(no error output)"
        super().__init__(f"`{shlex.join(argv)}` exited {code}:\n  {self.detail}")


class PulumiAnswerError(PulumiError):
    """pulumi exited 0 but printed something that is not the documented JSON."""


# --------------------------------------------------------------------------- command lines (pure)


def output_argv(stack: str, show_secrets: bool) -> list[str]:
    # --non-interactive: a missing login or passphrase must fail with a message, never prompt.
    argv = [PULUMI, "stack", "output", "--json", "--non-interactive", "-s", stack]
    return [*argv, "--show-secrets"] if show_secrets else argv


def init_argv(new: str, copy_config_from: str) -> tuple[str, ...]:
    return (PULUMI, "stack", "init", new, "--copy-config-from", copy_config_from)


def config_argv(stack: str, path: str, value: ConfigValue) -> tuple[str, ...]:
    """``pulumi config set/rm --path`` of ``bankflow:<path>``; value None removes the key."""
    key = f"{NAMESPACE}:{path}"
    if value is None:
        return (PULUMI, "config", "rm", "--path", "-s", stack, key)
    # --path stores "true"/"false" as booleans (what settings expects), other text as strings.
    text = ("true" if value else "false") if isinstance(value, bool) else value
    return (PULUMI, "config", "set", "--path", "-s", stack, key, text)


def up_argv(stack: str) -> tuple[str, ...]:
    # `--yes` still previews first: a refused change (e.g. a protected resource) stops there.
    return (PULUMI, "up", "-s", stack, "--yes")


# --------------------------------------------------------------------------- running


@dataclass(frozen=True)
class StackAccess:
    """The pulumi CLI run in ``cwd`` (the project directory) through ``runner``."""

    runner: Runner = subprocess.run
    cwd: Path | None = None

    def query(self, argv: Sequence[str]) -> str:
        """stdout of a read-only call: stdin closed (never a prompt), bounded in time."""
        try:
            done = self.runner(list(argv), capture_output=True, text=True, check=False, cwd=self.cwd,
                               stdin=subprocess.DEVNULL, timeout=QUERY_TIMEOUT_SECONDS)
        except FileNotFoundError:
            raise PulumiMissing() from None
        except subprocess.TimeoutExpired:
            raise PulumiTimedOut(argv) from None
        if done.returncode != 0:
            raise PulumiFailed(argv, done.returncode, done.stderr or "")
        return done.stdout or ""

    def run_step(self, argv: Sequence[str]) -> int:
        """A changing call, its output streamed; no timeout: an `up` of a server takes minutes."""
        try:
            return self.runner(list(argv), cwd=self.cwd, check=False).returncode
        except FileNotFoundError:
            raise PulumiMissing() from None

    def outputs_text(self, stack: str, show_secrets: bool) -> str:
        return self.query(output_argv(stack, show_secrets))

    def stack_names(self) -> list[str]:
        """The stacks `pulumi stack ls` lists, by name, sorted."""
        document = self._json([PULUMI, "stack", "ls", "--json"])
        if not isinstance(document, list):
            raise PulumiAnswerError("`pulumi stack ls --json` did not print a list of stacks")
        # Pulumi Cloud may print org/project/stack; stacks of this project are compared by name.
        return sorted(str(item.get("name", "")).rsplit("/", 1)[-1] for item in document
                      if isinstance(item, dict) and item.get("name"))

    def config(self, stack: str) -> dict[str, Any]:
        """A stack's bankflow values from `pulumi config --json` (secrets never read)."""
        document = self._json([PULUMI, "config", "--json", "-s", stack])
        if not isinstance(document, dict):
            return {}
        config: dict[str, Any] = {}
        for key, entry in document.items():
            if not isinstance(entry, dict) or entry.get("secret"):
                continue
            config[key] = entry["objectValue"] if "objectValue" in entry else _decoded(entry.get("value"))
        return stackfile.bankflow_values(config)

    def _json(self, argv: Sequence[str]) -> Any:
        text = self.query(argv)
        try:
            return json.loads(text)
        except json.JSONDecodeError as error:
            raise PulumiAnswerError(f"`{shlex.join(argv)}` did not print JSON: {error}") from None


def _decoded(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value) if value[:1] in "{[" else value
        except json.JSONDecodeError:
            return value
    return value
