"""Database backups from the operator's machine: the host agent does the work, over SSH.

    bankflow-infra backup STACK                     dump now, upload, verify (what the nightly timer runs)
    bankflow-infra backups STACK [--pitr] [--json]  the bucket's dumps (or pgBackRest's sets), newest first
    bankflow-infra restore STACK [--from KEY|latest] [--yes] [--source-stack OTHER] [--from-another-stack]
                                                    replace STACK's database with a dump, then probe
                                                    the services' health
    bankflow-infra restore STACK --to-time T | --latest | --backup-set LABEL [--source-stack OTHER]
                                                    point-in-time restore (backup_pitr.py)
    bankflow-infra restore STACK --discard-previous

``restore`` asks for confirmation (type the stack's name) on a terminal; without one it needs
``--yes`` and exits 2 before connecting otherwise. ``--source-stack OTHER`` restores from
OTHER's bucket (its ``backup_bucket`` output): the emergency rebuild restores production's
latest dump into a fresh stack that has no bucket of its own. A dump of another stack (a key
naming another stack, or ``--source-stack`` of another environment) would replace STACK's data
with that stack's: it is refused (exit 2, before connecting where possible) unless
``--from-another-stack`` says so; a ``--source-stack`` of the same environment (a rebuild of
that environment) is that consent already.

A point-in-time restore with ``--source-stack OTHER`` (the emergency rebuild: ``restore NEW --latest
--source-stack STACK``) restores the database from the repository NEW archives into -- the same
bucket and stanza as STACK's, since a rebuild keeps ``backups.bucketStack`` -- and STACK's
uploads (agent: ``restore --latest --source-stack STACK``). Same environment only: another
environment's repository is never NEW's, so it is refused (exit 2), even with
``--from-another-stack``.

Exit codes: the host agent's (0 done, 1 a step failed -- the database is unchanged unless the
message says otherwise, 2 bad input such as an unknown or expired key, 3 another backup, restore
or deploy is running); 2 also for everything refused before connecting; 1 when the operator
declined or the services are unhealthy after a restore; 255 when ssh failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Final

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.backups import dump_stack
from bankflow_infra.contract.outputs import OutputsError, StackOutputs
from bankflow_infra.ops.backups import parse_rows
from bankflow_infra.ops.cli import backup_fork, backup_pitr, session
from bankflow_infra.ops.cli.session import add_outputs_arguments
from bankflow_infra.ops.cli.status import notify_if_configured
from bankflow_infra.ops.health import check_health, format_table
from bankflow_infra.ops.notify_events import RunContext, restore_finished
from bankflow_infra.ops.outputs import load_outputs
from bankflow_infra.ops.probes import Mode
from bankflow_infra.ops.ssh import SshSession

LATEST: Final = "latest"


def register(commands: Any) -> None:
    backup = commands.add_parser(
        "backup",
        help="dump the stack's database now, upload it to the backups bucket and verify it",
        description="Run the host agent's backup on the stack's droplet (the nightly timer's job).",
    )
    add_outputs_arguments(backup)
    backup_pitr.add_backup_arguments(backup)
    backup.set_defaults(handler=run_backup)

    backups = commands.add_parser("backups", help="the database dumps in the stack's bucket, newest first")
    add_outputs_arguments(backups)
    backups.add_argument("--json", action="store_true", help="one JSON document")
    backups.add_argument(
        "--pitr", action="store_true", help="pgBackRest's backup sets (labels for restore --backup-set)"
    )
    backups.set_defaults(handler=run_backups)

    restore = commands.add_parser(
        "restore",
        help="restore the stack's database (and uploads) to a point in time, or from a nightly dump",
        description="Point in time (--to-time, --latest, --backup-set): pgBackRest restores the "
        "cluster into a sibling directory while the site shows a 503 maintenance page, swaps it in "
        "(the previous one kept until --discard-previous), brings the uploads back to the same "
        "moment, applies the release's roles and starts the apps. Dump (--from KEY|latest): "
        "download, verify, restore into a scratch database, swap it in. Any failure leaves the "
        "database as it was. Asks for confirmation; without a terminal it needs --yes.",
    )
    add_outputs_arguments(restore)
    restore.add_argument(
        "--from",
        dest="source",
        default=LATEST,
        metavar="KEY",
        help="a key from `backups`, or 'latest' (default)",
    )
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restore.add_argument(
        "--source-stack",
        metavar="OTHER",
        help="restore from OTHER stack's bucket (emergency rebuild: the original stack's dumps); with "
        "--to-time/--latest/--backup-set: OTHER's data from the repository STACK archives into (same "
        "environment only) and OTHER's uploads",
    )
    restore.add_argument(
        "--source-outputs", type=Path, metavar="FILE", help="saved outputs of OTHER (default: pulumi)"
    )
    restore.add_argument(
        "--from-another-stack",
        action="store_true",
        help="allow a dump of another stack (its data replaces this stack's)",
    )
    backup_pitr.add_restore_arguments(restore)
    backup_fork.add_fork_arguments(restore)
    restore.set_defaults(handler=run_restore)


# --------------------------------------------------------------------------- plumbing


def _bucket_args(bucket: tuple[str, str] | None) -> list[str]:
    return ["--bucket", bucket[0], "--endpoint", bucket[1]] if bucket else []


def source_outputs(args: argparse.Namespace) -> StackOutputs:
    """--source-stack's outputs (no secrets: only its environment and bucket are read)."""
    return load_outputs(args.source_stack, args.source_outputs, show_secrets=False, cwd=args.project_dir)


