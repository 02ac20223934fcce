"""Emergency rebuild, cutover and retire: the command plans (pure) and the step executor.

DESIGN "Emergency rebuild": a fresh stack (``production-r1``) gets the same config with the
server layer only, a VPC range of its own and the environment's latest backup, and is verified
through its origin. ``cutover`` then points the original stack's edge at it (DNS records are
updated in place: same resources, only ``content`` changes, so there is no DNS gap), and
``retire`` switches the old server off once nothing is served from it.

Every command sequence is computed by a pure ``plan_*`` function returning ``Step``s, so the
dry run, the real run, the "to resume" hint and the tests share one list and cannot drift.
Reading what exists (stack files, ``pulumi stack ls``) is separate: :class:`Inventory`.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
import shlex
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from bankflow_infra import stackfile
from bankflow_infra.settings import DO_RESERVED_RANGES, NAMESPACE, Settings, SettingsError, parse_settings

StepKind = Literal["pulumi", "ops"]
# Our own CLI as printed in plans and resume hints; the step runner maps it to this Python.
OPS_PROGRAM: Final = "bankflow-infra"
# Fresh ranges come from here upwards: staging/production use 10.110/10.120, so a rebuild never
# lands next to them by accident and stays recognisable as a rebuild in the DO console.
FRESH_VPC_START: Final = ipaddress.IPv4Network("10.130.0.0/20")
FRESH_VPC_END: Final = ipaddress.IPv4Address("10.255.255.255")
# Pulumi stack names: letters, digits, _ . - . We also require a leading letter: `config set
# --path` would store an all-digit name (edge.originStack 123) as a number, not a stack name.
_NEW_STACK_RE: Final = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
_REBUILD_SUFFIX_RE: Final = re.compile(r"-r\d+$")
# Bounded so a hung state backend never hangs an emergency command.
PULUMI_QUERY_TIMEOUT_SECONDS: Final = 120.0

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


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

    @property
    def command(self) -> str:
        return shlex.join(self.argv)


@dataclass(frozen=True)
class ConfigEdit:
    """One ``pulumi config set/rm --path`` under the bankflow namespace; value None removes."""

    path: str  # e.g. "edge.enabled"
    value: bool | str | None

    def argv(self, stack: str) -> tuple[str, ...]:
        key = f"{NAMESPACE}:{self.path}"
        if self.value is None:
            return ("pulumi", "config", "rm", "--path", "-s", stack, key)
        # --path stores "true"/"false" as booleans (what settings expects), other text as strings.
        text = ("true" if self.value else "false") if isinstance(self.value, bool) else self.value
        return ("pulumi", "config", "set", "--path", "-s", stack, key, text)

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


def _ops(name: str, args: Sequence[str], description: str, changes: bool = True) -> Step:
    return Step(name, (OPS_PROGRAM, *args), "ops", description, changes)


def _up(stack: str, description: str) -> Step:
    # `--yes` still previews first: a refused change (e.g. a protected resource) stops there.
    return Step("pulumi up", ("pulumi", "up", "-s", stack, "--yes"), "pulumi", description)


# --------------------------------------------------------------------------- pure planning


def check_new_stack_name(name: str) -> None:
    if not _NEW_STACK_RE.match(name):
        raise RebuildError(
            f"{name!r} is not a usable stack name: a letter, then letters, digits, _ . - (at most 100)"
        )


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
        # Keep nightly dumps going to the environment's bucket, which the new stack does not own.
        ConfigEdit("backups.bucketStack", source.backups.bucket_stack),
    ]
    return tuple(edits)


def plan_rebuild(stack: str, new: str, edits: Sequence[ConfigEdit]) -> list[Step]:
    """Create ``new`` from ``stack``'s config, server only, restore and verify it. Traffic stays."""
    return [
        Step(
            "stack init",
            ("pulumi", "stack", "init", new, "--copy-config-from", stack),
            "pulumi",
            f"create stack {new} with a copy of {stack}'s config",
        ),
        *(edit.step(new) for edit in edits),
        _ops("validate", ("plan", new), f"validate {new}'s config offline (settings + program, mock engine)",
             changes=False),
        _up(new, f"create {new}'s server layer (VPC, droplet, volume, certificate, deploy)"),
        _ops("restore", ("restore", new, "--source-stack", stack, "--from", "latest", "--yes"),
             f"restore {stack}'s latest database backup into {new}"),
        _ops("health", ("health", new, "--origin", "--wait"), f"verify {new} through its origin",
             changes=False),
    ]


