"""`workflow set-release-tag`: one line, validated, nothing half-written (workflow.stack_files)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bankflow_infra.ops.workflow import stack_files as edit
from bankflow_infra.ops.workflow.tools import WorkflowError
from bankflow_infra.settings import SettingsError
from bankflow_infra.stackfile import StackFileError
from tests.support.tools import REPO


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml", "Pulumi.production.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("stack", ["staging", "production"])
@pytest.mark.parametrize("tag", ["2026.12.01-1", "1", "a" * 128])
def test_exactly_one_line_changes(project: Path, stack: str, tag: str) -> None:
    path = project / f"Pulumi.{stack}.yaml"
    before = path.read_text()
    mode = path.stat().st_mode
    assert edit.set_release_tag(project, stack, tag) == path
    after = path.read_text()
    changed = [(a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b]
    assert changed == [('    tag: "2026.11.26-1"', f'    tag: "{tag}"')]
    assert path.stat().st_mode == mode
    assert edit.stack_release_tag(project, stack) == tag
    assert [p.name for p in project.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize(
    ("stack", "tag"), [("staging", "latest"), ("staging", "-rf"), ("dev", "1"), ("staging", "a b")]
)
def test_bad_input_writes_nothing(project: Path, stack: str, tag: str) -> None:
    before = {p.name: p.read_bytes() for p in project.iterdir()}
    with pytest.raises(WorkflowError):
        edit.set_release_tag(project, stack, tag)
    assert {p.name: p.read_bytes() for p in project.iterdir()} == before


def test_a_result_that_is_not_valid_settings_is_not_written(project: Path) -> None:
    path = project / "Pulumi.staging.yaml"
    broken = path.read_text().replace("    region: nyc3\n    size:", "    region: atlantis\n    size:")
    path.write_text(broken)
    with pytest.raises(SettingsError):
        edit.set_release_tag(project, "staging", "2026.12.01-1")
    assert path.read_text() == broken


def test_an_edit_that_would_change_more_is_not_written(project: Path) -> None:
    path = project / "Pulumi.staging.yaml"
    # A flow mapping line the line-based edit cannot read as the release block's `tag:`.
    text = path.read_text().replace(
        '    tag: "2026.11.26-1"\n', '    tag: "2026.11.26-1"  # x\n    tagline: {a: 1}\n'
    )
    path.write_text(text)
    with pytest.raises((WorkflowError, SettingsError)):
        edit.set_release_tag(project, "staging", "2026.12.01-1")
    assert path.read_text() == text


def test_a_missing_project_or_stack_file_is_named(tmp_path: Path, project: Path) -> None:
    with pytest.raises(StackFileError, match=r"Pulumi\.yaml"):
        edit.set_release_tag(tmp_path / "nowhere", "staging", "1")
    (project / "Pulumi.staging.yaml").unlink()
    with pytest.raises(StackFileError, match="no such stack file"):
        edit.set_release_tag(project, "staging", "1")
    assert edit.stack_release_tag(project, "staging") == "unknown"


def test_a_failed_write_leaves_the_file_and_no_temporary(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = project / "Pulumi.staging.yaml"
    before = path.read_text()

    def fail(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(edit.os, "replace", fail)
    with pytest.raises(OSError, match="No space"):
        edit.set_release_tag(project, "staging", "2026.12.01-1")
    assert path.read_text() == before
    assert sorted(p.name for p in project.iterdir()) == [
        "Pulumi.production.yaml",
        "Pulumi.staging.yaml",
        "Pulumi.yaml",
    ]
