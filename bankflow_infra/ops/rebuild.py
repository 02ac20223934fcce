"""Emergency rebuild, cutover and retire: the command plans (pure) and the step executor.

DESIGN "Emergency rebuild": a fresh stack (``production-r1``) gets the same config with the
server layer only, a VPC range of its own and the environment's latest backup, and is verified
through its origin. ``cutover`` then points the original stack's edge at it (DNS records are
updated in place: same resources, only ``content`` changes, so there is no DNS gap), and
``retire`` switches the old server off once nothing is served from it.

Every command sequence is computed by a pure ``plan_*`` function returning ``Step``s, so the
dry run, the real run, the "to resume" hint and the tests share one list and cannot drift.
Reading what exists (stack files, ``pulumi stack ls``) is ops/stack_inventory.py; the checks
that turn a request into a plan are ops/rebuild_prepare.py.
"""

from __future__ import annotations

import copy
import ipaddress
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from bankflow_infra.contract import grammar
from bankflow_infra.ops.stack_access import ConfigValue, config_argv, init_argv, up_argv
from bankflow_infra.settings import DO_RESERVED_RANGES, Settings

StepKind = Literal["pulumi", "ops"]
# Our own CLI as printed in plans and resume hints; the step runner maps it to this Python.
OPS_PROGRAM: Final = "bankflow-infra"
# Fresh ranges come from here upwards: staging/production use 10.110/10.120, so a rebuild never
# lands next to them by accident and stays recognisable as a rebuild in the DO console.
FRESH_VPC_START: Final = ipaddress.IPv4Network("10.130.0.0/20")
FRESH_VPC_END: Final = ipaddress.IPv4Address("10.255.255.255")
_REBUILD_SUFFIX_RE: Final = re.compile(r"-r\d+$")


class RebuildError(Exception):
    """Bad input or a refused operation: one message, exit 2, nothing changed."""


# --------------------------------------------------------------------------- the step model


@dataclass(frozen=True)
class Step:
    """One command of a plan: a pulumi CLI call or one of our own CLI commands."""

    name: str  # short label for progress and failure messages ("pulumi up", "restore")
    argv: tuple[str, ...]
    kind: StepKind
    description: str
    # False for read-only checks: a failure before any changing step means nothing changed.
    changes: bool = True
    # What to run instead when this step cannot work as such; printed with the resume line after
    # a failure here. Its description says when, and what it gives up.
    fallback: Step | None = None

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class ConfigEdit:
    """One ``pulumi config set/rm --path`` under the bankflow namespace; value None removes."""

    path: str  # e.g. "edge.enabled"
    value: ConfigValue

    def argv(self, stack: str) -> tuple[str, ...]:
        return config_argv(stack, self.path, self.value)

    def step(self, stack: str) -> Step:
        what = f"remove {self.path}" if self.value is None else f"{self.path} = {self.argv(stack)[-1]}"
        return Step(f"config {self.path}", self.argv(stack), "pulumi", f"{stack}: {what}")


def apply_edits(values: Mapping[str, Any], edits: Iterable[ConfigEdit]) -> dict[str, Any]:
    """``values`` (bankflow keys, no namespace) as the edits' `config set --path` leave them."""
    result = copy.deepcopy(dict(values))
    for edit in edits:
        top, _, rest = edit.path.partition(".")
        if not rest:
            if edit.value is None:
                result.pop(top, None)
            else:
                result[top] = edit.value
            continue
        section = result.get(top)
        section = dict(section) if isinstance(section, Mapping) else {}
        if edit.value is None:
            section.pop(rest, None)
        else:
            section[rest] = edit.value
        result[top] = section
    return result


def _ops(
    name: str, args: Sequence[str], description: str, changes: bool = True, fallback: Step | None = None
) -> Step:
    return Step(name, (OPS_PROGRAM, *args), "ops", description, changes, fallback)


def up_step(stack: str, description: str) -> Step:
    return Step("pulumi up", up_argv(stack), "pulumi", description)


# --------------------------------------------------------------------------- pure planning


