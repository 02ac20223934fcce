"""restore-drill.yml: the weekly drill's wiring (its logic is tests/ops/workflow/test_drill.py)."""

from __future__ import annotations

from tests.workflows import checks


def _drill_step() -> checks.Step:
    workflow = checks.read("restore-drill.yml")
    [step] = [
        s for s in checks.steps(checks.jobs(workflow)["drill"]) if "restore-drill" in checks.run_text(s)
    ]
    return step


def test_the_drill_runs_weekly_and_on_demand_in_the_backups_environment() -> None:
    workflow = checks.read("restore-drill.yml")
    triggers = checks.triggers(workflow)
    assert set(triggers) == {"schedule", "workflow_dispatch"}
    [schedule] = triggers["schedule"]
    _minute, _hour, day, month, weekday = schedule["cron"].split()
    assert (day, month) == ("*", "*")
    assert weekday.isdigit()
    job = checks.jobs(workflow)["drill"]
    # The environment restricted to main with the state secrets only (backup-replica's too).
    assert job["environment"] == "production-backups"
    assert job["container"].startswith("python:3.11-bookworm")  # Debian 12: PostgreSQL 15, pgBackRest 2.45
    assert checks.all_problems((checks.WORKFLOWS / "restore-drill.yml").read_text()) == []


def test_the_repository_keys_come_from_the_stack_outputs_never_from_argv_or_a_copy() -> None:
    job = checks.jobs(checks.read("restore-drill.yml"))["drill"]
    steps = checks.steps(job)
    [save] = [s for s in steps if "pulumi stack output" in str(s.get("run", ""))]
    assert "umask 077" in save["run"]
    assert "--show-secrets --stack production" in save["run"]
    step = _drill_step()
    assert set(step["env"]) == {"BANKFLOW_SLACK_WEBHOOK"}  # no cipher pass or key kept as a GitHub secret
    assert "secrets." in step["env"]["BANKFLOW_SLACK_WEBHOOK"]
    [call] = checks.workflow_calls(step)
    assert call[:2] == ["restore-drill", "production"]
    assert "--outputs=$RUNNER_TEMP/outputs.json" in call
    assert "--repo-type=s3" in call
    assert "--as-user=postgres" in call
    [cleanup] = [s for s in steps if "rm -f" in str(s.get("run", ""))]
    assert cleanup["if"] == "${{ always() }}"
    assert steps.index(save) < steps.index(step) < steps.index(cleanup)


def test_the_result_is_kept_even_when_the_drill_fails() -> None:
    job = checks.jobs(checks.read("restore-drill.yml"))["drill"]
    [upload] = [s for s in checks.steps(job) if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert upload["if"] == "${{ always() }}"
    assert upload["with"]["name"] == "restore-drill-result"
