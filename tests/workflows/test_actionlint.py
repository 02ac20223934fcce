"""Every workflow passes actionlint, with shellcheck checking each `run:` script."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, require_tool
from tests.workflows.checks import workflow_files


@pytest.fixture(scope="module")
def actionlint() -> list[str]:
    """actionlint from the virtualenv (dev dependency) or PATH, always with the real shellcheck."""
    beside_python = Path(sys.executable).parent / "actionlint"
    binary = str(beside_python) if beside_python.is_file() else require_tool("actionlint")
    shellcheck = require_tool("shellcheck")
    config = str(REPO / ".github" / "actionlint.yaml")
    return [binary, "-no-color", "-shellcheck", shellcheck, "-config-file", config]


def _lint(actionlint: list[str], *files: Path) -> subprocess.CompletedProcess[str]:
    command = [*actionlint, *map(str, files)]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)


def test_there_are_workflows() -> None:
    names = {path.name for path in workflow_files()}
    expected = {"ci.yml", "preview.yml", "deploy.yml", "deploy-stack.yml", "release.yml", "emergency.yml"}
    assert expected <= names


@pytest.mark.parametrize("workflow", workflow_files(), ids=lambda path: path.name)
def test_workflow_passes_actionlint_and_shellcheck(actionlint: list[str], workflow: Path) -> None:
    result = _lint(actionlint, workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_really_runs_shellcheck(actionlint: list[str], tmp_path: Path) -> None:
    # Without shellcheck, actionlint silently skips scripts: prove this run is not that.
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-latest\n"
        "    steps:\n      - run: rm -rf $dir/build\n"
    )
    result = _lint(actionlint, bad)
    assert result.returncode == 1
    assert "shellcheck reported issue" in result.stdout, result.stdout
    assert "SC2086" in result.stdout, result.stdout
