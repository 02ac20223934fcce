"""Issue 10 "config that today plans cleanly and must not": each bad value is one problem naming
its key and what would be valid (tables in the style of tests/test_settings.py)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from bankflow_infra.settings import SettingsError, environment_of_stack_name, parse_settings
from tests.test_settings import _set, stack_values

Values = dict[str, Any]


def problems_for(edit: Callable[[Values], None], stack: str = "staging", base: str | None = None) -> str:
    values = copy.deepcopy(stack_values(base or stack))
    edit(values)
    with pytest.raises(SettingsError) as raised:
        parse_settings("bankflow", stack, values)
    return str(raised.value)


def _both(*edits: Callable[[Values], None]) -> Callable[[Values], None]:
    def edit(values: Values) -> None:
        for one in edits:
            one(values)

    return edit


KEY = "ssh-ed25519 " + "A" * 68 + " ana@bankflow"

# (id, edit, stack, key named, hint in that line)
REJECTED: list[tuple[str, Callable[[Values], None], str, str, str]] = [
    # every format check matches the whole value: a trailing newline fails
    (
        "hostname + newline",
        _set("hostnames.site", ["qa.conciliaextrato.com\n"]),
        "staging",
        "bankflow:hostnames.site[0]:",
        "DNS hostname",
    ),
    ("zone + newline", _set("edge.zone", "conciliaextrato.com\n"), "staging", "bankflow:edge.zone:", "zone"),
    ("region + newline", _set("server.region", "nyc3\n"), "staging", "bankflow:server.region:", "nyc3"),
    ("size + newline", _set("server.size", "s-2vcpu-4gb\n"), "staging", "bankflow:server.size:", "slugs.py"),
    (
        "email + newline",
        _set("alerts.emails", ["ops@conciliaextrato.com\n"]),
        "staging",
        "bankflow:alerts.emails[0]:",
        "e-mail",
    ),
    (
        "registry + newline",
        _set("release.registry", "ghcr.io/bankflow\n"),
        "staging",
        "bankflow:release.registry:",
        "registry path",
    ),
    (
        "image + newline",
        _set("release.images.api", "bankflow-api\n"),
        "staging",
        "bankflow:release.images.api:",
        "repository",
    ),
    ("time + newline", _set("backups.timeUtc", "03:15\n"), "staging", "bankflow:backups.timeUtc:", "HH:MM"),
    (
        "body size + newline",
        _set("nginx.clientMaxBodySize", "25m\n"),
        "staging",
        "bankflow:nginx.clientMaxBodySize:",
        "nginx size",
    ),
    (
        "admin key + newline",
        _set("server.adminSshKeys", [KEY + "\n"]),
        "staging",
        "bankflow:server.adminSshKeys[0]:",
        "public key",
    ),
    (
        "slack url + newline",
        _both(
            _set("alerts.slackChannel", "#ops"),
            _set("alerts.slackUrl", "https://hooks.slack.com/services/T/B/x\n"),
        ),
        "staging",
        "bankflow:alerts.slackUrl:",
        "hooks.slack.com",
    ),
    # the environment must agree with the stack
    (
        "staging file says production",
        _set("environment", "production"),
        "staging",
        "bankflow:environment:",
        "set bankflow:environment: staging",
    ),
    (
        "production says staging",
        _set("environment", "staging"),
        "production",
        "bankflow:environment:",
        "set bankflow:environment: production",
    ),
    (
        "rebuild of production says staging",
        _set("environment", "staging"),
        "production-r3",
        "bankflow:environment:",
        "production-r<N>",
    ),
    # SSH ranges must not cover the internet in pieces
    (
        "ssh two /1 halves",
        _set("server.sshAllowedCidrs", ["0.0.0.0/1", "128.0.0.0/1"]),
        "staging",
        "bankflow:server.sshAllowedCidrs[0]:",
        "internet in pieces",
    ),
    (
        "ssh public /8",
        _set("server.sshAllowedCidrs", ["8.0.0.0/8"]),
        "staging",
        "bankflow:server.sshAllowedCidrs[0]:",
        "/16 or narrower",
    ),
    (
        "ssh public /15",
        _set("server.sshAllowedCidrs", ["62.0.0.0/15"]),
        "staging",
        "bankflow:server.sshAllowedCidrs[0]:",
        "/16",
    ),
    (
        "ssh ipv6 /3",
        _set("server.sshAllowedCidrs", ["2000::/3"]),
        "staging",
        "bankflow:server.sshAllowedCidrs[0]:",
        "/32 or narrower",
    ),
    (
        "ssh ::/0",
        _set("server.sshAllowedCidrs", ["::/0"]),
        "staging",
        "bankflow:server.sshAllowedCidrs[0]:",
        "whole internet",
    ),
    # vpcCidr is RFC 1918 only
    (
        "vpc loopback",
        _set("server.vpcCidr", "127.0.0.0/20"),
        "staging",
        "bankflow:server.vpcCidr:",
        "RFC 1918",
    ),
    (
        "vpc link-local",
        _set("server.vpcCidr", "169.254.0.0/20"),
        "staging",
        "bankflow:server.vpcCidr:",
        "RFC 1918",
    ),
    (
        "vpc documentation",
        _set("server.vpcCidr", "192.0.2.0/24"),
        "staging",
        "bankflow:server.vpcCidr:",
        "RFC 1918",
    ),
    (
        "vpc shared (CGNAT)",
        _set("server.vpcCidr", "100.64.0.0/20"),
        "staging",
        "bankflow:server.vpcCidr:",
        "RFC 1918",
    ),
    (
        "vpc + newline",
        _set("server.vpcCidr", "10.110.16.0/20\n"),
        "staging",
        "bankflow:server.vpcCidr:",
        "IPv4 CIDR",
    ),
    # known slugs only, and the message says how to add one
    (
        "region shaped right, unknown",
        _set("server.region", "xyz9"),
        "staging",
        "bankflow:server.region:",
        "add it to DROPLET_REGIONS",
    ),
    (
        "size shaped right, unknown",
        _set("server.size", "s-3vcpu-7gb"),
        "staging",
        "bankflow:server.size:",
        "doctl compute size list",
    ),
    # item 1: two-level hostnames need Advanced Certificate Manager
    (
        "no ACM for app.qa.",
        _set("edge.advancedCertificates", False),
        "staging",
        "bankflow:hostnames.saas[0]:",
        "bankflow:edge.advancedCertificates: true",
    ),
    (
        "deep production hostname",
        _set("hostnames.api", ["v2.api.conciliaextrato.com"]),
        "production",
        "bankflow:hostnames.api[0]:",
        "Universal SSL",
    ),
    (
        "ACM flag not a flag",
        _set("edge.advancedCertificates", "yes"),
        "staging",
        "bankflow:edge.advancedCertificates:",
        "true or false",
    ),
    (
        "resizeDisk not a flag",
        _set("server.resizeDisk", 1),
        "staging",
        "bankflow:server.resizeDisk:",
        "true or false",
    ),
    # item 2: the Origin CA key path is gone
    ("origin CA key", _set("originCaKey", "v1.0-abc"), "staging", "bankflow:originCaKey:", "2026-09-30"),
]


@pytest.mark.parametrize(
    ("edit", "stack", "key", "hint"), [c[1:] for c in REJECTED], ids=[c[0] for c in REJECTED]
)
def test_rejected_naming_the_key_and_what_is_valid(edit, stack, key, hint):
    base = "production" if stack.startswith("production") else "staging"
    if stack == "production-r3":
        edit = _both(
            edit,
            _set("server.vpcCidr", "10.130.16.0/20"),
            _set("edge.enabled", False),
            _set("edge.zoneSettings", False),
        )
    message = problems_for(edit, stack=stack, base=base)
    line = next((line for line in message.splitlines() if key in line), None)
    assert line is not None, f"{key} not named in:\n{message}"
    assert hint in line


ACCEPTED: list[tuple[str, Callable[[Values], None], str]] = [
    (
        "ssh operator /24 and VPN 10/8",
        _set("server.sshAllowedCidrs", ["198.51.100.0/24", "10.0.0.0/8"]),
        "staging",
    ),
    (
        "ssh public /16 and ipv6 /48",
        _set("server.sshAllowedCidrs", ["198.51.0.0/16", "2001:db8:1::/48"]),
        "staging",
    ),
    ("vpc 172.16/12 part", _set("server.vpcCidr", "172.20.0.0/20"), "staging"),
    ("vpc 192.168 part", _set("server.vpcCidr", "192.168.16.0/24"), "staging"),
    ("premium size", _set("server.size", "s-4vcpu-8gb-amd"), "staging"),
    ("one-level hostnames need no ACM", _set("edge.advancedCertificates", False), "production"),
    ("a custom-named rebuild may be production", lambda v: None, "prod-emergency"),
]


@pytest.mark.parametrize(("edit", "stack"), [c[1:] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_accepted(edit, stack):
    base = "staging" if stack == "staging" else "production"
    values = copy.deepcopy(stack_values(base))
    edit(values)
    assert parse_settings("bankflow", stack, values).stack == stack


@pytest.mark.parametrize(
    ("stack", "environment"),
    [
        ("staging", "staging"),
        ("production", "production"),
        ("production-r1", "production"),
        ("staging-r12", "staging"),
        ("org/bankflow/production-r2", "production"),
        ("production-old", None),
        ("productionx", None),
        ("dev", None),
    ],
)
def test_which_stack_names_bind_an_environment(stack, environment):
    assert environment_of_stack_name(stack) == environment
