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
import yaml

from bankflow_infra.contract.grammar import IMAGE_TAG
from tests.conftest import REPO
from tests.support.tags import BAD_TAGS, GOOD_TAGS
from tests.workflows import checks

PULUMI_ACTION = "pulumi/actions@"
CLI = Path(sys.executable).parent / "bankflow-infra"
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


def _with_cli(directory: Path) -> Path:
    """``directory`` as a step sees its checkout after scripts/setup: venv/bin/bankflow-infra works."""
    (directory / "venv" / "bin").mkdir(parents=True, exist_ok=True)
    (directory / "venv" / "bin" / "bankflow-infra").symlink_to(CLI)
    (directory / "Pulumi.yaml").write_text((REPO / "Pulumi.yaml").read_text())
    return directory


def _run_in(directory: Path, script: str, tmp_path: Path, **env: str) -> tuple[int, dict[str, str], str]:
    return _run(f"cd {directory}\n{script}", tmp_path, **env)


def _call(workflow: str, job: str, step_id: str) -> list[str]:
    """The one `bankflow-infra workflow ...` call of a step: subcommand and arguments."""
    [call] = checks.workflow_calls(checks.step(checks.read(workflow), job, step_id))
    return call


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
        "restore-keys": "pulumi-plugins-${{ runner.os }}-",
    }


def test_every_python_set_up_caches_pip_on_the_lock_that_scripts_setup_installs() -> None:
    # requirements.txt is the lock's hashed runtime export: a changed pin is a new cache key.
    for path in checks.workflow_files():
        for job_name, job in checks.jobs(checks.load(path.read_text())).items():
            for step in checks.steps(job):
                if str(step.get("uses", "")).startswith("actions/setup-python@"):
                    assert step["with"].get("cache") == "pip", f"{path.name}:{job_name}"
                    assert step["with"].get("cache-dependency-path") == "requirements.txt", path.name


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
    assert up < health < rollback < order.index("Job summary") == len(order) - 1
    steps = checks.steps(job)
    # The guard runs once the CLI is installed and before any step is handed a credential.
    guard = order.index("guard")
    setup = next(i for i, step in enumerate(checks.steps(job)) if step.get("run") == "./scripts/setup")
    assert setup < guard
    assert all(not s.get("env") and "pulumi" not in checks.run_text(s) for s in steps[:guard])
    assert 'pulumi up --yes --non-interactive --diff --stack "$STACK"' in steps[up]["run"]
    assert 'bankflow-infra health "$STACK" --wait' in steps[health]["run"]
    assert steps[rollback]["if"] == "failure() && steps.health.outcome == 'failure'"
    # Back to exactly the release that served before this up, and only if the up replaced it.
    assert 'bankflow-infra rollback "$STACK" "$BEFORE_ID" --yes' in steps[rollback]["run"]
    assert checks.workflow_calls(steps[rollback]) == [
        ["check-rollback", "$STACK", "--before=$BEFORE", "--after=$after"]
    ]
    script = steps[rollback]["run"]
    assert script.index("workflow check-rollback") < script.index("bankflow-infra rollback")
    assert steps[rollback]["env"]["BEFORE"] == "${{ steps.before.outputs.release }}"
    assert steps[rollback]["env"]["BEFORE_ID"] == "${{ steps.before.outputs.release-id }}"
    assert checks.workflow_calls(steps[order.index("before")]) == [["served-release", "--value=$release"]]
    assert order.index("before") < up
    summary = steps[-1]
    assert summary["if"] == "always()"
    assert "pulumi stack output --json" in summary["run"]
    assert checks.workflow_calls(summary) == [
        [
            "deploy-summary",
            "$STACK",
            "--outputs",
            "$outputs",
            "--up=$UP",
            "--health=$HEALTH",
            "--rollback=$ROLLBACK",
            "--table",
            "$RUNNER_TEMP/health.txt",
            "--table",
            "$RUNNER_TEMP/health-after-rollback.txt",
        ]
    ]


