"""The rules in checks.py catch what they exist to catch: each is fed a broken workflow.

Mutations start from the real workflow files, so a rule that stopped matching the files' actual
shape would show up here as a mutation nobody notices.
"""

from __future__ import annotations

import pytest

from tests.workflows import checks

CHECKOUT = "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8 # v5.0.0"

INPUT_FROM_A_VAULT = "        with:\n          t: ${{ secrets.T }}\n"

GOOD = f"""
on: push
permissions: {{}}
jobs:
  a:
    runs-on: ubuntu-latest
    timeout-minutes: 5
    permissions:
      contents: read
    steps:
      - uses: {CHECKOUT}
        with:
          persist-credentials: false
      - run: ./scripts/test
        env:
          TOKEN: ${{{{ secrets.TOKEN }}}}
"""


def test_a_good_snippet_passes() -> None:
    assert checks.all_problems(GOOD) == []


@pytest.mark.parametrize(
    "uses",
    [
        "actions/checkout@v5",  # a moving tag
        "actions/checkout@08c6903",  # a short SHA
        "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8",  # no version comment
        "actions/checkout@main # v5.0.0",
        "docker://alpine:3.20",
    ],
)
def test_unpinned_actions_are_caught(uses: str) -> None:
    assert checks.unpinned_actions(GOOD.replace(CHECKOUT, uses))


def test_uses_hidden_in_flow_style_is_caught() -> None:
    flow_style = "      - {uses: actions/cache@v4}\n      - run: x\n"
    hidden = GOOD.replace("      - run: ./scripts/test\n", flow_style)
    assert checks.unpinned_actions(hidden)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("run: ./scripts/test", 'run: echo "${{ secrets.TOKEN }}"'),
        ("run: ./scripts/test", 'run: echo "$TOKEN"'),
        ("run: ./scripts/test", "run: printf '%s' \"${TOKEN}\" > /tmp/t"),
        ("run: ./scripts/test", "run: |\n          set -euxo pipefail\n          ./scripts/test"),
        ("run: ./scripts/test", "run: printenv"),
        ("      - run: ./scripts/test\n", "      - uses: ./x\n" + INPUT_FROM_A_VAULT),
        ("    timeout-minutes: 5\n", "    timeout-minutes: 5\n    env:\n      T: ${{ secrets.T }}\n"),
    ],
    ids=["expression-echo", "env-echo", "env-printf", "xtrace", "printenv", "in-with", "in-job-env"],
)
def test_secret_leaks_are_caught(old: str, new: str) -> None:
    broken = GOOD.replace(old, new)
    assert broken != GOOD
    assert checks.secret_leaks(checks.load(broken))


def test_expressions_in_scripts_are_caught() -> None:
    broken = GOOD.replace("run: ./scripts/test", "run: ./deploy ${{ github.event.client_payload.tag }}")
    assert checks.run_injections(checks.load(broken))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("permissions: {}\njobs", "permissions: write-all\njobs"),
        ("    permissions:\n      contents: read\n", ""),
        ("      contents: read\n", "      contents: write\n"),
        ("    timeout-minutes: 5\n", ""),
        ("          persist-credentials: false\n", "          fetch-depth: 0\n"),
        ("on: push", "on: pull_request_target"),
        ("run: ./scripts/test", "run: |\n          ./scripts/setup\n          ./scripts/test"),
    ],
    ids=["top-permissions", "job-permissions", "contents-write", "timeout", "persist", "prt", "set-e"],
)
def test_hygiene_breaks_are_caught(old: str, new: str) -> None:
    broken = GOOD.replace(old, new)
    assert broken != GOOD
    assert checks.hygiene_problems(checks.load(broken))


def _mutated(name: str, old: str, new: str) -> str:
    text = (checks.WORKFLOWS / name).read_text()
    assert old in text, f"{name} no longer contains {old!r}: update the mutation"
    return text.replace(old, new, 1)


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("deploy-stack.yml", "@0057852bfaa89a56745cba8c7296529d2fc39830 # v4.3.0", "@v4"),
        ("preview.yml", "@8e5e406f4007fca908480587cb9893c07090f58d # v7.0.0", "@8e5e406f4007fca9"),
        ("preview.yml", "c07090f58d # v7.0.0", "c07090f58d"),
    ],
)
def test_unpinning_a_real_workflow_is_caught(name: str, old: str, new: str) -> None:
    assert checks.unpinned_actions(_mutated(name, old, new))


