"""Issue 10's bad configs through `bankflow-infra plan` as a process, the way a new user meets
them: exit 2, one message naming the file and key, no traceback, nothing written."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.tools import REPO


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml", "Pulumi.production.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


def plan(project: Path, stack: str) -> subprocess.CompletedProcess[str]:
    # Run in the project directory, as `pulumi up` runs the program.
    return subprocess.run(
        [sys.executable, "-m", "bankflow_infra.ops.cli", "plan", stack, "--out", str(project / "out")],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def replace(old: str, new: str) -> Callable[[Path], None]:
    def edit(path: Path) -> None:
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    return edit


def write_bytes(data: bytes) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data)


def make_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


CASES = [
    (
        "environment disagrees",
        replace("bankflow:environment: staging", "bankflow:environment: production"),
        "bankflow:environment: stack 'staging' is a staging stack",
    ),
    ("misspelt namespace", replace("bankflow:alerts:", "bankfow:alerts:"), "unknown namespace 'bankfow'"),
    (
        "duplicate key",
        replace("    region: nyc3\n    size:", "    region: nyc3\n    region: fra1\n    size:"),
        "duplicate key 'region'",
    ),
    ("not UTF-8", write_bytes(b"config:\n  bankflow:environment: st\xe4ging\n"), "not UTF-8 text"),
    ("directory", make_directory, "is a directory, not a file"),
    (
        "production's hostname",
        replace("api: [api.qa.conciliaextrato.com]", "api: [api.conciliaextrato.com]"),
        "'api.conciliaextrato.com' belongs to production (Pulumi.production.yaml)",
    ),
    (
        "overlapping VPC",
        replace("10.110.16.0/20", "10.120.0.0/16"),
        "overlaps 10.120.16.0/20 of Pulumi.production.yaml",
    ),
    (
        "trailing newline",
        replace("    region: nyc3\n    size:", '    region: "nyc3\\n"\n    size:'),
        "bankflow:server.region:",
    ),
    (
        "internet in two halves",
        replace("      - 203.0.113.0/24 ", "      - 0.0.0.0/1\n      - 128.0.0.0/1 "),
        "internet in pieces",
    ),
    (
        "no ACM",
        replace("    advancedCertificates: true", "    advancedCertificates: false"),
        "bankflow:hostnames.saas[0]: 'app.qa.conciliaextrato.com' is two or more labels below",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_plan_refuses_with_one_clear_message(project, edit, expected):
    edit(project / "Pulumi.staging.yaml")
    done = plan(project, "staging")
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    assert not (project / "out").exists()


def test_the_unchanged_copy_plans(project):
    done = plan(project, "staging")
    assert done.returncode == 0, done.stderr


def test_the_other_stack_files_are_read_from_project_dir_not_the_working_directory(project, tmp_path):
    # A hostname of production claimed by staging, planned from another directory: the check
    # must read --project-dir's files (the repository's own files here would not conflict).
    replace("app.qa.conciliaextrato.com", "app.conciliaextrato.com")(project / "Pulumi.staging.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "bankflow_infra.ops.cli", "plan", "staging", "--project-dir", str(project),
         "--out", str(project / "out")],
        cwd=elsewhere, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 2, done.stdout
    assert "'app.conciliaextrato.com' belongs to production (Pulumi.production.yaml)" in done.stderr
    assert "Traceback" not in done.stderr
