"""Every shell script shipped under files/ passes shellcheck (the real tool, never skipped in CI)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.tools import REPO, require_tool

_SHELL_SHEBANG = re.compile(rb"^#!\s*(?:/usr/bin/env\s+)?(?:/\S*/)?(?:ba|da|k)?sh\b")


def shell_scripts(root: Path) -> list[Path]:
    """``*.sh`` files plus any file whose first line is a sh/bash/dash/ksh shebang."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        with path.open("rb") as handle:
            first = handle.readline(200)
        if path.suffix == ".sh" or _SHELL_SHEBANG.match(first):
            found.append(path)
    return found


def test_shell_script_detection(tmp_path: Path) -> None:
    (tmp_path / "a.sh").write_text("echo a\n")
    (tmp_path / "b").write_text("#!/usr/bin/env bash\necho b\n")
    (tmp_path / "c").write_text("#!/bin/sh\necho c\n")
    (tmp_path / "d.conf").write_text("key value\n")
    (tmp_path / "e").write_text("#!/usr/bin/env python3\n")
    assert [p.name for p in shell_scripts(tmp_path)] == ["a.sh", "b", "c"]


def test_every_shell_script_under_files_passes_shellcheck() -> None:
    shellcheck = require_tool("shellcheck")
    scripts = shell_scripts(REPO / "files")
    assert scripts, "no shell scripts found under files/ (the detection is broken or they moved)"
    done = subprocess.run(
        [shellcheck, "--external-sources", *map(str, scripts)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
