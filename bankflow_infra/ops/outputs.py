"""The stack outputs, read once and validated into the contract's typed value.

Every day-2 command starts here: ``pulumi stack output --json -s STACK`` (or a saved copy of
that JSON via ``--outputs FILE``) becomes the frozen :class:`StackOutputs` of
``contract.outputs``. Anything wrong -- no pulumi CLI, not logged in, unknown stack, bad JSON, a
missing or mistyped output -- is one :class:`OutputsError` naming the stack and the output,
raised before any command touches a server.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from bankflow_infra.contract import grammar
from bankflow_infra.contract.outputs import OutputsError, StackOutputs, parse_outputs
from bankflow_infra.ops.stack_access import (
    QUERY_TIMEOUT_SECONDS,
    PulumiFailed,
    PulumiMissing,
    PulumiTimedOut,
    Runner,
    StackAccess,
)


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
        text = _run_pulumi(stack, show_secrets, StackAccess(runner, cwd))
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


def _run_pulumi(stack: str, show_secrets: bool, access: StackAccess) -> str:
    cannot = f"cannot read the outputs of stack {stack!r}"
    try:
        return access.outputs_text(stack, show_secrets)
    except PulumiMissing:
        raise OutputsError(
            f"{cannot}: the pulumi CLI is not installed (install it: https://www.pulumi.com/docs/install/), "
            "or pass --outputs FILE with saved `pulumi stack output --json` output"
        ) from None
    except PulumiTimedOut as error:
        raise OutputsError(
            f"{cannot}: `{' '.join(error.argv)}` did not finish within {QUERY_TIMEOUT_SECONDS:.0f} s "
            "(is the state backend reachable?)"
        ) from None
    except PulumiFailed as error:
        raise OutputsError(f"{cannot}: `{' '.join(error.argv)}` exited {error.code}:\n"
                           f"  {error.detail}\n  hint: {_hint(error.detail)}") from None


def _hint(detail: str) -> str:
    lowered = detail.lower()
    if "no stack named" in lowered:
        return "check the stack name (`pulumi stack ls`) and that you are in the project directory"
    if "login" in lowered or "access_token" in lowered or "not logged in" in lowered:
        return "log in to the state backend first (`pulumi login`, see README \"Credentials\")"
    if "passphrase" in lowered:
        return "set PULUMI_CONFIG_PASSPHRASE (or _FILE) for this stack's secrets"
    return "see pulumi's message above"
