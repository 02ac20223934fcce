"""Issue 12: the scheduled jobs' environments (`<stack>-drift`, `<stack>-backups`) admit `main` only.

Those jobs cannot wait for a reviewer, and their secrets decrypt the stack, so the deployment
branch rule is their control. Read from every workflow (each such job needs the reusable
environment-gate.yml for its own environment), the gate's step run for real with a stand-in
`gh` answering as GitHub's REST API does, and the decision unit-tested.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.ops.workflow import protection
from bankflow_infra.ops.workflow.tools import StepFailed, WorkflowError
from tests.workflows import checks

CLI = Path(sys.executable).parent / "bankflow-infra"
GATE = "./.github/workflows/environment-gate.yml"
SCHEDULED = re.compile(r"-(?:drift|backups)\b")
BYPASS = re.compile(r"\b(?:always|failure|cancelled)\(\)")
MAIN_ONLY = {"protected_branches": False, "custom_branch_policies": True}


def environment(name: str = "production-backups", rule: dict[str, Any] | None = None) -> str:
    return json.dumps({"id": 1, "name": name, "deployment_branch_policy": rule, "protection_rules": []})


def rules(*names: str, kind: str = "branch") -> str:
    policies = [{"id": n, "name": name, "type": kind} for n, name in enumerate(names)]
    return json.dumps({"total_count": len(policies), "branch_policies": policies})


# --- the decision ------------------------------------------------------------------------------


def test_an_environment_for_main_only_passes() -> None:
    assert (
        protection.check_scheduled_environment(
            "production-backups", environment(rule=MAIN_ONLY), rules("main")
        )
        == ()
    )


@pytest.mark.parametrize(
    ("rule", "branch_rules", "problem"),
    [
        (None, rules(), "any branch can use it"),
        (
            {"protected_branches": True, "custom_branch_policies": False},
            rules(),
            "branches other than `main`",
        ),
        (MAIN_ONLY, rules("main", "staging"), "['main', 'staging']"),
        (MAIN_ONLY, rules("*"), "['*']"),
        (MAIN_ONLY, rules(), "are empty"),
        (MAIN_ONLY, rules("main", kind="tag"), "['tag main']"),
    ],
    ids=["all-branches", "protected-branches", "main-and-staging", "wildcard", "no-rules", "a-tag"],
)
def test_an_environment_other_branches_can_use_is_refused(
    rule: dict[str, Any] | None, branch_rules: str, problem: str
) -> None:
    [found] = protection.check_scheduled_environment(
        "production-backups", environment(rule=rule), branch_rules
    )
    assert problem in found
    assert "Settings > Environments > production-backups" in found


@pytest.mark.parametrize(
    ("text", "branch_rules", "error"),
    [
        ('{"message": "Not Found"}', rules("main"), StepFailed),
        (environment(rule=MAIN_ONLY), "", WorkflowError),
        (environment(rule=MAIN_ONLY), '{"message": "Not Found"}', WorkflowError),
        ("", rules("main"), WorkflowError),
    ],
    ids=["missing-environment", "no-branch-rules-answer", "branch-rules-error", "no-answer"],
)
def test_an_unreadable_answer_is_refused(text: str, branch_rules: str, error: type[WorkflowError]) -> None:
    with pytest.raises(error):
        protection.check_scheduled_environment("production-backups", text, branch_rules)


@pytest.mark.parametrize("name", ["production-preview", "production", "prod-drift", "staging-backup"])
def test_only_the_scheduled_environments_are_checked_this_way(name: str) -> None:
    with pytest.raises(WorkflowError, match="expected one of"):
        protection.check_scheduled_environment(name, environment(name, MAIN_ONLY), rules("main"))


# --- the gate step, run as GitHub runs it ------------------------------------------------------


def _gate_step() -> checks.Step:
    return checks.step(checks.read("environment-gate.yml"), "check", "gate")


def _run_gate(tmp_path: Path, name: str, answer: str, branch_rules: str) -> subprocess.CompletedProcess[str]:
    """The step's script with a stand-in `gh` answering by path, as the REST API would."""
    checkout = tmp_path / "checkout"
    (checkout / "venv" / "bin").mkdir(parents=True)
    (checkout / "venv" / "bin" / "bankflow-infra").symlink_to(CLI)
    (tmp_path / "environment.json").write_text(answer)
    (tmp_path / "rules.json").write_text(branch_rules)
    tools = tmp_path / "bin"
    tools.mkdir()
    gh = tools / "gh"
    gh.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >>"{tmp_path}/gh-calls"\n'
        f'case "$2" in */deployment-branch-policies) cat "{tmp_path}/rules.json" ;; '
        f'*) cat "{tmp_path}/environment.json" ;; esac\n'
    )
    gh.chmod(0o755)
    (tmp_path / "runner").mkdir()
    env = {
        "PATH": f"{tools}:{os.environ['PATH']}",
        "RUNNER_TEMP": str(tmp_path / "runner"),
        "GITHUB_REPOSITORY": "bankflow/infra",
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        "ENVIRONMENT": name,
        "GH_TOKEN": "not-a-real-token",
    }
    return checks.run_step(_gate_step(), checkout, env)


