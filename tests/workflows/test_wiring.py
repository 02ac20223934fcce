"""The wiring users rely on, read from the workflow YAML; the validation scripts are run for real."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.settings import _TAG_RE
from tests.conftest import REPO
from tests.workflows import checks

PULUMI_ACTION = "pulumi/actions@"
REUSABLE = "./.github/workflows/deploy-stack.yml"


def _run(script: str, tmp_path: Path, **env: str) -> tuple[int, dict[str, str], str]:
    """Run a step's script as GitHub does (bash -eo pipefail) with GITHUB_OUTPUT; return its outputs."""
    outputs = tmp_path / "github_output"
    outputs.write_text("")
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
        env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(outputs), "GITHUB_RUN_NUMBER": "42", **env},
        capture_output=True,
        text=True,
        check=False,
    )
    written = dict(line.split("=", 1) for line in outputs.read_text().splitlines() if "=" in line)
    return result.returncode, written, result.stdout + result.stderr


def _uses(workflow: checks.Workflow) -> list[tuple[str, dict[str, Any]]]:
    return [
        (job_name, candidate)
        for job_name, job in checks.jobs(workflow).items()
        for candidate in checks.steps(job)
        if "uses" in candidate
    ]


@pytest.mark.parametrize("path", checks.workflow_files(), ids=lambda path: path.name)
def test_every_workflow_keeps_the_rules(path: Path) -> None:
    assert checks.all_problems(path.read_text()) == []


# --- preview -------------------------------------------------------------------------------


def test_preview_runs_only_on_pull_requests_to_staging_or_main() -> None:
    preview = checks.read("preview.yml")
    assert checks.triggers(preview) == {"pull_request": {"branches": ["staging", "main"]}}
    job = checks.jobs(preview)["preview"]
    assert job["env"]["STACK"] == "${{ github.base_ref == 'main' && 'production' || 'staging' }}"
    assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
    [(_, action)] = [(j, s) for j, s in _uses(preview) if s["uses"].startswith(PULUMI_ACTION)]
    assert action["with"]["command"] == "preview"
    assert action["with"]["stack-name"] == "${{ env.STACK }}"
    assert action["with"]["diff"] is True
    assert action["with"]["comment-on-pr"] is True
    # No other workflow previews, and no workflow runs `up` through the action (deploy-stack runs
    # the CLI so that the release tag, the gate and the rollback share one job).
    for path in checks.workflow_files():
        for _, candidate in _uses(checks.load(path.read_text())):
            if candidate["uses"].startswith(PULUMI_ACTION) and path.name != "preview.yml":
                assert "command" not in (candidate.get("with") or {}), path.name


def test_preview_installs_into_the_pulumi_virtualenv_and_caches_plugins() -> None:
    job = checks.jobs(checks.read("preview.yml"))["preview"]
    names = [s.get("run") or s.get("uses", "") for s in checks.steps(job)]
    setup = names.index("./scripts/setup")
    action = next(i for i, name in enumerate(names) if name.startswith(PULUMI_ACTION))
    assert setup < action
    cache = next(s for s in checks.steps(job) if s.get("uses", "").startswith("actions/cache@"))
    assert cache["with"] == {
        "path": "~/.pulumi/plugins",
        "key": "pulumi-plugins-${{ runner.os }}-${{ hashFiles('requirements.txt') }}",
    }


def test_fork_pull_requests_get_a_notice_not_a_failure() -> None:
    jobs = checks.jobs(checks.read("preview.yml"))
    same_repo = "github.event.pull_request.head.repo.full_name == github.repository"
    assert jobs["preview"]["if"] == same_repo
    assert jobs["fork-notice"]["if"] == same_repo.replace("==", "!=")
    assert jobs["fork-notice"]["permissions"] == {}
    [notice] = checks.steps(jobs["fork-notice"])
    assert notice["run"].startswith('echo "::notice ')
    # Same-repo runs without secrets (Dependabot) also get a notice, and skip the preview.
    credentials = checks.step(checks.read("preview.yml"), "preview", "credentials")
    assert "::notice " in credentials["run"]
    action = next(s for s in checks.steps(jobs["preview"]) if s.get("uses", "").startswith(PULUMI_ACTION))
    assert action["if"] == "steps.credentials.outputs.ready == 'true'"


# --- deploy --------------------------------------------------------------------------------


