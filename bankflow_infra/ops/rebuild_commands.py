"""``bankflow-infra rebuild|cutover|retire``: emergency rebuild and cutover (see ops/rebuild.py).

Each command reads what exists (stack files, then read-only pulumi queries), refuses bad input
with one message and exit 2 before anything changes, prints its plan, asks (on a TTY, unless
--yes), then runs the steps in order. A failing step stops the run and prints the exact
remaining commands. Exit codes: 0 done (or dry run), 1 a step failed after something changed
(or the operator declined), 2 bad input or refused, nothing changed.
"""

from __future__ import annotations

import argparse
import ipaddress
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bankflow_infra.ops.cli import EXIT_BAD_INPUT
from bankflow_infra.ops.rebuild import (
    OPS_PROGRAM,
    ConfigEdit,
    Failure,
    Inventory,
    PulumiQueries,
    RebuildError,
    Runner,
    Step,
    StepRunner,
    apply_edits,
    check_new_stack_name,
    cutover_edits,
    default_new_name,
    execute,
    format_plan,
    free_vpc_cidr,
    plan_cutover,
    plan_rebuild,
    plan_retire,
    read_inventory,
    rebuild_edits,
    retire_edits,
    shell_line,
    stop_message,
    validate_result,
)
from bankflow_infra.settings import NAMESPACE

EXIT_STEP_FAILED = 1
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

        return Runners(subprocess.run, ops, _ask if sys.stdin.isatty() else None)


def _ask(question: str) -> bool:
    return input(question).strip().lower() in ("y", "yes")


@dataclass(frozen=True)
class Prepared:
    """A checked plan, ready to confirm and run."""

    command: str
    summary: list[str]
    steps: list[Step]
    traffic_note: Callable[[int], str]  # what a failure at step index i means for customers
    done_note: str


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


