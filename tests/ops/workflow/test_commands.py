"""`bankflow-infra workflow ...` as a step runs it: argv in, $GITHUB_OUTPUT / summary / exit code out."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bankflow_infra.contract import exit_codes
from bankflow_infra.ops import cli
from tests.support.tools import REPO

SUBCOMMANDS = [
    "branch",
    "deploy-guard",
    "served-release",
    "check-rollback",
    "deploy-summary",
    "release-request",
    "set-release-tag",
    "release-pr-body",
    "release-summary",
    "open-pull-request",
    "confirm-rebuild",
    "collect-stack-config",
    "rebuild-summary",
    "apply-stack-config",
    "emergency-pr-body",
    "emergency-pr-summary",
    "replicate-backups",
]


@pytest.fixture
def github(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    files = {"output": tmp_path / "output", "summary": tmp_path / "summary.md"}
    monkeypatch.setenv("GITHUB_OUTPUT", str(files["output"]))
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(files["summary"]))
    return files


def outputs(github: dict[str, Path]) -> dict[str, str]:
    text = github["output"].read_text() if github["output"].exists() else ""
    return dict(line.split("=", 1) for line in text.splitlines())


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_every_subcommand_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["workflow", name, "--help"])
    assert done.value.code == 0
    assert "GITHUB_OUTPUT" in capsys.readouterr().out


def test_the_group_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["workflow", "--help"])
    text = capsys.readouterr().out
    assert all(name in text for name in SUBCOMMANDS)


def test_branch_prints_and_outputs(github: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["workflow", "branch", "production"]) == exit_codes.OK
    assert capsys.readouterr().out == "main\n"
    assert outputs(github) == {"branch": "main"}


def test_an_unknown_stack_exits_2_with_an_annotation(
    github: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["workflow", "branch", "prod"]) == exit_codes.USAGE
    assert (
        capsys.readouterr().out
        == "::error title=Invalid environment::environment must be staging or production, got 'prod'\n"
    )
    assert outputs(github) == {}


def test_an_input_cannot_inject_a_workflow_command(
    github: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code = cli.main(["workflow", "release-request", "--stack=staging", "--tag=1.0\n::add-mask::x"])
    assert code == exit_codes.USAGE
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    assert not any(line.startswith("::add-mask") for line in out.splitlines())
    assert outputs(github) == {}


def test_annotations_escape_what_would_end_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    from bankflow_infra.ops.cli.workflow_handlers import annotate

    annotate("error", "a:b,c", "one\n::add-mask::x 100%")
    assert capsys.readouterr().out == "::error title=a%3Ab%2Cc::one%0A::add-mask::x 100%25\n"


def test_a_value_starting_with_a_dash_is_a_value(
    github: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["workflow", "release-request", "--stack=staging", "--tag=-rf"]) == exit_codes.USAGE
    assert "'-rf'" in capsys.readouterr().out


def test_a_release_request(github: dict[str, Path]) -> None:
    assert cli.main(["workflow", "release-request", "--stack=staging", "--tag=2026.12.01-1"]) == exit_codes.OK
    assert outputs(github)["branch"] == "release/staging-2026.12.01-1"


def test_a_tag_git_cannot_name_a_branch_is_refused(
    github: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["workflow", "release-request", "--stack=staging", "--tag=a..b"]) == exit_codes.USAGE
    assert "Unusable branch name" in capsys.readouterr().out


def test_served_release_and_the_rollback_decision(
    github: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    digest = "ab" * 32
    assert cli.main(["workflow", "served-release", f"--value={digest}"]) == exit_codes.OK
    assert outputs(github) == {"release": digest, "release-id": digest[:12]}
    argv = ["workflow", "check-rollback", "staging", f"--before={digest}"]
    assert cli.main([*argv, "--after=" + "cd" * 32]) == exit_codes.OK
    assert f"rolling staging back to release {digest[:12]}" in capsys.readouterr().out
    assert cli.main([*argv, f"--after={digest}"]) == exit_codes.FAILED
    assert "no new release went out" in capsys.readouterr().out


def test_set_release_tag_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    argv = ["workflow", "set-release-tag", "staging", "2026.12.01-1", "--project-dir", str(tmp_path)]
    assert cli.main(argv) == exit_codes.OK
    assert 'tag: "2026.12.01-1"' in (tmp_path / "Pulumi.staging.yaml").read_text()
    assert cli.main([*argv[:3], "latest", *argv[4:]]) == exit_codes.USAGE
    assert cli.main([*argv[:2], "production", *argv[3:]]) == exit_codes.USAGE
    assert "no such stack file" in capsys.readouterr().out


def test_the_deploy_summary(tmp_path: Path, github: dict[str, Path]) -> None:
    for name in ("Pulumi.yaml", "Pulumi.staging.yaml"):
        shutil.copy(REPO / name, tmp_path / name)
    saved = tmp_path / "outputs.json"
    saved.write_text(
        '{"release": "ab12", "urls": {"site": "https://qa.example", "api": "https://api.qa.example"}}'
    )
    (tmp_path / "health.txt").write_text("api   healthy  200")
    argv = [
        "workflow",
        "deploy-summary",
        "staging",
        "--outputs",
        str(saved),
        "--project-dir",
        str(tmp_path),
        "--up=success",
        "--health=failure",
        "--rollback=success",
        "--table",
        str(tmp_path / "health.txt"),
        "--table",
        str(tmp_path / "health-after-rollback.txt"),
    ]
    assert cli.main(argv) == exit_codes.OK
    text = github["summary"].read_text()
    assert "| pulumi up | success |\n| health gate | failure |\n| rollback | success |" in text
    assert "Commit `unknown`, image tag `2026.11.26-1`." in text  # not a git checkout
    assert "- api: https://api.qa.example\n- site: https://qa.example" in text
    assert "### health\n\n```\napi   healthy  200\n```" in text
    assert "health-after-rollback" not in text
    assert "fix forward" in text
    saved.write_text("not json")
    github["summary"].unlink()
    assert cli.main(argv) == exit_codes.OK
    assert "(stack outputs unreadable)" in github["summary"].read_text()


def test_without_github_files_results_go_to_stdout(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    argv = [
        "workflow",
        "confirm-rebuild",
        "--environment=staging",
        "--confirm=rebuild staging",
        "--ref=refs/heads/x",
        "--run-number=7",
    ]
    assert cli.main(argv) == exit_codes.OK
    assert "new-stack=staging-r7\n" in capsys.readouterr().out
    assert (
        cli.main(["workflow", "emergency-pr-summary", "staging", "staging-r7", "--base=staging"])
        == exit_codes.OK
    )
    assert "(apply: not run, pull request: not run)" in capsys.readouterr().out


def test_the_workflow_commands_never_load_pulumi_or_stack_access() -> None:
    """A job that can push runs them: they must not reach a stack or its credentials."""
    probe = (
        "import sys; from bankflow_infra.ops.cli import workflow; "
        "bad = [m for m in sys.modules if m.split('.')[0] == 'pulumi' or m in "
        "('bankflow_infra.ops.ssh', 'bankflow_infra.ops.outputs', 'bankflow_infra.ops.rebuild', "
        "'bankflow_infra.ops.health', 'bankflow_infra.ops.stack_access', 'bankflow_infra.ops.probes')]; "
        "print(bad); sys.exit(bool(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
