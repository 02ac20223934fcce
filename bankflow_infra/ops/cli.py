"""``bankflow-infra``: the offline plan and the day-2 commands that read stack outputs.

Each command lives in its own module under ``bankflow_infra.ops`` and exposes
``register(commands)``, which adds its sub-parser and sets ``handler`` to a function taking
the parsed arguments and returning the exit code. Adding a command is one line in COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

EXIT_UNHEALTHY = 1
EXIT_BAD_INPUT = 2

COMMANDS = (
    "bankflow_infra.ops.plan_command",
    "bankflow_infra.ops.health_command",
    "bankflow_infra.ops.remote_commands",
    "bankflow_infra.ops.rebuild_commands",
    "bankflow_infra.ops.backup_commands",
    "bankflow_infra.ops.workflow_commands",
)

Handler = Callable[[argparse.Namespace], int]


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


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="bankflow-infra", description=__doc__.split("\n\n")[0])
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(commands)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except BrokenPipeError:
        # `bankflow-infra plan staging | head` closed our stdout: not an error of ours.
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