def check_new_stack_name(name: str) -> None:
    # A leading letter too: `config set --path` would store an all-digit name (edge.originStack
    # 123) as a number, not a stack name.
    if not grammar.is_new_stack_name(name):
        raise RebuildError(f"{name!r} is not a usable stack name: {grammar.NEW_STACK_NAME_RULE}")


def default_new_name(stack: str, existing: Iterable[str]) -> str:
    """``STACK-rN`` with the first free N; a rebuild of ``production-r1`` is ``production-r2``."""
    taken = set(existing)
    base = _REBUILD_SUFFIX_RE.sub("", stack)
    number = 1
    while f"{base}-r{number}" in taken:
        number += 1
    return f"{base}-r{number}"


def _networks(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network]:
    networks = []
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            continue  # an invalid range is that stack's problem; it cannot collide with a valid one
        if isinstance(network, ipaddress.IPv4Network):
            networks.append(network)
    return networks


def free_vpc_cidr(used: Iterable[str]) -> str:
    """The first /20 from 10.130.0.0 upwards that overlaps no used and no DO-reserved range."""
    blocked = _networks([*used, *DO_RESERVED_RANGES])
    candidate = FRESH_VPC_START
    while candidate.broadcast_address <= FRESH_VPC_END:
        if not any(candidate.overlaps(b) for b in blocked):
            return str(candidate)
        candidate = ipaddress.IPv4Network((int(candidate.network_address) + candidate.num_addresses, 20))
    raise RebuildError("no free /20 left between 10.130.0.0 and 10.255.255.255 for the new VPC")


def rebuild_edits(source: Settings, vpc_cidr: str) -> tuple[ConfigEdit, ...]:
    """What turns a copy of ``source``'s config into a server-only stack of its own."""
    edits: list[ConfigEdit] = []
    if not source.server.enabled:
        edits.append(ConfigEdit("server.enabled", True))  # rebuilding from a retired stack
    edits += [
        # Edge off: DNS names, zone settings and the bucket stay owned by the original stack.
        ConfigEdit("edge.enabled", False),
        ConfigEdit("edge.zoneSettings", False),
    ]
    if source.edge.origin_stack is not None:
        edits.append(ConfigEdit("edge.originStack", None))  # meaningless without an edge
    edits += [
        # VPC ranges are unique per DigitalOcean account: the copied range would be refused.
        ConfigEdit("server.vpcCidr", vpc_cidr),
        # Keep backups (dumps, WAL archive, uploads) going to the environment's bucket, which the new
        # stack does not own: its point-in-time restore reads the original's WAL and uploads there.
        ConfigEdit("backups.bucketStack", source.backups.bucket_stack),
    ]
    return tuple(edits)


def plan_rebuild(stack: str, new: str, edits: Sequence[ConfigEdit]) -> list[Step]:
    """Create ``new`` from ``stack``'s config, server only, restore and verify it. Traffic stays."""
    return [
        Step("stack init", init_argv(new, stack), "pulumi",
             f"create stack {new} with a copy of {stack}'s config"),
        *(edit.step(new) for edit in edits),
        _ops("validate", ("plan", new), f"validate {new}'s config offline (settings + program, mock engine)",
             changes=False),
        up_step(new, f"create {new}'s server layer (VPC, droplet, volume, certificate, deploy)"),
        restore_step(stack, new),
        _ops("health", ("health", new, "--origin", "--wait"), f"verify {new} through its origin",
             changes=False),
    ]


def restore_step(stack: str, new: str) -> Step:
    """``stack``'s newest state into ``new``: a point-in-time restore to the newest archived WAL.

    ``new`` archives into the same repository as ``stack`` (``backups.bucketStack``: the same
    bucket and stanza), so the agent reads ``stack``'s WAL without a bucket override; the uploads
    are ``stack``'s restic snapshots (``--source-stack``: restic --host is the stack's name)."""
    return _ops("restore", ("restore", new, "--latest", "--source-stack", stack, "--yes"),
                f"restore {stack}'s newest state into {new}: the database to the newest archived WAL "
                f"and {stack}'s uploads", fallback=dump_restore_step(stack, new))