def source_bucket(args: argparse.Namespace) -> tuple[str, str, str] | None:
    """(name, endpoint, environment) of --source-stack's bucket; None without --source-stack."""
    if not args.source_stack:
        return None
    other = source_outputs(args)
    if other.backup_bucket is None:
        raise OutputsError(
            f"stack {args.source_stack!r} has no backups bucket (output 'backup_bucket' is null): "
            "its edge layer owns none"
        )
    return other.backup_bucket.name, other.backup_bucket.endpoint, other.environment


def dump_of(args: argparse.Namespace) -> str:
    """The stack whose data the restore would bring: the key's, else --source-stack, else STACK."""
    return (dump_stack(args.source) if args.source != LATEST else None) or args.source_stack or args.stack


def other_stack_refusal(args: argparse.Namespace, same_environment: bool | None) -> str | None:
    """Why a dump of another stack is refused; None when it is this stack's or consented to.
    ``same_environment``: of --source-stack and STACK (None when not known yet)."""
    stack = dump_of(args)
    if stack == args.stack or args.from_another_stack:
        return None
    if args.source_stack and stack == args.source_stack and same_environment is not False:
        return None  # a rebuild restoring its environment's original stack: consent by --source-stack
    return (
        f"the dump is of stack {stack!r}: restoring it replaces {args.stack!r}'s data with {stack!r}'s; "
        "pass --from-another-stack if that is what you mean; nothing changed"
    )


# --------------------------------------------------------------------------- handlers


def run_backup(args: argparse.Namespace) -> int:
    if getattr(args, "pitr", False):
        return backup_pitr.run_pitr_backup(args)

    def action(_outputs: StackOutputs, ssh: SshSession) -> int:
        with session.stage("backup", f"dumping, uploading and verifying on stack {args.stack}'s droplet"):
            return ssh.run_agent(["backup"]).returncode

    return session.with_remote(args, "backup", action)


def run_backups(args: argparse.Namespace) -> int:
    agent_args = ["pitr-backups" if args.pitr else "backups", *(["--json"] if args.json else [])]
    return session.with_remote(args, "backups", lambda _o, ssh: ssh.run_agent(agent_args).returncode)


def run_restore(args: argparse.Namespace) -> int:
    if backup_pitr.is_pitr_restore(args):
        # A managed database (output `database`) is restored by a DigitalOcean fork (backup_fork.py).
        return session.guarded("restore", lambda: _route_point_in_time(args))
    if not args.yes and not session.has_terminal():
        # Before anything else: a script must say --yes; nothing is sent to the host otherwise.
        session.error("restore", "not a terminal: refusing to replace the database without --yes")
        return exit_codes.USAGE
    try:
        source = source_bucket(args)
    except OutputsError as error:
        session.error("restore", str(error))
        return exit_codes.USAGE
    refusal = other_stack_refusal(args, None)
    if refusal is not None:  # before connecting: a key of another stack, no consent
        session.error("restore", refusal)
        return exit_codes.USAGE
    bucket = source[:2] if source else None
    dumps_of = args.source_stack or args.stack

    def action(outputs: StackOutputs, ssh: SshSession) -> int:
        if outputs.database is not None:
            session.error("restore", "the database is managed by DigitalOcean: restore a point in time "
                          "with --to-time/--latest (a fork), or a nightly dump by hand "
                          f"({backup_fork.RUNBOOK}); nothing changed")
            return exit_codes.USAGE
        refused = other_stack_refusal(args, source[2] == outputs.environment if source else None)
        if refused is not None:  # --source-stack of another environment
            session.error("restore", refused)
            return exit_codes.USAGE
        key = args.source
        if not args.yes:
            confirmed = _confirm(ssh, args.stack, key, bucket, dumps_of)
            if isinstance(confirmed, int):
                return confirmed
            key = confirmed
        consent = ["--allow-other-stack"] if dump_of(args) != args.stack else []
        with session.stage("restore", f"restoring {key} into stack {args.stack}'s database"):
            done = ssh.run_agent(
                ["restore", "--from", key, "--yes", "--of-stack", dumps_of, *consent, *_bucket_args(bucket)]
            )
        if done.returncode == 0:
            with session.spinner(f"restore: probing stack {args.stack}'s services"):
                code = _health_after_restore(outputs)
        else:
            code = done.returncode
        notify_if_configured(restore_finished(args.stack, key, code, RunContext.from_env()))
        return code

    return session.with_remote(args, "restore", action)


