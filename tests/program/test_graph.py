"""The resource graph of each stack shape, under Pulumi's mock engine (no cloud is reachable)."""

from __future__ import annotations

import pytest

from bankflow_infra.ops.mocks import (
    CLOUDFLARE_IPV4_SNAPSHOT,
    CLOUDFLARE_IPV6_SNAPSHOT,
    MOCK_REFERENCED_IPV4,
    MOCK_REFERENCED_IPV6,
    without_secrets,
)
from tests.program.stacks import (
    BUCKET,
    DNS,
    DROPLET,
    FIREWALL,
    PRODUCTION_HOSTS,
    STACK_REFERENCE,
    STAGING_HOSTS,
    VOLUME,
    ZONE_SETTING,
    cut_over,
    inputs,
    named,
    only,
    production,
    rebuild,
    run_stack,
    staging,
)

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
    # CAA records (the zone owner's, tests/program/test_edge_rules.py) are not origin records.
    records = [inputs(r) for r in result.recorder.of_type(DNS) if inputs(r)["type"] != "CAA"]
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
        # The zone's Authenticated Origin Pulls switch (components/origin_pull.py): zone-wide too.
        "tls_client_auth": "on",
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


def production_file_droplet_backups() -> bool:
    """What Pulumi.production.yaml sets for server.backups (the default is off)."""
    import yaml

    from tests.support.tools import REPO

    config = yaml.safe_load((REPO / "Pulumi.production.yaml").read_text())["config"]
    return bool(config["bankflow:server"].get("backups", False))


def test_production_protects_its_data_and_both_backup_buckets():
    result = production()
    droplet = only(result, DROPLET)
    # As Pulumi.production.yaml says (server.backups): root-disk images only, see settings.
    assert inputs(droplet)["backups"] is production_file_droplet_backups()
    assert droplet.delete_before_replace is True  # it holds the volume
    assert only(result, VOLUME).protect is True
    assert named(result, "backups-bucket").protect is True
    assert named(result, "backup-replica-bucket").protect is True
    rules = {r["id"]: r for r in inputs(named(result, "backups-bucket"))["lifecycleRules"]}
    assert rules["expire-dumps"]["expiration"]["days"] == 30
    assert rules["expire-dumps"]["prefix"] == "bankflow-"  # never pgbackrest/ or uploads/
    assert rules["keep-old-versions"]["noncurrentVersionExpiration"]["days"] == 30
    assert "expiration" not in rules["keep-old-versions"]


def test_staging_keeps_its_data_on_a_small_volume_without_droplet_backups():
    result = staging()
    assert inputs(only(result, DROPLET))["backups"] is False
    volume = only(result, VOLUME)
    assert inputs(volume)["size"] == 10
    assert volume.protect is True  # a staging replacement keeps its database and uploads
    assert only(result, DROPLET).delete_before_replace is True
    assert named(result, "backups-bucket").protect is False


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
    assert cert["requestedValidity"] == 5475


def test_everything_is_grouped_in_the_stack_project():
    project = inputs(only(production(), "digitalocean:index/project:Project"))
    assert project["name"] == "BankFlow production"
    assert sorted(project["resources"]) == sorted(
        [
            "do:droplet:100000001",
            "do:volume:data-volume-id",
            "do:space:bankflow-production-backups",
            "do:space:bankflow-production-backups-replica",
        ]
    )

