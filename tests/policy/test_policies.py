"""Every policy against both stacks' offline plans (all pass), then against a deliberately broken
copy of a plan per rule: that exact rule must report it, naming the resource."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from bankflow_policy import rules
from bankflow_policy.cloudflare import CLOUDFLARE_RANGES
from bankflow_policy.pack import policies
from pulumi.runtime import rpc
from pulumi_policy import ResourceValidationPolicy

from bankflow_infra.ops.mocks import CLOUDFLARE_IPV4_SNAPSHOT, CLOUDFLARE_IPV6_SNAPSHOT, Registration
from bankflow_infra.ops.plan import PlanResult
from tests.policy.adapter import Violation, edited, one, resource_args, run_pack, set_option
from tests.program.stacks import run_stack

# Breaks a copy of a plan's registrations in place.
Edit = Callable[[list[Registration]], None]


@functools.cache
def staging() -> PlanResult:
    return run_stack("staging")


@functools.cache
def production() -> PlanResult:
    return run_stack("production")


def production_as_intended(edit: Edit | None = None) -> list[Violation]:
    return run_pack(edited(production(), edit or (lambda resources: None)))


def staging_with(edit: Edit) -> list[Violation]:
    return run_pack(edited(staging(), edit))


def reported(violations: list[Violation]) -> set[tuple[str, str]]:
    return {(v.policy, v.resource) for v in violations}


# --------------------------------------------------------------------------- clean plans


def test_the_pack_has_every_rule_once():
    names = [p.name for p in policies()]
    assert sorted(names) == sorted(set(names))
    assert len(names) == 14


def test_staging_passes_every_policy():
    assert run_pack(staging().recorder) == []


def test_todays_production_plan_passes_every_policy():
    assert run_pack(production().recorder) == []


def test_the_pack_knows_the_ranges_the_plan_was_given():
    # The mocked get_ip_ranges and the pack's copy are the same published list.
    assert set(CLOUDFLARE_RANGES) == {*CLOUDFLARE_IPV4_SNAPSHOT, *CLOUDFLARE_IPV6_SNAPSHOT}


# --------------------------------------------------------------------------- protection


@pytest.mark.parametrize(
    ("type_", "names"),
    [(rules.VOLUME, {"data-volume"}), (rules.BUCKET, {"backups-bucket", "backup-replica-bucket"})],
)
def test_unprotected_production_data_is_reported(type_, names):
    found = production_as_intended(lambda rs: set_option(rs, type_, protect=False))
    assert reported(found) == {("production-data-protected", name) for name in names}
    assert "protect" in found[0].message


def test_staging_bucket_need_not_be_protected():
    assert not [v for v in staging_with(lambda rs: None) if v.policy == "production-data-protected"]


@pytest.mark.parametrize(
    ("stack", "production"),
    [
        ("production", True),
        ("production-r1", True),
        ("production-r12", True),
        ("staging", False),
        ("production-old", False),
        ("productionx", False),
    ],
)
def test_production_stacks_are_production_and_its_rebuilds(stack, production):
    stack_name = rules.stack_of(f"urn:pulumi:{stack}::bankflow::bankflow:index:Server::server")
    assert (rules.PRODUCTION_STACK.fullmatch(stack_name) is not None) == production


def test_a_droplet_tagged_env_production_is_production_in_any_stack():
    def tag_production(resources):
        droplet = one(resources, rules.DROPLET)
        droplet.inputs["tags"] = [*droplet.inputs["tags"], rules.PRODUCTION_TAG]
        droplet.state["tags"] = droplet.inputs["tags"]  # a stack policy reads the outputs

    assert reported(staging_with(tag_production)) == {("droplet-replaced-only-by-rebuild", "server-droplet")}


def test_an_unprotected_production_droplet_is_reported():
    found = production_as_intended(lambda rs: set_option(rs, rules.DROPLET, protect=False))
    assert reported(found) == {("droplet-replaced-only-by-rebuild", "server-droplet")}
    assert "bankflow-infra rebuild" in found[0].message


# --------------------------------------------------------------------------- firewall


def add_inbound(protocol: str, ports: str, sources: list[str]) -> Edit:
    def edit(resources):
        firewall = one(resources, rules.FIREWALL)
        rule = {"protocol": protocol, "portRange": ports, "sourceAddresses": sources}
        firewall.inputs["inboundRules"] = [*firewall.inputs["inboundRules"], rule]

    return edit


@pytest.mark.parametrize(
    ("ports", "sources"),
    [
        ("22", ["0.0.0.0/0"]),
        ("22", ["::/0"]),
        ("22", ["0.0.0.0/1", "128.0.0.0/1"]),  # the internet in two halves
        ("22", ["8.0.0.0/8"]),  # a public /8
        ("1-65535", ["0.0.0.0/0"]),  # every port, so 22 too
        ("20-30", ["2000::/3"]),
        ("22", ["not-a-network"]),
    ],
)
def test_ssh_from_the_internet_is_reported(ports, sources):
    found = staging_with(add_inbound("tcp", ports, sources))
    ssh = [v for v in found if v.policy == "no-internet-ssh"]
    assert {v.resource for v in ssh} == {"server-firewall"}
    assert sources[0] in ssh[0].message


def test_ssh_from_an_operator_range_or_the_vpc_is_fine():
    found = staging_with(add_inbound("tcp", "22", ["198.51.100.0/24", "10.0.0.0/8", "2001:db8:1::/48"]))
    assert [v for v in found if v.policy == "no-internet-ssh"] == []


def web_rule_sources(change: Callable[[dict[str, Any]], object]) -> Edit:
    def edit(resources):
        firewall = one(resources, rules.FIREWALL)
        for rule in firewall.inputs["inboundRules"]:
            if rule.get("portRange") == "443":
                change(rule)

    return edit


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda r: r["sourceAddresses"].append("0.0.0.0/0"), "0.0.0.0/0"),
        (lambda r: r["sourceAddresses"].__setitem__(0, "198.51.100.0/24"), "198.51.100.0/24"),
        (lambda r: r["sourceAddresses"].pop(), "leaves out"),
        (lambda r: r.__setitem__("sourceTags", ["bankflow"]), "sourceTags"),
    ],
    ids=["internet", "non-cloudflare", "missing-range", "tag-source"],
)
def test_443_from_anything_but_exactly_cloudflare_is_reported(change, expected):
    found = staging_with(web_rule_sources(change))
    web = [v for v in found if v.policy == "web-only-from-cloudflare"]
    assert {v.resource for v in web} == {"server-firewall"}
    assert any(expected in v.message and "port 443" in v.message for v in web)
    assert not [v for v in web if "port 80 " in v.message]


def test_an_all_ports_rule_for_operators_opens_80_and_443_to_them():
    found = staging_with(add_inbound("tcp", "all", ["203.0.113.0/24"]))
    web = [v for v in found if v.policy == "web-only-from-cloudflare"]
    assert {m for v in web for m in ("port 80 ", "port 443 ") if m in v.message} == {"port 80 ", "port 443 "}


def test_a_new_cloudflare_range_in_the_policy_config_is_required_on_the_firewall():
    policy = next(p for p in policies() if p.name == "web-only-from-cloudflare")
    assert isinstance(policy, ResourceValidationPolicy)
    registration = one(staging().recorder.resources, rules.FIREWALL)
    config = {"cloudflareRanges": [*CLOUDFLARE_RANGES, "192.0.2.0/24"]}
    messages: list[str] = []

    def report(message: str, urn: str | None = None) -> None:
        messages.append(message)

    policy.validate(resource_args(registration, config), report)
    assert messages
    assert all("192.0.2.0/24" in m for m in messages)


# --------------------------------------------------------------------------- DNS


@pytest.mark.parametrize("proxied", [False, None])
def test_an_unproxied_dns_record_is_reported(proxied):
    def edit(resources):
        record = one(resources, rules.DNS_RECORDS[0], "edge-app.qa.conciliaextrato.com-a")
        if proxied is None:
            record.inputs.pop("proxied")
        else:
            record.inputs["proxied"] = proxied

    found = staging_with(edit)
    assert reported(found) == {("dns-proxied", "edge-app.qa.conciliaextrato.com-a")}


# --------------------------------------------------------------------------- secrets


def unmark(type_: str, name_part: str, key: str) -> Edit:
    def edit(resources):
        reg = one(resources, type_, name_part)
        assert rpc.is_rpc_secret(reg.inputs[key])
        reg.inputs[key] = rpc.unwrap_rpc_secret(reg.inputs[key])

    return edit


@pytest.mark.parametrize(
    ("type_", "name", "key", "path"),
    [
        (rules.COMMAND, "host-deploy", "stdin", "stdin"),
        (rules.COMMAND, "host-bootstrap", "connection", "connection.privateKey"),
        (rules.DROPLET, "server-droplet", "userData", "userData"),
        ("tls:index/certRequest:CertRequest", "origin-cert-csr", "privateKeyPem", "privateKeyPem"),
    ],
)
def test_a_secret_input_without_its_marker_is_reported(type_, name, key, path):
    found = staging_with(unmark(type_, name, key))
    plain = [v for v in found if v.policy == "no-plain-secret-inputs"]
    assert {v.resource for v in plain} == {name}
    assert any(f"'{path}'" in v.message for v in plain)


def test_a_private_key_in_an_innocent_plain_input_is_reported_without_its_value():
    def edit(resources):
        key = one(resources, "tls:index/privateKey:PrivateKey", "credentials-host-key")
        pem = key.state["privateKeyPem"]
        one(resources, rules.COMMAND, "host-bootstrap").inputs["triggers"] = [pem]

    found = staging_with(edit)
    assert ("no-plain-secret-inputs", "host-bootstrap") in reported(found)
    assert all("PRIVATE KEY" not in v.message for v in found)


def test_a_plain_input_named_like_a_credential_is_reported():
    found = staging_with(lambda rs: one(rs, rules.COMMAND, "host-deploy").inputs.update(apiToken="abc123"))
    assert reported(found) == {("no-plain-secret-inputs", "host-deploy")}


def test_a_stack_secret_copied_into_a_plain_input_is_reported_without_its_value():
    def edit(resources):
        password = one(resources, "random:index/randomPassword:RandomPassword", "postgres").state["result"]
        command = one(resources, rules.COMMAND, "host-bootstrap")
        command.inputs["create"] = f"{command.inputs['create']} --password {password}"
        command.state["create"] = command.inputs["create"]
        edit.password = password  # type: ignore[attr-defined]

    found = staging_with(edit)
    assert reported(found) == {("secret-values-stay-secret", "host-bootstrap")}
    assert all(edit.password not in v.message for v in found)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- backups the droplet cannot reach


def _edit_inputs(type_: str, name: str, **changes: Any) -> Edit:
    def edit(resources: list[Registration]) -> None:
        one(resources, type_, name).inputs.update(changes)

    return edit


def test_an_unversioned_bucket_is_reported():
    found = production_as_intended(
        _edit_inputs(rules.BUCKET, "backup-replica-bucket", versioning={"enabled": False})
    )
    assert reported(found) == {("backup-buckets-versioned", "backup-replica-bucket")}


@pytest.mark.parametrize(
    "grants",
    [
        [{"bucket": "bankflow-production-backups", "permission": "readwrite"},
         {"bucket": "bankflow-production-backups-replica", "permission": "read"}],
        [{"bucket": "", "permission": "fullaccess"}],
    ],
    ids=["droplet-key-reaches-the-replica", "fullaccess"],
)
def test_a_key_that_could_destroy_both_copies_is_reported(grants):
    found = production_as_intended(_edit_inputs(rules.SPACES_KEY, "backup-access-key", grants=grants))
    assert reported(found) == {("spaces-keys-cannot-reach-the-replica", "backup-access-key")}


def test_the_replication_key_may_read_the_bucket_and_write_the_replica():
    assert not [v for v in production_as_intended() if v.policy == "spaces-keys-cannot-reach-the-replica"]