def test_the_gate_step_lets_a_main_only_environment_through(tmp_path: Path) -> None:
    result = _run_gate(tmp_path, "staging-drift", environment("staging-drift", MAIN_ONLY), rules("main"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "gh-calls").read_text().split("\n")[:2] == [
        "api repos/bankflow/infra/environments/staging-drift",
        "api repos/bankflow/infra/environments/staging-drift/deployment-branch-policies",
    ]


def test_the_gate_step_refuses_an_environment_open_to_other_branches(tmp_path: Path) -> None:
    result = _run_gate(tmp_path, "production-drift", environment("production-drift", None), rules())
    assert result.returncode == 1
    [error] = [line for line in result.stdout.splitlines() if line.startswith("::error ")]
    assert "production-drift" in error
    assert "any branch can use it" in error


# --- the wiring, over every workflow -----------------------------------------------------------


def _needs(job: dict[str, Any]) -> list[str]:
    needs = job.get("needs") or []
    return [needs] if isinstance(needs, str) else list(needs)


def scheduled_gate_problems(text: str) -> list[str]:
    """Every job in a `-drift`/`-backups` environment needs the gate job for that same environment
    (same matrix), and cannot run when the gate failed."""
    workflow = checks.load(text)
    jobs = checks.jobs(workflow)
    problems = []
    for name, job in jobs.items():
        environment = str(job.get("environment") or "")
        if not SCHEDULED.search(environment):
            continue
        gates = [jobs[need] for need in _needs(job) if jobs.get(need, {}).get("uses") == GATE]
        if not gates:
            problems.append(f"jobs.{name}: runs in {environment} without needing {GATE}")
            continue
        if BYPASS.search(str(job.get("if", ""))):
            problems.append(f"jobs.{name}: its `if` runs it even when the gate failed")
        for gate in gates:
            if (gate.get("with") or {}).get("environment") != environment:
                problems.append(f"jobs.{name}: the gate checks {gate.get('with')}, not {environment}")
            if gate.get("strategy", {}).get("matrix") != job.get("strategy", {}).get("matrix"):
                problems.append(f"jobs.{name}: the gate's matrix is not the job's")
            if gate.get("if") or gate.get("secrets") is not None:
                problems.append(f"jobs.{name}: the gate may be skipped or is handed secrets")
    return problems


@pytest.mark.parametrize("path", checks.workflow_files(), ids=lambda path: path.name)
def test_every_scheduled_environment_is_checked_before_its_job(path: Path) -> None:
    assert scheduled_gate_problems(path.read_text()) == []


def test_the_scheduled_workflows_are_gated() -> None:
    gated = {
        (path.name, name)
        for path in checks.workflow_files()
        for name, job in checks.jobs(checks.load(path.read_text())).items()
        if SCHEDULED.search(str(job.get("environment") or ""))
    }
    assert gated == {
        ("drift.yml", "check"),
        ("backup-replica.yml", "replicate"),
        ("restore-drill.yml", "drill"),
    }


def test_the_gate_workflow_is_only_called_and_holds_no_secret() -> None:
    gate = checks.read("environment-gate.yml")
    assert set(checks.triggers(gate)) == {"workflow_call"}
    [job] = checks.jobs(gate).values()
    assert job["permissions"] == {"actions": "read", "contents": "read"}
    assert "environment" not in job
    assert "secrets." not in (checks.WORKFLOWS / "environment-gate.yml").read_text()


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("drift.yml", "    needs: environment-gate\n", ""),
        (
            "backup-replica.yml",
            "      environment: ${{ matrix.stack }}-backups\n",
            "      environment: staging-backups\n",
        ),
        (
            "restore-drill.yml",
            "    needs: environment-gate\n",
            "    needs: environment-gate\n    if: always()\n",
        ),
    ],
    ids=["drift-no-needs", "backup-other-environment", "drill-always"],
)
def test_a_bypassed_scheduled_gate_is_caught(name: str, old: str, new: str) -> None:
    text = (checks.WORKFLOWS / name).read_text()
    assert old in text, f"{name} no longer contains {old!r}: update the mutation"
    assert scheduled_gate_problems(text.replace(old, new, 1))
