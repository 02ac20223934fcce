"""No secret in plain state and no cloud name shared between stacks (mock engine)."""

from __future__ import annotations

import json

import pytest

from bankflow_infra.ops.mocks import (
    unwrap,
    without_secrets,
)
from bankflow_infra.ops.plan import PlanResult
from tests.program.stacks import (
    DNS,
    inputs,
    production,
    rebuild,
    run_stack,
    staging,
)

# --------------------------------------------------------------------------- secrets


def secret_values(result: PlanResult) -> set[str]:
    values: set[str] = set()
    for registration in result.recorder.resources:
        for key in ("result", "privateKeyPem", "privateKeyOpenssh"):
            value = registration.state.get(key)
            if isinstance(value, str) and registration.type.startswith(("random:", "tls:index/privateKey")):
                values.add(value.strip())
    return values


@pytest.mark.parametrize("plan", [staging, production, rebuild], ids=["staging", "production", "rebuild"])
def test_no_secret_value_appears_in_any_plain_input(plan):
    result = plan()
    secrets = secret_values(result)
    assert len(secrets) >= 5  # three passwords, deploy key, host key (+ origin key)
    for registration in result.recorder.resources:
        plain = json.dumps(without_secrets(registration.inputs))
        for secret in secrets:
            for line in secret.splitlines():
                if len(line) >= 16 and "-----" not in line:
                    assert line not in plain, f"{registration.type} {registration.name} leaks a secret"


@pytest.mark.parametrize("plan", [staging, production], ids=["staging", "production"])
def test_outputs_carrying_secrets_are_secret_and_no_other_output_holds_one(plan):
    result = plan()
    assert "deploy_private_key" in result.secret_outputs
    secrets = secret_values(result)
    for name, value in result.outputs.items():
        if name in result.secret_outputs:
            continue
        text = json.dumps(value)
        for secret in secrets:
            assert secret not in text, f"output {name} holds a secret in plain text"


def test_plan_document_shows_secrets_as_placeholders():
    document = staging().document()
    text = json.dumps(document)
    for secret in secret_values(staging()):
        assert secret not in text
    assert document["outputs"]["deploy_private_key"] == "[secret]"


# --------------------------------------------------------------------------- names


def cloud_names(result: PlanResult) -> set[str]:
    names = set()
    for registration in result.recorder.resources:
        name = unwrap(registration.inputs).get("name")
        if registration.custom and isinstance(name, str) and not registration.type.startswith("cloudflare:"):
            names.add(name)
    return names


@pytest.mark.parametrize("plan", [staging, production, rebuild], ids=["staging", "production", "rebuild"])
def test_every_cloud_name_includes_the_stack(plan):
    result = plan()
    names = cloud_names(result)
    assert names
    for name in names:
        assert result.stack in name, name


def test_two_stacks_never_claim_the_same_name_or_hostname():
    pairs = [(staging(), production()), (production(), rebuild())]
    for first, second in pairs:
        assert cloud_names(first).isdisjoint(cloud_names(second))
    staging_records = {inputs(r)["name"] for r in staging().recorder.of_type(DNS)}
    production_records = {inputs(r)["name"] for r in production().recorder.of_type(DNS)}
    assert staging_records.isdisjoint(production_records)



def test_operator_keys_reach_the_host_not_the_account():
    # Issue 12 item 7: personal keys are server.operators accounts (adminSshKeys is refused).
    key = "ssh-ed25519 " + "A" * 68 + " ana@bankflow"

    def with_operator(config):
        config["bankflow:server"]["operators"] = [{"name": "ana", "publicKey": key}]

    result = run_stack("staging", with_operator)
    ssh_keys = [inputs(r)["name"] for r in result.recorder.of_type("digitalocean:index/sshKey:SshKey")]
    assert ssh_keys == ["bankflow-staging-deploy"]  # a shared admin key would be a 422 per stack


def test_the_slack_webhook_never_sits_in_plain_state():
    url = "https://hooks.slack.com/services/T000/B000/secretwebhook"

    def with_slack(config):
        config["bankflow:alerts"]["slackChannel"] = "#ops"
        config["bankflow:alerts"]["slackUrl"] = url

    result = run_stack("staging", with_slack)
    alerting = [r for r in result.recorder.resources if "Alert" in r.type]
    assert alerting
    for registration in alerting:
        assert url not in json.dumps(without_secrets(registration.inputs))
        assert url in json.dumps(unwrap(registration.inputs))

