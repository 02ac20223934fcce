"""What exists before an emergency command changes anything: the stacks and their configs.

The committed stack files come first (what `stack init` writes, read through ``stackfile``);
``pulumi stack ls`` and ``pulumi config --json`` (ops/stack_access.py) add stacks without a file
here. A dry run reads the files only, so it runs nothing at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bankflow_infra import stackfile
from bankflow_infra.ops.rebuild import RebuildError
from bankflow_infra.ops.stack_access import PulumiError, StackAccess
from bankflow_infra.settings import Settings, SettingsError, parse_settings


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


def read_inventory(project_dir: Path, access: StackAccess | None) -> Inventory:
    """Stack files first (what `stack init` writes); `pulumi stack ls` adds stacks without one.

    ``access`` None (dry run): only the files are read, so nothing runs at all.
    """
    project = project_name(project_dir)
    files = stackfile.stack_names(project_dir)
    configs: dict[str, Mapping[str, Any]] = {}
    for stack in files:
        values = read_stack_file(project_dir, stack)
        if values is not None:
            configs[stack] = values
    try:
        listed = access.stack_names() if access is not None else []
        if access is not None:
            for stack in listed:
                if stack not in configs:
                    configs[stack] = access.config(stack)
    except PulumiError as error:
        raise RebuildError(str(error)) from None
    stacks = tuple(sorted(set(listed) | (set() if access is not None else set(files))))
    return Inventory(project, stacks, configs, listed=access is not None)


def validate_result(inventory: Inventory, stack: str, values: Mapping[str, Any]) -> Settings:
    """The settings parser's verdict on a config before anything is run (bad config stops here)."""
    try:
        return parse_settings(inventory.project, stack, values, f"Pulumi.{stack}.yaml after the edits")
    except SettingsError as error:
        raise RebuildError(str(error)) from None
