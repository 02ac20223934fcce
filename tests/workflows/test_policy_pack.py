"""Every preview and every deploy runs the policy pack (policy/): a violation stops them."""

from __future__ import annotations

from tests.workflows import checks


def _step_named(workflow: checks.Workflow, job: str, prefix: str) -> checks.Step:
    found = [s for s in checks.steps(checks.jobs(workflow)[job]) if str(s.get("name", "")).startswith(prefix)]
    assert len(found) == 1, f"{job}: expected one step named {prefix!r}"
    return found[0]


def _order(workflow: checks.Workflow, job: str, *names: str) -> list[int]:
    listed = [str(s.get("name", "")) for s in checks.steps(checks.jobs(workflow)[job])]
    return [next(i for i, n in enumerate(listed) if n.startswith(name)) for name in names]


def test_the_preview_runs_the_pack_it_installed_first() -> None:
    workflow = checks.read("preview.yml")
    preview = _step_named(workflow, "preview", "pulumi preview")
    assert preview["with"]["policyPacks"] == "policy"
    install = _step_named(workflow, "preview", "Create the policy pack's virtualenv")
    assert "-r policy/requirements.txt" in checks.run_text(install)
    installed, used = _order(workflow, "preview", "Create the policy pack's virtualenv", "pulumi preview")
    assert installed < used


def test_the_deploy_runs_up_with_the_pack() -> None:
    workflow = checks.read("deploy-stack.yml")
    up = checks.step(workflow, "up", "up")
    assert "--policy-pack policy" in checks.commands(up)
    installed, used = _order(workflow, "up", "Create the policy pack's virtualenv", "pulumi up")
    assert installed < used
