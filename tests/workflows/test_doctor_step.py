"""The deploy runs the read-only pre-flight before `pulumi up`: a failed check skips the up."""

from __future__ import annotations

from tests.workflows import checks


def test_doctor_runs_before_the_up_with_only_what_it_reads() -> None:
    job = checks.jobs(checks.read("deploy-stack.yml"))["up"]
    ids = [step.get("id") for step in checks.steps(job)]
    assert ids.index("doctor") < ids.index("up")
    doctor = checks.step(checks.read("deploy-stack.yml"), "up", "doctor")
    assert 'venv/bin/bankflow-infra doctor "$STACK"' in checks.commands(doctor)
    assert "if" not in doctor  # runs on every deploy; a failure stops the job before the up
    assert "set -euo pipefail" in checks.run_text(doctor)  # tee must not hide doctor's exit code
    # The cloud tokens it checks, and the state backend for the outputs it reads: nothing else.
    assert set(doctor["env"]) == {
        "PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
        "DIGITALOCEAN_TOKEN", "CLOUDFLARE_API_TOKEN",
    }
