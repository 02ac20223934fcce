"""Stack config validation: every problem reported at once, each with its full key."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from bankflow_infra.settings import SettingsError, parse_settings
from bankflow_infra.stackfile import settings_from_stack_file
from tests.support.tools import REPO

Values = dict[str, Any]


def stack_values(stack: str) -> Values:
    document = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())
    return {k.split(":", 1)[1]: v for k, v in document["config"].items() if k.startswith("bankflow:")}


def problems_for(edit: Callable[[Values], None], stack: str = "staging", base: str | None = None) -> str:
    values = copy.deepcopy(stack_values(base or stack))
    edit(values)
    with pytest.raises(SettingsError) as raised:
        parse_settings("bankflow", stack, values)
    return str(raised.value)


def test_both_stack_files_are_valid_with_the_spec_hostnames():
    staging = settings_from_stack_file(
        "bankflow", "staging", yaml.safe_load(Path(REPO / "Pulumi.staging.yaml").read_text()), "x"
    )
    production = settings_from_stack_file(
        "bankflow", "production", yaml.safe_load(Path(REPO / "Pulumi.production.yaml").read_text()), "x"
    )
    assert staging.hostnames == {
        "site": ("qa.conciliaextrato.com",),
        "saas": ("app.qa.conciliaextrato.com",),
        "api": ("api.qa.conciliaextrato.com",),
    }
    assert production.hostnames == {
        "site": ("conciliaextrato.com", "www.conciliaextrato.com"),
        "saas": ("app.conciliaextrato.com",),
        "api": ("api.conciliaextrato.com",),
    }
    # DO droplet backups copy the root disk only (no volume) and die with the droplet: off,
    # the data lives on the volumes (50 GB production, 10 GB staging) and in pgBackRest/restic.
    assert not production.server.backups
    assert not staging.server.backups
    assert production.server.volume_size_gb == 50
    assert staging.server.volume_size_gb == 10
    assert production.edge.zone_settings
    assert not staging.edge.zone_settings
    assert production.origin_cert_validity_days == 5475  # the maximum: Origin CA never renews


def test_stack_vpc_ranges_never_overlap():
    ranges = [ipaddress.ip_network(stack_values(s)["server"]["vpcCidr"]) for s in ("staging", "production")]
    assert not ranges[0].overlaps(ranges[1])


def _set(path: str, value: Any) -> Callable[[Values], None]:
    def edit(values: Values) -> None:
        *parents, last = path.split(".")
        node = values
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value

    return edit


def _delete(path: str) -> Callable[[Values], None]:
    def edit(values: Values) -> None:
        *parents, last = path.split(".")
        node = values
        for part in parents:
            node = node[part]
        del node[last]

    return edit


BAD_CONFIGS: list[tuple[str, Callable[[Values], None], str, str]] = [
    ("missing hostname", _delete("hostnames.api"), "bankflow:hostnames.api:", "at least one hostname"),
    ("empty hostname list", _set("hostnames.saas", []), "bankflow:hostnames.saas:", "at least one"),
    (
        "hostname outside zone",
        _set("hostnames.site", ["qa.example.com"]),
        "bankflow:hostnames.site[0]:",
        "zone",
    ),
    (
        "hostname not lower-case DNS",
        _set("hostnames.site", ["QA_bad.conciliaextrato.com"]),
        "bankflow:hostnames.site[0]:",
        "DNS hostname",
    ),
    (
        "hostname on two services",
        _set("hostnames.api", ["app.qa.conciliaextrato.com"]),
        "bankflow:hostnames.api[0]:",
        "already used",
    ),
    ("unknown region", _set("server.region", "new-york"), "bankflow:server.region:", "DROPLET_REGIONS"),
    ("unknown size", _set("server.size", "large"), "bankflow:server.size:", "DROPLET_SIZES"),
    ("not ubuntu 24.04", _set("server.image", "debian-12-x64"), "bankflow:server.image:", "24.04"),
    (
        "vpc overlaps DO reserved",
        _set("server.vpcCidr", "10.244.0.0/20"),
        "bankflow:server.vpcCidr:",
        "overlaps 10.244.0.0/16",
    ),
    ("vpc public range", _set("server.vpcCidr", "8.8.0.0/20"), "bankflow:server.vpcCidr:", "RFC 1918"),
    ("vpc too large", _set("server.vpcCidr", "10.0.0.0/8"), "bankflow:server.vpcCidr:", "/16 to /24"),
    ("vpc host bits", _set("server.vpcCidr", "10.110.16.1/20"), "bankflow:server.vpcCidr:", "host bits"),
    ("missing vpc", _delete("server.vpcCidr"), "bankflow:server.vpcCidr:", "required"),
    (
        "ssh open to world",
        _set("server.sshAllowedCidrs", ["0.0.0.0/0"]),
        "bankflow:server.sshAllowedCidrs[0]:",
        "whole internet",
    ),
    (
        "ssh cidr malformed",
        _set("server.sshAllowedCidrs", ["203.0.113.0/33"]),
        "bankflow:server.sshAllowedCidrs[0]:",
        "not a CIDR",
    ),
    ("no ssh ranges", _set("server.sshAllowedCidrs", []), "bankflow:server.sshAllowedCidrs:", "required"),
    (
        "admin key not a key",
        _set("server.adminSshKeys", ["hello"]),
        "bankflow:server.adminSshKeys[0]:",
        "public key",
    ),
    (
        "admin key of a type sshd refuses",
        _set("server.adminSshKeys", ["ecdsa-sha2-nistp256 " + "A" * 80 + " ops"]),
        "bankflow:server.adminSshKeys[0]:",
        "ed25519",
    ),
    ("bad email", _set("alerts.emails", ["ops-at-conciliaextrato"]), "bankflow:alerts.emails[0]:", "e-mail"),
    ("no alert recipient", _set("alerts.emails", []), "bankflow:alerts.emails:", "at least one"),
    (
        "slack url without channel",
        _set("alerts.slackUrl", "https://hooks.slack.com/services/T/B/x"),
        "bankflow:alerts.slackChannel:",
        "together",
    ),
    ("alert percent range", _set("alerts.cpuPercent", 150), "bankflow:alerts.cpuPercent:", "10 to 100"),
    (
        "edge origin is itself",
        _set("edge.originStack", "staging"),
        "bankflow:edge.originStack:",
        "this stack",
    ),
    ("edge without origin", _set("server.enabled", False), "bankflow:edge.originStack:", "required when"),
    (
        "staging owns zone settings",
        _set("edge.zoneSettings", True),
        "bankflow:edge.zoneSettings:",
        "only production",
    ),
    ("latest tag", _set("release.tag", "latest"), "bankflow:release.tag:", "pin"),
    ("missing tag", _delete("release.tag"), "bankflow:release.tag:", "required"),
    (
        "bad registry",
        _set("release.registry", "ghcr.io/Bank Flow"),
        "bankflow:release.registry:",
        "registry path",
    ),
    (
        "health command for unknown service",
        _set("release.healthCommands", {"web": ["CMD", "true"]}),
        "bankflow:release.healthCommands.web:",
        "unknown service",
    ),
    (
        "origin cert validity",
        _set("originCert.validityDays", 400),
        "bankflow:originCert.validityDays:",
        "5475",
    ),
    ("no spaces in region", _set("backups.region", "nyc1"), "bankflow:backups.region:", "no Spaces"),
    (
        "replica without spaces",
        _set("backups.replicaRegion", "nyc1"),
        "bankflow:backups.replicaRegion:",
        "no Spaces",
    ),
    (
        "replica in the bucket's region",
        _set("backups.replicaRegion", "nyc3"),
        "bankflow:backups.replicaRegion:",
        "must differ from backups.region ('nyc3')",
    ),
    ("backup time", _set("backups.timeUtc", "25:00"), "bankflow:backups.timeUtc:", "HH:MM"),
    (
        "upload limit",
        _set("nginx.clientMaxBodySize", "lots"),
        "bankflow:nginx.clientMaxBodySize:",
        "nginx size",
    ),
    ("typo in key", _set("server.sise", "s-1vcpu-1gb"), "bankflow:server.sise:", "unknown key"),
    ("unknown top-level key", _set("servr", {}), "bankflow:servr:", "unknown key"),
    (
        "foreign bucket on an edge stack",
        _set("backups.bucketStack", "production"),
        "bankflow:backups.bucketStack:",
        "owns its backups bucket",
    ),
    ("wrong environment", _set("environment", "prod"), "bankflow:environment:", "staging, production"),
    ("bool as number", _set("server.volumeSizeGb", True), "bankflow:server.volumeSizeGb:", "integer"),
    ("section not a mapping", _set("edge", "on"), "bankflow:edge:", "mapping"),
]


@pytest.mark.parametrize(
    ("edit", "key", "hint"), [c[1:] for c in BAD_CONFIGS], ids=[c[0] for c in BAD_CONFIGS]
)
def test_bad_config_is_rejected_naming_its_key(edit, key, hint):
    message = problems_for(edit)
    line = next((line for line in message.splitlines() if key in line), None)
    assert line is not None, f"{key} not named in:\n{message}"
    assert hint in line


def _settings(stack: str, edit: Callable[[Values], None] = lambda values: None) -> Any:
    values = copy.deepcopy(stack_values(stack))
    edit(values)
    return parse_settings("bankflow", stack, values)


def test_the_replica_defaults_to_another_region_than_the_bucket():
    assert _settings("staging").backups.replica_region == "sfo3"
    assert _settings("staging", _set("backups.region", "sfo3")).backups.replica_region == "nyc3"
    assert _settings("staging", _set("backups.replicaRegion", "ams3")).backups.replica_region == "ams3"


def test_staging_keeps_its_data_on_a_volume_and_droplet_backups_are_opt_in():
    staging = _settings("staging").server
    assert staging.volume_size_gb == 10
    assert staging.backups is False
    assert _settings("staging", _set("server.backups", True)).server.backups is True


def test_production_without_a_data_volume_is_rejected():
    message = problems_for(_set("server.volumeSizeGb", 0), stack="production")
    assert "bankflow:server.volumeSizeGb:" in message


def test_every_problem_is_reported_at_once():
    def many(values: Values) -> None:
        values["server"]["size"] = "huge"
        values["alerts"]["emails"] = ["nope"]
        values["release"]["tag"] = "latest"

    message = problems_for(many)
    assert "3 problem(s)" in message
    for key in ("bankflow:server.size:", "bankflow:alerts.emails[0]:", "bankflow:release.tag:"):
        assert key in message


def test_a_rebuild_stack_may_point_its_edge_elsewhere_but_not_at_itself():
    values = copy.deepcopy(stack_values("production"))
    values["edge"]["originStack"] = "production-r1"
    assert parse_settings("bankflow", "production", values).edge.origin_stack == "production-r1"
    with pytest.raises(SettingsError, match=r"bankflow:edge\.originStack"):
        parse_settings("bankflow", "production-r1", values)