@pytest.mark.parametrize(
    ("stack", "ref", "ok"),
    [
        ("production", "refs/heads/main", True),
        ("production", "refs/heads/staging", False),
        ("production", "refs/heads/feature", False),
        ("staging", "refs/heads/staging", True),
        ("staging", "refs/heads/main", False),  # staging deploys the staging branch, nothing else
        ("staging", "refs/heads/feature", False),
        ("prod", "refs/heads/main", False),
        ("", "refs/heads/main", False),
    ],
)
def test_the_guard_deploys_each_stack_only_from_its_branch(
    tmp_path: Path, stack: str, ref: str, ok: bool
) -> None:
    guard = checks.step(checks.read("deploy-stack.yml"), "up", "guard")
    checkout = _with_cli(tmp_path / "checkout")
    code, _, output = _run_in(checkout, guard["run"], tmp_path, STACK=stack, GITHUB_REF=ref)
    assert (code == 0) == ok, output
    if not ok:
        assert "::error title=" in output


def test_the_deploy_path_deploys_only_the_committed_config() -> None:
    reusable = checks.read("deploy-stack.yml")
    assert set(checks.triggers(reusable)["workflow_call"]["inputs"]) == {"stack", "ref"}
    [job] = checks.jobs(reusable).values()
    for candidate in checks.steps(job):
        assert "pulumi config set" not in checks.run_text(candidate)
        assert "pulumi config rm" not in checks.run_text(candidate)
    # Its only caller is deploy.yml: a push to the stack's branch.
    callers = {
        (path.name, job_name)
        for path in checks.workflow_files()
        for job_name, other in checks.jobs(checks.load(path.read_text())).items()
        if other.get("uses") == REUSABLE
    }
    assert callers == {("deploy.yml", "staging"), ("deploy.yml", "production")}


def test_pulumi_cli_matches_the_pinned_sdk() -> None:
    # requirements.txt is the lock's export: `pulumi==X \` followed by its hashes.
    pinned = re.search(r"^pulumi==([^\s\\]+)", (REPO / "requirements.txt").read_text(), re.MULTILINE)
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

# Stack -> the branch that deploys it (deploy.yml), where releases and cutovers are proposed.
STACK_BRANCHES = {"staging": "staging", "production": "main"}
# Scopes any job may write, across every workflow: the preview comment and the two PR jobs.
EXPECTED_WRITES = {
    ("preview.yml", "preview", "pull-requests"),
    ("release.yml", "pull-request", "contents"),
    ("release.yml", "pull-request", "pull-requests"),
    ("emergency.yml", "pull-request", "contents"),
    ("emergency.yml", "pull-request", "pull-requests"),
    ("postgres-image.yml", "postgres-image", "packages"),  # GHCR push of the postgres image
}
FAKE_GH = """#!/bin/sh
# Stand-in for the GitHub CLI: records each call, answers `pr list` and `pr create`.
printf '%s\\n' "$*" >>"$GH_LOG"
case "$1 $2" in
  "pr list") printf '%s\\n' "${GH_OPEN_PR:-}" ;;
  "pr create") echo "https://github.com/bankflow/infra/pull/7" ;;
  *) exit 1 ;;
esac
"""


def _git(cwd: Path, *args: str) -> str:
    command = ["git", "-C", str(cwd), "-c", "user.name=t", "-c", "user.email=t@example.com", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return result.stdout


class Sandbox:
    """A bare `origin` with staging and main holding the real stack files, a checkout of one of
    them as actions/checkout leaves it, and a stand-in `gh`: the workflow steps run for real."""

    def __init__(self, tmp_path: Path, base: str) -> None:
        self.tmp = tmp_path
        self.origin = tmp_path / "origin.git"
        seed = tmp_path / "seed"
        seed.mkdir(parents=True)
        for name in ["Pulumi.yaml", *(f"Pulumi.{stack}.yaml" for stack in STACK_BRANCHES)]:
            (seed / name).write_text((REPO / name).read_text())
        (seed / ".gitignore").write_text("venv/\n")
        _git(seed, "init", "-q", "-b", "main")
        _git(seed, "add", ".")
        _git(seed, "commit", "-qm", "stacks")
        _git(seed, "branch", "staging")
        subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(self.origin)], check=True)
        self.work = tmp_path / "work"
        subprocess.run(
            ["git", "clone", "-q", "--depth", "1", "--branch", base, f"file://{self.origin}", str(self.work)],
            check=True,
        )
        _with_cli(self.work)
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        (self.bin / "gh").write_text(FAKE_GH)
        (self.bin / "gh").chmod(0o755)
        self.runner_temp = tmp_path / "runner"
        self.runner_temp.mkdir()
        self.gh_log = tmp_path / "gh.log"
        self.gh_log.write_text("")

    def run(self, script: str, **env: str) -> tuple[int, dict[str, str], str]:
        env.setdefault("GH_TOKEN", "stand-in")  # read by `gh` only, which is the stand-in
        return _run(
            f"cd {self.work}\n{script}",
            self.tmp,
            PATH=f"{self.bin}:{os.environ['PATH']}",
            HOME=str(self.tmp),
            RUNNER_TEMP=str(self.runner_temp),
            GH_LOG=str(self.gh_log),
            GITHUB_ACTOR="release-bot",
            GITHUB_EVENT_NAME="repository_dispatch",
            GITHUB_SERVER_URL="https://github.com",
            GITHUB_REPOSITORY="bankflow/infra",
            GITHUB_RUN_ID="1234",
            **env,
        )

    def gh_calls(self) -> list[str]:
        return self.gh_log.read_text().splitlines()

    def pushed(self, branch: str, path: str) -> str:
        return _git(self.origin, "show", f"{branch}:{path}")


