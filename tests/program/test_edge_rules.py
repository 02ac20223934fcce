"""Issue 12 item 2: the zone's edge rules as code, under the mock engine. Zone-wide resources
(one entry-point ruleset per phase, DNSSEC, the apex CAA set) exist only in the stack that owns
the zone; what each plan allows decides the managed rules; the rate limit uses only what the Free
plan allows; the client-port header rule uses Cloudflare's own source-port field."""

from __future__ import annotations

from typing import Any

import pytest

from bankflow_infra.catalog import CLIENT_PORT_HEADER
from bankflow_infra.components import edge as edge_component
from bankflow_infra.components import edge_rules
from bankflow_infra.ops.plan import PlanResult
from tests.program.stacks import DNS, inputs, named, production, rebuild, run_stack, staging

RULESET = "cloudflare:index/ruleset:Ruleset"
DNSSEC = "cloudflare:index/zoneDnssec:ZoneDnssec"
ZONE = "conciliaextrato.com"


def _phase(result: PlanResult, phase: str) -> dict[str, Any]:
    found = [inputs(r) for r in result.recorder.of_type(RULESET) if inputs(r)["phase"] == phase]
    assert len(found) == 1, f"expected one {phase} ruleset, found {len(found)}"
    assert found[0]["kind"] == "zone"  # the zone's entry point of that phase
    return found[0]


def _rule(ruleset: dict[str, Any], ref: str) -> dict[str, Any]:
    (rule,) = [r for r in ruleset["rules"] if r["ref"] == ref]
    return rule


def _caa(result: PlanResult) -> set[tuple[str, str]]:
    records = [inputs(r) for r in result.recorder.of_type(DNS) if inputs(r)["type"] == "CAA"]
    assert all(r["name"] == ZONE and r["data"]["flags"] == 0 for r in records)
    return {(r["data"]["tag"], r["data"]["value"]) for r in records}


def _plan(value: str):  # type: ignore[no-untyped-def]
    def edit(config: dict[str, Any]) -> None:
        config["bankflow:edge"]["plan"] = value

    return edit


@pytest.fixture(scope="module")
def pro() -> PlanResult:
    return run_stack("production", _plan("pro"))


def test_zone_wide_rules_only_in_the_stack_that_owns_the_zone() -> None:
    # Two owners would overwrite each other's entry-point rulesets and CAA set.
    assert {r["phase"] for r in map(inputs, production().recorder.of_type(RULESET))} == {
        "http_request_firewall_custom",
        "http_ratelimit",
        "http_request_late_transform",
    }
    for other in (staging(), rebuild()):
        assert other.recorder.of_type(RULESET) == []
        assert other.recorder.of_type(DNSSEC) == []
        assert _caa(other) == set()


def test_the_marketing_site_takes_reads_only() -> None:
    rule = _rule(_phase(production(), "http_request_firewall_custom"), "bankflow_site_read_only")
    assert rule["action"] == "block"
    assert rule["expression"] == (
        '(http.host in {"conciliaextrato.com" "www.conciliaextrato.com"} '
        'and not http.request.method in {"GET" "HEAD"})'
    )


def test_paths_scanners_probe_are_blocked_and_well_known_stays_reachable() -> None:
    rule = _rule(_phase(production(), "http_request_firewall_custom"), "bankflow_block_bad_paths")
    assert rule["action"] == "block"
    for prefix in ("/.env", "/.git", "/wp-login.php", "/phpmyadmin"):
        assert f'starts_with(lower(http.request.uri.path), "{prefix}")' in rule["expression"]
    # ACME and security.txt live under /.well-known: never a blanket "/." rule.
    assert '"/."' not in rule["expression"]
    assert "/.well-known" not in rule["expression"]


def test_free_plans_five_custom_rules_are_enough() -> None:
    assert len(_phase(production(), "http_request_firewall_custom")["rules"]) <= 5


