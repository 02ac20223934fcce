"""The notification steps and the drift workflow, read from the YAML; each call parsed by the real
CLI parser; every rule shown to catch a deliberately broken copy of the workflow."""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest

from bankflow_infra.contract.services import ENVIRONMENTS
from bankflow_infra.ops import cli
from tests.workflows import checks

WEBHOOK = "${{ secrets.SLACK_WEBHOOK_URL }}"
WEBHOOK_ENV = "BANKFLOW_SLACK_WEBHOOK"


def notify_calls(step: dict[str, Any]) -> list[list[str]]:
    script = checks.run_text(step).replace("\\\n", " ")
    calls = []
    for line in script.splitlines():
        words = shlex.split(line, comments=True)
        for index, word in enumerate(words[:-1]):
            if word.endswith("bankflow-infra") and words[index + 1] == "notify":
                calls.append(words[index + 2:])
    return calls


def _step(workflow: checks.Workflow, job: str, step_id: str) -> dict[str, Any] | None:
    return next((s for s in checks.steps(checks.jobs(workflow)[job]) if s.get("id") == step_id), None)


def _ids(workflow: checks.Workflow, job: str) -> list[str]:
    return [str(s.get("id") or s.get("name")) for s in checks.steps(checks.jobs(workflow)[job])]


# (workflow, job, step id) -> the one notify call, its env wiring and its condition.
EXPECTED: dict[tuple[str, str, str], tuple[str, dict[str, str], str | None]] = {
    ("deploy-stack.yml", "up", "notify-started"): ("deploy-started $STACK", {}, None),
    ("deploy-stack.yml", "up", "notify-finished"): (
        "deploy-finished $STACK --up=$UP --health=$HEALTH --rollback=$ROLLBACK",
        {"UP": "${{ steps.up.outcome }}", "HEALTH": "${{ steps.health.outcome }}",
         "ROLLBACK": "${{ steps.rollback.outcome }}"},
        "always()",
    ),
    ("emergency.yml", "rebuild", "notify-finished"): (
        "rebuild-finished $STACK $NEW_STACK --rebuild=$REBUILD --health-new=$HEALTH_NEW --cutover=$CUTOVER"
        " --health-cutover=$HEALTH_CUTOVER",
        {"REBUILD": "${{ steps.rebuild.outcome }}", "HEALTH_NEW": "${{ steps.health-new.outcome }}",
         "CUTOVER": "${{ steps.cutover.outcome }}", "HEALTH_CUTOVER": "${{ steps.health-cutover.outcome }}"},
        "always()",
    ),
    ("drift.yml", "check", "report"): (
        "drift $STACK --preview=$PREVIEW --preview-log=$RUNNER_TEMP/preview.txt"
        " --health-json=$RUNNER_TEMP/health.json --out=$RUNNER_TEMP/drift/drift-$STACK.json",
        {"PREVIEW": "${{ steps.preview.outcome }}"},
        "always() && steps.setup.outcome == 'success'",
    ),
}


def notify_problems(name: str, text: str) -> list[str]:
    """Every notify step as EXPECTED: the call, the outcomes it reads, the webhook from the
    environment secret only (never in a script), and whether it runs after a failure."""
    workflow = checks.load(text)
    problems = []
    for (file, job, step_id), (call, env, condition) in EXPECTED.items():
        if file != name:
            continue
        step = _step(workflow, job, step_id)
        if step is None:
            problems.append(f"{job}: no step {step_id}")
            continue
        calls = [shlex.join(c).replace("'", "") for c in notify_calls(step)]
        if calls != [call]:
            problems.append(f"{job}.{step_id}: calls {calls}, expected {[call]}")
        step_env = step.get("env") or {}
        if {k: step_env.get(k) for k in env} != env:
            problems.append(f"{job}.{step_id}: env {step_env}, expected {env}")
        if step_env.get(WEBHOOK_ENV) != WEBHOOK:
            problems.append(f"{job}.{step_id}: {WEBHOOK_ENV} is not {WEBHOOK}")
        if step.get("if") != condition:
            problems.append(f"{job}.{step_id}: if {step.get('if')!r}, expected {condition!r}")
    for job_name, job in checks.jobs(workflow).items():
        for index, step in enumerate(checks.steps(job)):
            if WEBHOOK_ENV in checks.run_text(step) or "SLACK_WEBHOOK_URL" in checks.run_text(step):
                problems.append(f"{job_name}.steps[{index}]: the webhook in a script (argv)")
            if (step.get("env") or {}).get(WEBHOOK_ENV) and not notify_calls(step):
                problems.append(f"{job_name}.steps[{index}]: the webhook given to a step not notifying")
    return problems