def _release_steps() -> dict[str, checks.Step]:
    job = checks.jobs(checks.read("release.yml"))["pull-request"]
    return {s.get("id") or s["name"]: s for s in checks.steps(job)}


def test_both_release_jobs_check_the_request_with_the_one_grammar() -> None:
    """The tag rule and the stack->branch map live in Python (contract.grammar, DEPLOY_BRANCH):
    both jobs call `workflow release-request`, and no workflow spells a pattern of its own."""
    request = ["release-request", "--stack=$STACK", "--tag=$TAG"]
    assert _call("release.yml", "validate", "request") == request
    edit = checks.workflow_calls(checks.step(checks.read("release.yml"), "pull-request", "edit"))
    assert edit[0] == request
    assert edit[1] == ["set-release-tag", "$STACK", "$TAG"]
    for path in checks.workflow_files():
        text = path.read_text()
        assert IMAGE_TAG.pattern not in text, path.name
        assert "pattern=" not in text, path.name
        assert not re.search(r"^\s*(staging|production)\)", text, re.MULTILINE), path.name


def test_the_example_tags_agree_with_settings() -> None:
    assert all(IMAGE_TAG.fullmatch(tag) for tag in GOOD_TAGS)
    assert not any(IMAGE_TAG.fullmatch(tag) and tag != "latest" for tag in BAD_TAGS)


@pytest.mark.parametrize("tag", GOOD_TAGS + BAD_TAGS)
def test_the_release_tag_is_validated_before_use(tmp_path: Path, tag: str) -> None:
    request = checks.step(checks.read("release.yml"), "validate", "request")
    checkout = _with_cli(tmp_path / "checkout")
    code, outputs, output = _run_in(checkout, request["run"], tmp_path, TAG=tag, STACK="production")
    accepted = tag in GOOD_TAGS
    assert (code == 0) == accepted, output
    expected = {"tag": tag, "stack": "production", "ref": "main"}
    assert {k: outputs[k] for k in expected if k in outputs} == (expected if accepted else {})
    # The pull-request job checks it again before its first use, and touches nothing if bad.
    sandbox = Sandbox(tmp_path / "sandbox", "main")
    edit = _release_steps()["edit"]
    assert edit["run"].index("workflow release-request") < edit["run"].index("workflow set-release-tag")
    code, outputs, output = sandbox.run(edit["run"], TAG=tag, STACK="production")
    assert (code == 0) == accepted, output
    if not accepted:
        assert outputs == {}
        assert _git(sandbox.work, "status", "--porcelain") == ""


def test_the_tag_reaches_nothing_but_the_validating_step_unchecked() -> None:
    release = checks.read("release.yml")
    text = (checks.WORKFLOWS / "release.yml").read_text()
    # The payload and the raw input are read in exactly one place: the validating step's env.
    raw = [line.strip() for line in text.splitlines() if re.search(r"client_payload|inputs\.", line)]
    raw = [line for line in raw if "${{" in line]
    request = checks.step(release, "validate", "request")
    assert sorted(raw) == sorted(f"{key}: {value}" for key, value in request["env"].items())
    # Everything else gets the validated outputs, in a job that needs the validation.
    job = checks.jobs(release)["pull-request"]
    assert job["needs"] == "validate"
    assert job["env"] == {
        "STACK": "${{ needs.validate.outputs.stack }}",
        "TAG": "${{ needs.validate.outputs.tag }}",
        "BASE": "${{ needs.validate.outputs.ref }}",
    }


