"""The one reader of ``Pulumi.yaml`` and ``Pulumi.<stack>.yaml``, with one rule for secrets.

``plan``, ``rebuild`` (and its inventory of stacks), the workflow tooling and the tests read the
committed stack files through here; the Pulumi program gets the same values from the engine.
The secret rule, everywhere: a ``secure:`` value (encrypted by the stack's secrets provider,
which nothing offline can decrypt) and a key in :data:`settings.SECRET_KEYS` (read by the program
as a Pulumi secret) are never settings values. Every problem is one :class:`StackFileError`
naming the file.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bankflow_infra.settings import (
    NAMESPACE,
    SECRET_KEYS,
    Settings,
    SettingsError,
    namespace_problems,
    parse_settings,
)

PROJECT_FILE = "Pulumi.yaml"


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key. YAML 1.2 requires keys to be
    unique, but PyYAML keeps the last value: a second `bankflow:server:` block would silently
    replace the first."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (each key may appear once)", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """YAML text -> value, refusing duplicate keys; raises yaml.YAMLError."""
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


class StackFileError(ValueError):
    """A project or stack file that cannot be used; the message names the file."""


def stack_file_name(stack: str) -> str:
    return f"Pulumi.{stack}.yaml"


def is_secure(value: object) -> bool:
    """A ``secure:`` value as ``pulumi config set --secret`` writes it."""
    return isinstance(value, Mapping) and set(value) == {"secure"}


def bankflow_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """The ``bankflow:`` keys of a stack config (``ns:key`` -> value), without the namespace and
    without secrets (``secure:`` values, ``SECRET_KEYS``): those are never settings."""
    values: dict[str, Any] = {}
    for key, value in config.items():
        namespace, _, name = str(key).partition(":")
        if namespace != NAMESPACE or name in SECRET_KEYS or is_secure(value):
            continue
        values[name] = value
    return values


@dataclass(frozen=True)
class StackFile:
    project: str
    stack: str
    path: Path
    config: Mapping[str, Any]  # every ``ns:key`` of the file, secure values as they are written

    @property
    def secure_keys(self) -> tuple[str, ...]:
        return tuple(key for key, value in self.config.items() if is_secure(value))

    def bankflow_values(self) -> dict[str, Any]:
        return bankflow_values(self.config)

    def settings(self) -> Settings:
        """Validated settings; raises SettingsError naming this file and every bad key."""
        return parse_settings(self.project, self.stack, self.bankflow_values(), self.path.name)


def load_yaml(path: Path) -> Any:
    """A YAML file's value; every way it can be unusable is one StackFileError naming the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StackFileError(f"{path}: not found") from None
    except IsADirectoryError:
        raise StackFileError(f"{path}: is a directory, not a file; remove it and restore the file") from None
    except OSError as error:
        raise StackFileError(f"{path}: cannot be read: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise StackFileError(
            f"{path}: not UTF-8 text (byte {data[error.start]:#04x} at offset {error.start}); "
            "save it as UTF-8"
        ) from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as error:
        raise StackFileError(f"{path}: not valid YAML: {error}") from None


def project_name(project_dir: Path) -> str:
    path = project_dir / PROJECT_FILE
    if not path.exists():
        raise StackFileError(f"{path}: not found; run in the project directory or pass --project-dir")
    document = load_yaml(path)
    name = document.get("name") if isinstance(document, dict) else None
    if not isinstance(name, str):
        raise StackFileError(f"{path}: no project 'name'")
    return name


def stack_names(project_dir: Path) -> list[str]:
    """The stacks that have a committed file, sorted."""
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in project_dir.glob("Pulumi.*.yaml"))


def config_of(document: Any, source: str) -> dict[str, Any]:
    """The ``config:`` mapping of a parsed stack file, keys as ``namespace:key``.

    An empty file or an empty ``config:`` is {} (required keys are then reported by name); a
    document of any other shape, or a key in a namespace nobody uses (``bankfow:``), is one
    StackFileError. A key without a namespace is the project's, as Pulumi reads it."""
    if document is None:
        return {}
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise StackFileError(f"{source}: must be a mapping with a 'config:' key, got {kind}")
    config = document.get("config")
    if config is None:
        return {}
    if not isinstance(config, dict) or not all(isinstance(k, str) for k in config):
        raise StackFileError(f"{source}: 'config' must be a mapping of 'namespace:key' to values")
    qualified = {(k if ":" in k else f"{NAMESPACE}:{k}"): v for k, v in config.items()}
    if len(qualified) != len(config):
        raise StackFileError(f"{source}: a key is given both with and without the '{NAMESPACE}:' namespace")
    problems = namespace_problems(qualified, source)
    if problems:
        raise StackFileError("; ".join(problems))
    return qualified


