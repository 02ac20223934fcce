"""What every ``bankflow-infra`` command shares: the common arguments, loading the stack outputs,
the SSH session, the confirmation prompt, one error printer, and the mapping of failures to the
contract's exit codes.

Failures and their exit codes (``contract.exit_codes``):

- bad input: stack outputs (:class:`OutputsError`), a stack file (:class:`StackFileError`),
  a refusal before connecting (:class:`RemoteError`): ``USAGE`` (2);
- ssh itself failed (connect, authenticate): 255, as ssh exits (``SshFailed.exit_code``);
- Ctrl-C: ``INTERRUPTED`` (130);
- the operator declined a confirmation: ``FAILED`` (1), nothing changed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.outputs import OutputsError, StackOutputs
from bankflow_infra.ops.outputs import load_outputs
from bankflow_infra.ops.ssh import RemoteError, SshSession, ssh_session
from bankflow_infra.stackfile import StackFileError

PROGRAM: Final = "bankflow-infra"
# The operator answered no: nothing changed, but not what the command asked for.
DECLINED: Final = exit_codes.FAILED

RemoteAction = Callable[[StackOutputs, SshSession], int]


# --------------------------------------------------------------------------- output


def error(command: str, message: str) -> None:
    """The one error line of a command: ``bankflow-infra COMMAND: message`` on stderr."""
    print(f"{PROGRAM} {command}: {message}", file=sys.stderr)


def note(message: str) -> None:
    """Something the operator should know that is not an error (stderr, never in piped output)."""
    print(f"{PROGRAM}: note: {message}", file=sys.stderr)


def ask(prompt: str) -> str:
    """The operator's answer, stripped; end of input is no answer."""
    try:
        return input(prompt).strip()
    except EOFError:
        return ""


def confirmed(prompt: str) -> bool:
    """A y/N question: only "y" or "yes" goes on."""
    return ask(prompt).lower() in ("y", "yes")


def has_terminal() -> bool:
    return sys.stdin.isatty()


# --------------------------------------------------------------------------- arguments


def seconds(text: str) -> float:
    """argparse type: a positive number of seconds, at most an hour."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds in (0, 3600]")
    return value


def add_outputs_arguments(command: argparse.ArgumentParser) -> None:
    """STACK plus the ways to get its outputs: shared by every command that reads them."""
    command.add_argument(
        "stack", metavar="STACK", help="stack name: reads `pulumi stack output --json -s STACK`"
    )
    command.add_argument(
        "--outputs",
        type=Path,
        metavar="FILE",
        help="read saved `pulumi stack output --json` output instead of running pulumi",
    )
    command.add_argument(
        "--project-dir",
        type=Path,
        default=None,
        help="directory holding Pulumi.yaml, where pulumi runs (default: current directory)",
    )


# --------------------------------------------------------------------------- running


def load(args: argparse.Namespace, show_secrets: bool = False) -> StackOutputs:
    """The outputs of ``args.stack`` (``--outputs FILE`` or the pulumi CLI in ``--project-dir``)."""
    return load_outputs(args.stack, args.outputs, show_secrets=show_secrets, cwd=args.project_dir)


def guarded(command: str, action: Callable[[], int]) -> int:
    """Run ``action``; every failure the commands share becomes one error line and its exit code."""
    try:
        return action()
    except (OutputsError, StackFileError) as failure:
        error(command, str(failure))
        return exit_codes.USAGE
    except RemoteError as failure:
        error(command, str(failure))
        return failure.exit_code
    except KeyboardInterrupt:
        error(command, "interrupted")
        return exit_codes.INTERRUPTED


def with_remote(args: argparse.Namespace, command: str, action: RemoteAction) -> int:
    """Load the outputs with the deploy key, open the SSH session, run ``action``; map failures."""

    def run() -> int:
        outputs = load(args, show_secrets=True)
        with ssh_session(outputs, note=note) as session:
            return action(outputs, session)

    return guarded(command, run)
