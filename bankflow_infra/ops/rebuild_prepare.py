"""The checks of ``rebuild``, ``cutover`` and ``retire``: a request becomes a plan, or a refusal.

Each ``prepare_*`` reads what exists (ops/stack_inventory.py; in a real run also the stacks'
outputs), refuses bad input with one :class:`RebuildError` before anything changes, and returns
a :class:`Prepared` plan: the summary, the steps (ops/rebuild.py), what a failure at each step
means for customers, and the note printed when all went well. Nothing here prints or asks.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from bankflow_infra.contract.outputs import OutputsError
from bankflow_infra.ops.outputs import load_outputs
from bankflow_infra.ops.rebuild import (
    OPS_PROGRAM,
    ConfigEdit,
    RebuildError,
    Step,
    apply_edits,
    check_new_stack_name,
    cutover_edits,
    default_new_name,
    free_vpc_cidr,
    plan_cutover,
    plan_rebuild,
    plan_retire,
    rebuild_edits,
    retire_edits,
    shell_line,
    up_step,
)
from bankflow_infra.ops.stack_access import StackAccess
from bankflow_infra.ops.stack_inventory import Inventory, read_inventory, validate_result
from bankflow_infra.settings import NAMESPACE

Command = Literal["rebuild", "cutover", "retire"]


class NothingToDo(Exception):
    """The request is already fulfilled; the message says so (exit 0, nothing run)."""


@dataclass(frozen=True)
class Request:
    """What the operator asked for, as parsed from the command line."""

    command: Command
    stack: str
    dry_run: bool = False
    project_dir: Path | None = None
    name: str | None = None  # rebuild --name
    vpc_cidr: str | None = None  # rebuild --vpc-cidr
    to: str | None = None  # cutover --to
    droplet: int | None = None  # rebuild --droplet N: replace one droplet in place (ops/rebuild_droplet.py)


@dataclass(frozen=True)
class Prepared:
    """A checked plan, ready to confirm and run."""

    command: str
    summary: list[str]
    steps: list[Step]
    traffic_note: Callable[[int], str]  # what a failure at step index i means for customers
    done_note: str
    rerun: str  # the command line that runs exactly this plan (printed after a dry run)


def rerun_line(request: Request, new: str | None = None) -> str:
    argv = [OPS_PROGRAM, request.command, request.stack]
    if request.command == "rebuild" and request.droplet is not None:
        argv += ["--droplet", str(request.droplet)]
    elif request.command == "rebuild":
        argv += ["--name", new or str(request.name)]
        if request.vpc_cidr:
            argv += ["--vpc-cidr", request.vpc_cidr]
    if request.command == "cutover":
        argv += ["--to", str(request.to)]
    if request.project_dir is not None:
        argv += ["--project-dir", str(request.project_dir)]
    return " ".join(argv)


def _inventory(request: Request, access: StackAccess) -> Inventory:
    # A dry run calls nothing at all: the stack files are the whole picture there.
    return read_inventory(request.project_dir or Path.cwd(), None if request.dry_run else access)


def _check_stack(stack: str) -> None:
    try:
        check_new_stack_name(stack)
    except RebuildError:
        raise RebuildError(f"{stack!r} is not a stack name (letters, digits, _ . -)") from None


def _dry_run_note(request: Request) -> list[str]:
    if not request.dry_run:
        return []
    return ["Dry run: stacks and configs come from the Pulumi.<stack>.yaml files only (pulumi is not "
            "called); the real run also asks `pulumi stack ls` and checks the stacks' outputs."]


# --------------------------------------------------------------------------- rebuild


def prepare_rebuild(request: Request, access: StackAccess) -> Prepared:
    stack: str = request.stack
    _check_stack(stack)
    if request.name is not None:
        check_new_stack_name(request.name)
        if request.name == stack:
            raise RebuildError(f"--name {request.name!r} is STACK itself: the rebuild must be a new stack")
    inventory = _inventory(request, access)
    source_values = inventory.require(stack)
    source = inventory.settings(stack)
    known = set(inventory.stacks) | set(inventory.configs)
    new = request.name or default_new_name(stack, known)
    if new in known:
        raise RebuildError(f"stack {new!r} already exists (or Pulumi.{new}.yaml is here): choose another "
                           "--name, or resume that rebuild with the commands it printed")
    ranges = {s: c for s, c in inventory.vpc_ranges().items() if s != new}
    cidr = _choose_cidr(request.vpc_cidr, ranges)
    edits = rebuild_edits(source, cidr)
    validate_result(inventory, new, apply_edits(source_values, edits))
    in_use = ", ".join(f"{s} {c}" for s, c in sorted(ranges.items())) or "none"
    summary = [
        f"Rebuild {stack} as {new}: server layer only, {stack}'s newest state restored (point in time). "
        f"Traffic stays on {stack} (run `cutover` afterwards).",
        f"VPC range for {new}: {cidr} (ranges in use: {in_use})",
        *_unreadable_warning(inventory),
        *_dry_run_note(request),
    ]
    return Prepared(
        command="rebuild",
        summary=summary,
        steps=plan_rebuild(stack, new, edits),
        traffic_note=lambda _index: f"Traffic has not moved: {stack} still serves (rebuild never cuts over).",
        done_note=f"Rebuild done: {new} is restored and healthy through its origin. Traffic still goes to "
        f"{stack}. To move it: {OPS_PROGRAM} cutover {stack} --to {new}",
        rerun=rerun_line(request, new),
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


def prepare_cutover(request: Request, access: StackAccess) -> Prepared:
    stack, new = request.stack, str(request.to)
    _check_stack(stack)
    _check_stack(new)
    if new == stack:
        raise RebuildError(f"--to {new!r} is STACK itself; to serve from {stack}'s own droplet again: "
                           f"pulumi config rm --path -s {stack} {NAMESPACE}:edge.originStack && "
                           f"pulumi up -s {stack} --yes")
    inventory = _inventory(request, access)
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
    if not request.dry_run:
        _require_own_server(new, access)
    back = shell_line(_rollback_steps(stack), request.project_dir)
    return Prepared(
        command="cutover",
        summary=[f"Cut over {stack}'s DNS records to {new}'s droplet (updated in place, no DNS gap).",
                 *_dry_run_note(request)],
        steps=plan_cutover(stack, new),
        traffic_note=lambda index: _cutover_traffic(stack, new, index, back),
        done_note=f"Cutover done: {stack}'s hostnames are served by {new}. {stack}'s old server still "
        f"runs: to move back while it does: {back}. To switch it off: {OPS_PROGRAM} retire {stack}",
        rerun=rerun_line(request),
    )


def _rollback_steps(stack: str) -> list[Step]:
    return [ConfigEdit("edge.originStack", None).step(stack), up_step(stack, "serve from own droplet")]


def _cutover_traffic(stack: str, new: str, index: int, back: str) -> str:
    if index <= 1:
        return f"Traffic has not moved: {stack} still serves from its own origin."
    if index == 2:
        return (f"`pulumi up` failed: some of {stack}'s records may already point at {new}. "
                f"Check `bankflow-infra health {stack}`; to move back: {back}")
    return f"Traffic has moved to {new}, but {stack} is not healthy through Cloudflare. To move back: {back}"


def _require_own_server(stack: str, access: StackAccess) -> None:
    try:
        outputs = load_outputs(stack, runner=access.runner, cwd=access.cwd)
    except OutputsError as error:
        raise RebuildError(str(error)) from None
    if outputs.origin_ip is None or outputs.origin_stack != stack:
        raise RebuildError(f"stack {stack!r} has no deployed server of its own (origin_ip "
                           f"{outputs.origin_ip}, served by {outputs.origin_stack!r}): run rebuild first")


# --------------------------------------------------------------------------- retire


def prepare_retire(request: Request, access: StackAccess) -> Prepared:
    stack = request.stack
    _check_stack(stack)
    inventory = _inventory(request, access)
    settings = inventory.settings(stack)
    origin = settings.edge.origin_stack
    if not settings.server.enabled:
        raise NothingToDo(f"{stack}'s server is already switched off (bankflow:server.enabled false): "
                          "nothing to do.")
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
    if not request.dry_run:
        _require_applied_cutover(stack, origin, access)
    kept, unprotect = _check_protected(inventory.project, stack, inventory.require(stack), after)
    return Prepared(
        command="retire",
        summary=[f"Retire {stack}'s own server: its edge is served by {origin}.", *_dry_run_note(request)],
        steps=plan_retire(stack, unprotect),
        traffic_note=lambda _index: f"Traffic is unaffected: {stack}'s edge is served by {origin}.",
        done_note=f"Retired: {stack}'s server layer is gone; its edge is served by {origin}."
        + (f"\nStill protected (not deleted): {', '.join(kept)}." if kept else ""),
        rerun=rerun_line(request),
    )


def _require_applied_cutover(stack: str, origin: str, access: StackAccess) -> None:
    """The config says the edge moved; the outputs say whether the last `pulumi up` applied it."""
    try:
        outputs = load_outputs(stack, runner=access.runner, cwd=access.cwd)
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


# Protected only against an accidental replacement by `up` (issue 10): retiring deletes it on
# purpose, so the retire lifts that protection itself, right before its `up`.
RETIRED_ON_PURPOSE: Final = frozenset({"digitalocean:index/droplet:Droplet"})


def _check_protected(
    project: str, stack: str, before: Mapping[str, Any], after: Mapping[str, Any]
) -> tuple[list[str], list[str]]:
    """Refuse a retire that `pulumi up` would refuse halfway; else (the protected resources kept,
    the protected droplet URNs whose protection the retire lifts before deleting them).

    Pulumi stops in the preview when the program drops a `protect`ed resource ("cannot be deleted
    because it is protected"), which would leave the config saying "retired" and every later
    `pulumi up` of the stack failing. Data (the volume, the bucket) is never unprotected here:
    that is a person's decision.
    """
    protected_before = _protected(project, stack, before)
    protected_after = _protected(project, stack, after)
    unprotect = [urn for key, urn in sorted(protected_before.items())
                 if key[0] in RETIRED_ON_PURPOSE and key not in protected_after]
    dropped = [urn for urn in protected_deletions(protected_before, protected_after) if urn not in unprotect]
    if dropped:
        commands = "\n".join(f"  pulumi state unprotect -s {stack} --yes '{urn}'" for urn in dropped)
        raise RebuildError(
            f"refusing to retire {stack!r}: with bankflow:server.enabled false the program no longer "
            f"declares these protected resources, so `pulumi up` would stop in its preview and leave "
            f"{stack} half-retired:\n"
            + "".join(f"  - {urn}\n" for urn in dropped)
            + f"(URNs as the program declares them: compare `pulumi stack --show-urns -s {stack}`.)\n"
            + f"Nothing was changed. The data volume stays protected and keeps its data; {stack}'s old "
            f"server serves no traffic. To release it deliberately (this DELETES the volume and its "
            f"data) only after the new server's restore is verified and a fresh dump exists:\n"
            f"{commands}\n"
            f"  pulumi config set --path -s {stack} {NAMESPACE}:server.enabled false && "
            f"pulumi up -s {stack} --yes")
    return sorted(protected_after.values()), unprotect


PREPARE: dict[str, Callable[[Request, StackAccess], Prepared]] = {
    "rebuild": prepare_rebuild,
    "cutover": prepare_cutover,
    "retire": prepare_retire,
}
