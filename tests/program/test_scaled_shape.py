"""Issue 13: the scaled shape (3 droplets behind a load balancer, managed PostgreSQL and Valkey,
uploads on NFS) under the mock engine, with graph assertions; and the single-droplet shape
without any of it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pulumi.runtime import rpc

from bankflow_infra import program
from bankflow_infra.catalog import HTTPS_PORT, SSH_PORT
from bankflow_infra.components.remote_deploy import UPLOADS_NFS_SOURCE_VARIABLE
from bankflow_infra.contract.fleet import LB_HEALTH_PATH, LB_HEALTH_PORT
from bankflow_infra.contract.outputs import parse_outputs
from bankflow_infra.contract.release import release_id
from bankflow_infra.contract.roll import ROLL_COMMAND, parse_roll_request
from bankflow_infra.ops.mocks import CLOUDFLARE_IPV4_SNAPSHOT, CLOUDFLARE_IPV6_SNAPSHOT, Registration
from bankflow_infra.ops.plan import PlanResult
from bankflow_infra.render.managed import ManagedServices
from tests.program.stacks import (
    COMMAND,
    DATABASE_CLUSTER,
    DATABASE_FIREWALL,
    DNS,
    DROPLET,
    FIREWALL,
    LOAD_BALANCER,
    LOCAL_COMMAND,
    SCALED_COUNT,
    inputs,
    named,
    only,
    production,
    run_stack,
    scaled,
    scaled_out,
    staging,
)

STACK_TAG = "stack-production"
# PostgreSQL, Redis/Valkey, and DigitalOcean's managed database ports (direct and pool).
DATA_PORTS = {5432, 6379, 25060, 25061}


def is_secret(registration: Registration, key: str) -> bool:
    return rpc.is_rpc_secret(registration.inputs[key])


def droplets(result: PlanResult) -> list[Registration]:
    return result.recorder.of_type(DROPLET)


def opened_ports(rule: dict[str, Any]) -> set[int]:
    text = str(rule.get("portRange", ""))
    if not text:
        return set()
    low, _, high = text.partition("-")
    return set(range(int(low), int(high or low) + 1))


# --------------------------------------------------------------------------- the load balancer


def test_load_balancer_targets_every_droplet_by_the_stack_tag_in_the_vpc() -> None:
    result = scaled()
    balancer = inputs(only(result, LOAD_BALANCER))
    assert balancer["dropletTag"] == STACK_TAG
    assert "dropletIds" not in balancer  # the provider refuses both; the tag follows replacements
    assert len(droplets(result)) == SCALED_COUNT
    for droplet in droplets(result):
        assert STACK_TAG in inputs(droplet)["tags"], droplet.name
    vpc = named(result, "server-vpc")
    assert balancer["vpcUuid"] == vpc.state.get("id", "server-vpc-id")
    assert balancer["region"] == inputs(droplets(result)[0])["region"]


def test_load_balancer_passes_443_through_as_tcp_with_proxy_protocol() -> None:
    balancer = inputs(only(scaled(), LOAD_BALANCER))
    assert balancer["forwardingRules"] == [
        {"entryProtocol": "tcp", "entryPort": HTTPS_PORT, "targetProtocol": "tcp", "targetPort": HTTPS_PORT}
    ]
    assert balancer["enableProxyProtocol"] is True
    assert balancer["networkStack"] == "DUALSTACK"


def test_load_balancer_checks_each_droplets_health_listener_with_the_contract_timings() -> None:
    check = inputs(only(scaled(), LOAD_BALANCER))["healthcheck"]
    assert (check["protocol"], check["port"], check["path"]) == ("http", LB_HEALTH_PORT, LB_HEALTH_PATH)
    # The provider's minimums (resource_loadbalancer.go: 3..300 s, thresholds 2..10).
    assert check["checkIntervalSeconds"] >= 3
    assert check["responseTimeoutSeconds"] >= 3
    assert check["unhealthyThreshold"] >= 2
    assert check["healthyThreshold"] >= 2


def test_load_balancer_admits_cloudflare_only() -> None:
    allowed = inputs(only(scaled(), LOAD_BALANCER))["firewall"]["allows"]
    expected = {f"cidr:{cidr}" for cidr in (*CLOUDFLARE_IPV4_SNAPSHOT, *CLOUDFLARE_IPV6_SNAPSHOT)}
    assert set(allowed) == expected
    assert "cidr:0.0.0.0/0" not in allowed
    assert "cidr:::/0" not in allowed


# --------------------------------------------------------------------------- droplets and firewall


def test_droplets_443_and_health_listener_admit_the_load_balancer_only() -> None:
    result = scaled()
    firewall = inputs(only(result, FIREWALL))
    assert firewall["tags"] == [STACK_TAG]
    balancer_id = only(result, LOAD_BALANCER).state.get("id", "load-balancer-id")
    by_port = {rule.get("portRange"): rule for rule in firewall["inboundRules"]}
    for port in (str(HTTPS_PORT), str(LB_HEALTH_PORT)):
        assert by_port[port]["sourceLoadBalancerUids"] == [balancer_id], port
        assert not by_port[port].get("sourceAddresses"), port
    assert "80" not in by_port  # the load balancer forwards 443 only
    assert set(by_port) == {str(SSH_PORT), str(HTTPS_PORT), str(LB_HEALTH_PORT), None}  # None: ICMP


@pytest.mark.parametrize("plan", [staging, production, scaled], ids=["staging", "production", "scaled"])
def test_no_firewall_publishes_a_database_or_cache_port(plan: Any) -> None:
    for firewall in plan().recorder.of_type(FIREWALL):
        for rule in inputs(firewall)["inboundRules"]:
            assert not opened_ports(rule) & DATA_PORTS, (firewall.name, rule)


def test_each_droplet_has_its_own_pinned_host_key_and_droplet_one_keeps_its_names() -> None:
    result = scaled()
    # Registration order is the engine's (asynchronous): compare by name.
    names = {d.name: inputs(d)["name"] for d in droplets(result)}
    assert names == {
        "server-droplet": "bankflow-production-server",
        "server-droplet-2": "bankflow-production-server-2",
        "server-droplet-3": "bankflow-production-server-3",
    }
    keys = {
        name: str(named(result, f"credentials-host-key{suffix}").state["publicKeyOpenssh"]).strip()
        for name, suffix in (("host", ""), ("host-2", "-2"), ("host-3", "-3"))
    }
    assert len(set(keys.values())) == SCALED_COUNT
    for deploy, key in keys.items():
        connection = inputs(named(result, f"{deploy}-deploy"))["connection"]
        assert connection["hostKey"] == key, deploy
    assert len({inputs(d)["userData"] for d in droplets(result)}) == SCALED_COUNT


def test_scaled_droplets_hold_no_data_and_are_replaceable_one_at_a_time() -> None:
    result = scaled()
    assert not result.recorder.of_type("digitalocean:index/volume:Volume")
    assert not result.recorder.of_type("digitalocean:index/volumeAttachment:VolumeAttachment")
    # `rebuild --droplet N` is `up --replace`, which `protect` would refuse.
    assert not any(d.protect for d in droplets(result))


# --------------------------------------------------------------------------- managed data


def test_database_and_cache_admit_only_the_stack_tag_from_the_vpc() -> None:
    result = scaled()
    vpc_id = named(result, "server-vpc").state.get("id", "server-vpc-id")
    clusters = {r.name: inputs(r) for r in result.recorder.of_type(DATABASE_CLUSTER)}
    assert (clusters["database-cluster"]["engine"], clusters["database-cluster"]["version"]) == ("pg", "15")
    assert clusters["cache-cluster"]["engine"] == "valkey"
    for cluster in clusters.values():
        assert cluster["privateNetworkUuid"] == vpc_id
    firewalls = {r.name: inputs(r) for r in result.recorder.of_type(DATABASE_FIREWALL)}
    assert set(firewalls) == {"database-firewall", "cache-firewall"}
    for name, firewall in firewalls.items():
        assert firewall["rules"] == [{"type": "tag", "value": STACK_TAG}], name


def test_database_has_a_standby_maintenance_window_pool_and_is_protected_in_production() -> None:
    result = scaled()
    cluster = named(result, "database-cluster")
    assert cluster.protect
    assert inputs(cluster)["nodeCount"] == 2
    assert inputs(cluster)["maintenanceWindows"] == [{"day": "sunday", "hour": "04:00:00"}]
    pool = inputs(named(result, "database-pool"))
    assert pool["mode"] == "transaction"
    assert pool["dbName"] == "bankflow"
    assert pool["user"] == "bankflow_app"
    assert named(result, "uploads-share").protect


def test_the_bundle_gets_the_managed_endpoints_with_the_app_role_and_the_ca(monkeypatch: Any) -> None:
    seen: list[ManagedServices | None] = []
    real = program.render_with_managed

    def recording(settings: Any, secrets: Any, managed: Any, **options: Any) -> Any:
        seen.append(managed)
        return real(settings, secrets, managed, **options)

    monkeypatch.setattr(program, "render_with_managed", recording)
    result = run_stack("production", adjust=scaled_out)
    (managed,) = seen
    assert managed is not None
    assert managed.database
    assert managed.cache
    assert managed.uploads
    cluster, user = named(result, "database-cluster").state, named(result, "database-user").state
    assert managed.database.host == cluster["privateHost"]  # VPC only
    assert (managed.database.port, managed.database.pool_port) == (25060, 25061)
    assert (managed.database.user, managed.database.password) == ("bankflow_app", user["password"])
    assert "BEGIN CERTIFICATE" in managed.database.ca_pem
    assert "BEGIN CERTIFICATE" in managed.cache.ca_pem
    share = named(result, "uploads-share").state
    assert managed.uploads.nfs_source == f"{share['host']}:{share['mountPath']}"


# --------------------------------------------------------------------------- DNS, stage, roll


def test_dns_points_at_the_load_balancer_after_the_roll() -> None:
    result = scaled()
    balancer = only(result, LOAD_BALANCER).state
    roll = only(result, LOCAL_COMMAND)
    records = [r for r in result.recorder.of_type(DNS) if inputs(r)["type"] in ("A", "AAAA")]
    assert records
    for record in records:
        expected = balancer["ip"] if inputs(record)["type"] == "A" else balancer["ipv6"]
        assert inputs(record)["content"] == expected, record.name
        assert roll.urn in record.dependencies, record.name


def test_each_droplet_stages_the_release_without_switching() -> None:
    result = scaled()
    for deploy in ("host", "host-2", "host-3"):
        stage = named(result, f"{deploy}-deploy")
        command = inputs(stage)["create"]
        assert " receive --stdin " in command, deploy
        assert "--deploy" not in command, deploy
        assert is_secret(stage, "stdin"), deploy


def test_the_roll_runs_once_after_every_stage_with_the_request_on_secret_stdin() -> None:
    result = scaled()
    roll = only(result, LOCAL_COMMAND)
    assert roll.name == "roll"
    stages = [named(result, f"{d}-deploy").urn for d in ("host", "host-2", "host-3")]
    assert set(stages) <= set(roll.dependencies)
    assert inputs(roll)["create"] == ROLL_COMMAND
    assert is_secret(roll, "stdin")
    request = parse_roll_request(inputs(roll)["stdin"])
    assert result.bundle is not None
    assert request.release == release_id(result.bundle.digest)
    assert request.stack == "production"
    outputs = result.outputs["origin_ips"]
    assert [(t.name, t.host, t.host_public_key) for t in request.targets] == [
        (o["name"], o["ipv4"], o["host_public_key"]) for o in outputs
    ]
    assert request.private_key == result.outputs["deploy_private_key"]


def test_no_command_text_holds_a_secret() -> None:
    result = scaled()
    secrets = [result.outputs["deploy_private_key"], named(result, "database-user").state["password"]]
    secrets += [named(result, "cache-cluster").state["password"]]
    for command in [*result.recorder.of_type(COMMAND), *result.recorder.of_type(LOCAL_COMMAND)]:
        text = str(inputs(command).get("create", "")) + str(inputs(command).get("delete", ""))
        for secret in secrets:
            assert secret not in text, command.name


def test_every_droplet_mounts_the_share_after_it_is_attached_and_the_clusters_admit_it() -> None:
    result = scaled()
    share = named(result, "uploads-share").state
    waits_for = {named(result, n).urn for n in ("uploads-attachment", "database-firewall", "cache-firewall")}
    for deploy in ("host", "host-2", "host-3"):
        bootstrap = named(result, f"{deploy}-bootstrap")
        assignment = f"{UPLOADS_NFS_SOURCE_VARIABLE}={share['host']}:{share['mountPath']} "
        assert assignment in inputs(bootstrap)["create"], deploy
        assert waits_for <= set(bootstrap.dependencies), deploy


def test_outputs_name_every_droplet_the_load_balancer_and_the_database() -> None:
    result = scaled()
    parsed = parse_outputs("production", result.outputs)
    assert [d.ipv4 for d in parsed.origin_ips] == ["203.0.113.10", "203.0.113.11", "203.0.113.12"]
    assert parsed.load_balancer_ip == only(result, LOAD_BALANCER).state["ip"]
    assert parsed.database is not None
    assert parsed.database.host == named(result, "database-cluster").state["privateHost"]
    endpoint = parsed.database
    assert (endpoint.port, endpoint.pool_port, endpoint.database) == (25060, 25061, "bankflow")
    assert "password" not in str(result.outputs["database"])


# --------------------------------------------------------------------------- one droplet: unchanged


@pytest.mark.parametrize("plan", [staging, production], ids=["staging", "production"])
def test_single_droplet_stacks_have_no_scale_out_piece(plan: Any) -> None:
    result = plan()
    types = {r.type for r in result.recorder.resources}
    assert LOAD_BALANCER not in types
    assert DATABASE_CLUSTER not in types
    assert LOCAL_COMMAND not in types
    assert "digitalocean:index/nfs:Nfs" not in types
    deploy = inputs(named(result, "host-deploy"))["create"]
    assert "receive --stdin --deploy" in deploy
    assert UPLOADS_NFS_SOURCE_VARIABLE not in inputs(named(result, "host-bootstrap"))["create"]
    parsed = parse_outputs(result.settings.stack, result.outputs)
    assert len(parsed.origin_ips) == 1
    assert parsed.load_balancer_ip is None
    assert parsed.database is None
    # The DNS records point at the droplet, as before.
    droplet = only(result, DROPLET).state
    a_records = [inputs(r) for r in result.recorder.of_type(DNS) if inputs(r)["type"] == "A"]
    assert a_records
    assert {r["content"] for r in a_records} == {droplet["ipv4Address"]}


def test_scaled_settings_keep_production_identity() -> None:
    # The helper changes only the shape: same stack, environment and hostnames as production.
    base, shaped = production().settings, scaled().settings
    assert dataclasses.replace(shaped, server=base.server, scale=base.scale) == base
