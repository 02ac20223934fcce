"""``bankflow-infra rotate-secrets STACK`` against the recording pulumi stand-in (a fake CLI run as
a real child process, tests/ops/cli/rebuild/pulumi_standin.py): what it replaces, what it never
touches, and that bad input or a declined prompt runs nothing that changes state."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bankflow_infra.ops.cli import parser
from bankflow_infra.ops.cli.rotate import password_urn, run_command
from tests.ops.cli.rebuild.conftest import STANDIN
from tests.support.tools import REPO

URN_LISTS = REPO / "tests" / "program" / "urns"


@dataclass
class Run:
    code: int
    out: str
    err: str
    calls: list[list[str]]

    def ups(self) -> list[list[str]]:
        return [c for c in self.calls if c[1:2] == ["up"]]


@pytest.fixture
def rotate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml", "Pulumi.production.yaml"):
        shutil.copy(REPO / name, project / name)
    log, fixture = tmp_path / "calls.jsonl", tmp_path / "fixture.json"
    log.touch()
    fixture.write_text(json.dumps({"stacks": ["production", "staging"]}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pulumi"
    script.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{STANDIN}' \"$@\"\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("PULUMI_STANDIN_LOG", str(log))
    monkeypatch.setenv("PULUMI_STANDIN_FIXTURE", str(fixture))

    def run(*argv: str, confirm: Callable[[str], bool] | None = None) -> Run:
        capsys.readouterr()
        args = parser().parse_args(["rotate-secrets", "--project-dir", str(project), *argv])
        code = run_command(args, subprocess.run, confirm)
        out, err = capsys.readouterr()
        return Run(code, out, err, [json.loads(line) for line in log.read_text().splitlines()])

    return run


def test_it_replaces_the_database_and_redis_passwords_in_one_up(rotate) -> None:
    result = rotate("production", "--yes")
    assert result.code == 0, result.err
    (up,) = result.ups()
    assert up[:5] == ["pulumi", "up", "-s", "production", "--yes"]
    replaced = [up[i + 1] for i, word in enumerate(up) if word == "--replace"]
    kinds = {urn.rsplit("::credentials-", 1)[1] for urn in replaced}
    assert kinds == {"postgres-password", "database-app-password", "redis-password"}
    # Never the backup cipher pass nor the uploads repository password.
    assert not [u for u in replaced if "cipher" in u or "uploads" in u or "jwt" in u]
    assert "backup cipher pass" in result.out
    assert "uploads repository password" in result.out


@pytest.mark.parametrize("stack", ["production", "staging"])
def test_every_replaced_urn_is_one_the_program_declares(stack: str) -> None:
    declared = set((URN_LISTS / f"{stack}.txt").read_text().split())
    for kind in ("postgres-password", "database-app-password", "redis-password", "jwt-secret"):
        assert password_urn(stack, "bankflow", kind) in declared


def test_jwt_only_when_asked(rotate) -> None:
    result = rotate("staging", "--yes", "--with-jwt")
    assert result.code == 0, result.err
    assert any(u.endswith("::credentials-jwt-secret") for u in result.ups()[0])


@pytest.mark.parametrize(
    ("stack", "message"),
    [("no-such", "Pulumi.no-such.yaml: no such stack file"), ("prod!", "must be letters, digits")],
)
def test_a_bad_stack_is_one_error_before_anything(rotate, stack: str, message: str) -> None:
    result = rotate("--yes", "--", stack) if stack.startswith("-") else rotate(stack, "--yes")
    assert result.code == 2
    assert message in result.err
    assert result.err.count("bankflow-infra rotate-secrets:") == 1
    assert not result.calls
    assert "replace" not in result.out


def test_a_stack_unknown_to_the_backend_is_refused(rotate, tmp_path: Path) -> None:
    (tmp_path / "fixture.json").write_text(json.dumps({"stacks": ["staging"]}))
    result = rotate("production", "--yes")
    assert result.code == 2
    assert "no stack 'production' in the state backend" in result.err
    assert result.ups() == []


def test_declined_or_no_terminal_runs_nothing(rotate) -> None:
    declined = rotate("production", confirm=lambda _prompt: False)
    assert declined.code == 1
    assert "declined" in declined.err
    assert declined.ups() == []
    headless = rotate("production")
    assert headless.code == 2
    assert "--yes" in headless.err
    assert headless.ups() == []


def test_a_failed_up_names_the_command_to_run_again(rotate, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_STANDIN_FAIL_ON", "up -s production")
    result = rotate("production", "--yes")
    assert result.code == 1
    assert "Run again: pulumi up -s production --yes --replace" in result.err


def test_dry_run_calls_nothing(rotate) -> None:
    result = rotate("production", "--dry-run")
    assert result.code == 0
    assert not result.calls
    assert "Command: pulumi up -s production --yes --replace" in result.out
