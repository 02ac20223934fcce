"""shellcheck (the real one) on the bootstrap scripts, following sourced files (-x)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support.tools import REPO, require_tool

SCRIPTS = sorted((REPO / "files" / "bootstrap").glob("*.sh"))


def test_there_are_bootstrap_scripts() -> None:
    assert SCRIPTS, "files/bootstrap/*.sh not found"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    shellcheck = require_tool("shellcheck")
    result = subprocess.run(
        [shellcheck, "-x", "--severity=style", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_strict_mode_and_bash(script: Path) -> None:
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