def test_login_paths_are_rate_limited_per_ip_within_what_free_allows() -> None:
    ruleset = _phase(production(), "http_ratelimit")
    assert len(ruleset["rules"]) == 1  # Free: one rate-limiting rule
    rule = ruleset["rules"][0]
    assert rule["action"] == "block"
    assert rule["ratelimit"] == {
        "characteristics": ["cf.colo.id", "ip.src"],  # cf.colo.id is mandatory
        "period": 10,  # the only period Free allows
        "requestsPerPeriod": 20,
        "mitigationTimeout": 10,  # the only timeout Free allows
    }
    # Free: the path is the only field a rate-limiting expression may use.
    assert "http.host" not in rule["expression"]
    assert "http.request.method" not in rule["expression"]
    for path in ("/login", "/auth/", "/api/auth/", "/oauth/token"):
        assert f'starts_with(http.request.uri.path, "{path}")' in rule["expression"]


def test_rate_limit_paths_and_threshold_come_from_settings() -> None:
    def edit(config: dict[str, Any]) -> None:
        config["bankflow:edge"]["rateLimitPaths"] = ["/session"]
        config["bankflow:edge"]["rateLimitRequests"] = 5

    rule = _phase(run_stack("production", edit), "http_ratelimit")["rules"][0]
    assert rule["expression"] == '(starts_with(http.request.uri.path, "/session"))'
    assert rule["ratelimit"]["requestsPerPeriod"] == 5


def test_managed_rules_only_where_the_plan_allows(pro: PlanResult) -> None:
    phases = {inputs(r)["phase"] for r in production().recorder.of_type(RULESET)}
    assert "http_request_firewall_managed" not in phases  # Free: Cloudflare deploys its own
    rule = _rule(_phase(pro, "http_request_firewall_managed"), "bankflow_cloudflare_managed")
    assert rule["action"] == "execute"
    assert rule["expression"] == "true"
    assert rule["actionParameters"] == {"id": "efb7b8c949ac4650a09736fc376e9aee"}


def test_the_visitors_source_port_reaches_the_origin_in_the_catalog_header() -> None:
    rule = _rule(_phase(production(), "http_request_late_transform"), "bankflow_client_port_header")
    assert rule["action"] == "rewrite"
    assert rule["expression"] == "true"  # every hostname of the zone, staging's too
    assert rule["actionParameters"] == {
        "headers": {CLIENT_PORT_HEADER: {"operation": "set", "expression": "to_string(cf.edge.client_port)"}}
    }


def test_dnssec_is_on_and_never_switched_off_by_a_destroy() -> None:
    dnssec = named(production(), "zone-security-dnssec")
    assert inputs(dnssec)["status"] == "active"
    assert dnssec.retain_on_delete is True


def test_caa_limits_issuance_to_the_cas_cloudflare_uses_for_our_edge_certificates() -> None:
    assert _caa(production()) == {
        ("issue", "letsencrypt.org"),
        ("issuewild", "letsencrypt.org"),
        ("issue", "pki.goog"),
        ("issuewild", "pki.goog"),
        ("iodef", "mailto:ops@conciliaextrato.com"),  # the alerts address unless edge.caaIodef
    }


def test_the_certificate_pack_ca_is_allowed_by_caa() -> None:
    # The advanced certificate pack's CA (components/edge.py) must be one CAA allows, or its
    # renewal would fail once CAA records exist.
    assert edge_component.PACK_CERTIFICATE_AUTHORITY == "lets_encrypt"
    assert "letsencrypt.org" in edge_rules.CAA_ISSUERS


def test_caa_iodef_from_settings() -> None:
    def edit(config: dict[str, Any]) -> None:
        config["bankflow:edge"]["caaIodef"] = "https://security.conciliaextrato.com/caa"

    assert ("iodef", "https://security.conciliaextrato.com/caa") in _caa(run_stack("production", edit))


def test_expression_builders() -> None:
    assert edge_rules.string_set(["a.example", "b.example"]) == '{"a.example" "b.example"}'
    assert edge_rules.rate_limit_expression(("/a", "/b")) == (
        '(starts_with(http.request.uri.path, "/a") or starts_with(http.request.uri.path, "/b"))'
    )


def test_a_bad_plan_stops_the_program_before_any_resource() -> None:
    from bankflow_infra.settings import SettingsError

    expected = r"bankflow:edge\.plan: must be one of free, pro, business, enterprise"
    with pytest.raises(SettingsError, match=expected):
        run_stack("production", _plan("gold"))