def test_pushes_deploy_staging_from_staging_and_production_only_from_main() -> None:
    deploy = checks.read("deploy.yml")
    assert checks.triggers(deploy) == {"push": {"branches": ["staging", "main"]}}
    jobs = checks.jobs(deploy)
    assert jobs["test"]["uses"] == "./.github/workflows/ci.yml"
    for name, branch in (("staging", "staging"), ("production", "main")):
        assert jobs[name]["uses"] == REUSABLE
        assert jobs[name]["needs"] == "test"
        assert jobs[name]["if"] == f"github.ref == 'refs/heads/{branch}'"
        assert jobs[name]["with"] == {"stack": name, "ref": "${{ github.sha }}"}
    assert set(jobs) == {"test", "staging", "production"}


def test_the_deploy_path_runs_behind_the_stacks_environment_one_at_a_time() -> None:
    reusable = checks.read("deploy-stack.yml")
    assert set(checks.triggers(reusable)) == {"workflow_call"}
    [job] = checks.jobs(reusable).values()
    assert job["environment"] == "${{ inputs.stack }}"
    assert job["concurrency"] == {"group": "bankflow-stack-${{ inputs.stack }}", "cancel-in-progress": False}
    emergency = checks.jobs(checks.read("emergency.yml"))["rebuild"]
    assert emergency["concurrency"] == {
        "group": "bankflow-stack-${{ needs.confirm.outputs.stack }}",
        "cancel-in-progress": False,
    }
    # Nothing outside the two gated jobs changes a stack.
    for path in checks.workflow_files():
        for job_name, other in checks.jobs(checks.load(path.read_text())).items():
            if any(checks.NEEDS_ENVIRONMENT.search(checks.commands(s)) for s in checks.steps(other)):
                assert (path.name, job_name) in {("deploy-stack.yml", "up"), ("emergency.yml", "rebuild")}


def test_the_deploy_path_is_up_then_health_gate_then_rollback_then_summary() -> None:
    [job] = checks.jobs(checks.read("deploy-stack.yml")).values()
    order = [s.get("id") or s.get("name") for s in checks.steps(job)]
    up, health, rollback = (order.index(name) for name in ("up", "health", "rollback"))
    assert order[0] == "guard"
    assert up < health < rollback < order.index("Job summary") == len(order) - 1
    steps = checks.steps(job)
    assert 'pulumi up --yes --non-interactive --diff --stack "$STACK"' in steps[up]["run"]
    assert 'bankflow-infra health "$STACK" --wait' in steps[health]["run"]
    assert steps[rollback]["if"] == "failure() && steps.health.outcome == 'failure'"
    assert 'bankflow-infra rollback "$STACK" --yes' in steps[rollback]["run"]
    summary = steps[-1]
    assert summary["if"] == "always()"
    needed = ("pulumi stack output --json", "$GITHUB_STEP_SUMMARY", "for table in health ", "urls", "release")
    for text in needed:
        assert text in summary["run"]


@pytest.mark.parametrize(
    ("stack", "ref", "ok"),
    [
        ("production", "refs/heads/main", True),
        ("production", "refs/heads/staging", False),
        ("production", "refs/heads/feature", False),
        ("staging", "refs/heads/staging", True),
        ("staging", "refs/heads/main", True),  # a release to staging runs on the default branch
        ("prod", "refs/heads/main", False),
        ("", "refs/heads/main", False),
    ],
)
def test_the_guard_refuses_production_off_main(tmp_path: Path, stack: str, ref: str, ok: bool) -> None:
    guard = checks.step(checks.read("deploy-stack.yml"), "up", "guard")
    code, _, output = _run(guard["run"], tmp_path, STACK=stack, GITHUB_REF=ref, RELEASE_TAG="")
    assert (code == 0) == ok, output


def test_pulumi_cli_matches_the_pinned_sdk() -> None:
    pinned = re.search(r"^pulumi==(\S+)$", (REPO / "requirements.txt").read_text(), re.MULTILINE)
    assert pinned
    for path in checks.workflow_files():
        for _, candidate in _uses(checks.load(path.read_text())):
            if candidate["uses"].startswith(PULUMI_ACTION):
                assert str(candidate["with"]["pulumi-version"]) == pinned[1], path.name


def test_every_job_that_runs_pulumi_sets_up_its_virtualenv_first() -> None:
    for path in checks.workflow_files():
        for job_name, job in checks.jobs(checks.load(path.read_text())).items():
            names = [s.get("run") or s.get("uses", "") for s in checks.steps(job)]
            pulumi = [i for i, name in enumerate(names) if name.startswith(PULUMI_ACTION)]
            if pulumi:
                assert "./scripts/setup" in names[: pulumi[0]], f"{path.name}:{job_name}"
                assert any(name.startswith("actions/cache@") for name in names), f"{path.name}:{job_name}"


# --- release -------------------------------------------------------------------------------

