"""Issue 12 item 2: the edge-security settings (edge.plan, edge.caaIodef, edge.rateLimitPaths,
edge.rateLimitRequests). A bad value is one problem naming its key and what would be valid,
before any resource; a rate-limited path can never change the rule's expression."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bankflow_infra.settings import parse_settings
from tests.settings.test_config_checks import problems_for
from tests.test_settings import stack_values


def _edge(**values: Any):  # type: ignore[no-untyped-def]
    def edit(config: dict[str, Any]) -> None:
        config.setdefault("edge", {}).update(values)

    return edit


def test_defaults_are_the_free_plan_with_login_paths() -> None:
    edge = parse_settings("bankflow", "production", copy.deepcopy(stack_values("production"))).edge
    assert edge.plan == "free"
    assert edge.caa_iodef is None
    assert edge.rate_limit_paths == ("/login", "/auth/", "/api/auth/", "/oauth/token")
    assert edge.rate_limit_requests == 20


@pytest.mark.parametrize(
    ("edit", "key", "hint"),
    [
        (_edge(plan="premium"), "edge.plan", "must be one of free, pro, business, enterprise"),
        (_edge(plan=None), "edge.plan", "must be one of free, pro, business, enterprise"),
        (_edge(caaIodef="ops@conciliaextrato.com"), "edge.caaIodef", "must be a mailto: address or an https://"),
        (_edge(caaIodef="http://reports.example/caa"), "edge.caaIodef", "must be a mailto: address or an https://"),
        (_edge(caaIodef='mailto:a"b@x.com'), "edge.caaIodef", "must be a mailto: address"),
        (_edge(rateLimitPaths="/login"), "edge.rateLimitPaths", "must be a list of strings"),
        (_edge(rateLimitPaths=[]), "edge.rateLimitPaths", "must list at least one path prefix"),
        (_edge(rateLimitPaths=["login"]), "edge.rateLimitPaths[0]", "is not an absolute URL path"),
        # A quote would end the string literal and turn the rest into Rules-language expression.
        (
            _edge(rateLimitPaths=["/login", '/x") or (true']),
            "edge.rateLimitPaths[1]",
            "no quotes, spaces or backslashes",
        ),
        (_edge(rateLimitPaths=["/a b"]), "edge.rateLimitPaths[0]", "is not an absolute URL path"),
        (_edge(rateLimitRequests=0), "edge.rateLimitRequests", "must be an integer from 1 to 10000"),
        (_edge(rateLimitRequests=True), "edge.rateLimitRequests", "an integer from 1 to 10000"),
        (_edge(rateLimitRequests="20"), "edge.rateLimitRequests", "an integer from 1 to 10000"),
        (_edge(managedRules=True), "edge.managedRules", "unknown key; valid keys:"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_a_bad_edge_security_value_is_one_problem_naming_its_key(edit, key: str, hint: str) -> None:
    message = problems_for(edit, "production")
    lines = [line for line in message.splitlines() if f"bankflow:{key}:" in line]
    assert len(lines) == 1, message
    assert hint in lines[0]
    assert "1 problem(s)" in message


def test_every_bad_value_is_reported_in_one_run() -> None:
    message = problems_for(_edge(plan="gold", rateLimitPaths=["x"], rateLimitRequests=0), "production")
    assert "3 problem(s)" in message
    for key in ("edge.plan", "edge.rateLimitPaths[0]", "edge.rateLimitRequests"):
        assert f"bankflow:{key}:" in message


@pytest.mark.parametrize("iodef", ["mailto:security@conciliaextrato.com", "https://conciliaextrato.com/caa"])
def test_valid_iodef_targets(iodef: str) -> None:
    values = copy.deepcopy(stack_values("production"))
    values["edge"]["caaIodef"] = iodef
    assert parse_settings("bankflow", "production", values).edge.caa_iodef == iodef
