"""The rig for the rebuild/cutover/retire tests.

pulumi cannot run here (no CLI, no state backend, no cloud), so a recording stand-in
(``pulumi_standin.py``; ops/stack_access.py says why it stays a fake CLI) is installed first
on PATH as ``pulumi``: the commands under test run it
as a real child process, exactly as they would run pulumi. Our own CLI steps (plan, restore,
health) go through the injectable step runner, recorded by the rig into the same log, so one
list shows the whole sequence in order. Everything else is real: the committed Pulumi.yaml and
stack files (copied), the settings parser, argument parsing and, for retire, the real program
under Pulumi's mock engine.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from bankflow_infra.ops.cli import parser
from bankflow_infra.ops.cli.rebuild import Confirm, Runners, run_command
from bankflow_infra.ops.rebuild import Step
from tests.support.outputs import outputs_document
from tests.support.tools import REPO

STANDIN = Path(__file__).with_name("pulumi_standin.py")


def outputs(stack: str, environment: str, origin_stack: str | None = None,
            server: bool = True) -> dict[str, Any]:
    """A complete `pulumi stack output --json` document (secrets hidden, as pulumi shows them)."""
    return outputs_document(stack, environment=environment, origin_stack=origin_stack,
                            origin_ip="203.0.113.20" if server else None)


@dataclass
class Result:
    code: int
    out: str
    err: str
    calls: list[list[str]]  # every pulumi and bankflow-infra call, in order

    def mutations(self) -> list[list[str]]:
        """Calls that change something: everything but the read-only queries and checks."""
        return [c for c in self.calls if not _read_only(c)]


def _read_only(call: Sequence[str]) -> bool:
    args = list(call[1:])
    if call[0] == "bankflow-infra":
        return args[0] in ("plan", "health")
    return args[:2] in (["stack", "ls"], ["stack", "output"]) or (args[:1] == ["config"] and "--json" in args)


@dataclass
class Rig:
    tmp_path: Path
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch
    fixture: dict[str, Any] = field(default_factory=dict)
    ops_fail: set[tuple[str, ...]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.project = self.tmp_path / "project"
        self.project.mkdir()
        for name in ("Pulumi.yaml", "Pulumi.staging.yaml", "Pulumi.production.yaml"):
            shutil.copy(REPO / name, self.project / name)
        self.log = self.tmp_path / "calls.jsonl"
        self.log.touch()
        self.fixture_file = self.tmp_path / "pulumi-fixture.json"
        self.fixture = {"stacks": ["production", "staging"], "config": {}, "outputs": {}}
        bin_dir = self.tmp_path / "bin"
        bin_dir.mkdir()
        script = bin_dir / "pulumi"
        script.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{STANDIN}' \"$@\"\n")
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        self.monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
        self.monkeypatch.setenv("PULUMI_STANDIN_LOG", str(self.log))
        self.monkeypatch.setenv("PULUMI_STANDIN_FIXTURE", str(self.fixture_file))

    # ------------------------------------------------------------------ stacks

    def config(self, stack: str) -> dict[str, Any]:
        document = yaml.safe_load((self.project / f"Pulumi.{stack}.yaml").read_text())
        return dict(document["config"])

    def write_stack(self, stack: str, config: dict[str, Any]) -> None:
        (self.project / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump({"config": config}))

    def add_stack(self, stack: str, config: dict[str, Any] | None = None,
                  stack_outputs: dict[str, Any] | None = None) -> None:
        """A stack that `pulumi stack ls` lists; with a file when ``config`` is given."""
        self.fixture["stacks"].append(stack)
        if config is not None:
            self.write_stack(stack, config)
        if stack_outputs is not None:
            self.fixture["outputs"][stack] = stack_outputs

    def add_rebuilt(self, stack: str, new: str, vpc: str = "10.130.0.0/20") -> None:
        """``new`` as a finished rebuild of ``stack`` leaves it: file, listed, deployed outputs."""
        config = self.config(stack)
        edge, server = dict(config["bankflow:edge"]), dict(config["bankflow:server"])
        edge.update(enabled=False, zoneSettings=False)
        server["vpcCidr"] = vpc
        backups = dict(config.get("bankflow:backups") or {})
        backups["bucketStack"] = stack
        config.update({"bankflow:edge": edge, "bankflow:server": server, "bankflow:backups": backups})
        environment = str(config["bankflow:environment"])
        self.add_stack(new, config, outputs(new, environment))

    def point_edge(self, stack: str, origin: str, applied: bool = True) -> None:
        """``stack``'s edge served by ``origin`` (config), and by the last `up` when ``applied``."""
        config = self.config(stack)
        config["bankflow:edge"] = {**config["bankflow:edge"], "originStack": origin}
        self.write_stack(stack, config)
        environment = str(config["bankflow:environment"])
        self.fixture["outputs"][stack] = outputs(stack, environment, origin if applied else stack)

    # ------------------------------------------------------------------ running

    def ops(self, step: Step) -> int:
        with self.log.open("a") as handle:
            handle.write(json.dumps(list(step.argv)) + "\n")
        return 1 if step.argv in self.ops_fail else 0

    def run(self, *argv: str, confirm: Confirm | None = None) -> Result:
        self.fixture_file.write_text(json.dumps(self.fixture))
        self.capsys.readouterr()
        args = parser().parse_args([*argv, "--project-dir", str(self.project)])
        code = run_command(args, Runners(subprocess.run, self.ops, confirm))
        out, err = self.capsys.readouterr()
        calls = [json.loads(line) for line in self.log.read_text().splitlines()]
        return Result(code, out, err, calls)


@pytest.fixture
def rig(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Rig:
    return Rig(tmp_path, capsys, monkeypatch)