def plan_cutover(stack: str, new: str) -> list[Step]:
    """Point ``stack``'s edge at ``new``'s droplet: records updated in place, then verified."""
    return [
        _ops("origin health", ("health", new, "--origin"), f"{new} must be healthy through its origin",
             changes=False),
        ConfigEdit("edge.originStack", new).step(stack),
        _up(stack, f"update {stack}'s DNS records in place to {new}'s addresses"),
        _ops("health", ("health", stack, "--wait"), f"verify {stack} through Cloudflare", changes=False),
    ]


def plan_retire(stack: str) -> list[Step]:
    """Switch off ``stack``'s server layer once its edge is served by another stack."""
    return [
        _ops("edge health", ("health", stack), f"{stack} must be healthy through Cloudflare first",
             changes=False),
        ConfigEdit("server.enabled", False).step(stack),
        _up(stack, f"delete {stack}'s server layer (the edge and the backups bucket stay)"),
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
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- what exists


def read_stack_file(project_dir: Path, stack: str) -> dict[str, Any] | None:
    """The bankflow values of ``Pulumi.<stack>.yaml`` (what `stack init` writes), None if absent."""
    if not (project_dir / stackfile.stack_file_name(stack)).exists():
        return None
    try:
        return stackfile.read_stack_file(project_dir, stack).bankflow_values()
    except stackfile.StackFileError as error:
        raise RebuildError(f"cannot read the stack config: {error}") from None


def project_name(project_dir: Path) -> str:
    try:
        return stackfile.project_name(project_dir)
    except stackfile.StackFileError as error:
        raise RebuildError(str(error)) from None


class PulumiQueries:
    """Read-only pulumi calls made before anything changes (stack list, config, outputs)."""

    def __init__(self, runner: Runner, cwd: Path | None) -> None:
        self.runner = runner
        self.cwd = cwd

    def run(self, argv: Sequence[str]) -> str:
        command = shlex.join(argv)
        try:
            done = self.runner(list(argv), capture_output=True, text=True, check=False, cwd=self.cwd,
                               stdin=subprocess.DEVNULL, timeout=PULUMI_QUERY_TIMEOUT_SECONDS)
        except FileNotFoundError:
            raise RebuildError(
                "the pulumi CLI is not installed (https://www.pulumi.com/docs/install/)") from None
        except subprocess.TimeoutExpired:
            raise RebuildError(f"`{command}` did not finish within {PULUMI_QUERY_TIMEOUT_SECONDS:.0f} s "
                               "(is the state backend reachable?)") from None
        if done.returncode != 0:
            detail = (done.stderr or "").strip()[-2000:] or "(no error output)"
            raise RebuildError(f"`{command}` exited {done.returncode}:\n  {detail}")
        return done.stdout or ""

    def stack_names(self) -> list[str]:
        text = self.run(["pulumi", "stack", "ls", "--json"])
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise RebuildError(f"`pulumi stack ls --json` did not print JSON: {error}") from None
        if not isinstance(document, list):
            raise RebuildError("`pulumi stack ls --json` did not print a list of stacks")
        # Pulumi Cloud may print org/project/stack; stacks of this project are compared by name.
        return sorted(str(item.get("name", "")).rsplit("/", 1)[-1] for item in document
                      if isinstance(item, dict) and item.get("name"))

    def config(self, stack: str) -> dict[str, Any]:
        """A stack's bankflow values from `pulumi config --json` (for stacks without a file here)."""
        text = self.run(["pulumi", "config", "--json", "-s", stack])
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise RebuildError(f"`pulumi config --json -s {stack}` did not print JSON: {error}") from None
        if not isinstance(document, dict):
            return {}
        config: dict[str, Any] = {}
        for key, entry in document.items():
            if not isinstance(entry, dict) or entry.get("secret"):
                continue
            config[key] = entry["objectValue"] if "objectValue" in entry else _decoded(entry.get("value"))
        return stackfile.bankflow_values(config)


def _decoded(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value) if value[:1] in "{[" else value
        except json.JSONDecodeError:
            return value
    return value


@dataclass(frozen=True)
class Inventory:
    """The stacks that exist and the config of each, as far as it can be read."""

    project: str
    stacks: tuple[str, ...]
    configs: Mapping[str, Mapping[str, Any]]  # stack -> bankflow values (no namespace, no secrets)
    listed: bool  # False in a dry run: only the stack files were read, pulumi was not called

    def require(self, stack: str) -> Mapping[str, Any]:
        if stack not in self.stacks:
            where = "`pulumi stack ls`" if self.listed else "the Pulumi.<stack>.yaml files here (dry run)"
            raise RebuildError(f"unknown stack {stack!r}: {where} lists {', '.join(self.stacks) or 'none'}")
        config = self.configs.get(stack)
        if config is None:
            raise RebuildError(f"cannot read the config of stack {stack!r} (no Pulumi.{stack}.yaml here)")
        return config

    def settings(self, stack: str) -> Settings:
        try:
            return parse_settings(self.project, stack, self.require(stack), f"Pulumi.{stack}.yaml")
        except SettingsError as error:
            raise RebuildError(str(error)) from None

    def vpc_ranges(self) -> dict[str, str]:
        ranges: dict[str, str] = {}
        for stack, values in sorted(self.configs.items()):
            server = values.get("server")
            cidr = server.get("vpcCidr") if isinstance(server, Mapping) else None
            if isinstance(cidr, str):
                ranges[stack] = cidr
        return ranges

    def unreadable(self) -> list[str]:
        return [s for s in self.stacks if s not in self.configs]

    def pointing_at(self, stack: str) -> list[str]:
        """Stacks whose edge is served by ``stack``'s droplet (edge.originStack = stack)."""
        found = []
        for other, values in sorted(self.configs.items()):
            edge = values.get("edge")
            origin = edge.get("originStack") if isinstance(edge, Mapping) else None
            enabled = edge.get("enabled", True) if isinstance(edge, Mapping) else True
            if other != stack and enabled is not False and isinstance(origin, str) \
                    and origin.rsplit("/", 1)[-1] == stack:
                found.append(other)
        return found


def read_inventory(project_dir: Path, queries: PulumiQueries | None) -> Inventory:
    """Stack files first (what `stack init` writes); `pulumi stack ls` adds stacks without one.

    ``queries`` None (dry run): only the files are read, so nothing runs at all.
    """
    project = project_name(project_dir)
    files = stackfile.stack_names(project_dir)
    configs: dict[str, Mapping[str, Any]] = {}
    for stack in files:
        values = read_stack_file(project_dir, stack)
        if values is not None:
            configs[stack] = values
    listed = queries.stack_names() if queries is not None else []
    if queries is not None:
        for stack in listed:
            if stack not in configs:
                configs[stack] = queries.config(stack)
    stacks = tuple(sorted(set(listed) | (set() if queries is not None else set(files))))
    return Inventory(project, stacks, configs, listed=queries is not None)


def validate_result(inventory: Inventory, stack: str, values: Mapping[str, Any]) -> Settings:
    """The settings parser's verdict on a config before anything is run (bad config stops here)."""
    try:
        return parse_settings(inventory.project, stack, values, f"Pulumi.{stack}.yaml after the edits")
    except SettingsError as error:
        raise RebuildError(str(error)) from None


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
