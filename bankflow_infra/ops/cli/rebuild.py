"""``bankflow-infra rebuild|cutover|retire``: emergency rebuild and cutover.

Engines: ops/rebuild.py (steps and plans), ops/stack_inventory.py (what exists),
ops/rebuild_prepare.py (the checks), ops/stack_access.py (the pulumi CLI).

Each command reads what exists (stack files, then read-only pulumi queries), refuses bad input
with one message and exit 2 before anything changes, prints its plan, asks (on a TTY, unless
--yes), then runs the steps in order. A failing step stops the run and prints the exact
remaining commands. Exit codes: 0 done (or dry run), 1 a step failed after something changed
(or the operator declined), 2 bad input or refused, nothing changed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bankflow_infra.contract import exit_codes
from bankflow_infra.ops.cli import session
from bankflow_infra.ops.cli.status import notify_if_configured
from bankflow_infra.ops.notify_events import RunContext, rebuild_finished
from bankflow_infra.ops.rebuild import (
    Failure,
    RebuildError,
    Step,
    StepRunner,
    execute,
    format_plan,
    stop_message,
)
from bankflow_infra.ops.rebuild_droplet import prepare_replace_droplet
from bankflow_infra.ops.rebuild_prepare import PREPARE, NothingToDo, Prepared, Request
from bankflow_infra.ops.stack_access import PulumiMissing, Runner, StackAccess

Confirm = Callable[[str], bool]


@dataclass(frozen=True)
class Runners:
    """Everything that reaches outside the process, injectable for tests."""

    pulumi: Runner  # subprocess.run-compatible: read-only queries (captured) and pulumi steps
    ops: StepRunner  # our own CLI steps (restore, health, plan)
    confirm: Confirm | None  # None: no TTY to ask on

    @staticmethod
    def default(cwd: Path | None) -> Runners:
        def ops(step: Step) -> int:
            # A child process, not in-process: a step's failure or exit() cannot take the
            # orchestrating command down with it, and its output streams as it happens.
            argv = [sys.executable, "-m", "bankflow_infra.ops.cli", *step.argv[1:]]
            return subprocess.run(argv, cwd=cwd, check=False).returncode

        return Runners(subprocess.run, ops, session.confirmed if session.has_terminal() else None)


# --------------------------------------------------------------------------- registration


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dry-run", action="store_true",
                        help="print the exact commands and run nothing (not even pulumi queries)")
    parser.add_argument("--yes", action="store_true",
                        help="do not ask for confirmation (required without a TTY)")
    parser.add_argument("--project-dir", type=Path, default=None,
                        help="directory holding Pulumi.yaml, where pulumi runs (default: current directory)")


def register(commands: Any) -> None:
    rebuild = commands.add_parser(
        "rebuild", help="emergency: build a fresh server-only stack from STACK's config, restore, verify",
        description="Create NEW (default STACK-rN) from STACK's config with the server layer only and "
        "a fresh VPC range, deploy it, restore STACK's latest backup into it and verify it through "
        "its origin. Traffic does not move: run `cutover` afterwards.")
    rebuild.add_argument("stack", metavar="STACK", help="the stack to rebuild (e.g. production)")
    rebuild.add_argument("--name", metavar="NEW",
                         help="the new stack's name (default: STACK-rN, first free N)")
    rebuild.add_argument("--vpc-cidr", metavar="CIDR",
                         help="VPC range for NEW (default: the first free /20 from 10.130.0.0)")
    rebuild.add_argument("--droplet", type=_droplet_number, metavar="N",
                         help="a load-balanced stack: replace only its droplet N (1 = the first of "
                         "origin_ips) in place, the others keep serving; no new stack")
    _common(rebuild)
    rebuild.set_defaults(handler=lambda args: run_command(args, Runners.default(args.project_dir)))

    cutover = commands.add_parser(
        "cutover", help="point STACK's DNS at NEW's droplet (records updated in place, no DNS gap)",
        description="Check NEW serves through its origin, set STACK's bankflow:edge.originStack to NEW, "
        "`pulumi up` STACK and verify it through Cloudflare.")
    cutover.add_argument("stack", metavar="STACK",
                         help="the stack that owns the DNS records (e.g. production)")
    cutover.add_argument("--to", required=True, metavar="NEW", dest="to",
                         help="the stack whose droplet serves")
    _common(cutover)
    cutover.set_defaults(handler=lambda args: run_command(args, Runners.default(args.project_dir)))

    retire = commands.add_parser(
        "retire", help="switch off STACK's own server once its edge is served by another stack",
        description="Only when STACK's bankflow:edge.originStack points at another stack and the last "
        "`pulumi up` applied it: set bankflow:server.enabled false and `pulumi up` STACK.")
    retire.add_argument("stack", metavar="STACK", help="the stack whose old server to switch off")
    _common(retire)
    retire.set_defaults(handler=lambda args: run_command(args, Runners.default(args.project_dir)))


# --------------------------------------------------------------------------- running


def _droplet_number(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a droplet number (1, 2, ... in roll order)")
    return int(text)


def request_of(args: argparse.Namespace) -> Request:
    return Request(command=args.command, stack=args.stack, dry_run=args.dry_run, project_dir=args.project_dir,
                   name=getattr(args, "name", None), vpc_cidr=getattr(args, "vpc_cidr", None),
                   to=getattr(args, "to", None), droplet=getattr(args, "droplet", None))


def run_command(args: argparse.Namespace, runners: Runners) -> int:
    """Prepare (all checks, nothing changed), print, confirm, run. The one flow of all three."""
    request = request_of(args)
    try:
        prepare = prepare_replace_droplet if request.droplet is not None else PREPARE[request.command]
        prepared = prepare(request, StackAccess(runners.pulumi, request.project_dir))
    except NothingToDo as done:
        print(done)
        return exit_codes.OK
    except RebuildError as error:
        session.error(args.command, str(error))
        return exit_codes.USAGE
    for line in prepared.summary:
        print(line)
    print(f"Steps ({len(prepared.steps)}):")
    sys.stdout.write(format_plan(prepared.steps))
    if request.dry_run:
        print(f"Dry run: nothing was run. To run these steps: {prepared.rerun}")
        return exit_codes.OK
    if not args.yes:
        refused = _not_confirmed(request, prepared, runners.confirm)
        if refused is not None:
            return refused
    sys.stdout.flush()
    started = time.monotonic()

    def progress(line: str) -> None:
        # On a terminal each step line carries the time since the run started: a rebuild takes
        # many minutes and its pulumi steps can be silent for long stretches.
        clock = f" (+{session.elapsed_text(time.monotonic() - started)})" if sys.stdout.isatty() else ""
        print(line + clock, flush=True)

    failure = execute(prepared.steps, lambda step: _run_step(step, runners, request.project_dir), progress)
    if request.command == "rebuild" and request.droplet is None:
        outcome = {"rebuild": "failure" if failure is not None else "success"}
        notice = rebuild_finished(request.stack, _new_stack(prepared), outcome, RunContext.from_env())
        notify_if_configured(notice)
    if failure is not None:
        return _stopped(prepared, failure, request.project_dir)
    print(prepared.done_note)
    return exit_codes.OK


def _new_stack(prepared: Prepared) -> str:
    """The new stack's name as the plan chose it (its rerun line always names it)."""
    words = prepared.rerun.split()
    return words[words.index("--name") + 1] if "--name" in words[:-1] else "?"


