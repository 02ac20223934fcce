"""The backup-replica workflow's wiring (issue 11 item 3): scheduled, read-only repository
access, only the state backend's secrets, the saved outputs (which hold a key) always deleted."""

from __future__ import annotations

from tests.workflows import checks

WORKFLOW = "backup-replica.yml"
CLOUD_TOKENS = (
    "DIGITALOCEAN_TOKEN",
    "CLOUDFLARE_API_TOKEN",
    "SPACES_ACCESS_KEY_ID",
    "SPACES_SECRET_ACCESS_KEY",
)


def job() -> dict:
    return checks.jobs(checks.read(WORKFLOW))["replicate"]


def test_it_runs_every_hour_for_both_stacks_one_at_a_time():
    workflow = checks.read(WORKFLOW)
    assert checks.triggers(workflow)["schedule"] == [{"cron": "41 * * * *"}]
    assert job()["strategy"]["matrix"]["stack"] == ["staging", "production"]
    assert job()["concurrency"]["cancel-in-progress"] is False
    assert job()["permissions"] == {"contents": "read"}


def test_it_holds_no_cloud_token_only_the_state_backends_secrets():
    assert job()["environment"] == "${{ matrix.stack }}-backups"
    text = (checks.WORKFLOWS / WORKFLOW).read_text()
    assert not [token for token in CLOUD_TOKENS if token in text]


def test_the_saved_outputs_are_private_and_always_deleted():
    save = checks.step(checks.read(WORKFLOW), "replicate", "outputs")
    assert "umask 077" in save["run"]
    assert "--show-secrets" in save["run"]
    cleanup = checks.step(checks.read(WORKFLOW), "replicate", "cleanup")
    assert cleanup["if"] == "always()"
    assert cleanup["run"] == 'rm -f "$RUNNER_TEMP/outputs.json"'
    names = [s.get("id") for s in checks.steps(job())]
    assert names.index("outputs") < names.index("replicate") < names.index("cleanup")
