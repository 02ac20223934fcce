"""The resource graph of each stack shape, under Pulumi's mock engine (no cloud is reachable)."""

from __future__ import annotations

import functools
import json
from typing import Any

import pytest

from bankflow_infra.ops.mocks import (
    CLOUDFLARE_IPV4_SNAPSHOT,
    CLOUDFLARE_IPV6_SNAPSHOT,
    MOCK_REFERENCED_IPV4,
    MOCK_REFERENCED_IPV6,
    Registration,
    unwrap,
    without_secrets,
)
from bankflow_infra.ops.plan import PlanResult
from tests.program.stacks import edge_on_other_stack, rebuild_shaped, run_stack
from tests.support.tools import REPO as REPO_ROOT

DROPLET = "digitalocean:index/droplet:Droplet"
FIREWALL = "digitalocean:index/firewall:Firewall"
VOLUME = "digitalocean:index/volume:Volume"
BUCKET = "digitalocean:index/spacesBucket:SpacesBucket"
DNS = "cloudflare:index/dnsRecord:DnsRecord"
ZONE_SETTING = "cloudflare:index/zoneSetting:ZoneSetting"
COMMAND = "command:remote:Command"
STACK_REFERENCE = "pulumi:pulumi:StackReference"

STAGING_HOSTS = {"qa.conciliaextrato.com", "app.qa.conciliaextrato.com", "api.qa.conciliaextrato.com"}
PRODUCTION_HOSTS = {
    "conciliaextrato.com",
    "www.conciliaextrato.com",
    "app.conciliaextrato.com",
    "api.conciliaextrato.com",
}


@functools.cache
def staging() -> PlanResult:
    return run_stack("staging")


@functools.cache
def production() -> PlanResult:
    return run_stack("production")


@functools.cache
def rebuild() -> PlanResult:
    return run_stack("production-r1", rebuild_shaped, base="production")


@functools.cache
def cut_over() -> PlanResult:
    return run_stack("production", edge_on_other_stack)


def only(result: PlanResult, type_: str) -> Registration:
    found = result.recorder.of_type(type_)
    assert len(found) == 1, f"expected one {type_}, found {len(found)}"
    return found[0]


def inputs(registration: Registration) -> dict[str, Any]:
    return unwrap(registration.inputs)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------- firewall


@pytest.mark.parametrize("plan", [staging, production, rebuild], ids=["staging", "production", "rebuild"])
def test_firewall_admits_only_ssh_from_operators_web_from_cloudflare_and_icmp(plan):
    result = plan()
    rules = inputs(only(result, FIREWALL))["inboundRules"]
    by_port = {(r["protocol"], r.get("portRange")): sorted(r["sourceAddresses"]) for r in rules}
    cloudflare = sorted([*CLOUDFLARE_IPV4_SNAPSHOT, *CLOUDFLARE_IPV6_SNAPSHOT])
    assert by_port == {
        ("tcp", "22"): ["203.0.113.0/24"],
        ("tcp", "80"): cloudflare,
        ("tcp", "443"): cloudflare,
        ("icmp", None): ["0.0.0.0/0", "::/0"],
    }


def test_firewall_ssh_sources_follow_config():
    def two_ranges(config):
        config["bankflow:server"]["sshAllowedCidrs"] = ["198.51.100.0/24", "2001:db8:1::/48"]

    rules = inputs(only(run_stack("staging", two_ranges), FIREWALL))["inboundRules"]
    ssh = [r for r in rules if r.get("portRange") == "22"]
    assert [sorted(r["sourceAddresses"]) for r in ssh] == [["198.51.100.0/24", "2001:db8:1::/48"]]


def test_firewall_selects_the_stack_tag_and_exists_before_the_droplet():
    result = staging()
    firewall = only(result, FIREWALL)
    droplet = only(result, DROPLET)
    assert inputs(firewall)["tags"] == ["stack-staging"]
    assert "stack-staging" in inputs(droplet)["tags"]
    # The droplet waits for the firewall: it is never up without its perimeter.
    assert firewall.urn in droplet.dependencies


# --------------------------------------------------------------------------- DNS and zone