GOOD_TAGS = ["2026.11.26-1", "v1.2.3", "sha-0123abc", "1", "_build.7", "a" * 128]
BAD_TAGS = [
    "",
    "latest",
    "$(id)",
    "`id`",
    "1.0;rm -rf /",
    "a b",
    "-rf",
    ".hidden",
    "1.0\n::add-mask::x",
    "tag/../../x",
    "a" * 129,
    "ção",
]


def test_the_release_tag_grammar_is_the_one_settings_accepts() -> None:
    for path, job, step_id in (("release.yml", "validate", "request"), ("deploy-stack.yml", "up", "guard")):
        script = checks.step(checks.read(path), job, step_id)["run"]
        assert f"pattern='{_TAG_RE.pattern}'" in script, path


def test_the_example_tags_agree_with_settings() -> None:
    assert all(_TAG_RE.match(tag) for tag in GOOD_TAGS)
    assert not any(_TAG_RE.match(tag) and tag != "latest" for tag in BAD_TAGS)


@pytest.mark.parametrize("tag", GOOD_TAGS + BAD_TAGS)
def test_the_release_tag_is_validated_before_use(tmp_path: Path, tag: str) -> None:
    request = checks.step(checks.read("release.yml"), "validate", "request")
    code, outputs, output = _run(request["run"], tmp_path, TAG=tag, STACK="production")
    accepted = tag in GOOD_TAGS
    assert (code == 0) == accepted, output
    assert outputs == ({"tag": tag, "stack": "production", "ref": "main"} if accepted else {})
    guard = checks.step(checks.read("deploy-stack.yml"), "up", "guard")
    code, _, output = _run(
        guard["run"], tmp_path, STACK="staging", GITHUB_REF="refs/heads/main", RELEASE_TAG=tag
    )
    assert (code == 0) == (accepted or tag == ""), output  # "" = no tag: keep the committed one


@pytest.mark.parametrize(("stack", "ref"), [("staging", "staging"), ("production", "main"), ("dev", None)])
def test_the_release_deploys_the_stacks_branch(tmp_path: Path, stack: str, ref: str | None) -> None:
    request = checks.step(checks.read("release.yml"), "validate", "request")
    code, outputs, output = _run(request["run"], tmp_path, TAG="2026.11.26-1", STACK=stack)
    assert (code == 0) == (ref is not None), output
    assert outputs.get("ref") == ref


def test_the_release_goes_through_the_deploy_path_with_the_validated_tag() -> None:
    release = checks.read("release.yml")
    on = checks.triggers(release)
    assert on["repository_dispatch"] == {"types": ["release"]}
    assert set(on["workflow_dispatch"]["inputs"]) == {"environment", "tag"}
    jobs = checks.jobs(release)
    assert jobs["deploy"]["uses"] == REUSABLE
    assert jobs["deploy"]["needs"] == "validate"
    assert jobs["deploy"]["with"] == {
        "stack": "${{ needs.validate.outputs.stack }}",
        "ref": "${{ needs.validate.outputs.ref }}",
        "release-tag": "${{ needs.validate.outputs.tag }}",
    }
    # The payload is read in exactly one place: the validating step's env.
    text = (checks.WORKFLOWS / "release.yml").read_text()
    payload_lines = [line.strip() for line in text.splitlines() if "client_payload" in line and "${{" in line]
    request = checks.step(release, "validate", "request")
    assert sorted(payload_lines) == sorted(f"{key}: {value}" for key, value in request["env"].items())
    # In the deploy path the tag reaches `pulumi config set` only through env, after the guard.
    [job] = checks.jobs(checks.read("deploy-stack.yml")).values()
    set_tag = next(s for s in checks.steps(job) if "pulumi config set" in s.get("run", ""))
    assert set_tag["env"]["RELEASE_TAG"] == "${{ inputs.release-tag }}"
    assert 'pulumi config set --path bankflow:release.tag "$RELEASE_TAG" -s "$STACK"' in set_tag["run"]
    assert checks.steps(job).index(set_tag) < [s.get("id") for s in checks.steps(job)].index("up")


# --- emergency -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environment", "confirm", "ref", "new_stack", "ok"),
    [
        ("production", "rebuild production", "refs/heads/main", "", True),
        ("staging", "rebuild staging", "refs/heads/feature", "staging-2", True),
        ("production", "rebuild staging", "refs/heads/main", "", False),
        ("production", "Rebuild production", "refs/heads/main", "", False),
        ("production", "rebuild production ", "refs/heads/main", "", False),
        ("production", "", "refs/heads/main", "", False),
        ("production", "rebuild production", "refs/heads/feature", "", False),
        ("production", "rebuild production", "refs/heads/main", "x;rm -rf /", False),
        ("production", "rebuild production", "refs/heads/main", "staging", False),
        ("dev", "rebuild dev", "refs/heads/main", "", False),
    ],
)
def test_emergency_requires_the_typed_confirmation(
    tmp_path: Path, environment: str, confirm: str, ref: str, new_stack: str, ok: bool
) -> None:
    check = checks.step(checks.read("emergency.yml"), "confirm", "check")
    code, outputs, output = _run(
        check["run"], tmp_path, ENVIRONMENT=environment, CONFIRM=confirm, GITHUB_REF=ref, NEW_STACK=new_stack
    )
    assert (code == 0) == ok, output
    if ok:
        assert outputs == {"stack": environment, "new-stack": new_stack or f"{environment}-r42"}


