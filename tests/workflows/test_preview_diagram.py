"""The pull-request preview carries the diagram of what changes, computed offline."""

from __future__ import annotations

from tests.workflows import checks


def _step(prefix: str) -> checks.Step:
    steps = checks.steps(checks.jobs(checks.read("preview.yml"))["preview"])
    return next(s for s in steps if str(s.get("name", "")).startswith(prefix))


def test_the_diagram_compares_with_the_base_branch_plan_and_holds_no_secret() -> None:
    base = _step("Check out the base branch")
    assert base["with"]["ref"] == "${{ github.event.pull_request.base.sha }}"
    assert base["with"]["persist-credentials"] is False
    diagram = _step("Diagram of what this pull request changes")
    script = checks.commands(diagram)
    assert 'plan "$STACK" --json --out' in script
    assert '--graph markdown --changed-from "$RUNNER_TEMP/base.json"' in script
    # One comment found again by its marker: never Pulumi's own preview comment.
    assert "<!-- bankflow-infra plan --graph -->" in script
    assert set(diagram["env"]) == {"GH_TOKEN", "PR"}
    assert "secrets." not in str(diagram)


def test_the_diagram_runs_before_any_credential_is_read() -> None:
    steps = checks.steps(checks.jobs(checks.read("preview.yml"))["preview"])
    names = [str(s.get("name", "")) for s in steps]
    diagram = next(i for i, n in enumerate(names) if n.startswith("Diagram of what"))
    first_secret = next(i for i, s in enumerate(steps) if "secrets." in str(s))
    assert diagram < first_secret
