"""Which `bankflow-infra workflow` subcommand each step calls, with which inputs.

The logic is Python (tests/ops/workflow); what can still go wrong in the YAML is the wiring: a
step calling the wrong subcommand, passing the wrong variable, or a script growing back. Every
call is also parsed by the real CLI parser, so a renamed option fails here, not on GitHub.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from bankflow_infra.contract.services import DEPLOY_BRANCH
from bankflow_infra.ops import cli
from tests.workflows import checks

PATCH = "$RUNNER_TEMP/stack-config/stack-config.patch"
REBUILD_OUTCOMES = (
    "--rebuild=$REBUILD --health-new=$HEALTH_NEW --cutover=$CUTOVER --health-cutover=$HEALTH_CUTOVER"
)
OPEN_PR = "open-pull-request --base=$BASE --branch=$BRANCH --title=$TITLE --body=$RUNNER_TEMP/pull-request.md"

# (workflow, job, step id or name) -> the workflow calls of that step, in order.
EXPECTED: dict[tuple[str, str, str], list[str]] = {
    ("deploy-stack.yml", "up", "guard"): ["deploy-guard $STACK --ref=$GITHUB_REF"],
    ("deploy-stack.yml", "up", "before"): ["served-release --value=$release"],
    ("deploy-stack.yml", "up", "rollback"): ["check-rollback $STACK --before=$BEFORE --after=$after"],
    ("deploy-stack.yml", "up", "Job summary"): [
        "deploy-summary $STACK --outputs $outputs --up=$UP --health=$HEALTH --rollback=$ROLLBACK"
        " --table $RUNNER_TEMP/health.txt --table $RUNNER_TEMP/health-after-rollback.txt"
    ],
    ("release.yml", "validate", "request"): ["release-request --stack=$STACK --tag=$TAG"],
    ("release.yml", "pull-request", "edit"): [
        "release-request --stack=$STACK --tag=$TAG",
        "set-release-tag $STACK $TAG",
        "release-pr-body $STACK $TAG --diff $RUNNER_TEMP/stack-config.diff"
        " --out $RUNNER_TEMP/pull-request.md",
    ],
    ("release.yml", "pull-request", "pr"): [OPEN_PR],
    ("release.yml", "pull-request", "Job summary"): [
        "release-summary --stack=$STACK --tag=$TAG --base=$BASE --edit=$EDIT --pr=$PR --url=$URL"
        " --diff=$RUNNER_TEMP/stack-config.diff"
    ],
    ("emergency.yml", "confirm", "check"): [
        "confirm-rebuild --environment=$ENVIRONMENT --confirm=$CONFIRM --new-stack=$NEW_STACK"
        " --ref=$GITHUB_REF --run-number=$GITHUB_RUN_NUMBER"
    ],
    ("emergency.yml", "rebuild", "collect"): [
        f"collect-stack-config $STACK $NEW_STACK --cutover=$CUTOVER --patch={PATCH}"
    ],
    ("emergency.yml", "rebuild", "Job summary"): [
        f"rebuild-summary $STACK $NEW_STACK --branch=$BRANCH {REBUILD_OUTCOMES} --patch={PATCH}"
        " --table=$RUNNER_TEMP/health-new.txt --table=$RUNNER_TEMP/health-cutover.txt"
    ],
    ("emergency.yml", "pull-request", "apply"): [
        "apply-stack-config --patch=$patch --base=$BASE",
        f"emergency-pr-body $STACK $NEW_STACK --base=$BASE {REBUILD_OUTCOMES} --patch=$patch"
        " --out=$RUNNER_TEMP/pull-request.md",
    ],
    ("emergency.yml", "pull-request", "pr"): [OPEN_PR],
    ("emergency.yml", "pull-request", "Job summary"): [
        "emergency-pr-summary $STACK $NEW_STACK --base=$BASE --apply=$APPLY --pr=$PR --url=$URL"
    ],
    ("backup-replica.yml", "replicate", "replicate"): [
        "replicate-backups $STACK --outputs=$RUNNER_TEMP/outputs.json"
    ],
    ("preview.yml", "environment-gate", "gate"): [
        "check-preview-environment $STACK --environment=$ENVIRONMENT --document=$RUNNER_TEMP/environment.json"
    ],
    ("environment-gate.yml", "check", "gate"): [
        "check-scheduled-environment --environment=$ENVIRONMENT --document=$RUNNER_TEMP/environment.json"
        " --branch-rules=$RUNNER_TEMP/branch-rules.json"
    ],
    ("restore-drill.yml", "drill", "Restore the newest backup and check it"): [
        "restore-drill production --repo-type=s3 --outputs=$RUNNER_TEMP/outputs.json"
        " --work-dir=$RUNNER_TEMP/drill"
        " --result=$RUNNER_TEMP/restore-drill.json --as-user=postgres"
    ],
}


def actual_calls(workflow: checks.Workflow, name: str) -> dict[tuple[str, str, str], list[str]]:
    found = {}
    for job_name, job in checks.jobs(workflow).items():
        for step in checks.steps(job):
            calls = checks.workflow_calls(step)
            if calls:
                key = (name, job_name, str(step.get("id") or step.get("name")))
                found[key] = [shlex.join(call).replace("'", "") for call in calls]
    return found


def wiring_problems(name: str, text: str) -> list[str]:
    expected = {key: value for key, value in EXPECTED.items() if key[0] == name}
    actual = actual_calls(checks.load(text), name)
    return [
        f"{key}: calls {actual.get(key)}, expected {expected.get(key)}"
        for key in sorted(set(expected) | set(actual))
        if actual.get(key) != expected.get(key)
    ]


@pytest.mark.parametrize("path", checks.workflow_files(), ids=lambda path: path.name)
def test_each_step_calls_the_expected_subcommand_with_its_inputs(path: Path) -> None:
    assert wiring_problems(path.name, path.read_text()) == []


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda key: "/".join(key))
def test_every_call_parses_with_the_real_cli(key: tuple[str, str, str]) -> None:
    for call in EXPECTED[key]:
        args = cli.parser().parse_args(["workflow", *shlex.split(call)])
        assert callable(args.handler), call


@pytest.mark.parametrize("path", checks.workflow_files(), ids=lambda path: path.name)
def test_no_run_block_is_over_15_lines(path: Path) -> None:
    assert checks.MAX_RUN_LINES == 15
    blocks = checks.run_block_lines(path.read_text())
    assert all(count <= 15 for _, count in blocks), blocks


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        # the guard checks another ref than the run's
        ("deploy-stack.yml", '--ref="$GITHUB_REF"', "--ref=refs/heads/main"),
        # the rollback decision skipped
        (
            "deploy-stack.yml",
            '          venv/bin/bankflow-infra workflow check-rollback "$STACK"',
            "          true",
        ),
        # the edit step no longer re-checks the request before the tag edit
        (
            "release.yml",
            '          venv/bin/bankflow-infra workflow release-request --stack="$STACK" --tag="$TAG"\n',
            "",
        ),
        # the tag written to another stack's file
        ("release.yml", 'set-release-tag "$STACK" "$TAG"', 'set-release-tag production "$TAG"'),
        # the confirmation compared with something else
        ("emergency.yml", '--confirm="$CONFIRM"', '--confirm="rebuild $ENVIRONMENT"'),
        # a failed cutover's stack file collected as if it had succeeded
        ("emergency.yml", '--cutover="$CUTOVER"\n          --patch', "--cutover=success\n          --patch"),
        # the patch applied without the stack-files-only check
        (
            "emergency.yml",
            'apply-stack-config --patch="$patch" --base="$BASE"',
            'apply-stack-config --patch=/dev/null --base="$BASE"',
        ),
    ],
    ids=["guard-ref", "rollback-check", "recheck", "other-stack", "confirm", "cutover", "apply"],
)
def test_a_miswired_step_is_caught(name: str, old: str, new: str) -> None:
    text = (checks.WORKFLOWS / name).read_text()
    assert old in text, f"{name} no longer contains {old!r}: update the mutation"
    assert wiring_problems(name, text.replace(old, new, 1))


def test_the_branch_expressions_agree_with_the_one_map() -> None:
    """Job-level `if:`/`environment:` are evaluated by GitHub before any step runs, so they stay
    expressions; they must say what contract.services.DEPLOY_BRANCH says."""
    assert DEPLOY_BRANCH == {"staging": "staging", "production": "main"}
    preview = checks.jobs(checks.read("preview.yml"))["preview"]
    main = DEPLOY_BRANCH["production"]
    assert preview["env"]["STACK"] == f"${{{{ github.base_ref == '{main}' && 'production' || 'staging' }}}}"
    assert checks.triggers(checks.read("preview.yml"))["pull_request"]["branches"] == [
        DEPLOY_BRANCH["staging"],
        main,
    ]
    deploy = checks.jobs(checks.read("deploy.yml"))
    for stack, branch in DEPLOY_BRANCH.items():
        assert deploy[stack]["if"] == f"github.ref == 'refs/heads/{branch}'"
        assert deploy[stack]["with"]["stack"] == stack