@pytest.mark.parametrize(
    ("plan", "hosts", "origin"),
    [
        (staging, STAGING_HOSTS, ("203.0.113.10", "2001:db8::10")),
        (production, PRODUCTION_HOSTS, ("203.0.113.10", "2001:db8::10")),
        (cut_over, PRODUCTION_HOSTS, (MOCK_REFERENCED_IPV4, MOCK_REFERENCED_IPV6)),
    ],
    ids=["staging", "production", "cut-over"],
)
def test_one_proxied_a_and_aaaa_record_per_hostname_pointing_at_the_origin(plan, hosts, origin):
    result = plan()
    records = [inputs(r) for r in result.recorder.of_type(DNS)]
    assert sorted((r["name"], r["type"]) for r in records) == sorted(
        (h, t) for h in hosts for t in ("A", "AAAA")
    )
    for record in records:
        assert record["proxied"] is True
        assert record["ttl"] == 1
        assert record["content"] == (origin[0] if record["type"] == "A" else origin[1])
        assert f"stack {result.stack}" in record["comment"]


def test_no_dns_records_when_edge_is_off():
    result = rebuild()
    assert result.recorder.of_type(DNS) == []
    assert result.recorder.of_type(ZONE_SETTING) == []
    assert result.recorder.of_type(BUCKET) == []


def test_zone_settings_only_in_the_owner_stack():
    assert {
        inputs(z)["settingId"]: inputs(z)["value"] for z in production().recorder.of_type(ZONE_SETTING)
    } == {
        "ssl": "strict",
        "always_use_https": "on",
        "min_tls_version": "1.2",
        "tls_1_3": "on",
    }
    assert staging().recorder.of_type(ZONE_SETTING) == []


def test_cut_over_reads_the_origin_from_the_other_stack_and_has_no_server():
    result = cut_over()
    reference = only(result, STACK_REFERENCE)
    assert reference.name.endswith("/bankflow/production-r1")
    assert result.recorder.of_type(DROPLET) == []
    assert result.outputs["origin_stack"] == "production-r1"


def test_rebuild_shape_has_a_server_with_its_own_vpc_and_no_edge():
    result = rebuild()
    vpc = inputs(only(result, "digitalocean:index/vpc:Vpc"))
    assert vpc["ipRange"] == "10.130.16.0/20"
    assert vpc["name"] == "bankflow-production-r1-vpc"
    assert result.outputs["backup_bucket"] is None
    assert result.outputs["origin_ip"] == "203.0.113.10"


# --------------------------------------------------------------------------- protection


def test_production_keeps_backups_and_protects_its_data():
    result = production()
    droplet = only(result, DROPLET)
    assert inputs(droplet)["backups"] is True
    assert droplet.delete_before_replace is True  # it holds the volume
    assert only(result, VOLUME).protect is True
    assert only(result, BUCKET).protect is True
    lifecycle = inputs(only(result, BUCKET))["lifecycleRules"][0]
    assert lifecycle["expiration"]["days"] == 30


def test_staging_needs_neither_backups_nor_protection():
    result = staging()
    assert inputs(only(result, DROPLET))["backups"] is False
    assert result.recorder.of_type(VOLUME) == []
    assert only(result, BUCKET).protect is False


def test_droplet_is_monitored_ipv6_on_pinned_image_and_tagged():
    droplet = inputs(only(staging(), DROPLET))
    assert droplet["monitoring"] is True
    assert droplet["ipv6"] is True
    assert droplet["image"] == "ubuntu-24-04-x64"
    assert set(droplet["tags"]) >= {"env-staging", "stack-staging"}


def test_user_data_is_secret_and_holds_only_the_host_key():
    droplet = only(staging(), DROPLET)
    assert without_secrets(droplet.inputs)["userData"] is None  # secret-marked
    user_data = inputs(droplet)["userData"]
    assert user_data.startswith("#cloud-config\n")
    assert "ed25519_private" in user_data
    assert "runcmd" not in user_data
    assert "packages" not in user_data


def test_user_data_does_not_change_with_config_edits():
    def edited(config):
        config["bankflow:server"]["size"] = "s-4vcpu-8gb"
        config["bankflow:release"]["tag"] = "2026.12.01-1"
        config["bankflow:alerts"]["emails"] = ["sre@conciliaextrato.com"]

    before = inputs(only(staging(), DROPLET))["userData"]
    after = inputs(only(run_stack("staging", edited), DROPLET))["userData"]
    assert before == after


def test_monitor_alerts_cover_cpu_memory_and_disk_to_the_configured_recipients():
    alerts = [inputs(a) for a in staging().recorder.of_type("digitalocean:index/monitorAlert:MonitorAlert")]
    assert sorted(a["type"] for a in alerts) == sorted(
        [
            "v1/insights/droplet/cpu",
            "v1/insights/droplet/memory_utilization_percent",
            "v1/insights/droplet/disk_utilization_percent",
        ]
    )
    assert all(a["alerts"]["emails"] == ["ops@conciliaextrato.com"] for a in alerts)


