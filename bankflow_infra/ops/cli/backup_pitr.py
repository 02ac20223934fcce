"""Point-in-time restore and pgBackRest backups from the operator's machine, over SSH (the host
agent does the work: ``bankflow_infra.host.backups.pitr_restore``).

    bankflow-infra restore STACK --to-time 'YYYY-MM-DD HH:MM:SSZ' | --latest | --backup-set LABEL [--yes]
    bankflow-infra restore STACK --discard-previous
    bankflow-infra backup STACK --pitr [--type full|diff|incr]

A malformed time or one in the future is refused here (exit 2) before connecting; a time before
the oldest backup, an unknown set or an unreadable repository (wrong cipher pass) is refused by
the agent before anything stops (exit 2). Without --yes the agent's preview is shown (it changes
nothing) and the stack's name must be typed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.outputs import StackOutputs
from bankflow_infra.ops.cli import session
from bankflow_infra.ops.ssh import SshSession

TIME_RE: Final = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}Z$")
BACKUP_TYPES: Final = ("full", "diff", "incr")
PREVIEW_MARK: Final = "restore: target:"  # the agent's preview's first line (pitr_restore.Plan.preview)


def add_restore_arguments(restore: Any) -> None:
    restore.add_argument("--to-time", metavar="'YYYY-MM-DD HH:MM:SSZ'", help="point-in-time restore (UTC)")
    restore.add_argument("--latest", action="store_true", help="point-in-time restore to the newest WAL")
    restore.add_argument("--backup-set", metavar="LABEL", help="restore one pgBackRest backup set")
    restore.add_argument(
        "--discard-previous", action="store_true", help="remove the cluster kept by the last PITR restore"
    )


def add_backup_arguments(backup: Any) -> None:
    backup.add_argument("--pitr", action="store_true", help="a pgBackRest backup instead of a dump")
    backup.add_argument("--type", choices=BACKUP_TYPES, default="incr", help="with --pitr (default incr)")


def is_pitr_restore(args: argparse.Namespace) -> bool:
    return bool(args.to_time or args.latest or args.backup_set or args.discard_previous)


def check_target_time(text: str, now: dt.datetime) -> str | None:
    """Why --to-time is refused; None when it is a valid UTC time not in the future."""
    if not TIME_RE.match(text):
        return f"--to-time: {text!r} is not 'YYYY-MM-DD HH:MM:SSZ' (UTC)"
    try:
        when = dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return f"--to-time: {text!r} is not a valid date and time"
    if when > now:
        return f"--to-time: {text} is in the future"
    return None


def agent_restore_args(args: argparse.Namespace) -> list[str] | str:
    """The agent's restore arguments (without --yes), or why the combination is refused."""
    forms = [name for name in ("to_time", "latest", "backup_set", "discard_previous") if getattr(args, name)]
    if len(forms) > 1 or (args.source not in (None, "latest") and forms):
        return "choose one of --from, --to-time, --latest, --backup-set, --discard-previous"
    if args.discard_previous:
        return ["restore", "--discard-previous"]
    if args.to_time:
        refusal = check_target_time(args.to_time, dt.datetime.now(dt.UTC))
        return refusal if refusal else ["restore", "--to-time", args.to_time]
    if args.backup_set:
        if not re.fullmatch(r"[0-9]{8}-[0-9]{6}F(?:_[0-9]{8}-[0-9]{6}[DI])?", args.backup_set):
            return f"--backup-set: {args.backup_set!r} is not a pgBackRest label (see `backups --pitr`)"
        return ["restore", "--backup-set", args.backup_set]
    return ["restore", "--latest"]


def run_pitr_restore(
    args: argparse.Namespace,
    extra_agent_args: Sequence[str] = (),
    refuse: Callable[[StackOutputs], str | None] = lambda _outputs: None,
) -> int:
    """``extra_agent_args`` go to the agent's restore; ``refuse``: why STACK (its outputs) may not
    be restored this way, checked before anything is sent (backup.py: --source-stack)."""
    built = agent_restore_args(args)
    if isinstance(built, str):
        session.error("restore", f"{built}; nothing changed")
        return exit_codes.USAGE
    agent_args = [*built, *extra_agent_args]
    if not args.yes and not args.discard_previous and not session.has_terminal():
        session.error("restore", "not a terminal: refusing to replace the database without --yes")
        return exit_codes.USAGE

    def action(outputs: StackOutputs, ssh: SshSession) -> int:
        refused = refuse(outputs)
        if refused is not None:
            session.error("restore", f"{refused}; nothing changed")
            return exit_codes.USAGE
        if args.discard_previous:
            return ssh.run_agent(agent_args).returncode
        if not args.yes:
            # without --yes the agent checks everything, prints the preview and changes nothing
            preview = ssh.run_agent(agent_args, capture=True)
            text = preview.stdout.decode("utf-8", "replace")
            sys.stdout.write(text)
            if PREVIEW_MARK not in text:  # refused (bad target, unreadable repository, ...)
                return preview.returncode or exit_codes.FAILED
            if session.ask(f"Type the stack name ({args.stack}) to proceed: ") != args.stack:
                session.error("restore", "not confirmed; nothing changed")
                return session.DECLINED
        with session.stage("restore", f"point-in-time restore of stack {args.stack}"):
            return ssh.run_agent([*agent_args, "--yes"]).returncode

    return session.with_remote(args, "restore", action)


def run_pitr_backup(args: argparse.Namespace) -> int:
    def action(_outputs: StackOutputs, ssh: SshSession) -> int:
        with session.stage("backup", f"pgBackRest {args.type} backup on stack {args.stack}'s droplet"):
            return ssh.run_agent(["pitr-backup", "--type", args.type]).returncode

    return session.with_remote(args, "backup", action)