@pytest.mark.parametrize(("stack", "ref"), [("staging", "staging"), ("production", "main"), ("dev", None)])
def test_the_release_targets_the_stacks_branch(tmp_path: Path, stack: str, ref: str | None) -> None:
    request = checks.step(checks.read("release.yml"), "validate", "request")
    checkout = _with_cli(tmp_path / "checkout")
    code, outputs, output = _run_in(checkout, request["run"], tmp_path, TAG="2026.11.26-1", STACK=stack)
    assert (code == 0) == (ref is not None), output
    assert outputs.get("ref") == ref
    if ref is not None:
        assert STACK_BRANCHES[stack] == ref


def test_release_never_deploys() -> None:
    release = checks.read("release.yml")
    on = checks.triggers(release)
    assert on["repository_dispatch"] == {"types": ["release"]}
    assert set(on["workflow_dispatch"]["inputs"]) == {"environment", "tag"}
    jobs = checks.jobs(release)
    assert set(jobs) == {"validate", "pull-request"}
    for job_name, job in jobs.items():
        assert "uses" not in job, job_name  # no deploy-stack.yml, no other reusable workflow
        assert "environment" not in job, job_name  # no deploy credentials at all
        for candidate in checks.steps(job):
            script = checks.commands(candidate)  # without echo and comment lines
            assert not re.search(r"\bpulumi (?:up|config|stack|refresh|destroy)\b", script), job_name
            assert "bankflow-infra rollback" not in script
            assert not str(candidate.get("uses", "")).startswith(PULUMI_ACTION)


