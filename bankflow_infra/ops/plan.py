"""``bankflow-infra plan``: run the real Pulumi program offline under the mock engine.

Reads ``Pulumi.yaml`` and ``Pulumi.<stack>.yaml``, feeds the stack config to the same
``program.build`` that ``pulumi up`` runs, and reports what would be registered. No pulumi
CLI, plugin, credential or network is involved; cloud-computed values are placeholders.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime.config import set_all_config

from bankflow_infra.ops.mocks import PlanMocks, Recorder, RecordingMonitor, redact
from bankflow_infra.render import Bundle
from bankflow_infra.settings import Settings
from bankflow_infra.stackfile import StackFileError, read_stack_file

PLACEHOLDER_NOTE = (
    "Offline plan (Pulumi's mock engine, no credentials): values the cloud computes (IDs, IP "
    "addresses, keys, certificates) are placeholders; secrets show as [secret]."
)


class PlanError(Exception):
    """Bad input to ``plan`` (missing stack file, unreadable YAML): one message, exit 2."""


@dataclass
class PlanResult:
    project: str
    stack: str
    recorder: Recorder
    outputs: dict[str, Any]  # resolved values, secrets included (for tests only)
    secret_outputs: frozenset[str]
    bundle: Bundle | None
    settings: Settings

    def resource_rows(self) -> list[dict[str, Any]]:
        names = {r.urn: r.name for r in self.recorder.resources}
        return [
            {"type": r.type, "name": r.name, "parent": names.get(r.parent), "inputs": _tidy(redact(r.inputs))}
            for r in self.recorder.resources
        ]

    def shown_outputs(self) -> dict[str, Any]:
        return {k: ("[secret]" if k in self.secret_outputs else v) for k, v in sorted(self.outputs.items())}

    def document(self) -> dict[str, Any]:
        return {"resources": self.resource_rows(), "outputs": self.shown_outputs()}


def _tidy(value: Any) -> Any:
    # The engine's wire format has only floats: show 40, not 40.0, for whole numbers.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _tidy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tidy(v) for v in value]
    return value


def read_stack(project_dir: Path, stack: str) -> tuple[str, dict[str, Any], list[str]]:
    """Project name, config (``ns:key`` -> value) and the secret keys of one stack file.

    `secure:` values are encrypted with the stack's secrets provider; a plan cannot decrypt
    them, so it shows them as [secret] placeholders.
    """
    try:
        stack_file = read_stack_file(project_dir, stack)
    except StackFileError as error:
        raise PlanError(str(error)) from None
    secret_keys = list(stack_file.secure_keys)
    values = {k: ("[secret]" if k in secret_keys else v) for k, v in stack_file.config.items()}
    return stack_file.project, values, secret_keys


def _as_config_strings(config: dict[str, Any]) -> dict[str, str]:
    # The engine hands config to programs as strings, structured values as JSON.
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


@contextlib.contextmanager
def _config_environment(config: dict[str, str], secret_keys: list[str]) -> Iterator[None]:
    """The config as the Python language host hands it to a real program (``PULUMI_CONFIG``), so
    the program finds a misspelt ``bankflow:`` key here exactly as under ``pulumi up``."""
    names = {"PULUMI_CONFIG": json.dumps(config), "PULUMI_CONFIG_SECRET_KEYS": json.dumps(secret_keys)}
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run_program(
    project: str,
    stack: str,
    config: dict[str, Any],
    secret_keys: list[str] | None = None,
    referenced_outputs: dict[str, Any] | None = None,
    project_dir: Path | None = None,
    adjust: Callable[[Settings], Settings] | None = None,
) -> PlanResult:
    """Run ``program.build`` under mocks with this config; raise SettingsError on bad config.

    ``project_dir`` holds the project's other stack files, which the program checks this one
    against (as ``pulumi up`` does from the project directory); default the working directory.
    ``adjust`` (tests only) changes the validated settings before the build."""
    from bankflow_infra import program  # imported late: it needs the mocks configured first

    recorder = Recorder()
    mocks = PlanMocks(recorder, stack, referenced_outputs)
    engine_config = _as_config_strings(config)
    set_all_config(engine_config, secret_keys or [])
    pulumi_mocks.set_mocks(mocks, project, stack, preview=False, monitor=RecordingMonitor(mocks, recorder))
    holder: dict[str, Any] = {}

    async def resolve(built: program.Built) -> None:
        values: dict[str, Any] = {}
        secrets: set[str] = set()
        for name, value in built.outputs.items():
            output = pulumi.Output.from_input(value)
            values[name] = await output.future()
            if await output.is_secret():
                secrets.add(name)
        holder["outputs"], holder["secrets"] = values, frozenset(secrets)
        holder["bundle"] = await built.bundle.future() if built.bundle is not None else None

    def body() -> pulumi.Output[None]:
        loaded = program.load_settings(project_dir)
        holder["settings"] = adjust(loaded) if adjust is not None else loaded
        built = program.build(holder["settings"])
        return pulumi.Output.from_input(asyncio.ensure_future(resolve(built)))

    with _config_environment(engine_config, secret_keys or []):
        pulumi.runtime.test(body)()  # type: ignore[no-untyped-call]
    return PlanResult(
        project, stack, recorder, holder["outputs"], holder["secrets"], holder["bundle"], holder["settings"]
    )


def plan_stack(project_dir: Path, stack: str) -> PlanResult:
    project, config, secret_keys = read_stack(project_dir, stack)
    return run_program(project, stack, config, secret_keys, project_dir=project_dir)


def check_out_dir(out_dir: Path) -> None:
    """Refuse an ``--out`` that cannot hold the bundle, before the program runs (nothing written)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PlanError(f"--out {out_dir}: exists and is not a directory; pass a directory")
    existing = next(p for p in (out_dir, *out_dir.parents) if p.exists())
    if not existing.is_dir():
        raise PlanError(f"--out {out_dir}: {existing} is a file, not a directory; pass a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PlanError(f"--out {out_dir}: {existing} is not writable; pass a directory you can write")


def write_bundle(bundle: Bundle, out_dir: Path) -> list[Path]:
    """Write every file the program renders (secret files redacted) under ``out_dir``."""
    written = []
    for item in bundle.redacted():
        target = out_dir / item.path
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(item.text)
            target.chmod(item.mode)
        except OSError as error:
            raise PlanError(f"--out {out_dir}: cannot write {target}: {error.strerror}") from None
        written.append(target)
    return written


class _ReviewDumper(yaml.SafeDumper):
    """YAML for people: multi-line text as a block, short scalar lists and maps on one line."""


def _text(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|" if "\n" in text else None)


def _is_short_leaf(value: list[Any] | dict[str, Any]) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return all(not isinstance(v, dict | list) for v in items) and len(json.dumps(value)) <= 80


def _sequence(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=_is_short_leaf(value))


def _mapping(dumper: yaml.SafeDumper, value: dict[str, Any]) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=_is_short_leaf(value))


class _Block(dict[str, Any]):
    """The top level of a resource's inputs: always one key a line."""


def _block(dumper: yaml.SafeDumper, value: _Block) -> yaml.Node:
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=False)


