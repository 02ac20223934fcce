"""Issue 12 item 1: a pull request cannot read production's secrets without a reviewer.

The rule is read from every workflow (any job that can run in `production-preview` waits for the
gate job, which checks the environment's protection), the gate's step is run for real with a
stand-in `gh` that answers as GitHub's REST API does, and the decision is unit-tested.
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
from tests.conftest import REPO
from tests.workflows import checks

CLI = Path(sys.executable).parent / "bankflow-infra"
GATE_CALL = "check-preview-environment"
PRODUCTION_PREVIEW = "production-preview"
# Expressions that run a job whatever its needs did: a gate they follow gates nothing.
BYPASS = re.compile(r"\b(?:always|failure|cancelled)\(\)")


def protected(**overrides: Any) -> dict[str, Any]:
    """GitHub's answer for a protected environment (shape of REST "Get an environment")."""
    document: dict[str, Any] = {
        "id": 161088068,
        "name": PRODUCTION_PREVIEW,
        "can_admins_bypass": False,
        "protection_rules": [
            {"id": 3736, "type": "wait_timer", "wait_timer": 0},
            {
                "id": 3755,
                "type": "required_reviewers",
                "prevent_self_review": True,
                "reviewers": [{"type": "Team", "reviewer": {"id": 1, "slug": "infra"}}],
            },
        ],
        "deployment_branch_policy": None,
    }
    document.update(overrides)
    return document


def _reviewer_rule(**fields: Any) -> list[dict[str, Any]]:
    return [{"id": 3755, "type": "required_reviewers", **fields}]


# --- the decision ------------------------------------------------------------------------------


def test_a_protected_production_preview_environment_passes() -> None:
    verdict = protection.check_preview_environment("production", PRODUCTION_PREVIEW, json.dumps(protected()))
    assert verdict.reviewed
    assert verdict.problems == ()


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        ({"protection_rules": []}, "no required reviewers"),
        (
            {"protection_rules": _reviewer_rule(prevent_self_review=True, reviewers=[])},
            "no required reviewers",
        ),
        ({"protection_rules": [{"id": 1, "type": "wait_timer", "wait_timer": 30}]}, "no required reviewers"),
        (
            {"protection_rules": _reviewer_rule(prevent_self_review=False, reviewers=[{"type": "User"}])},
            "can approve its own preview",
        ),
        ({"protection_rules": _reviewer_rule(reviewers=[{"type": "User"}])}, "can approve its own preview"),
        ({"can_admins_bypass": True}, "administrators can skip the review"),
    ],
    ids=[
        "no-rules",
        "no-reviewers",
        "only-a-wait-timer",
        "self-review",
        "self-review-unset",
        "admin-bypass",
    ],
)
def test_a_missing_or_weakened_review_refuses_the_production_preview(
    overrides: dict[str, Any], problem: str
) -> None:
    verdict = protection.check_preview_environment(
        "production", PRODUCTION_PREVIEW, json.dumps(protected(**overrides))
    )
    assert [p for p in verdict.problems if problem in p], verdict.problems
    assert f"Settings > Environments > {PRODUCTION_PREVIEW}" in verdict.problems[0]


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"message": "Not Found", "status": "404"}', StepFailed),
        (json.dumps(protected(name="staging-preview")), StepFailed),
        ("", WorkflowError),
        ("<html>", WorkflowError),
        ("[]", WorkflowError),
    ],
    ids=["missing-environment", "another-environment", "no-answer", "not-json", "not-an-object"],
)
def test_an_unreadable_or_missing_environment_refuses_the_production_preview(
    text: str, error: type[WorkflowError]
) -> None:
    with pytest.raises(error) as raised:
        protection.check_preview_environment("production", PRODUCTION_PREVIEW, text)
    assert PRODUCTION_PREVIEW in str(raised.value)


def test_an_admin_bypass_the_token_cannot_see_is_a_warning_to_check_by_hand() -> None:
    document = protected()
    del document["can_admins_bypass"]
    verdict = protection.check_preview_environment("production", PRODUCTION_PREVIEW, json.dumps(document))
    assert verdict.problems == ()
    [warning] = verdict.warnings
    assert "Allow administrators to bypass configured protection rules" in warning
    assert (
        protection.check_preview_environment(
            "production", PRODUCTION_PREVIEW, json.dumps(protected())
        ).warnings
        == ()
    )


def test_staging_previews_run_without_a_reviewer_by_design() -> None:
    verdict = protection.check_preview_environment("staging", "staging-preview", "")
    assert not verdict.reviewed
    assert verdict.problems == ()
    assert "staging-only credentials" in protection.verdict_text(verdict)