def test_write_permissions_only_on_the_pull_request_jobs() -> None:
    writes = {
        (path.name, job_name, scope)
        for path in checks.workflow_files()
        for job_name, job in checks.jobs(checks.load(path.read_text())).items()
        for scope, level in (job.get("permissions") or {}).items()
        if level == "write"
    }
    assert writes == EXPECTED_WRITES
    for path in checks.workflow_files():
        workflow = checks.load(path.read_text())
        assert workflow["permissions"] == {}, path.name
        assert checks.write_job_problems(workflow) == [], path.name
    for name in ("release.yml", "emergency.yml"):
        job = checks.jobs(checks.read(name))["pull-request"]
        assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
        assert "environment" not in job
        assert job["runs-on"] == "ubuntu-latest"
        [checkout] = [s for s in checks.steps(job) if s.get("uses", "").startswith("actions/checkout@")]
        assert checkout["with"]["persist-credentials"] is False
        [pr] = [s for s in checks.steps(job) if s.get("id") == "pr"]
        assert pr["env"]["GH_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"  # noqa: S105 (an expression)
        # The token is in the env of the one step that pushes and opens the pull request.
        others = [s for s in checks.steps(job) if s is not pr]
        for other in others:
            handed = json.dumps([other.get("env"), other.get("with")])
            assert "secrets." not in handed, other
            assert "github.token" not in handed, other


def test_the_pull_request_step_is_the_same_in_release_and_emergency() -> None:
    release = checks.step(checks.read("release.yml"), "pull-request", "pr")
    emergency = checks.step(checks.read("emergency.yml"), "pull-request", "pr")
    assert release["run"] == emergency["run"]
    assert {k: v for k, v in release["env"].items() if k not in ("BRANCH", "TITLE")} == {
        k: v for k, v in emergency["env"].items() if k not in ("BRANCH", "TITLE")
    }
    assert checks.workflow_calls(release) == [
        [
            "open-pull-request",
            "--base=$BASE",
            "--branch=$BRANCH",
            "--title=$TITLE",
            "--body=$RUNNER_TEMP/pull-request.md",
        ]
    ]
    # No auto-merge: a bot merge would start no deploy.
    assert '"merge"' not in (REPO / "bankflow_infra/ops/workflow/git.py").read_text()


@pytest.mark.parametrize("stack", ["staging", "production"])
@pytest.mark.parametrize("tag", ["2026.12.01-1", "1", "a" * 128])
def test_a_release_opens_a_pull_request_against_the_stacks_branch(
    tmp_path: Path, stack: str, tag: str
) -> None:
    base = STACK_BRANCHES[stack]
    sandbox = Sandbox(tmp_path, base)
    steps = _release_steps()
    job = checks.jobs(checks.read("release.yml"))["pull-request"]
    [checkout] = [s for s in checks.steps(job) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["ref"] == "${{ needs.validate.outputs.ref }}"
    code, outputs, output = sandbox.run(steps["edit"]["run"], TAG=tag, STACK=stack, BASE=base)
    assert code == 0, output
    branch = f"release/{stack}-{tag}"
    assert outputs == {
        "tag": tag,
        "stack": stack,
        "ref": base,
        "branch": branch,
        "title": f"release: {stack} {tag}",
    }
    assert steps["pr"]["env"]["BRANCH"] == "${{ steps.edit.outputs.branch }}"
    code, outputs, output = sandbox.run(
        steps["pr"]["run"], BASE=base, BRANCH=branch, TITLE=f"release: {stack} {tag}"
    )
    assert code == 0, output
    assert outputs == {"url": "https://github.com/bankflow/infra/pull/7"}
    # The pushed branch is the base plus one commit changing the one line of the one stack file.
    assert _git(sandbox.origin, "rev-parse", f"{branch}^") == _git(sandbox.origin, "rev-parse", base)
    changed = _git(sandbox.origin, "diff", "--name-only", base, branch).split()
    assert changed == [f"Pulumi.{stack}.yaml"]
    numstat = _git(sandbox.origin, "diff", "--numstat", base, branch).split()
    assert numstat[:2] == ["1", "1"]
    before = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())
    after = yaml.safe_load(sandbox.pushed(branch, f"Pulumi.{stack}.yaml"))
    assert after["config"]["bankflow:release"]["tag"] == tag  # a string, "1" included
    before["config"]["bankflow:release"]["tag"] = tag
    assert after == before
    create = [call for call in sandbox.gh_calls() if call.startswith("pr create")]
    assert create == [
        f"pr create --base {base} --head {branch} --title release: {stack} {tag} "
        f"--body-file {sandbox.runner_temp}/pull-request.md"
    ]
    body = (sandbox.runner_temp / "pull-request.md").read_text()
    assert f'+    tag: "{tag}"' in body
    assert "close and reopen" in body
    # The summary links the pull request and says nothing was deployed.
    summary = tmp_path / "summary.md"
    code, _, output = sandbox.run(
        steps["Job summary"]["run"],
        TAG=tag,
        STACK=stack,
        BASE=base,
        EDIT="success",
        PR="success",
        URL="https://github.com/bankflow/infra/pull/7",
        GITHUB_STEP_SUMMARY=str(summary),
    )
    assert code == 0, output
    assert "https://github.com/bankflow/infra/pull/7" in summary.read_text()
    assert "Nothing was deployed" in summary.read_text()


def test_a_release_of_the_committed_tag_opens_nothing(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, "main")
    stack_file = yaml.safe_load((REPO / "Pulumi.production.yaml").read_text())
    committed = stack_file["config"]["bankflow:release"]["tag"]
    steps = _release_steps()
    code, outputs, output = sandbox.run(steps["edit"]["run"], TAG=committed, STACK="production")
    assert code == 0, output
    code, outputs, output = sandbox.run(
        steps["pr"]["run"], BASE="main", BRANCH=outputs["branch"], TITLE=outputs["title"]
    )
    assert code == 0, output
    assert outputs == {}
    assert "Nothing to change" in output
    assert sandbox.gh_calls() == []


def test_a_rerun_reports_the_open_pull_request_instead_of_pushing(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, "staging")
    steps = _release_steps()
    code, outputs, output = sandbox.run(steps["edit"]["run"], TAG="2026.12.01-1", STACK="staging")
    assert code == 0, output
    code, outputs, output = sandbox.run(
        steps["pr"]["run"],
        BASE="staging",
        BRANCH=outputs["branch"],
        TITLE=outputs["title"],
        GH_OPEN_PR="https://github.com/bankflow/infra/pull/6",
    )
    assert code == 0, output
    assert outputs == {"url": "https://github.com/bankflow/infra/pull/6"}
    assert not any(call.startswith("pr create") for call in sandbox.gh_calls())
    assert "release/staging-2026.12.01-1" not in _git(sandbox.origin, "branch", "--list")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("config:\n  bankflow:environment: staging\n", "found 0"),
        ("config:\n  bankflow:release:\n    registry: r\n", "expected one `tag:`"),
        # The one stack-file reader refuses a duplicate key before the edit looks at the line.
        ("config:\n  bankflow:release:\n    tag: a\n    tag: b\n", "duplicate key 'tag'"),
    ],
)
def test_the_tag_edit_refuses_a_file_it_does_not_understand(tmp_path: Path, text: str, problem: str) -> None:
    sandbox = Sandbox(tmp_path, "staging")
    (sandbox.work / "Pulumi.staging.yaml").write_text(text)
    code, _, output = sandbox.run(_release_steps()["edit"]["run"], TAG="2026.12.01-1", STACK="staging")
    assert code != 0
    assert problem in output
    assert (sandbox.work / "Pulumi.staging.yaml").read_text() == text