_ReviewDumper.add_representer(_Block, _block)
_ReviewDumper.add_representer(str, _text)
_ReviewDumper.add_representer(list, _sequence)
_ReviewDumper.add_representer(dict, _mapping)


def format_values(values: dict[str, Any], indent: str) -> list[str]:
    """``values`` in full as indented YAML: nested rules and lists one item a line, never cut."""
    if not values:
        return []
    text = yaml.dump(_Block(values), Dumper=_ReviewDumper, sort_keys=True, width=10**6, allow_unicode=True)
    return [indent + line if line else line for line in text.splitlines()]


def format_tree(result: PlanResult) -> str:
    """The human view: a note on placeholders, resources under their parents with every input in
    full, then the outputs."""
    rows = result.resource_rows()
    # Keyed by URN, not name: a component and its resource may share a name (load-balancer).
    urns = {r.urn for r in result.recorder.resources}
    children: dict[str | None, list[tuple[str, dict[str, Any]]]] = {}
    for resource, row in zip(result.recorder.resources, rows, strict=True):
        parent = resource.parent if resource.parent in urns else None
        children.setdefault(parent, []).append((resource.urn, row))
    lines = [
        PLACEHOLDER_NOTE,
        f"Stack {result.project}/{result.stack}: {len(rows)} resources to create",
        "",
    ]

    def walk(parent: str | None, depth: int) -> None:
        for urn, row in children.get(parent, []):
            lines.append(f"{'  ' * depth}+ {row['type']}  {row['name']}")
            lines.extend(format_values(row["inputs"], "  " * depth + "    "))
            walk(urn, depth + 1)

    walk(None, 0)
    lines += ["", "Outputs:", *format_values(result.shown_outputs(), "  ")]
    return "\n".join(lines) + "\n"
