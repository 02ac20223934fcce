"""Every `--help` reads as plain text, describes its command and states its exit statuses."""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Iterator

import pytest

from bankflow_infra.ops import cli
from bankflow_infra.ops.cli.help import plain


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield (*prefix, name)
                yield from _commands(child, (*prefix, name))


COMMANDS = sorted(_commands(cli.parser()))


def test_every_command_group_is_listed() -> None:
    top = {c[0] for c in COMMANDS}
    assert {"plan", "health", "status", "doctor", "rollback", "restore", "rebuild", "workflow"} <= top


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_is_plain_described_and_states_exit_statuses(command: tuple[str, ...]) -> None:
    parser = cli.parser()
    for name in command:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    text = parser.format_help()
    assert "`" not in text, text
    assert parser.description, f"{' '.join(command)} has no description"
    assert "exit status" in text.lower(), text


def test_the_formatter_drops_code_spans_only() -> None:
    assert plain("run `cutover` then ``bankflow-infra``") == "run cutover then bankflow-infra"
    assert plain("no spans here: 'x' and \"y\"") == "no spans here: 'x' and \"y\""


def test_root_help_as_a_process() -> None:
    done = subprocess.run([sys.executable, "-m", "bankflow_infra.ops.cli", "--help"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0
    assert "Run bankflow-infra COMMAND --help" in done.stdout
    assert "`" not in done.stdout