def test_echoing_a_secret_in_a_real_workflow_is_caught() -> None:
    broken = _mutated(
        "deploy-stack.yml",
        'venv/bin/bankflow-infra rollback "$STACK" "$BEFORE_ID" --yes',
        'echo "token: $PULUMI_ACCESS_TOKEN"',
    )
    assert checks.secret_leaks(checks.load(broken))


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        # the health gate removed
        ("deploy-stack.yml", 'health "$STACK" --wait | tee "$RUNNER_TEMP/health.txt"', "--version"),
        # the gate made optional
        ("deploy-stack.yml", "        id: health\n", "        id: health\n        continue-on-error: true\n"),
        # rollback on any failure, not the gate's; or on success
        ("deploy-stack.yml", "if: failure() && steps.health.outcome == 'failure'", "if: failure()"),
        ("deploy-stack.yml", "if: failure() && steps.health.outcome == 'failure'", "if: success()"),
        # the rebuilt server never checked
        ("emergency.yml", '"$NEW_STACK" --origin --wait', '"$NEW_STACK" --origin'),
    ],
)
def test_breaking_the_health_gate_is_caught(name: str, old: str, new: str) -> None:
    assert checks.health_gate_problems(checks.load(_mutated(name, old, new)))


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("deploy-stack.yml", "      cancel-in-progress: false\n", "      cancel-in-progress: true\n"),
        ("deploy-stack.yml", "group: bankflow-stack-${{ inputs.stack }}\n", "group: deploy\n"),
        ("deploy-stack.yml", "    environment: ${{ inputs.stack }}\n", ""),
        ("emergency.yml", "    environment: ${{ needs.confirm.outputs.stack }}\n", ""),
    ],
)
def test_breaking_environment_or_concurrency_is_caught(name: str, old: str, new: str) -> None:
    assert checks.environment_problems(checks.load(_mutated(name, old, new)))


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        # a write scope on a job that is not a pull-request job
        (
            "release.yml",
            "    permissions:\n      contents: read\n    outputs:\n      stack: ${{ steps.request",
            "    permissions:\n      contents: write\n    outputs:\n      stack: ${{ steps.request",
        ),
        (
            "emergency.yml",
            "    permissions:\n      contents: read\n    outputs:\n",
            "    permissions:\n      contents: read\n      pull-requests: write\n    outputs:\n",
        ),
        # a scope the pull-request job does not need
        (
            "release.yml",
            "      pull-requests: write # open the pull request\n",
            "      pull-requests: write # open the pull request\n      actions: write\n",
        ),
    ],
    ids=["validate-contents", "rebuild-pull-requests", "pr-actions"],
)
def test_write_scopes_outside_the_pull_request_jobs_are_caught(name: str, old: str, new: str) -> None:
    assert checks.hygiene_problems(checks.load(_mutated(name, old, new)))


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        # deploy credentials in a job that can push
        (
            "release.yml",
            "    runs-on: ubuntu-latest\n    timeout-minutes: 15\n",
            "    runs-on: ubuntu-latest\n    timeout-minutes: 15\n    environment: production\n",
        ),
        (
            "release.yml",
            "          GH_REPO: ${{ github.repository }}\n",
            "          GH_REPO: ${{ github.repository }}\n          P: ${{ secrets.PULUMI_ACCESS_TOKEN }}\n",
        ),
        (
            "emergency.yml",
            "          GH_REPO: ${{ github.repository }}\n",
            "          GH_REPO: ${{ github.repository }}\n          T: ${{ secrets.CLOUDFLARE_API_TOKEN }}\n",
        ),
        # a deploy from the job that can push
        (
            "release.yml",
            'run: venv/bin/bankflow-infra plan "$STACK" --out "$RUNNER_TEMP/plan"',
            'run: pulumi up --yes --stack "$STACK"',
        ),
        (
            "emergency.yml",
            "          venv/bin/bankflow-infra workflow apply-stack-config",
            '          venv/bin/bankflow-infra cutover "$STACK" --to "$NEW_STACK" --yes\n'
            "          venv/bin/bankflow-infra workflow apply-stack-config",
        ),
    ],
    ids=["environment", "release-secret", "emergency-secret", "pulumi-up", "cutover"],
)
def test_deploy_credentials_in_a_job_that_can_push_are_caught(name: str, old: str, new: str) -> None:
    assert checks.write_job_problems(checks.load(_mutated(name, old, new)))


def test_a_long_run_block_is_caught() -> None:
    script = "".join(f"          echo {n}\n" for n in range(checks.MAX_RUN_LINES))
    broken = GOOD.replace(
        "run: ./scripts/test", "run: |\n          set -euo pipefail\n" + script.rstrip("\n")
    )
    assert checks.long_run_blocks(broken)
    folded = GOOD.replace("run: ./scripts/test", "run: >-\n" + script.replace("echo", "./x").rstrip("\n"))
    assert checks.long_run_blocks(folded)
    assert checks.long_run_blocks(GOOD) == []


def test_a_script_pasted_back_into_a_real_workflow_is_caught() -> None:
    """The old 80-line tag edit back in release.yml: the length rule notices."""
    old = '          venv/bin/bankflow-infra workflow set-release-tag "$STACK" "$TAG"\n'
    pasted = old + "".join(f"          python - <<'PY' # {n}\n" for n in range(checks.MAX_RUN_LINES))
    assert checks.long_run_blocks(_mutated("release.yml", old, pasted))


def test_a_push_job_may_run_the_offline_workflow_commands_only() -> None:
    allowed = {"run": 'venv/bin/bankflow-infra workflow set-release-tag "$STACK" "$TAG"'}
    assert not checks.PULUMI_USE.search(checks.commands(allowed))
    for command in ("rollback", "health", "cutover", "rebuild"):
        assert checks.PULUMI_USE.search(checks.commands({"run": f"venv/bin/bankflow-infra {command} x"}))