@pytest.mark.parametrize(
    ("stack", "environment"),
    [("production", "staging-preview"), ("staging", PRODUCTION_PREVIEW), ("prod", PRODUCTION_PREVIEW)],
)
def test_a_stack_in_the_wrong_environment_is_a_bad_input(stack: str, environment: str) -> None:
    with pytest.raises(WorkflowError):
        protection.check_preview_environment(stack, environment, json.dumps(protected()))


# --- the gate step, run as GitHub runs it ------------------------------------------------------


def _gate_step() -> checks.Step:
    job = checks.jobs(checks.read("preview.yml"))["environment-gate"]
    [gate] = [s for s in checks.steps(job) if GATE_CALL in checks.run_text(s)]
    return gate


def _run_gate(
    tmp_path: Path, stack: str, environment: str, answer: str, gh_status: int
) -> subprocess.CompletedProcess[str]:
    """The gate step's script with a stand-in `gh` that prints ``answer`` and exits ``gh_status``."""
    checkout = tmp_path / "checkout"
    (checkout / "venv" / "bin").mkdir(parents=True)
    (checkout / "venv" / "bin" / "bankflow-infra").symlink_to(CLI)
    tools = tmp_path / "bin"
    tools.mkdir()
    (tmp_path / "answer.json").write_text(answer)
    gh = tools / "gh"
    # Records its arguments: the step must ask for exactly the previewed stack's environment.
    gh.write_text(
        f'#!/bin/sh\necho "$@" >"{tmp_path}/gh-args"\ncat "{tmp_path}/answer.json"\nexit {gh_status}\n'
    )
    gh.chmod(0o755)
    runner_temp = tmp_path / "runner"
    runner_temp.mkdir()
    env = {
        "PATH": f"{tools}:{os.environ['PATH']}",
        "RUNNER_TEMP": str(runner_temp),
        "GITHUB_REPOSITORY": "bankflow/infra",
        "GITHUB_OUTPUT": str(tmp_path / "output"),
        "GITHUB_STEP_SUMMARY": str(tmp_path / "summary"),
        "STACK": stack,
        "ENVIRONMENT": environment,
        "GH_TOKEN": "not-a-real-token",
    }
    return checks.run_step(_gate_step(), checkout, env)


def test_the_gate_step_lets_a_protected_production_preview_start(tmp_path: Path) -> None:
    result = _run_gate(tmp_path, "production", PRODUCTION_PREVIEW, json.dumps(protected()), 0)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "gh-args").read_text().split() == [
        "api",
        "repos/bankflow/infra/environments/production-preview",
    ]
    assert "waits for a required reviewer" in (tmp_path / "summary").read_text()


@pytest.mark.parametrize(
    ("answer", "gh_status", "message"),
    [
        (json.dumps(protected(protection_rules=[])), 0, "no required reviewers"),
        (json.dumps(protected(can_admins_bypass=True)), 0, "administrators can skip the review"),
        ('{"message":"Not Found","documentation_url":"https://docs.github.com/rest"}', 1, "Not Found"),
        ("", 1, "the API call failed"),
    ],
    ids=["unprotected", "admin-bypass", "environment-missing", "api-unreachable"],
)
def test_the_gate_step_refuses_an_unprotected_production_preview(
    tmp_path: Path, answer: str, gh_status: int, message: str
) -> None:
    result = _run_gate(tmp_path, "production", PRODUCTION_PREVIEW, answer, gh_status)
    assert result.returncode != 0
    [error] = [line for line in result.stdout.splitlines() if line.startswith("::error ")]
    assert message in error
    assert PRODUCTION_PREVIEW in error


def test_the_gate_step_warns_when_the_admin_bypass_is_not_visible(tmp_path: Path) -> None:
    document = protected()
    del document["can_admins_bypass"]
    result = _run_gate(tmp_path, "production", PRODUCTION_PREVIEW, json.dumps(document), 0)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "::warning title=Check the preview environment by hand::" in result.stdout


def test_the_gate_step_lets_staging_previews_run_with_a_notice(tmp_path: Path) -> None:
    result = _run_gate(tmp_path, "staging", "staging-preview", "", 1)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "::notice title=Preview without a reviewer::" in result.stdout


# --- the wiring, over every workflow -----------------------------------------------------------


def _environments(job: dict[str, Any]) -> str:
    """The job's `environment:` expression, with each `matrix.stack` value it can take spelled out
    (so `${{ matrix.stack }}-preview` over [staging, production] shows production-preview)."""
    environment = job.get("environment") or ""
    expression = str(environment.get("name", "") if isinstance(environment, dict) else environment)
    stacks = (job.get("strategy") or {}).get("matrix", {}).get("stack") or []
    expanded = [expression.replace("${{ matrix.stack }}", str(stack)) for stack in stacks]
    return " ".join([expression, *expanded])


def _gate_jobs(workflow: checks.Workflow) -> dict[str, dict[str, Any]]:
    return {
        name: job
        for name, job in checks.jobs(workflow).items()
        if any(GATE_CALL in checks.commands(s) for s in checks.steps(job))
    }