def drift_problems(text: str) -> list[str]:
    """drift.yml: daily, both stacks, read-only, the preview that fails on drift, the health check
    of certificate and backups, the record kept whatever happened."""
    workflow = checks.load(text)
    job = checks.jobs(workflow)["check"]
    problems = []
    cron = [entry.get("cron", "") for entry in checks.triggers(workflow).get("schedule") or []]
    if len(cron) != 1 or not re.fullmatch(r"\d{1,2} \d{1,2} \* \* \*", cron[0]):
        problems.append(f"not scheduled once a day: {cron}")
    if job.get("strategy", {}).get("matrix", {}).get("stack") != list(ENVIRONMENTS):
        problems.append("the matrix is not both stacks")
    if job.get("strategy", {}).get("fail-fast") is not False:
        problems.append("one stack's drift must not cancel the other's check")
    if job.get("environment") != "${{ matrix.stack }}-drift":
        problems.append("not the read-only drift environment")
    if job.get("permissions") != {"contents": "read"}:
        problems.append(f"permissions {job.get('permissions')}")
    if str((job.get("concurrency") or {}).get("group", "")).startswith("bankflow-stack-"):
        problems.append("in the deploy group: a queued check would replace a queued deploy")
    preview = _step(workflow, "check", "preview") or {}
    words = shlex.split(checks.commands(preview).replace("\\\n", " "))
    wanted = ["pulumi", "preview", "--refresh", "--expect-no-changes", "--stack", "$STACK"]
    saved = "tee" in words and "$RUNNER_TEMP/preview.txt" in words
    if not all(word in words for word in wanted) or not saved:
        problems.append(f"the preview step runs {words}")
    health = _step(workflow, "check", "health") or {}
    command = 'bankflow-infra health "$STACK" --backups --json | tee "$RUNNER_TEMP/health.json"'
    if command not in checks.run_text(health) or "always()" not in str(health.get("if")):
        problems.append("no certificate/backup check after the preview, whatever its outcome")
    uploads = [s for s in checks.steps(job) if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    upload = uploads[0] if uploads else None
    if upload is None or "always()" not in str(upload.get("if")) or upload["with"].get("name") != (
            "drift-${{ matrix.stack }}") or not str(upload["with"].get("path")).endswith(
            "/drift/drift-${{ matrix.stack }}.json"):
        problems.append("the drift record is not kept as artifact drift-<stack> whatever happened")
    return problems


@pytest.mark.parametrize("name", sorted({key[0] for key in EXPECTED}))
def test_notify_steps_are_wired(name: str) -> None:
    assert notify_problems(name, (checks.WORKFLOWS / name).read_text()) == []


@pytest.mark.parametrize("key", sorted(EXPECTED), ids=lambda key: "/".join(key))
def test_every_notify_call_parses_with_the_real_cli(key: tuple[str, str, str]) -> None:
    call = EXPECTED[key][0].replace("$UP", "success").replace("$HEALTH_NEW", "success").replace(
        "$HEALTH_CUTOVER", "success").replace("$HEALTH", "success").replace("$ROLLBACK", "skipped").replace(
        "$REBUILD", "success").replace("$CUTOVER", "skipped").replace("$PREVIEW", "failure")
    args = cli.parser().parse_args(["notify", *shlex.split(call)])
    assert callable(args.handler)


def test_the_deploy_notices_bracket_the_deploy() -> None:
    ids = _ids(checks.read("deploy-stack.yml"), "up")
    assert ids.index("guard") < ids.index("notify-started") < ids.index("up")
    assert ids.index("rollback") < ids.index("notify-finished")


def test_the_drift_workflow() -> None:
    assert drift_problems((checks.WORKFLOWS / "drift.yml").read_text()) == []


def test_no_workflow_puts_the_webhook_in_a_script() -> None:
    for path in checks.workflow_files():
        assert [p for p in notify_problems(path.name, path.read_text()) if "script" in p] == []


@pytest.mark.parametrize(
    ("name", "old", "new"),
    [
        ("deploy-stack.yml", '--health="$HEALTH"', '--health=success'),
        ("deploy-stack.yml", "HEALTH: ${{ steps.health.outcome }}\n          ROLLBACK",
         "HEALTH: ${{ steps.up.outcome }}\n          ROLLBACK"),
        ("deploy-stack.yml", 'notify deploy-started "$STACK"',
         'notify deploy-started "$STACK" --webhook="$BANKFLOW_SLACK_WEBHOOK"'),
        ("emergency.yml", '--cutover="$CUTOVER" --health-cutover', '--cutover=success --health-cutover'),
        ("emergency.yml", "BANKFLOW_SLACK_WEBHOOK: ${{ secrets.SLACK_WEBHOOK_URL }}\n        run: >-\n"
         "          venv/bin/bankflow-infra notify rebuild",
         "BANKFLOW_SLACK_WEBHOOK: ${{ secrets.SLACK_WEBHOOK }}\n        run: >-\n"
         "          venv/bin/bankflow-infra notify rebuild"),
        ("drift.yml", "          PREVIEW: ${{ steps.preview.outcome }}", "          PREVIEW: success"),
        ("drift.yml", "id: report\n        if: always() && steps.setup.outcome == 'success'",
         "id: report\n        if: steps.setup.outcome == 'success'"),
    ],
    ids=["health-fixed", "health-from-up", "webhook-in-argv", "cutover-fixed", "other-secret",
         "preview-fixed", "report-skipped-on-drift"],
)
def test_a_miswired_notify_step_is_caught(name: str, old: str, new: str) -> None:
    text = (checks.WORKFLOWS / name).read_text()
    assert old in text, f"{name} no longer contains {old!r}: update the mutation"
    assert notify_problems(name, text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("--refresh --expect-no-changes --diff", "--refresh --diff"),
        ('- cron: "17 5 * * *"', '- cron: "17 5 * * 1"'),
        ("stack: [staging, production]", "stack: [production]"),
        ("environment: ${{ matrix.stack }}-drift", "environment: ${{ matrix.stack }}"),
        ("group: drift-${{ matrix.stack }}", "group: bankflow-stack-${{ matrix.stack }}"),
        ("--backups --json", "--json"),
        ("id: health\n        if: always() && ", "id: health\n        if: "),
        ("name: drift-${{ matrix.stack }}", "name: drift"),
        ("fail-fast: false", "fail-fast: true"),
    ],
    ids=["no-expect-no-changes", "weekly", "one-stack", "deploy-environment", "deploy-group",
         "no-backups", "health-skipped-on-drift", "artifact-name", "fail-fast"],
)
def test_a_broken_drift_workflow_is_caught(old: str, new: str) -> None:
    text = (checks.WORKFLOWS / "drift.yml").read_text()
    assert old in text, f"drift.yml no longer contains {old!r}: update the mutation"
    assert drift_problems(text.replace(old, new, 1))
