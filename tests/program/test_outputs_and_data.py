"""The stack outputs (the contract), the backup key's reach and the data volume's survival (mock engine)."""

from __future__ import annotations

import pytest

from bankflow_infra.contract.outputs import OUTPUT_NAMES
from tests.program.stacks import (
    DNS,
    VOLUME,
    cut_over,
    edge_on_other_stack,
    inputs,
    named,
    only,
    production,
    rebuild,
    rebuild_shaped,
    run_stack,
    staging,
)
from tests.support.tools import REPO as REPO_ROOT


def test_outputs_are_the_documented_contract():
    result = staging()
    assert set(result.outputs) == set(OUTPUT_NAMES)
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
    for name in OUTPUT_NAMES:
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
    key = named(result, "backup-access-key")
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



def test_an_edge_on_a_load_balanced_stack_points_at_its_load_balancer():
    # Issue 13: the referenced stack's droplets admit 443 from its load balancer only, so DNS
    # must name the load balancer, not droplet 1 (origin_ip).
    droplet = {"origin_ip": "192.0.2.20", "origin_ipv6": "2001:db8::20", "origin_pull_client": _client()}
    balancer = {"load_balancer_ip": "198.51.100.30", "load_balancer_ipv6": "2001:db8::30"}
    result = run_stack("production", edge_on_other_stack, referenced_outputs=droplet | balancer)
    assert _address_records(result) == {("A", "198.51.100.30"), ("AAAA", "2001:db8::30")}
    # A stack deployed before issue 13 (no load balancer outputs): its droplet, as before.
    result = run_stack("production", edge_on_other_stack, referenced_outputs=droplet)
    assert _address_records(result) == {("A", "192.0.2.20"), ("AAAA", "2001:db8::20")}


def _client():
    pem = "-----BEGIN {0}-----\nMIIBstandin\n-----END {0}-----\n"
    return {"certificate": pem.format("CERTIFICATE"), "private_key": pem.format("PRIVATE KEY")}


def _address_records(result):
    found = [inputs(r) for r in result.recorder.resources if r.type == DNS]
    return {(r["type"], r["content"]) for r in found if r["type"] in ("A", "AAAA")}