def production_preview_problems(text: str) -> list[str]:
    """Every job that can run in production-preview waits for a gate that checked that environment.

    The gate holds no secret, runs for the same pull requests, checks the same environment
    expression the job uses, and cannot be skipped by the job's condition or by its own steps.
    """
    workflow = checks.load(text)
    problems = []
    gates = _gate_jobs(workflow)
    for name, job in checks.jobs(workflow).items():
        if PRODUCTION_PREVIEW not in _environments(job):
            continue
        environment = str(job.get("environment"))
        needs = job.get("needs") or []
        needs = [needs] if isinstance(needs, str) else needs
        gate_names = [gate for gate in needs if gate in gates]
        if not gate_names:
            problems.append(f"jobs.{name}: runs in {PRODUCTION_PREVIEW} without needing the environment gate")
            continue
        if BYPASS.search(str(job.get("if", ""))):
            problems.append(f"jobs.{name}: its `if` runs it even when the gate failed")
        for gate_name in gate_names:
            gate = gates[gate_name]
            where = f"jobs.{gate_name}"
            if (gate.get("env") or {}).get("ENVIRONMENT") != environment:
                problems.append(f"{where}: checks another environment than jobs.{name} uses")
            if gate.get("environment") or "secrets." in str(gate):
                problems.append(f"{where}: holds secrets (it must decide before any is handed out)")
            if gate.get("if") != job.get("if") or gate.get("continue-on-error"):
                problems.append(f"{where}: may be skipped or ignored while jobs.{name} runs")
            for step in checks.steps(gate):
                if GATE_CALL in checks.commands(step) and (step.get("continue-on-error") or step.get("if")):
                    problems.append(f"{where}: the check step may be skipped or ignored")
    return problems


@pytest.mark.parametrize("path", checks.workflow_files(), ids=lambda path: path.name)
def test_no_workflow_runs_in_production_preview_without_the_gate(path: Path) -> None:
    assert production_preview_problems(path.read_text()) == []


def test_the_preview_runs_in_production_preview_only_for_main_behind_the_gate() -> None:
    jobs = checks.jobs(checks.read("preview.yml"))
    expression = "${{ github.base_ref == 'main' && 'production-preview' || 'staging-preview' }}"
    assert jobs["preview"]["environment"] == expression
    assert jobs["preview"]["needs"] == "environment-gate"
    gate = jobs["environment-gate"]
    assert gate["env"]["ENVIRONMENT"] == expression
    assert gate["env"]["STACK"] == jobs["preview"]["env"]["STACK"]
    assert gate["permissions"] == {"actions": "read", "contents": "read"}
    [call] = checks.workflow_calls(_gate_step())
    assert call == [
        GATE_CALL,
        "$STACK",
        "--environment=$ENVIRONMENT",
        "--document=$RUNNER_TEMP/environment.json",
    ]


MUTATIONS = [
    ("    needs: environment-gate\n", ""),
    (
        "  preview:\n    needs: environment-gate\n    if: github",
        "  preview:\n    needs: environment-gate\n    if: always() && github",
    ),
    (
        "      ENVIRONMENT: ${{ github.base_ref == 'main' && 'production-preview' || 'staging-preview' }}",
        "      ENVIRONMENT: staging-preview",
    ),
    ("    timeout-minutes: 10\n", "    timeout-minutes: 10\n    continue-on-error: true\n"),
]


@pytest.mark.parametrize(
    ("old", "new"), MUTATIONS, ids=["no-needs", "always", "other-environment", "ignored"]
)
def test_a_bypassed_gate_is_caught(old: str, new: str) -> None:
    text = (checks.WORKFLOWS / "preview.yml").read_text()
    assert old in text, f"preview.yml no longer contains {old!r}: update the mutation"
    assert production_preview_problems(text.replace(old, new, 1))


def test_a_matrix_job_in_production_preview_is_caught() -> None:
    # drift.yml before issue 12 ran both stacks in `${{ matrix.stack }}-preview`, ungated.
    text = (checks.WORKFLOWS / "drift.yml").read_text()
    old = "environment: ${{ matrix.stack }}-drift"
    assert old in text
    assert production_preview_problems(text.replace(old, "environment: ${{ matrix.stack }}-preview", 1)) == [
        "jobs.check: runs in production-preview without needing the environment gate"
    ]


def test_the_preview_before_the_gate_is_caught() -> None:
    # preview.yml as it was before issue 12: production-preview with no gate at all.
    before = (REPO / "tests/workflows/data/preview-before-issue-12.yml").read_text()
    assert production_preview_problems(before) == [
        f"jobs.preview: runs in {PRODUCTION_PREVIEW} without needing the environment gate"
    ]
