"""``bankflow-infra``: the offline plan and the day-2 commands that read stack outputs.

One module per command group under ``bankflow_infra.ops.cli``; each exposes
``register(commands)``, which adds its sub-parsers and sets ``handler`` to a function taking
the parsed arguments and returning the exit code. What they share (outputs, SSH session,
prompts, errors, exit codes) is ``cli/session.py``. Adding a command group is one line in
COMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from bankflow_infra.ops.cli import help

COMMANDS = (
    "bankflow_infra.ops.cli.plan",
    "bankflow_infra.ops.cli.health",
    "bankflow_infra.ops.cli.remote",
    "bankflow_infra.ops.cli.rebuild",
    "bankflow_infra.ops.cli.backup",
    "bankflow_infra.ops.cli.workflow",
    "bankflow_infra.ops.cli.doctor",
    "bankflow_infra.ops.cli.status",
    "bankflow_infra.ops.cli.rotate",
    "bankflow_infra.ops.cli.roll",
)

Handler = Callable[[argparse.Namespace], int]


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="bankflow-infra",
        description=__doc__.split("\n\n")[0],
        epilog="Run bankflow-infra COMMAND --help for a command's options and exit statuses.",
    )
    commands = root.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        importlib.import_module(module).register(commands)
    help.finish(root)
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