def test_the_tag_edit_keeps_comments_and_layout(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, "staging")
    stack_file = sandbox.work / "Pulumi.staging.yaml"
    committed = stack_file.read_text()
    block = '  bankflow:release:\n    registry: ghcr.io/bankflow\n    tag: "2026.11.26-1"\n'
    assert block in committed
    commented = "  bankflow:release:   # the app\n    registry: ghcr.io/bankflow  # pinned\n"
    stack_file.write_text("# header\n" + committed.replace(block, commented + "    tag: '2026.11.26-1'\n"))
    code, _, output = sandbox.run(_release_steps()["edit"]["run"], TAG="2026.12.01-1", STACK="staging")
    assert code == 0, output
    expected = "# header\n" + committed.replace(block, commented + '    tag: "2026.12.01-1"\n')
    assert stack_file.read_text() == expected


def test_the_release_checks_the_edited_file_offline_before_the_pull_request() -> None:
    job = checks.jobs(checks.read("release.yml"))["pull-request"]
    order = [s.get("id") or s.get("run") or s.get("uses") for s in checks.steps(job)]
    plan = 'venv/bin/bankflow-infra plan "$STACK" --out "$RUNNER_TEMP/plan"'
    assert order.index("./scripts/setup") < order.index("edit") < order.index(plan) < order.index("pr")
    assert checks.steps(job)[-1]["if"] == "always()"


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
    checkout = _with_cli(tmp_path / "checkout")
    code, outputs, output = _run_in(
        checkout,
        check["run"],
        tmp_path,
        ENVIRONMENT=environment,
        CONFIRM=confirm,
        GITHUB_REF=ref,
        NEW_STACK=new_stack,
    )
    assert (code == 0) == ok, output
    if ok:
        assert outputs == {
            "stack": environment,
            "new-stack": new_stack or f"{environment}-r42",
            "branch": STACK_BRANCHES[environment],
        }


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
    assert rebuild["permissions"] == {"contents": "read"}
    runs = {s.get("id"): s for s in checks.steps(rebuild)}
    assert runs["rebuild"]["run"] == 'venv/bin/bankflow-infra rebuild "$STACK" --name "$NEW_STACK" --yes'
    assert runs["cutover"]["if"] == "inputs.cutover"
    assert runs["cutover"]["run"] == 'venv/bin/bankflow-infra cutover "$STACK" --to "$NEW_STACK" --yes'
    # It rebuilds and cuts over what the stack's branch holds, where the pull request goes.
    checkout = checks.steps(rebuild)[0]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["ref"] == "${{ needs.confirm.outputs.branch }}"


