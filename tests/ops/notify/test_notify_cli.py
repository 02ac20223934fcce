"""`bankflow-infra notify ...` as a process, posting to a loopback webhook receiver.

The webhook URL (with a secret path) and a handful of secret-looking variables are in the
process environment, as a workflow step has them: none of them may appear in what is posted, in
the job summary, or on stdout/stderr -- whether the post succeeds or fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.notify.receiver import SECRET_PATH, Receiver, receiver

CLI = str(Path(sys.executable).parent / "bankflow-infra")
SECRETS = {
    "PULUMI_ACCESS_TOKEN": "pul-0123456789abcdef-secret",
    "DIGITALOCEAN_TOKEN": "dop_v1_0123456789secret",
    "AWS_SECRET_ACCESS_KEY": "spaces/secret+key0123456789",
}
DRIFT_LOG = """Previewing update (production):
  ~ digitalocean:index/firewall:Firewall bankflow-production-firewall update [diff: ~inboundRules]
      ~ inboundRules: [
          ~ [0]: { sourceAddresses: ["203.0.113.0/24"] => ["0.0.0.0/0"] }
        ]
    note: token dop_v1_0123456789secret leaked into a log line
Resources:
    ~ 1 to update
error: no changes were expected but changes were proposed
"""


def notify(args: list[str], tmp_path: Path, webhook: str | None, **env: str) -> tuple[int, str, str, str]:
    summary = tmp_path / "summary.md"
    summary.touch()
    environment = {"PATH": os.environ["PATH"], "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_ACTOR": "octo",
                   "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "bankflow/infra",
                   "GITHUB_RUN_ID": "77", **SECRETS, **env}
    if webhook is not None:
        environment["BANKFLOW_SLACK_WEBHOOK"] = webhook
    done = subprocess.run([CLI, "notify", *args], env=environment, capture_output=True, text=True,
                          timeout=60, check=False)
    return done.returncode, done.stdout, done.stderr, summary.read_text()


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for value in (*SECRETS.values(), SECRET_PATH, "T0SECRET"):
            assert value not in text, f"secret {value!r} in {text!r}"


def payload_text(posted: Receiver) -> str:
    return json.dumps(posted.posts)


@pytest.mark.parametrize(
    ("outcomes", "event"),
    [
        (["--up=success", "--health=success", "--rollback=skipped"], "deploy succeeded"),
        (["--up=success", "--health=failure", "--rollback=success"], "deploy rolled back"),
        (["--up=success", "--health=failure", "--rollback=failure"], "deploy FAILED"),
        (["--up=failure", "--health=", "--rollback="], "deploy FAILED"),
    ],
    ids=["succeeded", "rolled-back", "rollback-failed", "up-failed"],
)
def test_deploy_finished_posts_what_happened(outcomes: list[str], event: str, tmp_path: Path) -> None:
    with receiver(200) as slack:
        code, out, err, summary = notify(["deploy-finished", "production", *outcomes], tmp_path, slack.url)
    assert code == 0, err
    [posted] = slack.posts
    assert posted["text"].endswith(f"production: {event}")
    body = posted["attachments"][0]["text"]
    assert "by octo" in body
    assert "https://github.com/bankflow/infra/actions/runs/77" in body
    assert f"production: {event}" in summary
    assert "Slack: posted (HTTP 200)" in summary
    assert_no_secret(payload_text(slack), summary, out, err)


def test_deploy_started(tmp_path: Path) -> None:
    with receiver(200) as slack:
        code, _, err, summary = notify(["deploy-started", "staging"], tmp_path, slack.url)
    assert code == 0, err
    assert slack.posts[0]["text"].endswith("staging: deploy started")
    assert "deploy started" in summary


def test_rebuild_finished_names_the_failed_step(tmp_path: Path) -> None:
    args = ["rebuild-finished", "production", "production-r3", "--rebuild=success", "--health-new=success",
            "--cutover=failure", "--health-cutover=skipped"]
    with receiver(200) as slack:
        code, _, err, _ = notify(args, tmp_path, slack.url)
    assert code == 0, err
    assert slack.posts[0]["text"].endswith("production: rebuild FAILED (cutover)")
    assert "new stack: production-r3" in slack.posts[0]["attachments"][0]["text"]


def test_one_retry_on_a_server_error(tmp_path: Path) -> None:
    with receiver(503, 200) as slack:
        code, _, err, summary = notify(["deploy-started", "staging"], tmp_path, slack.url)
    assert code == 0, err
    assert len(slack.posts) == 2
    assert "posted (HTTP 200)" in summary


def test_a_failed_post_is_a_visible_warning_never_a_failure(tmp_path: Path) -> None:
    with receiver(500) as slack:
        argv = ["deploy-finished", "production", "--up=success", "--health=success"]
        code, out, err, summary = notify(argv, tmp_path, slack.url, GITHUB_ACTIONS="true")
    assert code == 0
    assert len(slack.posts) == 2  # the first try and one retry, no more
    assert "::warning title=Slack notification::not posted: HTTP 500 (attempt 2 of 2)" in out
    assert "not posted: HTTP 500" in summary
    assert_no_secret(out, err, summary)


def test_a_client_error_is_not_retried(tmp_path: Path) -> None:
    with receiver(404) as slack:
        code, _, err, summary = notify(["deploy-started", "staging"], tmp_path, slack.url)
    assert code == 0
    assert len(slack.posts) == 1
    assert "Slack notification not posted: HTTP 404" in err
    assert_no_secret(err, summary)


def test_nobody_listening_is_reported_without_the_url(tmp_path: Path) -> None:
    with receiver(200) as slack:
        url = slack.url
    code, out, err, summary = notify(["deploy-started", "staging"], tmp_path, url)  # server closed
    assert code == 0
    assert "not posted: ConnectError" in err
    assert_no_secret(out, err, summary)


def test_without_a_webhook_nothing_is_posted_and_the_summary_says_so(tmp_path: Path) -> None:
    code, _out, err, summary = notify(["deploy-started", "staging"], tmp_path, None)
    assert code == 0, err
    assert "not posted: no webhook (BANKFLOW_SLACK_WEBHOOK is not set)" in summary


def test_a_webhook_that_is_not_https_is_refused_without_repeating_it(tmp_path: Path) -> None:
    code, out, err, summary = notify(["deploy-started", "staging"], tmp_path,
                                     f"http://hooks.example.com{SECRET_PATH}")
    assert code == 0
    assert "not posted: BANKFLOW_SLACK_WEBHOOK is not an https:// URL" in err + summary
    assert_no_secret(out, err, summary)


def test_an_unknown_outcome_is_bad_input(tmp_path: Path) -> None:
    with receiver(200) as slack:
        code, _, err, _ = notify(["deploy-finished", "staging", "--up=maybe"], tmp_path, slack.url)
    assert code == 2
    assert "invalid choice: 'maybe'" in err
    assert slack.posts == []


# --------------------------------------------------------------------------- drift


def drift(tmp_path: Path, slack: Receiver | None, preview: str, log: str, health: dict | None
          ) -> tuple[int, str, str, str, dict]:
    (tmp_path / "preview.txt").write_text(log)
    (tmp_path / "health.json").write_text(json.dumps(health) if health is not None else "")
    out_file = tmp_path / "drift" / "drift-production.json"
    code, out, err, summary = notify(
        ["drift", "production", f"--preview={preview}", f"--preview-log={tmp_path / 'preview.txt'}",
         f"--health-json={tmp_path / 'health.json'}", f"--out={out_file}"],
        tmp_path, slack.url if slack else None)
    return code, out, err, summary, json.loads(out_file.read_text())


HEALTHY = {"probes": [{"service": "site", "healthy": True}], "certificate_warning": None,
           "backup": {"stale": False, "age_hours": 3.0, "error": None}}


def test_drift_is_posted_with_the_diff_and_recorded(tmp_path: Path) -> None:
    with receiver(200) as slack:
        code, out, err, summary, record = drift(tmp_path, slack, "failure", DRIFT_LOG, HEALTHY)
    assert code == 1  # the scheduled run shows red
    assert record["schema"] == 1
    assert record["stack"] == "production"
    assert record["drifted"] is True
    assert record["run_url"] == "https://github.com/bankflow/infra/actions/runs/77"
    body = slack.posts[0]["attachments"][0]["text"]
    assert slack.posts[0]["text"].endswith("production: DRIFT detected")
    assert "inboundRules" in body
    assert "0.0.0.0/0" in body
    assert "token [secret] leaked" in body  # the secret value in the log is scrubbed
    assert "inboundRules" in summary
    assert_no_secret(payload_text(slack), summary, out, err, json.dumps(record))


def test_a_clean_check_posts_nothing_and_records_clean(tmp_path: Path) -> None:
    with receiver(200) as slack:
        code, _, err, summary, record = drift(tmp_path, slack, "success", "Resources:\n    12 unchanged\n",
                                              HEALTHY)
    assert code == 0, err
    assert slack.posts == []
    assert record["drifted"] is False
    assert record["problems"] == []
    assert "no drift" in summary


def test_a_failed_preview_is_unknown_not_clean(tmp_path: Path) -> None:
    with receiver(200) as slack:
        code, _, _, _, record = drift(tmp_path, slack, "failure", "error: getting stack: unauthorized\n",
                                      HEALTHY)
    assert code == 1
    assert record["drifted"] is None
    assert any("could not run" in p for p in record["problems"])
    assert len(slack.posts) == 1


def test_certificate_and_stale_backup_are_findings(tmp_path: Path) -> None:
    health = {"probes": [{"service": "api", "healthy": False}],
              "certificate_warning":
                  "WARNING: the origin certificate expires on 2027-01-01 (20 days): replace it",
              "backup": {"stale": True, "age_hours": 40.5, "error": None}}
    with receiver(200) as slack:
        code, _, _, _, record = drift(tmp_path, slack, "success", "", health)
    assert code == 1
    assert record["drifted"] is False
    assert record["problems"] == [
        "unhealthy: api",
        "the origin certificate expires on 2027-01-01 (20 days): replace it",
        "backup: the newest is 40.5 h old",
    ]
    assert slack.posts[0]["text"].endswith("production: daily check needs attention")


def test_a_missing_health_result_is_a_finding(tmp_path: Path) -> None:
    code, _, _, _, record = drift(tmp_path, None, "success", "", None)
    assert code == 1
    assert record["problems"] == ["health check: no result (the step did not run or printed no JSON)"]