def dump_restore_step(stack: str, new: str) -> Step:
    """The fallback of :func:`restore_step`: the nightly logical dump (database only)."""
    return _ops("restore", ("restore", new, "--source-stack", stack, "--from", "latest", "--yes"),
                f"If the point-in-time restore cannot work ({stack} has no pgBackRest archive, or it "
                "cannot be read), restore the latest nightly dump instead (the database as of that "
                "night, without the uploads)")


def plan_cutover(stack: str, new: str) -> list[Step]:
    """Point ``stack``'s edge at ``new``'s droplet: records updated in place, then verified."""
    return [
        _ops("origin health", ("health", new, "--origin"), f"{new} must be healthy through its origin",
             changes=False),
        ConfigEdit("edge.originStack", new).step(stack),
        up_step(stack, f"update {stack}'s DNS records in place to {new}'s addresses"),
        _ops("health", ("health", stack, "--wait"), f"verify {stack} through Cloudflare", changes=False),
    ]


def unprotect_step(stack: str, urn: str) -> Step:
    argv = ("pulumi", "state", "unprotect", "-s", stack, "--yes", urn)
    return Step("pulumi state unprotect", argv, "pulumi",
                f"lift the protection of {urn.rsplit('::', 1)[-1]}, which guards it against an accidental "
                "replacement: retiring is the deliberate delete")


def plan_retire(stack: str, unprotect: Sequence[str] = ()) -> list[Step]:
    """Switch off ``stack``'s server layer once its edge is served by another stack.

    ``unprotect``: URNs of protected resources the retire deletes on purpose (production's
    droplet); their protection is lifted right before the ``up`` that deletes them."""
    return [
        _ops("edge health", ("health", stack), f"{stack} must be healthy through Cloudflare first",
             changes=False),
        ConfigEdit("server.enabled", False).step(stack),
        *(unprotect_step(stack, urn) for urn in unprotect),
        up_step(stack, f"delete {stack}'s server layer (the edge and the backups bucket stay)"),
    ]


def cutover_edits(new: str) -> tuple[ConfigEdit, ...]:
    return (ConfigEdit("edge.originStack", new),)


def retire_edits() -> tuple[ConfigEdit, ...]:
    return (ConfigEdit("server.enabled", False),)


# --------------------------------------------------------------------------- text


def shell_line(steps: Sequence[Step], project_dir: Path | None) -> str:
    """The steps as one shell line an operator can paste (``cd`` first when not run here)."""
    commands = [step.command for step in steps]
    if project_dir is not None:
        commands.insert(0, f"cd {shlex.quote(str(project_dir))}")
    return " && ".join(commands)


def format_plan(steps: Sequence[Step]) -> str:
    width = len(str(len(steps)))
    return "".join(
        f"  {index:>{width}}. {step.command}\n  {' ' * width}  ({step.description})\n"
        for index, step in enumerate(steps, 1)
    )


def stop_message(command: str, steps: Sequence[Step], failed: int, code: int,
                 project_dir: Path | None, traffic_note: str) -> str:
    """What failed, whether anything changed, and the exact remaining commands."""
    step = steps[failed]
    lines = [f"{command} stopped at step {failed + 1}/{len(steps)} ({step.name}): "
             f"`{step.command}` exited {code}."]
    if not step.changes and not any(s.changes for s in steps[:failed]):
        lines.append("Nothing was changed.")
    lines += [traffic_note, f"Fix the cause above, then to resume: {shell_line(steps[failed:], project_dir)}"]
    if step.fallback is not None:
        instead = [step.fallback, *steps[failed + 1 :]]
        lines.append(f"{step.fallback.description}: {shell_line(instead, project_dir)}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- execution

StepRunner = Callable[[Step], int]


@dataclass(frozen=True)
class Failure:
    index: int  # 0-based index of the step that failed; later steps did not run
    code: int


def execute(steps: Sequence[Step], run_step: StepRunner, progress: Callable[[str], None]) -> Failure | None:
    """Run the steps in order, stopping at the first that fails."""
    for index, step in enumerate(steps):
        progress(f"[{index + 1}/{len(steps)}] {step.command}")
        code = run_step(step)
        if code != 0:
            return Failure(index, code)
    return None