def pitr_source_refusal(source: StackOutputs, target: StackOutputs) -> str | None:
    """Why ``target`` cannot be restored point-in-time to ``source``'s data; None when it can.

    The agent restores from the one repository its own stack archives into (``backups.bucketStack``'s
    bucket): a rebuild writes into its original's, so the original's WAL is there. Another
    environment's never is, whatever the consent: that data comes from a dump."""
    if source.environment != target.environment:
        return (
            f"--source-stack {source.stack!r} is a {source.environment} stack and {target.stack!r} a "
            f"{target.environment} one: a point-in-time restore reads only the repository "
            f"{target.stack!r} archives into, never another environment's (not even with "
            f"--from-another-stack); its dump can: --from latest --source-stack {source.stack} "
            "--from-another-stack"
        )
    theirs, ours = source.backup_bucket, target.backup_bucket
    if theirs is not None and ours is not None and theirs.name != ours.name:
        return (
            f"{target.stack!r} archives into bucket {ours.name} and {source.stack!r} into {theirs.name}: "
            f"a point-in-time restore reads only {target.stack!r}'s repository"
        )
    return None


def _route_point_in_time(args: argparse.Namespace) -> int:
    outputs = session.load(args)  # without secrets: is the database managed?
    if outputs.database is not None:
        return backup_fork.run_fork_restore(args, outputs)
    return _run_pitr_restore(args)


def _run_pitr_restore(args: argparse.Namespace) -> int:
    """A point-in-time restore; with --source-stack (a rebuild), to that stack's data: the same
    repository (the same environment's bucket), that stack's uploads."""
    if not args.source_stack or args.source_stack == args.stack:
        return backup_pitr.run_pitr_restore(args)
    if args.discard_previous:
        session.error("restore", "--source-stack does not go with --discard-previous; nothing changed")
        return exit_codes.USAGE
    if isinstance(backup_pitr.agent_restore_args(args), str) or not (args.yes or session.has_terminal()):
        return backup_pitr.run_pitr_restore(args)  # refuses with its own message, nothing loaded
    try:
        source = source_outputs(args)
    except OutputsError as error:
        session.error("restore", str(error))
        return exit_codes.USAGE
    return backup_pitr.run_pitr_restore(
        args, ["--source-stack", args.source_stack], lambda target: pitr_source_refusal(source, target)
    )


def _confirm(
    ssh: SshSession, stack: str, key: str, bucket: tuple[str, str] | None, dumps_of: str
) -> str | int:
    """Show exactly which dump replaces the database and ask; the key to restore, or an exit code."""
    listed = ssh.run_agent(["backups", "--json", *_bucket_args(bucket)], capture=True)
    if listed.returncode != 0:
        return listed.returncode
    rows = parse_rows(stack, listed.stdout)
    # "latest" is the newest dump of the stack whose data is wanted, not of any stack in the bucket.
    own = [r for r in rows if r.get("stack") == dumps_of]
    chosen = own[0] if key == LATEST and own else next((r for r in rows if r["key"] == key), None)
    where = f"bucket {bucket[0]}" if bucket else f"stack {stack}'s bucket"
    if chosen is None:
        session.error("restore", f"no backup {key} in {where}; nothing changed")
        return exit_codes.USAGE
    print(
        f"stack {stack}: REPLACE the database with {chosen['key']} (taken {chosen['time']}, "
        f"{chosen.get('size', '?')} bytes) from {where}. The app services stop during the restore.",
        file=sys.stderr,
    )
    if session.ask(f"Type the stack name ({stack}) to proceed: ") != stack:
        session.error("restore", "not confirmed; nothing changed")
        return session.DECLINED
    return str(chosen["key"])  # exactly what was shown, even if a newer dump lands meanwhile


def _health_after_restore(outputs: StackOutputs) -> int:
    # A fresh (rebuilt) stack is not behind the edge yet: probe its origin when it has one.
    mode: Mode = "origin" if outputs.origin_ip and outputs.origin_certificate else "edge"
    try:
        report = check_health(outputs, mode)
    except OutputsError as error:
        session.error("restore", f"restored, but health could not be checked: {error}")
        return exit_codes.FAILED
    sys.stdout.write(format_table(report))
    if not report.healthy:
        session.error("restore",
                      "the database was restored, but the services are not all healthy (see above)")
        return exit_codes.FAILED
    return exit_codes.OK