def test_emergency_rebuilds_only_after_confirmation_behind_the_environment() -> None:
    emergency = checks.read("emergency.yml")
    on = checks.triggers(emergency)
    assert set(on) == {"workflow_dispatch"}
    inputs = on["workflow_dispatch"]["inputs"]
    assert inputs["environment"]["type"] == "choice"
    assert inputs["environment"]["options"] == ["staging", "production"]
    assert inputs["confirm"]["required"] is True
    assert inputs["cutover"]["type"] == "boolean"
    assert inputs["cutover"]["default"] is False
    rebuild = checks.jobs(emergency)["rebuild"]
    assert rebuild["needs"] == "confirm"
    assert rebuild["environment"] == "${{ needs.confirm.outputs.stack }}"
    runs = {s.get("id"): s for s in checks.steps(rebuild)}
    assert runs["rebuild"]["run"] == 'venv/bin/bankflow-infra rebuild "$STACK" --name "$NEW_STACK" --yes'
    assert runs["cutover"]["if"] == "inputs.cutover"
    assert runs["cutover"]["run"] == 'venv/bin/bankflow-infra cutover "$STACK" --to "$NEW_STACK" --yes'


# --- ci ------------------------------------------------------------------------------------


def test_ci_runs_the_readme_test_command_as_ci_does() -> None:
    ci = checks.read("ci.yml")
    on = checks.triggers(ci)
    assert {"pull_request", "push", "workflow_call"} <= set(on)
    [job] = checks.jobs(ci).values()
    runs = [s["run"] for s in checks.steps(job) if "run" in s]
    assert runs[-1] == "./scripts/test"
    assert "./scripts/install-test-tools" in runs  # the same script .ci/run uses through scripts/test
    assert "exec ./scripts/test" in (REPO / ".ci/run").read_text()
    test_script = (REPO / "scripts/test").read_text()
    for tool in ("./scripts/install-test-tools", "venv/bin/ruff check .", "venv/bin/mypy bankflow_infra"):
        assert tool in test_script  # ruff and mypy run inside ./scripts/test


def test_the_job_summary_shows_urls_release_health_and_the_config_to_commit(tmp_path: Path) -> None:
    """Run the summary step for real, with a stand-in `pulumi` that answers from saved outputs."""
    work = tmp_path / "checkout"
    (work / "venv" / "bin").mkdir(parents=True)
    (work / "venv" / "bin" / "python").symlink_to(sys.executable)
    (work / "Pulumi.staging.yaml").write_text("config:\n  bankflow:release:\n    tag: old\n")
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "stack"], check=True)
    (work / "Pulumi.staging.yaml").write_text("config:\n  bankflow:release:\n    tag: 2026.12.01-1\n")
    outputs = {"urls": {"api": "https://api.qa.example", "site": "https://qa.example"}, "release": "ab12"}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pulumi = bin_dir / "pulumi"
    pulumi.write_text(
        "#!/bin/sh\n"
        f"case \"$2\" in output) echo '{json.dumps(outputs)}' ;; get) echo 2026.12.01-1 ;; esac\n"
    )
    pulumi.chmod(0o755)
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    (runner_temp / "health.txt").write_text("api   healthy  200\n")
    summary_file = tmp_path / "summary.md"
    [job] = checks.jobs(checks.read("deploy-stack.yml")).values()
    summary = checks.steps(job)[-1]["run"]
    code, _, output = _run(
        f"cd {work}\n{summary}",
        tmp_path,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        STACK="staging",
        UP="success",
        HEALTH="success",
        ROLLBACK="",
        RUNNER_TEMP=str(runner_temp),
        GITHUB_STEP_SUMMARY=str(summary_file),
    )
    assert code == 0, output
    assert "::warning title=Commit the release tag::" in output
    text = summary_file.read_text()
    for expected in (
        "| pulumi up | success |",
        "| rollback | not run |",
        "image tag `2026.12.01-1`",
        "Release (host bundle): `ab12`",
        "- api: https://api.qa.example",
        "api   healthy  200",
        "+    tag: 2026.12.01-1",
    ):
        assert expected in text, text
