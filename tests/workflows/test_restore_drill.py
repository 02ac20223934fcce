"""restore-drill.yml: the weekly drill's wiring (its logic is tests/ops/workflow/test_drill.py)."""

from __future__ import annotations

from tests.workflows import checks


def _drill_step() -> checks.Step:
    workflow = checks.read("restore-drill.yml")
    [step] = [
        s for s in checks.steps(checks.jobs(workflow)["drill"]) if "restore-drill" in checks.run_text(s)
    ]
    return step


def test_the_drill_runs_weekly_and_on_demand_in_the_protected_production_environment() -> None:
    workflow = checks.read("restore-drill.yml")
    triggers = checks.triggers(workflow)
    assert set(triggers) == {"schedule", "workflow_dispatch"}
    [schedule] = triggers["schedule"]
    _minute, _hour, day, month, weekday = schedule["cron"].split()
    assert (day, month) == ("*", "*")
    assert weekday.isdigit()
    job = checks.jobs(workflow)["drill"]
    assert job["environment"] == "production"
    assert job["container"].startswith("python:3.11-bookworm")  # Debian 12: PostgreSQL 15, pgBackRest 2.45
    assert checks.all_problems((checks.WORKFLOWS / "restore-drill.yml").read_text()) == []


def test_secrets_reach_the_drill_by_environment_only() -> None:
    step = _drill_step()
    env = step["env"]
    for name in ("PGBACKREST_REPO1_CIPHER_PASS", "PGBACKREST_REPO1_S3_KEY", "PGBACKREST_REPO1_S3_KEY_SECRET",
                 "BANKFLOW_SLACK_WEBHOOK"):  # fmt: skip
        assert "secrets." in env[name]
        assert name not in checks.run_text(step)
    [call] = checks.workflow_calls(step)
    assert call[:2] == ["restore-drill", "production"]
    assert "--repo-type=s3" in call
    assert "--as-user=postgres" in call


def test_the_result_is_kept_even_when_the_drill_fails() -> None:
    job = checks.jobs(checks.read("restore-drill.yml"))["drill"]
    [upload] = [s for s in checks.steps(job) if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    assert upload["if"] == "${{ always() }}"
    assert upload["with"]["name"] == "restore-drill-result"
