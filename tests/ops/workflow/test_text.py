"""The summaries and pull-request bodies (workflow.text): each branch of what they say."""

from __future__ import annotations

from bankflow_infra.ops.workflow import text as md

RUN = md.Run(
    actor="octo", event="workflow_dispatch", server="https://github.com", repository="b/i", run_id="9"
)
DIFF = '-    tag: "a"\n+    tag: "b"\n'


def test_release_summary_with_a_pull_request() -> None:
    text = md.release_summary(
        "staging", "b", "staging", {"edit": "success", "pr": "success"}, "https://pr/1", DIFF
    )
    assert text.startswith("## release b -> staging\n\nPull request against `staging`: https://pr/1\n")
    assert "Nothing was deployed by this run." in text
    assert text.endswith(f"```diff\n{DIFF}```\n")


def test_release_summary_without_one() -> None:
    same = md.release_summary("staging", "b", "staging", {"edit": "success", "pr": "success"}, "", "")
    assert "`staging` already has this tag: no pull request, nothing to deploy." in same
    failed = md.release_summary("production", "b", "main", {"edit": "failure"}, "", "")
    assert "No pull request (edit: failure, pull request: not run). Nothing was deployed." in failed
    assert "```" not in failed


def test_release_pr_body_names_the_run_and_the_diff() -> None:
    body = md.release_pr_body("production", "b", "Pulumi.production.yaml", DIFF, RUN)
    assert "Release `b` to **production**: `bankflow:release.tag` in `Pulumi.production.yaml`." in body
    assert "Requested by octo (workflow_dispatch), run https://github.com/b/i/actions/runs/9." in body
    assert f"```diff\n{DIFF}```" in body
    assert "close and reopen" in body


def test_rebuild_summary() -> None:
    steps = {"rebuild": "success", "health-new": "success", "cutover": "failure", "health-cutover": ""}
    text = md.rebuild_summary(
        "production", "production-r4", "main", steps, DIFF, "own diff", [("health-new", "ok")]
    )
    assert "| health of production-r4 (origin) | success |\n| cutover | failure |" in text
    assert "| health of production after cutover | not run |" in text
    assert "### Stack config for the pull request against `main` (job pull-request)" in text
    assert (
        "### Changed on the runner, not committed (the cutover did not succeed)\n\n```diff\nown diff\n```"
        in text
    )
    assert text.endswith("### health-new\n\n```\nok\n```\n")
    steps["cutover"] = "success"
    assert "not committed" not in md.rebuild_summary("production", "p-r4", "main", steps, "", "own diff", [])


def test_emergency_pr_body_says_whether_traffic_moved() -> None:
    moved = md.emergency_pr_body("staging", "staging-r2", "staging", {"cutover": "success"}, DIFF, RUN)
    assert "**Traffic has moved to staging-r2**" in moved
    assert "| cutover of staging | success |" in moved
    assert "Merge it yourself (not auto-merge)." in moved
    still = md.emergency_pr_body("staging", "staging-r2", "staging", {}, DIFF, RUN)
    assert "Traffic has not moved. `Pulumi.staging-r2.yaml`" in still


def test_emergency_pr_summary() -> None:
    assert "Pull request against `main`: https://pr/2. Merge it before" in md.emergency_pr_summary(
        "production", "production-r4", "main", {}, "https://pr/2"
    )
    assert "`main` already has this stack config" in md.emergency_pr_summary(
        "production", "production-r4", "main", {"pr": "success"}, ""
    )