def test_emergency_commits_the_stack_config_through_a_pull_request_after_the_cutover() -> None:
    emergency = checks.read("emergency.yml")
    jobs = checks.jobs(emergency)
    rebuild = checks.steps(jobs["rebuild"])
    order = [s.get("id") or s.get("name") for s in rebuild]
    collect = order.index("collect")
    assert order.index("cutover") < order.index("health-cutover") < collect < len(order) - 2
    assert rebuild[collect]["if"] == "always()"
    assert rebuild[collect]["env"] == {"CUTOVER": "${{ steps.cutover.outcome }}"}
    upload = rebuild[collect + 1]
    assert upload["uses"].startswith("actions/upload-artifact@")
    assert upload["if"] == "always() && steps.collect.outputs.patch == 'true'"
    assert upload["with"]["name"] == "stack-config"
    assert order[-1] == "Job summary"
    assert jobs["rebuild"]["outputs"]["config-patch"] == "${{ steps.collect.outputs.patch }}"
    pull_request = jobs["pull-request"]
    assert pull_request["needs"] == ["confirm", "rebuild"]
    assert pull_request["if"] == "${{ !cancelled() && needs.rebuild.outputs.config-patch == 'true' }}"
    assert pull_request["env"]["BASE"] == "${{ needs.confirm.outputs.branch }}"
    steps = checks.steps(pull_request)
    assert steps[0]["with"]["ref"] == "${{ needs.confirm.outputs.branch }}"
    assert [s.get("run") for s in steps[1:3]] == [None, "./scripts/setup"]  # setup-python, the CLI
    assert steps[3]["uses"].startswith("actions/download-artifact@")
    assert steps[3]["with"]["name"] == "stack-config"
    assert [s.get("id") for s in steps[4:6]] == ["apply", "pr"]
    assert steps[5]["env"]["BRANCH"] == "${{ steps.apply.outputs.branch }}"


def _rebuild_on_the_runner(sandbox: Sandbox, stack: str, new: str, cutover: bool) -> None:
    """What rebuild and cutover leave in the checkout: a new stack file, edge.originStack set."""
    source = (sandbox.work / f"Pulumi.{stack}.yaml").read_text()
    (sandbox.work / f"Pulumi.{new}.yaml").write_text(
        "encryptionsalt: v1:abc\n" + source.replace("zoneSettings: true", "zoneSettings: false")
    )
    if cutover:
        own = sandbox.work / f"Pulumi.{stack}.yaml"
        own.write_text(
            own.read_text().replace(
                "    zone: conciliaextrato.com\n", f"    zone: conciliaextrato.com\n    originStack: {new}\n"
            )
        )