def test_uptime_checks_cover_every_public_hostname():
    checks = [inputs(c) for c in production().recorder.of_type("digitalocean:index/uptimeCheck:UptimeCheck")]
    assert sorted(c["target"] for c in checks) == sorted(f"https://{h}/health" for h in PRODUCTION_HOSTS)
    alerts = [inputs(a) for a in production().recorder.of_type("digitalocean:index/uptimeAlert:UptimeAlert")]
    assert sorted(a["type"] for a in alerts) == sorted(["down", "ssl_expiry"] * len(PRODUCTION_HOSTS))


def test_origin_certificate_covers_the_environment_hostnames_and_is_never_revoked_by_a_replace():
    registration = only(production(), "cloudflare:index/originCaCertificate:OriginCaCertificate")
    assert registration.retain_on_delete is True  # kept releases may still serve the old one
    cert = inputs(registration)
    assert set(cert["hostnames"]) == PRODUCTION_HOSTS
    assert cert["requestedValidity"] == 365


def test_everything_is_grouped_in_the_stack_project():
    project = inputs(only(production(), "digitalocean:index/project:Project"))
    assert project["name"] == "BankFlow production"
    assert sorted(project["resources"]) == sorted(
        ["do:droplet:100000001", "do:volume:data-volume-id", "do:space:bankflow-production-backups"]
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


# --------------------------------------------------------------------------- outputs (the contract)

CONTRACT = {
    "environment",
    "origin_ip",
    "origin_ipv6",
    "ssh",
    "deploy_private_key",
    "urls",
    "health",
    "release",
    "origin_stack",
    "backup_bucket",
    "origin_certificate",
    "origin_cert_expires_on",
}


def test_outputs_are_the_documented_contract():
    result = staging()
    assert set(result.outputs) == CONTRACT
    assert result.outputs["urls"] == {
        "site": "https://qa.conciliaextrato.com",
        "saas": "https://app.qa.conciliaextrato.com",
        "api": "https://api.qa.conciliaextrato.com",
    }
    assert result.outputs["ssh"]["host"] == "203.0.113.10"
    assert result.outputs["ssh"]["host_public_key"].startswith("ssh-ed25519 ")
    assert [h["service"] for h in result.outputs["health"]] == ["site", "saas", "api"]
    assert result.bundle is not None
    assert result.outputs["release"] == result.bundle.digest
    readme = (REPO_ROOT / "README.md").read_text()
    for name in CONTRACT:
        assert f"`{name}`" in readme, f"README does not document output {name}"


@pytest.mark.parametrize(
    ("plan", "bucket"),
    [(staging, "bankflow-staging-backups"), (rebuild, "bankflow-production-backups")],
    ids=["own-bucket", "rebuild-uses-the-environment-bucket"],
)
def test_the_droplet_backup_key_may_write_only_its_one_bucket(plan, bucket):
    def use_production_bucket(config):
        rebuild_shaped(config)
        config["bankflow:backups"]["bucketStack"] = "production"

    result = (
        plan() if plan is staging else run_stack("production-r1", use_production_bucket, base="production")
    )
    key = only(result, "digitalocean:index/spacesKey:SpacesKey")
    assert inputs(key)["grants"] == [{"bucket": bucket, "permission": "readwrite"}]
    assert "secretKey" in key.additional_secret_outputs


def test_a_retired_production_server_keeps_its_protected_data_volume():
    result = cut_over()  # production with its own server switched off
    volume = only(result, VOLUME)
    assert volume.protect is True
    assert inputs(volume)["name"] == "bankflow-production-data"
    # Same URN as while the server was on: turning the server off never deletes the volume.
    assert volume.urn.endswith("bankflow:index:DataVolume$digitalocean:index/volume:Volume::data-volume")
    assert only(production(), VOLUME).urn.split("::")[-1] == "data-volume"


@pytest.mark.parametrize(
    "bad", [None, "", "not-an-ip", "2001:db8::20"], ids=["null", "empty", "text", "wrong-family"]
)
def test_an_origin_stack_without_a_usable_address_is_one_clear_error(bad):
    # Pulumi wraps errors raised while resolving an input in a ValueError naming the resource;
    # the message keeps ours, which names the key and the stack.
    with pytest.raises(ValueError, match=r"stack 'production-r1' has no usable origin_ip output"):
        run_stack(
            "production",
            edge_on_other_stack,
            referenced_outputs={"origin_ip": bad, "origin_ipv6": "2001:db8::20"},
        )


def test_admin_keys_reach_authorized_keys_not_the_account():
    key = "ssh-ed25519 " + "A" * 68 + " ana@bankflow"

    def with_admin(config):
        config["bankflow:server"]["adminSshKeys"] = [key]

    result = run_stack("staging", with_admin)
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