def _not_confirmed(request: Request, prepared: Prepared, confirm: Confirm | None) -> int | None:
    """None when the operator said yes; else the exit code (nothing was run)."""
    if confirm is None:
        session.error(request.command, "not running without --yes when there is no terminal to confirm on")
        return exit_codes.USAGE
    if not confirm(f"Run these {len(prepared.steps)} steps? [y/N] "):
        session.error(request.command, "declined; nothing was run")
        return session.DECLINED
    return None


def _run_step(step: Step, runners: Runners, cwd: Path | None) -> int:
    if step.kind == "ops":
        return runners.ops(step)
    sys.stdout.flush()
    try:
        return StackAccess(runners.pulumi, cwd).run_step(step.argv)
    except PulumiMissing as missing:
        print(missing, file=sys.stderr)
        return 127


def _stopped(prepared: Prepared, failure: Failure, project_dir: Path | None) -> int:
    steps = prepared.steps
    print(stop_message(prepared.command, steps, failure.index, failure.code, project_dir,
                       prepared.traffic_note(failure.index)), file=sys.stderr, end="")
    refused = not steps[failure.index].changes and not any(s.changes for s in steps[: failure.index])
    # A failed read-only check before any change is a refusal (exit 2): nothing happened.
    return exit_codes.USAGE if refused else exit_codes.FAILED
