"""The stack outputs, read once and validated into a typed value (README "Stack outputs").

Every day-2 command starts here: ``pulumi stack output --json -s STACK`` (or a saved copy of
that JSON via ``--outputs FILE``) becomes the contract's frozen :class:`StackOutputs`. Anything
wrong -- no pulumi CLI, not logged in, unknown stack, bad JSON, a missing or mistyped output --
is one :class:`OutputsError` naming the stack and the output, raised before any command touches
a server.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

from bankflow_infra.contract import grammar
from bankflow_infra.contract.outputs import (
    REDACTED,
    BackupBucket,
    HealthTarget,
    OutputsError,
    SshEndpoint,
    StackOutputs,
    parse_outputs,
)

__all__ = [
    "REDACTED",
    "BackupBucket",
    "HealthTarget",
    "OutputsError",
    "SshEndpoint",
    "StackOutputs",
    "check_stack_name",
    "load_outputs",
    "parse_outputs",
    "pulumi_command",
]

# Bounded so a hung backend (e.g. a state bucket that does not answer) never hangs a command.
PULUMI_TIMEOUT_SECONDS: Final = 120.0
_STDERR_LIMIT: Final = 2000

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def pulumi_command(stack: str, show_secrets: bool) -> list[str]:
    # --non-interactive: a missing login or passphrase must fail with a message, never prompt.
    command = ["pulumi", "stack", "output", "--json", "--non-interactive", "-s", stack]
    return [*command, "--show-secrets"] if show_secrets else command


def check_stack_name(stack: str) -> None:
    if not grammar.is_qualified_stack_name(stack):
        raise OutputsError(f"{stack!r} is not a stack name ({grammar.QUALIFIED_STACK_NAME_RULE})")


def load_outputs(
    stack: str,
    outputs_file: Path | None = None,
    show_secrets: bool = False,
    runner: Runner = subprocess.run,
    cwd: Path | None = None,
) -> StackOutputs:
    """The validated outputs of ``stack``, from ``outputs_file`` when given, else the pulumi CLI."""
    check_stack_name(stack)
    if outputs_file is not None:
        text = _read_file(stack, outputs_file)
        source = str(outputs_file)
    else:
        text = _run_pulumi(stack, show_secrets, runner, cwd)
        source = "pulumi stack output --json"
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise OutputsError(f"outputs of stack {stack!r} from {source} are not JSON: {error}") from None
    return parse_outputs(stack, document, show_secrets=show_secrets)


def _read_file(stack: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise OutputsError(f"cannot read the saved outputs of stack {stack!r} from {path}: {error}") from None


def _run_pulumi(stack: str, show_secrets: bool, runner: Runner, cwd: Path | None) -> str:
    command = pulumi_command(stack, show_secrets)
    try:
        done = runner(command, capture_output=True, text=True, check=False, cwd=cwd,
                      stdin=subprocess.DEVNULL, timeout=PULUMI_TIMEOUT_SECONDS)
    except FileNotFoundError:
        raise OutputsError(
            f"cannot read the outputs of stack {stack!r}: the pulumi CLI is not installed "
            "(install it: https://www.pulumi.com/docs/install/), or pass --outputs FILE with saved "
            "`pulumi stack output --json` output"
        ) from None
    except subprocess.TimeoutExpired:
        raise OutputsError(
            f"cannot read the outputs of stack {stack!r}: `{' '.join(command)}` did not finish within "
            f"{PULUMI_TIMEOUT_SECONDS:.0f} s (is the state backend reachable?)"
        ) from None
    if done.returncode != 0:
        raise OutputsError(_pulumi_failure(stack, command, done.returncode, done.stderr or ""))
    return done.stdout or ""


def _pulumi_failure(stack: str, command: Sequence[str], code: int, stderr: str) -> str:
    detail = stderr.strip()[-_STDERR_LIMIT:] or "(no error output)"
    lowered = detail.lower()
    if "no stack named" in lowered:
        hint = "check the stack name (`pulumi stack ls`) and that you are in the project directory"
    elif "login" in lowered or "access_token" in lowered or "not logged in" in lowered:
        hint = "log in to the state backend first (`pulumi login`, see README \"Credentials\")"
    elif "passphrase" in lowered:
        hint = "set PULUMI_CONFIG_PASSPHRASE (or _FILE) for this stack's secrets"
    else:
        hint = "see pulumi's message above"
    return (f"cannot read the outputs of stack {stack!r}: `{' '.join(command)}` exited {code}:\n"
            f"  {detail}\n  hint: {hint}")
