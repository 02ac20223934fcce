"""The remote commands the program registers on the droplet (mock engine)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile

import pytest

from bankflow_infra.contract.layout import DATA_VOLUME_MOUNT, bootstrap_environment
from bankflow_infra.ops.mocks import Registration, unwrap, without_secrets
from bankflow_infra.ops.plan import PlanResult
from tests.program.stacks import DROPLET, only, production, run_stack, staging

COMMAND = "command:remote:Command"


def commands(result: PlanResult) -> dict[str, Registration]:
    return {r.name.removeprefix("host-"): r for r in result.recorder.of_type(COMMAND)}


def host_public_key(result: PlanResult) -> str:
    key = next(r for r in result.recorder.resources if r.name == "credentials-host-key")
    return str(key.state["publicKeyOpenssh"]).strip()


@pytest.mark.parametrize("plan", [staging, production], ids=["staging", "production"])
def test_every_remote_command_follows_the_droplet_and_pins_its_host_key(plan):
    result = plan()
    droplet = only(result, DROPLET)
    registered = commands(result)
    # Both stacks have a data volume (staging's is small: issue 11 item 6).
    volume_steps = {"grow-data-filesystem", "release-data-volume"}
    assert set(registered) == {"wait-cloud-init", "bootstrap", "deploy", *volume_steps}
    for name, command in registered.items():
        # The release step must run its delete when the droplet goes: never `deleted_with` it.
        assert command.deleted_with == ("" if name == "release-data-volume" else droplet.urn), name
        assert command.replace_with == (droplet.urn,), name
        connection = unwrap(command.inputs)["connection"]
        assert connection["host"] == "203.0.113.10"  # the droplet's own address
        assert connection["hostKey"] == host_public_key(result)
        assert connection["user"] == "root"
        assert connection["dialErrorLimit"] >= (1 if name == "release-data-volume" else 60), name
        assert unwrap(command.inputs)["addPreviousOutputInEnv"] is False


def test_triggers_are_the_payload_digests():
    result = staging()
    registered = commands(result)
    bootstrap = unwrap(registered["bootstrap"].inputs)
    assert bootstrap["triggers"] == [hashlib.sha256(bootstrap["stdin"].encode()).hexdigest()]
    deploy = unwrap(registered["deploy"].inputs)
    assert result.bundle is not None
    assert deploy["triggers"] == [result.bundle.digest]
    assert "triggers" not in unwrap(registered["wait-cloud-init"].inputs)


def test_a_new_release_re_runs_the_deploy_but_not_the_bootstrap():
    def new_tag(config):
        config["bankflow:release"]["tag"] = "2026.12.24-7"

    before, after = commands(staging()), commands(run_stack("staging", new_tag))
    assert unwrap(before["bootstrap"].inputs)["triggers"] == unwrap(after["bootstrap"].inputs)["triggers"]
    assert unwrap(before["deploy"].inputs)["triggers"] != unwrap(after["deploy"].inputs)["triggers"]


def test_the_same_config_gives_the_same_triggers():
    first, second = commands(staging()), commands(run_stack("staging"))
    for name in ("bootstrap", "deploy"):
        assert unwrap(first[name].inputs)["triggers"] == unwrap(second[name].inputs)["triggers"]


def test_deploy_carries_secrets_only_on_stdin_and_logs_nothing():
    result = staging()
    deploy = commands(result)["deploy"]
    plain = without_secrets(deploy.inputs)
    assert plain["stdin"] is None  # secret-marked
    assert plain["logging"] == "none"
    assert set(deploy.additional_secret_outputs) >= {"stdout", "stderr"}
    assert result.bundle is not None
    text = json.dumps(plain)
    for secret_file in result.bundle.secret_files:
        for line in secret_file.text.splitlines():
            value = line.split("=", 1)[-1]
            if len(value) >= 16:
                assert value not in text


def test_no_secret_in_any_command_text():
    result = production()
    assert result.bundle is not None
    secret_texts = [f.text for f in result.bundle.secret_files]
    for command in commands(result).values():
        create = unwrap(command.inputs).get("create") or unwrap(command.inputs)["delete"]
        key = "create" if "create" in unwrap(command.inputs) else "delete"
        assert without_secrets(command.inputs)[key] == create  # the text itself is not secret
        for secret in secret_texts:
            for line in secret.splitlines():
                value = line.split("=", 1)[-1]
                if len(value) >= 16:
                    assert value not in create


def test_bootstrap_payload_holds_the_setup_script_host_files_and_agent():
    bootstrap = unwrap(commands(staging())["bootstrap"].inputs)
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(bootstrap["stdin"])), mode="r:gz") as archive:
        names = set(archive.getnames())
    assert "bootstrap/host-setup.sh" in names
    assert "ssh/50-bankflow-hardening.conf" in names
    assert "ssh/authorized_keys" in names
    assert "agent/bankflow_infra/host/agent.py" in names
    assert "agent/bankflow-agent" in names
    assert any(name.startswith("host/") for name in names)
    assert not any(name.startswith("secrets/") for name in names)


@pytest.mark.parametrize("plan", [staging, production], ids=["staging", "production"])
def test_bootstrap_mounts_the_data_volume_after_it_is_attached(plan):
    result = plan()
    bootstrap = commands(result)["bootstrap"]
    assert "BANKFLOW_DATA_VOLUME_LABEL=bankflow-data " in unwrap(bootstrap.inputs)["create"]
    attachment = only(result, "digitalocean:index/volumeAttachment:VolumeAttachment")
    assert attachment.urn in bootstrap.dependencies


def test_a_stack_without_a_data_volume_mounts_none():
    def no_volume(config):
        config["bankflow:server"]["volumeSizeGb"] = 0

    result = run_stack("staging", no_volume)
    assert "BANKFLOW_DATA_VOLUME_LABEL" not in unwrap(commands(result)["bootstrap"].inputs)["create"]


@pytest.mark.parametrize("plan", [staging, production], ids=["staging", "production"])
def test_bootstrap_passes_the_host_layout_the_setup_script_requires(plan):
    # host-setup.sh has no default for the layout: every variable must be on the command line.
    create = unwrap(commands(plan())["bootstrap"].inputs)["create"]
    for name, value in bootstrap_environment().items():
        assert f" {name}={value} " in create, name


def test_production_bootstrap_names_the_data_volume_mount_point():
    create = unwrap(commands(production())["bootstrap"].inputs)["create"]
    assert f"BANKFLOW_DATA_VOLUME_MOUNT={DATA_VOLUME_MOUNT} " in create
