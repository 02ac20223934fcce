"""The one reader of ``Pulumi.yaml`` and ``Pulumi.<stack>.yaml``, with one rule for secrets.

``plan``, ``rebuild`` (and its inventory of stacks), the workflow tooling and the tests read the
committed stack files through here; the Pulumi program gets the same values from the engine.
The secret rule, everywhere: a ``secure:`` value (encrypted by the stack's secrets provider,
which nothing offline can decrypt) and a key in :data:`settings.SECRET_KEYS` (read by the program
as a Pulumi secret) are never settings values. Every problem is one :class:`StackFileError`
naming the file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bankflow_infra.settings import NAMESPACE, SECRET_KEYS, Settings, SettingsError, parse_settings

PROJECT_FILE = "Pulumi.yaml"


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
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StackFileError(f"{path}: not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise StackFileError(f"{path}: not readable YAML: {error}") from None


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
    """The ``config:`` mapping of a parsed stack file ({} when the file or the key is empty)."""
    config = document.get("config") if isinstance(document, dict) else None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise StackFileError(f"{source}: 'config' must be a mapping of 'namespace:key' to values")
    return config


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
