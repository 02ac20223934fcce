"""What every ``bankflow-infra`` command shares: the common arguments, loading the stack outputs,
the SSH session, the confirmation prompt, one error printer, and the mapping of failures to the
contract's exit codes.

Failures and their exit codes (``contract.exit_codes``):

- bad input: stack outputs (:class:`OutputsError`, also another environment's outputs), a stack
  file (:class:`StackFileError`), an argument (:class:`InputError`), a refusal before connecting
  (:class:`RemoteError`): ``USAGE`` (2);
- ssh itself failed (connect, authenticate): 255, as ssh exits (``SshFailed.exit_code``);
- Ctrl-C: ``INTERRUPTED`` (130);
- the operator declined a confirmation: ``FAILED`` (1), nothing changed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.outputs import OutputsError, StackOutputs
from bankflow_infra.ops.outputs import load_outputs
from bankflow_infra.ops.ssh import RemoteError, SshSession, ssh_session
from bankflow_infra.ops.status_inputs import InputError, check_outputs_environment
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


def elapsed_text(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"


@contextlib.contextmanager
def spinner(message: str) -> Iterator[None]:
    """A spinner with the elapsed time on stderr while a step that prints nothing runs (the
    probes of `health --wait`, status's queries). Only on a terminal: logs and --json stay clean."""
    if not sys.stderr.isatty():
        yield
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as shown:
        shown.add_task(message, total=None)
        yield


@contextlib.contextmanager
def stage(command: str, message: str) -> Iterator[None]:
    """Start and end lines with the elapsed time around a long step whose own output streams
    (the agent's backup/restore steps over SSH): a spinner would tangle with that output.
    Only on a terminal."""
    shown = sys.stderr.isatty()
    started = time.monotonic()
    if shown:
        print(f"{PROGRAM} {command}: {message} ...", file=sys.stderr, flush=True)
    try:
        yield
    finally:
        if shown:
            took = elapsed_text(time.monotonic() - started)
            print(f"{PROGRAM} {command}: finished after {took}", file=sys.stderr, flush=True)


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
    """The outputs of ``args.stack`` (``--outputs FILE`` or the pulumi CLI in ``--project-dir``),
    refused when they are another environment's (ops/status_inputs.py says how that is known)."""
    outputs = load_outputs(args.stack, args.outputs, show_secrets=show_secrets, cwd=args.project_dir)
    source = str(args.outputs) if args.outputs is not None else "`pulumi stack output`"
    check_outputs_environment(outputs, source, args.project_dir)
    return outputs


def guarded(command: str, action: Callable[[], int]) -> int:
    """Run ``action``; every failure the commands share becomes one error line and its exit code."""
    try:
        return action()
    except (OutputsError, StackFileError, InputError) as failure:
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
