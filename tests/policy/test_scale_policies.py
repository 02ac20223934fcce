"""Issue 13's invariants: the load balancer admits Cloudflare only and passes TCP 443 through, a
managed database trusts the stack's droplet tag only and always has a firewall, no firewall opens a
database port, production's database cluster and uploads share are protected.

The scaled plan is H2's (components for the load balancer and the clusters); until it lands these
tests register the resources the way the program must, with the provider's own argument shapes
(see policy/bankflow_policy/scale.py), and break one thing at a time."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from bankflow_policy import rules, scale
from bankflow_policy.cloudflare import CLOUDFLARE_RANGES

from bankflow_infra.ops.mocks import Recorder, Registration
from tests.policy.adapter import Violation, run_pack
from tests.policy.test_policies import production, reported, staging
from tests.program.stacks import scaled

STACK = "scaled"  # the stack of tests/fixtures/scaled-stack.yaml
STACK_TAG = f"stack-{STACK}"
ALL_BUT_FIRST = CLOUDFLARE_RANGES[0]  # the range the "missing-range" case leaves out


def registration(type_: str, name: str, inputs: dict[str, Any], **extra: Any) -> Registration:
    urn = f"urn:pulumi:{STACK}::bankflow::{type_}::{name}"
    state = {"id": f"{name}-id", **inputs}
    return Registration(
        urn=urn, type=type_, name=name, parent="", custom=True, inputs=inputs,
        protect=extra.get("protect", True), delete_before_replace=False, deleted_with="", replace_with=(),
        additional_secret_outputs=(), state=state, dependencies=extra.get("dependencies", ()),
    )  # fmt: skip


def load_balancer(**changes: Any) -> Registration:
    inputs: dict[str, Any] = {
        "name": "bankflow-scaled-lb",
        "region": "nyc1",
        "dropletTag": STACK_TAG,
        "enableProxyProtocol": True,
        "forwardingRules": [
            {"entryProtocol": "tcp", "entryPort": 443, "targetProtocol": "tcp", "targetPort": 443}
        ],
        "firewall": {"allows": [f"cidr:{r}" for r in CLOUDFLARE_RANGES]},
        "tags": ["bankflow", "env-production", STACK_TAG],
    }
    inputs.update(changes)
    return registration(scale.LOAD_BALANCER, "load-balancer", inputs)


def cluster(name: str = "database", engine: str = "pg", **extra: Any) -> Registration:
    inputs = {"engine": engine, "version": "15", "nodeCount": 2, "tags": ["bankflow", "env-production"]}
    return registration(rules.DATABASE_CLUSTER, f"{name}-cluster", inputs, **extra)


def database_firewall(target: Registration, rule_list: list[dict[str, str]] | None = None) -> Registration:
    inputs = {
        "clusterId": target.state["id"],
        "rules": rule_list if rule_list is not None else [{"type": "tag", "value": STACK_TAG}],
    }
    return registration(
        scale.DATABASE_FIREWALL, f"{target.name}-firewall", inputs, dependencies=(target.urn,)
    )


def scaled_resources() -> list[Registration]:
    database, cache = cluster("database"), cluster("cache", engine="valkey")
    share = registration(rules.NFS, "uploads", {"size": 100, "tags": ["bankflow", "env-production"]})
    return [load_balancer(), database, database_firewall(database), cache, database_firewall(cache), share]


def violations(resources: list[Registration]) -> list[Violation]:
    return run_pack(Recorder(resources))


def with_changed(name: str, change: Callable[[Registration], object]) -> list[Violation]:
    resources = scaled_resources()
    change(next(r for r in resources if r.name == name))
    return violations(resources)


# --------------------------------------------------------------------------- the intended shape


def test_the_scaled_resources_as_intended_pass_every_policy():
    assert violations(scaled_resources()) == []


def test_the_programs_own_scaled_plan_passes_every_policy():
    # The program's scaled shape (three droplets, load balancer, managed data, shared uploads),
    # not a hand-built list: what `pulumi preview` would hand the pack.
    recorder = scaled().recorder
    assert any(r.type == "digitalocean:index/loadBalancer:LoadBalancer" for r in recorder.resources)
    assert run_pack(recorder) == []


def test_todays_plans_still_pass_the_new_rules():
    assert run_pack(staging().recorder) == []
    assert run_pack(production().recorder) == []


# --------------------------------------------------------------------------- load balancer


def _lb(**changes: Any) -> list[Violation]:
    resources = [r for r in scaled_resources() if r.type != scale.LOAD_BALANCER]
    return violations([load_balancer(**changes), *resources])


@pytest.mark.parametrize(
    ("firewall", "expected"),
    [
        (None, "admits the whole internet"),
        ({"allows": []}, "admits the whole internet"),
        ({"denies": ["cidr:0.0.0.0/0"]}, "admits the whole internet"),
        ({"allows": [f"cidr:{r}" for r in CLOUDFLARE_RANGES] + ["cidr:0.0.0.0/0"]}, "0.0.0.0/0"),
        ({"allows": [f"cidr:{r}" for r in CLOUDFLARE_RANGES] + ["ip:198.51.100.7"]}, "198.51.100.7"),
        ({"allows": [f"cidr:{r}" for r in CLOUDFLARE_RANGES] + ["tag:anything"]}, "tag:anything"),
        (
            {"allows": [f"cidr:{r}" for r in CLOUDFLARE_RANGES[1:]]},
            f"leaves out Cloudflare ranges {ALL_BUT_FIRST}",
        ),
    ],
    ids=["no-firewall", "empty-allows", "deny-only", "internet", "stray-ip", "unreadable", "missing-range"],
)
def test_a_load_balancer_open_beyond_cloudflare_is_reported(firewall, expected):
    changes = {"firewall": firewall} if firewall is not None else {}
    resources = [r for r in scaled_resources() if r.type != scale.LOAD_BALANCER]
    lb = load_balancer(**changes)
    if firewall is None:
        lb.inputs.pop("firewall")
    found = violations([lb, *resources])
    assert reported(found) == {("load-balancer-cloudflare-only", "load-balancer")}
    assert expected in found[0].message


@pytest.mark.parametrize(
    "rule",
    [
        {"entryProtocol": "https", "entryPort": 443, "targetProtocol": "http", "targetPort": 80},
        {"entryProtocol": "http", "entryPort": 80, "targetProtocol": "http", "targetPort": 80},
        {"entryProtocol": "tcp", "entryPort": 5432, "targetProtocol": "tcp", "targetPort": 5432},
        {"entryProtocol": "tcp", "entryPort": 443, "targetProtocol": "tcp", "targetPort": 8404},
    ],
    ids=["tls-terminated", "plain-http", "database-port", "other-target"],
)
def test_a_forwarding_rule_other_than_tcp_443_passthrough_is_reported(rule):
    passthrough = {"entryProtocol": "tcp", "entryPort": 443, "targetProtocol": "tcp", "targetPort": 443}
    found = _lb(forwardingRules=[passthrough, rule])
    assert reported(found) == {("load-balancer-tcp-443-only", "load-balancer")}
    assert "forwarding rule 1 " in found[0].message


def test_a_load_balancer_without_forwarding_rules_is_reported():
    assert reported(_lb(forwardingRules=[])) == {("load-balancer-tcp-443-only", "load-balancer")}


# --------------------------------------------------------------------------- databases


@pytest.mark.parametrize(
    ("rule_list", "expected"),
    [
        ([{"type": "ip_addr", "value": "0.0.0.0/0"}], "ip_addr 0.0.0.0/0"),
        ([{"type": "tag", "value": STACK_TAG}, {"type": "ip_addr", "value": "203.0.113.9"}], "rule 1 "),
        ([{"type": "tag", "value": "stack-staging"}], "stack-staging"),
        ([{"type": "tag", "value": "bankflow"}], "type tag, value stack-scaled"),
        ([{"type": "droplet", "value": "1234"}], "droplet 1234"),
        ([], "no rule"),
    ],
    ids=["internet", "extra-ip", "other-stack", "every-bankflow-droplet", "one-droplet", "no-rule"],
)
def test_a_database_firewall_trusting_anything_but_the_stack_tag_is_reported(rule_list, expected):
    resources = scaled_resources()
    index = next(i for i, r in enumerate(resources) if r.name == "database-cluster-firewall")
    resources[index] = database_firewall(resources[index - 1], rule_list)
    found = violations(resources)
    assert reported(found) == {("database-firewall-stack-tag-only", "database-cluster-firewall")}
    assert expected in found[0].message


@pytest.mark.parametrize("engine", ["pg", "valkey"])
def test_a_cluster_without_a_database_firewall_is_reported(engine):
    name = "database-cluster" if engine == "pg" else "cache-cluster"
    resources = [r for r in scaled_resources() if r.name != f"{name}-firewall"]
    found = violations(resources)
    assert {(v.policy, v.resource) for v in found} == {("database-clusters-firewalled", name)}


@pytest.mark.parametrize("ports", ["5432", "6379", "25060", "25061", "25000-26000", "all"])
def test_a_droplet_firewall_rule_opening_a_database_port_is_reported(ports):
    from tests.policy.test_policies import add_inbound, staging_with

    found = staging_with(add_inbound("tcp", ports, ["10.110.16.0/20"]))
    assert ("no-database-port-published", "server-firewall") in reported(found)


def test_443_from_the_load_balancer_alone_is_web_only_from_cloudflare():
    from tests.policy.test_policies import staging_with, web_rule_sources

    def from_the_load_balancer(rule: dict[str, Any]) -> None:
        rule.pop("sourceAddresses")
        rule["sourceLoadBalancerUids"] = ["lb-uid"]

    assert staging_with(web_rule_sources(from_the_load_balancer)) == []


# --------------------------------------------------------------------------- protection


@pytest.mark.parametrize("name", ["database-cluster", "uploads"])
def test_production_database_and_uploads_share_must_be_protected(name):
    def unprotect(reg: Registration) -> None:
        reg.protect = False

    assert reported(with_changed(name, unprotect)) == {("production-data-protected", name)}


def test_the_cache_cluster_need_not_be_protected():
    def unprotect(reg: Registration) -> None:
        reg.protect = False

    assert with_changed("cache-cluster", unprotect) == []


def test_a_firewall_is_matched_to_its_cluster_by_id_when_no_dependency_is_recorded():
    resources = scaled_resources()
    for index, reg in enumerate(resources):
        if reg.type == scale.DATABASE_FIREWALL:
            resources[index] = dataclasses.replace(reg, dependencies=())
    assert violations(resources) == []
    database = next(r for r in resources if r.name == "database-cluster")
    database.state["id"] = "another-id"  # the firewall now points at nothing of this stack
    assert reported(violations(resources)) == {("database-clusters-firewalled", "database-cluster")}


# --------------------------------------------------------------------------- droplets of a fleet


def droplet(number: int, protect: bool) -> Registration:
    name = "server-droplet" if number == 1 else f"server-droplet-{number}"
    inputs = {"size": "s-4vcpu-8gb", "tags": ["bankflow", "env-production", STACK_TAG]}
    return registration(rules.DROPLET, name, inputs, protect=protect)


def test_droplets_behind_the_load_balancer_may_be_replaced_one_at_a_time():
    # `rebuild --droplet N` is `pulumi up --replace <urn>`, which protect would refuse; they hold no data.
    fleet = [droplet(n, protect=False) for n in (1, 2, 3)]
    assert violations([*scaled_resources(), *fleet]) == []


def test_a_lone_production_droplet_must_be_protected_even_beside_a_load_balancer():
    found = violations([*scaled_resources(), droplet(1, protect=False)])
    assert reported(found) == {("droplet-replaced-only-by-rebuild", "server-droplet")}


def test_several_production_droplets_without_a_load_balancer_must_be_protected():
    resources = [r for r in scaled_resources() if r.type != scale.LOAD_BALANCER]
    found = violations([*resources, droplet(1, protect=False), droplet(2, protect=False)])
    assert reported(found) == {
        ("droplet-replaced-only-by-rebuild", "server-droplet"),
        ("droplet-replaced-only-by-rebuild", "server-droplet-2"),
    }