def run_command(args: argparse.Namespace, runners: Runners) -> int:
    """Prepare (all checks, nothing changed), print, confirm, run. The one flow of all three."""
    name = f"bankflow-infra {args.command}"
    try:
        prepared = PREPARE[args.command](args, runners)
    except RebuildError as error:
        print(f"{name}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if prepared is None:
        return 0
    for line in prepared.summary:
        print(line)
    print(f"Steps ({len(prepared.steps)}):")
    sys.stdout.write(format_plan(prepared.steps))
    if args.dry_run:
        print(f"Dry run: nothing was run. To run these steps: {_rerun(args)}")
        return 0
    if not args.yes:
        if runners.confirm is None:
            print(f"{name}: not running without --yes when there is no terminal to confirm on",
                  file=sys.stderr)
            return EXIT_BAD_INPUT
        if not runners.confirm(f"Run these {len(prepared.steps)} steps? [y/N] "):
            print(f"{name}: declined; nothing was run", file=sys.stderr)
            return EXIT_STEP_FAILED
    sys.stdout.flush()
    failure = execute(prepared.steps, lambda step: _run_step(step, runners, args.project_dir),
                      lambda line: print(line, flush=True))
    if failure is not None:
        return _stopped(prepared, failure, args.project_dir)
    print(prepared.done_note)
    return 0


def _run_step(step: Step, runners: Runners, cwd: Path | None) -> int:
    if step.kind == "ops":
        return runners.ops(step)
    sys.stdout.flush()
    try:
        # No timeout: a `pulumi up` of a fresh server legitimately takes many minutes.
        return runners.pulumi(list(step.argv), cwd=cwd, check=False).returncode
    except FileNotFoundError:
        print("the pulumi CLI is not installed (https://www.pulumi.com/docs/install/)", file=sys.stderr)
        return 127


def _stopped(prepared: Prepared, failure: Failure, project_dir: Path | None) -> int:
    steps = prepared.steps
    print(stop_message(prepared.command, steps, failure.index, failure.code, project_dir,
                       prepared.traffic_note(failure.index)), file=sys.stderr, end="")
    refused = not steps[failure.index].changes and not any(s.changes for s in steps[: failure.index])
    # A failed read-only check before any change is a refusal (exit 2): nothing happened.
    return EXIT_BAD_INPUT if refused else EXIT_STEP_FAILED


def _rerun(args: argparse.Namespace) -> str:
    argv = [OPS_PROGRAM, args.command, args.stack]
    if args.command == "rebuild":
        argv += ["--name", args.resolved_name]
        if args.vpc_cidr:
            argv += ["--vpc-cidr", args.vpc_cidr]
    if args.command == "cutover":
        argv += ["--to", args.to]
    if args.project_dir is not None:
        argv += ["--project-dir", str(args.project_dir)]
    return " ".join(argv)


def _inventory(args: argparse.Namespace, runners: Runners) -> Inventory:
    # A dry run calls nothing at all: the stack files are the whole picture there.
    queries = None if args.dry_run else PulumiQueries(runners.pulumi, args.project_dir)
    return read_inventory(args.project_dir or Path.cwd(), queries)


def _check_stack(stack: str) -> None:
    try:
        check_new_stack_name(stack)
    except RebuildError:
        raise RebuildError(f"{stack!r} is not a stack name (letters, digits, _ . -)") from None


def _dry_run_note(args: argparse.Namespace) -> list[str]:
    if not args.dry_run:
        return []
    return ["Dry run: stacks and configs come from the Pulumi.<stack>.yaml files only (pulumi is not "
            "called); the real run also asks `pulumi stack ls` and checks the stacks' outputs."]


# --------------------------------------------------------------------------- rebuild


def prepare_rebuild(args: argparse.Namespace, runners: Runners) -> Prepared:
    stack: str = args.stack
    _check_stack(stack)
    if args.name is not None:
        check_new_stack_name(args.name)
        if args.name == stack:
            raise RebuildError(f"--name {args.name!r} is STACK itself: the rebuild must be a new stack")
    inventory = _inventory(args, runners)
    source_values = inventory.require(stack)
    source = inventory.settings(stack)
    known = set(inventory.stacks) | set(inventory.configs)
    new = args.name or default_new_name(stack, known)
    if new in known:
        raise RebuildError(f"stack {new!r} already exists (or Pulumi.{new}.yaml is here): choose another "
                           "--name, or resume that rebuild with the commands it printed")
    ranges = {s: c for s, c in inventory.vpc_ranges().items() if s != new}
    cidr = _choose_cidr(args.vpc_cidr, ranges)
    edits = rebuild_edits(source, cidr)
    validate_result(inventory, new, apply_edits(source_values, edits))
    args.resolved_name = new
    in_use = ", ".join(f"{s} {c}" for s, c in sorted(ranges.items())) or "none"
    summary = [
        f"Rebuild {stack} as {new}: server layer only, {stack}'s latest backup restored. "
        f"Traffic stays on {stack} (run `cutover` afterwards).",
        f"VPC range for {new}: {cidr} (ranges in use: {in_use})",
        *_unreadable_warning(inventory),
        *_dry_run_note(args),
    ]
    return Prepared(
        command="rebuild",
        summary=summary,
        steps=plan_rebuild(stack, new, edits),
        traffic_note=lambda _index: f"Traffic has not moved: {stack} still serves (rebuild never cuts over).",
        done_note=f"Rebuild done: {new} is restored and healthy through its origin. Traffic still goes to "
        f"{stack}. To move it: {OPS_PROGRAM} cutover {stack} --to {new}",
    )


def _choose_cidr(requested: str | None, ranges: Mapping[str, str]) -> str:
    if requested is None:
        return free_vpc_cidr(ranges.values())
    try:
        wanted = ipaddress.ip_network(requested, strict=True)
    except ValueError:
        raise RebuildError(f"--vpc-cidr {requested!r} is not a CIDR with its host bits zero") from None
    for other, cidr in sorted(ranges.items()):
        try:
            clash = wanted.overlaps(ipaddress.ip_network(cidr, strict=False))
        except (ValueError, TypeError):
            continue
        if clash:
            raise RebuildError(f"--vpc-cidr {requested} overlaps stack {other!r}'s range {cidr}")
    return requested  # the reserved-range and private checks run in validate_result


def _unreadable_warning(inventory: Inventory) -> list[str]:
    missing = inventory.unreadable()
    if not missing:
        return []
    return [f"Warning: no config readable for {', '.join(missing)}: their VPC ranges are not known here."]


# --------------------------------------------------------------------------- cutover


def prepare_cutover(args: argparse.Namespace, runners: Runners) -> Prepared:
    stack, new = args.stack, args.to
    _check_stack(stack)
    _check_stack(new)
    if new == stack:
        raise RebuildError(f"--to {new!r} is STACK itself; to serve from {stack}'s own droplet again: "
                           f"pulumi config rm --path -s {stack} {NAMESPACE}:edge.originStack && "
                           f"pulumi up -s {stack} --yes")
    inventory = _inventory(args, runners)
    inventory.require(new)
    target = inventory.settings(stack)
    if not target.edge.enabled:
        raise RebuildError(f"stack {stack!r} has no edge (bankflow:edge.enabled false): nothing to cut over")
    serving = inventory.settings(new)
    if not serving.server.enabled:
        raise RebuildError(f"stack {new!r} has no server (bankflow:server.enabled false): it cannot serve")
    if serving.environment != target.environment:
        raise RebuildError(f"stack {new!r} is {serving.environment}, {stack!r} is {target.environment}: "
                           "an edge only moves to a server of the same environment")
    validate_result(inventory, stack, apply_edits(inventory.require(stack), cutover_edits(new)))
    if not args.dry_run:
        _require_own_server(new, runners, args.project_dir)
    back = shell_line(_rollback_steps(stack), args.project_dir)
    return Prepared(
        command="cutover",
        summary=[f"Cut over {stack}'s DNS records to {new}'s droplet (updated in place, no DNS gap).",
                 *_dry_run_note(args)],
        steps=plan_cutover(stack, new),
        traffic_note=lambda index: _cutover_traffic(stack, new, index, back),
        done_note=f"Cutover done: {stack}'s hostnames are served by {new}. {stack}'s old server still "
        f"runs: to move back while it does: {back}. To switch it off: {OPS_PROGRAM} retire {stack}",
    )


def _rollback_steps(stack: str) -> list[Step]:
    return [ConfigEdit("edge.originStack", None).step(stack),
            Step("pulumi up", ("pulumi", "up", "-s", stack, "--yes"), "pulumi", "serve from own droplet")]


def _cutover_traffic(stack: str, new: str, index: int, back: str) -> str:
    if index <= 1:
        return f"Traffic has not moved: {stack} still serves from its own origin."
    if index == 2:
        return (f"`pulumi up` failed: some of {stack}'s records may already point at {new}. "
                f"Check `bankflow-infra health {stack}`; to move back: {back}")
    return f"Traffic has moved to {new}, but {stack} is not healthy through Cloudflare. To move back: {back}"


def _require_own_server(stack: str, runners: Runners, cwd: Path | None) -> None:
    from bankflow_infra.ops.outputs import OutputsError, load_outputs

    try:
        outputs = load_outputs(stack, runner=runners.pulumi, cwd=cwd)
    except OutputsError as error:
        raise RebuildError(str(error)) from None
    if outputs.origin_ip is None or outputs.origin_stack != stack:
        raise RebuildError(f"stack {stack!r} has no deployed server of its own (origin_ip "
                           f"{outputs.origin_ip}, served by {outputs.origin_stack!r}): run rebuild first")


# --------------------------------------------------------------------------- retire


def prepare_retire(args: argparse.Namespace, runners: Runners) -> Prepared | None:
    stack = args.stack
    _check_stack(stack)
    inventory = _inventory(args, runners)
    settings = inventory.settings(stack)
    origin = settings.edge.origin_stack
    if not settings.server.enabled:
        print(f"{stack}'s server is already switched off (bankflow:server.enabled false): nothing to do.")
        return None
    if not settings.edge.enabled or origin is None:
        raise RebuildError(
            f"refusing to retire {stack!r}: its own server serves its edge (bankflow:edge.originStack "
            f"is not set), so switching it off would take the site down. Cut over first: "
            f"{OPS_PROGRAM} cutover {stack} --to NEW")
    clients = inventory.pointing_at(stack)
    if clients:
        raise RebuildError(f"refusing to retire {stack!r}: its server serves the edge of "
                           f"{', '.join(clients)} (their bankflow:edge.originStack)")
    inventory.require(origin.rsplit("/", 1)[-1])
    after = apply_edits(inventory.require(stack), retire_edits())
    validate_result(inventory, stack, after)
    if not args.dry_run:
        _require_applied_cutover(stack, origin, runners, args.project_dir)
    kept = _check_protected(inventory.project, stack, inventory.require(stack), after)
    return Prepared(
        command="retire",
        summary=[f"Retire {stack}'s own server: its edge is served by {origin}.", *_dry_run_note(args)],
        steps=plan_retire(stack),
        traffic_note=lambda _index: f"Traffic is unaffected: {stack}'s edge is served by {origin}.",
        done_note=f"Retired: {stack}'s server layer is gone; its edge is served by {origin}."
        + (f"\nStill protected (not deleted): {', '.join(kept)}." if kept else ""),
    )


def _require_applied_cutover(stack: str, origin: str, runners: Runners, cwd: Path | None) -> None:
    """The config says the edge moved; the outputs say whether the last `pulumi up` applied it."""
    from bankflow_infra.ops.outputs import OutputsError, load_outputs

    try:
        outputs = load_outputs(stack, runner=runners.pulumi, cwd=cwd)
    except OutputsError as error:
        raise RebuildError(str(error)) from None
    if outputs.origin_stack != origin:
        raise RebuildError(
            f"refusing to retire {stack!r}: its config points the edge at {origin!r} but the last "
            f"`pulumi up` still serves from {outputs.origin_stack!r}. Finish the cutover first: "
            f"{OPS_PROGRAM} cutover {stack} --to {origin}")


def _protected(project: str, stack: str, values: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    # The real program under the mock engine (as `plan`): which resources it protects.
    from bankflow_infra.ops.plan import run_program

    result = run_program(project, stack, {f"{NAMESPACE}:{k}": v for k, v in values.items()})
    return {(r.type, r.name): r.urn for r in result.recorder.resources if r.protect}


def protected_deletions(before: Mapping[tuple[str, str], str],
                        after: Mapping[tuple[str, str], str]) -> list[str]:
    """URNs of protected resources that the change would remove from the program."""
    return [urn for key, urn in sorted(before.items()) if key not in after]


def _check_protected(
    project: str, stack: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> list[str]:
    """Refuse a retire that `pulumi up` would refuse halfway; the kept protected resources otherwise.

    Pulumi stops in the preview when the program drops a `protect`ed resource ("cannot be deleted
    because it is protected"), which would leave the config saying "retired" and every later
    `pulumi up` of the stack failing. Nothing is unprotected here: that is a person's decision.
    """
    protected_before = _protected(project, stack, before)
    protected_after = _protected(project, stack, after)
    dropped = protected_deletions(protected_before, protected_after)
    if dropped:
        unprotect = "\n".join(f"  pulumi state unprotect -s {stack} --yes '{urn}'" for urn in dropped)
        raise RebuildError(
            f"refusing to retire {stack!r}: with bankflow:server.enabled false the program no longer "
            f"declares these protected resources, so `pulumi up` would stop in its preview and leave "
            f"{stack} half-retired:\n"
            + "".join(f"  - {urn}\n" for urn in dropped)
            + f"(URNs as the program declares them: compare `pulumi stack --show-urns -s {stack}`.)\n"
            + f"Nothing was changed. The data volume stays protected and keeps its data; {stack}'s old "
            f"server serves no traffic. To release it deliberately (this DELETES the volume and its "
            f"data) only after the new server's restore is verified and a fresh dump exists:\n"
            f"{unprotect}\n"
            f"  pulumi config set --path -s {stack} {NAMESPACE}:server.enabled false && "
            f"pulumi up -s {stack} --yes")
    return sorted(protected_after.values())


PREPARE: dict[str, Callable[[argparse.Namespace, Runners], Prepared | None]] = {
    "rebuild": prepare_rebuild,
    "cutover": prepare_cutover,
    "retire": prepare_retire,
}