@pytest.mark.parametrize(
    ("wrote_new", "cutover", "outcome", "expected"),
    [
        (True, False, "skipped", ["Pulumi.production-r42.yaml"]),
        (True, True, "success", ["Pulumi.production-r42.yaml", "Pulumi.production.yaml"]),
        (True, True, "failure", ["Pulumi.production-r42.yaml"]),  # traffic state unknown: a person decides
        (False, False, "", []),  # the rebuild failed before `stack init`
    ],
)
def test_emergency_collects_the_new_stack_file_and_a_successful_cutover(
    tmp_path: Path, wrote_new: bool, cutover: bool, outcome: str, expected: list[str]
) -> None:
    sandbox = Sandbox(tmp_path, "main")
    if wrote_new:
        _rebuild_on_the_runner(sandbox, "production", "production-r42", cutover)
    collect = checks.step(checks.read("emergency.yml"), "rebuild", "collect")
    code, outputs, output = sandbox.run(
        collect["run"], STACK="production", NEW_STACK="production-r42", CUTOVER=outcome
    )
    assert code == 0, output
    assert outputs == {"patch": "true" if expected else "false"}
    assert ("::warning title=Stack config not committed::" in output) == (outcome == "failure")
    patch = sandbox.runner_temp / "stack-config" / "stack-config.patch"
    if expected:
        files = re.findall(r"^diff --git a/(\S+) ", patch.read_text(), re.MULTILINE)
        assert files == expected
    else:
        assert not patch.exists()


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_emergency_opens_a_pull_request_with_the_stack_config_against_the_stacks_branch(
    tmp_path: Path, stack: str
) -> None:
    base = STACK_BRANCHES[stack]
    new = f"{stack}-r42"
    rebuild_side = Sandbox(tmp_path / "rebuild", base)
    _rebuild_on_the_runner(rebuild_side, stack, new, cutover=True)
    emergency = checks.read("emergency.yml")
    code, outputs, output = rebuild_side.run(
        checks.step(emergency, "rebuild", "collect")["run"], STACK=stack, NEW_STACK=new, CUTOVER="success"
    )
    assert code == 0, output
    assert outputs == {"patch": "true"}
    # The pull-request job: a fresh checkout of the stack's branch, the downloaded patch.
    sandbox = Sandbox(tmp_path / "pr", base)
    downloaded = sandbox.runner_temp / "stack-config"
    downloaded.mkdir()
    (downloaded / "stack-config.patch").write_bytes(
        (rebuild_side.runner_temp / "stack-config" / "stack-config.patch").read_bytes()
    )
    outcomes = dict.fromkeys(("REBUILD", "HEALTH_NEW", "CUTOVER", "HEALTH_CUTOVER"), "success")
    apply = checks.step(emergency, "pull-request", "apply")
    code, outputs, output = sandbox.run(apply["run"], STACK=stack, NEW_STACK=new, BASE=base, **outcomes)
    assert code == 0, output
    assert outputs == {"branch": f"emergency/{new}", "title": f"emergency: {stack} cut over to {new}"}
    code, pr_outputs, output = sandbox.run(
        checks.step(emergency, "pull-request", "pr")["run"],
        BASE=base,
        BRANCH=outputs["branch"],
        TITLE=outputs["title"],
    )
    assert code == 0, output
    assert pr_outputs == {"url": "https://github.com/bankflow/infra/pull/7"}
    branch = outputs["branch"]
    changed = sorted(_git(sandbox.origin, "diff", "--name-only", base, branch).split())
    assert changed == sorted([f"Pulumi.{new}.yaml", f"Pulumi.{stack}.yaml"])
    own = yaml.safe_load(sandbox.pushed(branch, f"Pulumi.{stack}.yaml"))
    assert own["config"]["bankflow:edge"]["originStack"] == new
    written_on_the_runner = (rebuild_side.work / f"Pulumi.{new}.yaml").read_text()
    assert sandbox.pushed(branch, f"Pulumi.{new}.yaml") == written_on_the_runner
    [create] = [call for call in sandbox.gh_calls() if call.startswith("pr create")]
    assert create.startswith(f"pr create --base {base} --head emergency/{new} ")
    body = (sandbox.runner_temp / "pull-request.md").read_text()
    assert "Traffic has moved" in body
    assert "Merge this before any other push" in body


def test_emergency_refuses_a_patch_that_touches_anything_but_stack_files(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path, "main")
    downloaded = sandbox.runner_temp / "stack-config"
    downloaded.mkdir()
    (downloaded / "stack-config.patch").write_text(
        "diff --git a/.github/workflows/x.yml b/.github/workflows/x.yml\nnew file mode 100644\n"
        "--- /dev/null\n+++ b/.github/workflows/x.yml\n@@ -0,0 +1 @@\n+on: push\n"
    )
    apply = checks.step(checks.read("emergency.yml"), "pull-request", "apply")
    code, outputs, output = sandbox.run(
        apply["run"], STACK="production", NEW_STACK="production-r42", BASE="main"
    )
    assert code != 0
    assert "Unexpected file" in output
    assert outputs == {}
    assert not (sandbox.work / ".github").exists()


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


def test_the_job_summary_shows_urls_release_and_health(tmp_path: Path) -> None:
    """Run the summary step for real, with a stand-in `pulumi` that answers from saved outputs."""
    work = _with_cli(tmp_path / "checkout")
    # The tag comes from the committed stack file (what `pulumi config get` read before).
    committed = (REPO / "Pulumi.staging.yaml").read_text()
    (work / "Pulumi.staging.yaml").write_text(committed.replace('tag: "2026.11.26-1"', 'tag: "2026.12.01-1"'))
    git = ["git", "-C", str(work), "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "stack"], check=True)
    outputs = {"urls": {"api": "https://api.qa.example", "site": "https://qa.example"}, "release": "ab12"}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pulumi = bin_dir / "pulumi"
    pulumi.write_text(
        f"#!/bin/sh\ncase \"$2\" in output) echo '{json.dumps(outputs)}' ;; *) exit 1 ;; esac\n"
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
    assert "::warning" not in output
    text = summary_file.read_text()
    for expected in (
        "| pulumi up | success |",
        "| rollback | not run |",
        "image tag `2026.12.01-1`",
        "Release (host bundle): `ab12`",
        "- api: https://api.qa.example",
        "api   healthy  200",
    ):
        assert expected in text, text
