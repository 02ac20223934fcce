"""How every ``--help`` reads: plain text (no markdown spans), a description for every command,
and its exit statuses, stated here once per kind of command rather than in each module."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from typing import Final

# Exit statuses by kind of command (contract.exit_codes is what they mean to a script).
_REMOTE: Final = (
    "0  done (or nothing to do)\n"
    "1  a step failed; the previous release still serves\n"
    "2  bad input, refused before connecting (or the agent refused it)\n"
    "3  another deploy, backup or restore holds the host's lock\n"
    "4  a step failed AND restoring nginx failed too: look now\n"
    "130  interrupted\n"
    "255  ssh could not connect or authenticate"
)
_READ_ONLY: Final = "0  all fine\n1  something needs attention (listed)\n2  bad input"
_STEPS: Final = (
    "0  done\n"
    "1  a step failed: the remaining commands are printed to resume by hand\n"
    "2  bad input or refused, nothing changed"
)
_WORKFLOW: Final = "0  done\n1  a check failed\n2  bad input"
EXIT_STATUS: Final[dict[str, str]] = {
    "health": "0  all healthy\n1  any service unhealthy\n2  bad input",
    "status": _READ_ONLY,
    "doctor": "0  no check failed\n1  a check failed (each with its fix)\n2  bad input",
    "rebuild": _STEPS,
    "cutover": _STEPS,
    "retire": _STEPS,
    "workflow": _WORKFLOW,
    "notify": "0  posted, or not posted with a warning (notifying never fails a deploy)\n2  bad input",
    "ssh": (
        "the exit status of CMD (or of the login shell)\n"
        "2  bad input, refused before connecting\n"
        "255  ssh could not connect or authenticate"
    ),
}
_CODE_SPAN: Final = re.compile(r"`([^`]*)`")


def plain(text: str) -> str:
    """Help text as the terminal shows it: `code` spans without their backticks."""
    return _CODE_SPAN.sub(r"\1", text)


class PlainFormatter(argparse.HelpFormatter):
    """Wraps prose as argparse does, keeps the exit-status and example blocks as written, and
    prints code spans plain."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(("exit status:", "examples:")):
            return "".join(indent + line for line in plain(text).splitlines(keepends=True))
        return super()._fill_text(plain(text), width, indent)

    def _expand_help(self, action: argparse.Action) -> str:
        return plain(super()._expand_help(action))


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help for choice in action._choices_actions}
            for name, child in action.choices.items():
                if child.description is None and helps.get(name):
                    child.description = helps[name]
                yield name, child


def finish(root: argparse.ArgumentParser) -> None:
    """Give every parser under ``root`` the plain formatter, a description and its exit statuses."""
    root.formatter_class = PlainFormatter
    for name, command in _subparsers(root):
        command.formatter_class = PlainFormatter
        status = EXIT_STATUS.get(name, _REMOTE)
        if command.epilog is None or "exit status:" not in command.epilog:
            block = "exit status:\n" + "".join(f"  {line}\n" for line in status.splitlines())
            command.epilog = block if command.epilog is None else f"{block}\n{command.epilog}"
        for _child_name, child in _subparsers(command):
            child.formatter_class = PlainFormatter
            if child.epilog is None:
                child.epilog = "exit status:\n" + "".join(f"  {line}\n" for line in status.splitlines())