def read_stack_file(project_dir: Path, stack: str) -> StackFile:
    """``Pulumi.<stack>.yaml`` of the project in ``project_dir``; a missing file names the stacks there."""
    project = project_name(project_dir)
    path = project_dir / stack_file_name(stack)
    if not path.exists():
        known = ", ".join(stack_names(project_dir)) or "none"
        raise StackFileError(f"{path.name}: no such stack file; stacks here: {known}")
    return StackFile(project, stack, path, config_of(load_yaml(path), path.name))


def settings_from_stack_file(project: str, stack: str, document: Any, source: str) -> Settings:
    """Settings from an already parsed ``Pulumi.<stack>.yaml``."""
    try:
        config = config_of(document, source)
    except StackFileError as error:
        raise SettingsError(source, [str(error).removeprefix(f"{source}: ")]) from None
    return parse_settings(project, stack, bankflow_values(config), source)


# --------------------------------------------------------------------------- across stack files


@dataclass(frozen=True)
class _Claims:
    """What another stack file claims, read leniently (its own plan reports its own problems)."""

    file: str
    environment: object
    edge_enabled: bool
    hostnames: frozenset[str]
    vpc: ipaddress.IPv4Network | None


def _claims(path: Path, values: Mapping[str, Any]) -> _Claims:
    hostnames = values.get("hostnames")
    names = {
        name
        for listed in (hostnames.values() if isinstance(hostnames, Mapping) else ())
        if isinstance(listed, list)
        for name in listed
        if isinstance(name, str)
    }
    edge, server = values.get("edge"), values.get("server")
    edge_enabled = not (isinstance(edge, Mapping) and edge.get("enabled") is False)
    cidr = server.get("vpcCidr") if isinstance(server, Mapping) else None
    try:
        vpc = ipaddress.IPv4Network(cidr) if isinstance(cidr, str) else None
    except ValueError:
        vpc = None
    return _Claims(path.name, values.get("environment"), edge_enabled, frozenset(names), vpc)


def _other_stack_claims(project_dir: Path, stack: str) -> list[_Claims]:
    claims = []
    for other in stack_names(project_dir):
        if other == stack:
            continue
        path = project_dir / stack_file_name(other)
        try:
            config = config_of(load_yaml(path), path.name)
        except StackFileError:
            continue  # that stack's own plan names the problem; it claims nothing readable
        claims.append(_claims(path, bankflow_values(config)))
    return claims


def conflicts_with_other_stacks(project_dir: Path, settings: Settings) -> list[str]:
    """Problems (``bankflow:<key>: ...``) between this stack and the other ``Pulumi.*.yaml`` files
    of the project: a hostname of another environment, a hostname another edge stack of the same
    environment serves (Cloudflare would round-robin two origins), a VPC range that overlaps
    (DigitalOcean refuses overlapping VPCs in one account; `rebuild` picks around these files)."""
    problems = []
    own_vpc = ipaddress.IPv4Network(settings.server.vpc_cidr) if settings.server.vpc_cidr else None
    for other in _other_stack_claims(project_dir, settings.stack):
        same_environment = other.environment == settings.environment
        for service, names in settings.hostnames.items():
            for index, name in enumerate(names):
                if name not in other.hostnames:
                    continue
                if not same_environment:
                    problems.append(
                        f"{NAMESPACE}:hostnames.{service}[{index}]: {name!r} belongs to "
                        f"{other.environment} ({other.file}); a hostname belongs to one environment"
                    )
                elif settings.edge.enabled and other.edge_enabled:
                    problems.append(
                        f"{NAMESPACE}:hostnames.{service}[{index}]: {name!r} is also served by {other.file} "
                        "(edge enabled in both): one stack owns a hostname's DNS records; serve it from "
                        "another stack's droplet with bankflow:edge.originStack instead"
                    )
        if own_vpc is not None and other.vpc is not None and own_vpc.overlaps(other.vpc):
            problems.append(
                f"{NAMESPACE}:server.vpcCidr: {settings.server.vpc_cidr!r} overlaps {other.vpc} of "
                f"{other.file}; every stack needs its own range (DigitalOcean refuses overlapping VPCs)"
            )
    return problems


def check_against_other_stacks(project_dir: Path, settings: Settings, source: str) -> None:
    """Raise one SettingsError listing every conflict with the project's other stack files."""
    problems = conflicts_with_other_stacks(project_dir, settings)
    if problems:
        raise SettingsError(source, problems)
