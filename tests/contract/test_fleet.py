"""The scale-out contract (issue 13): the fleet outputs, the roll request, the LB health include."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from bankflow_infra.contract import fleet, outputs
from bankflow_infra.contract.roll import (
    RollRequest,
    RollRequestError,
    RollTarget,
    parse_roll_request,
    render_roll_request,
)
from tests.support.outputs import HOST_PUBLIC_KEY, outputs_document

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\ns3cr3t-key-body\n-----END OPENSSH PRIVATE KEY-----\n"


def _droplet(index: int) -> dict[str, str]:
    return {"name": f"bankflow-prod-server-{index}", "ipv4": f"203.0.113.{10 + index}",
            "ipv6": f"2001:db8::{index}", "host_public_key": HOST_PUBLIC_KEY}


def _scaled_document() -> dict[str, object]:
    return outputs_document("production") | {
        "origin_ips": [_droplet(1), _droplet(2), _droplet(3)],
        "load_balancer_ip": "198.51.100.7",
        "database": {"cluster": "bankflow-production-database",
                     "host": "private-db.b.db.ondigitalocean.com", "port": 25060, "pool_port": 25061,
                     "database": "bankflow"},
    }


def test_the_scaled_outputs_parse_in_roll_order() -> None:
    parsed = outputs.parse_outputs("production", _scaled_document())
    assert [d.ipv4 for d in parsed.origin_ips] == ["203.0.113.11", "203.0.113.12", "203.0.113.13"]
    assert parsed.load_balancer_ip == "198.51.100.7"
    assert parsed.database == outputs.ManagedDatabaseEndpoint(
        "bankflow-production-database", "private-db.b.db.ondigitalocean.com", 25060, 25061, "bankflow")


def test_a_stack_deployed_before_issue_13_reads_as_one_droplet_without_a_load_balancer() -> None:
    document = outputs_document()
    for name in ("origin_ips", "load_balancer_ip", "database"):
        del document[name]
    parsed = outputs.parse_outputs("staging", document)
    assert (parsed.origin_ips, parsed.load_balancer_ip, parsed.database) == ((), None, None)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"origin_ips": "203.0.113.11"}, "'origin_ips'"),
        ({"origin_ips": [_droplet(1) | {"ipv4": "not-an-ip"}]}, "origin_ips[0].ipv4"),
        ({"origin_ips": [_droplet(1) | {"ipv4": None}]}, "origin_ips[0].ipv4"),
        ({"origin_ips": [_droplet(1), _droplet(1)]}, "listed twice"),
        ({"load_balancer_ip": "2001:db8::1"}, "load_balancer_ip"),
        ({"database": {"host": "x"}}, "'database'"),
        ({"database": {"cluster": "c", "host": "db.example", "port": 0, "pool_port": 25061,
                       "database": "bankflow"}}, "database.port"),
    ],
)
def test_bad_fleet_outputs_are_one_error_naming_the_output(change: dict[str, object], named: str) -> None:
    with pytest.raises(outputs.OutputsError) as raised:
        outputs.parse_outputs("production", _scaled_document() | change)
    assert named in str(raised.value)
    assert "production" in str(raised.value)


def _request() -> RollRequest:
    targets = tuple(RollTarget(f"bankflow-prod-server-{i}", f"203.0.113.{i}", 22, "root", HOST_PUBLIC_KEY)
                    for i in (1, 2, 3))
    return RollRequest("production", "0123456789ab", targets, KEY)


def test_the_roll_request_round_trips_and_never_shows_the_key() -> None:
    request = _request()
    assert parse_roll_request(render_roll_request(request)) == request
    assert "s3cr3t" not in repr(request)


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda r: r | {"schema": 2}, "schema"),
        (lambda r: r | {"release": "latest"}, "release"),
        (lambda r: r | {"stack": "bad stack"}, "stack"),
        (lambda r: r | {"targets": []}, "targets"),
        (lambda r: r | {"targets": [r["targets"][0] | {"port": 70000}]}, "targets[0].port"),
        (lambda r: r | {"targets": [r["targets"][0], r["targets"][0]]}, "listed twice"),
        (lambda r: r | {"private_key": "s3cr3t-not-a-key"}, "private_key"),
    ],
)
def test_a_bad_roll_request_is_one_error_naming_the_field_never_the_key(
    edit: Callable[[dict[str, Any]], dict[str, Any]], named: str
) -> None:
    raw = json.loads(render_roll_request(_request()))
    with pytest.raises(RollRequestError) as raised:
        parse_roll_request(json.dumps(edit(raw)))
    assert named in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


def test_the_lb_health_include_reads_back_its_state() -> None:
    assert fleet.parse_lb_health(fleet.render_lb_health(draining=True)) is True
    assert fleet.parse_lb_health(fleet.render_lb_health(draining=False)) is False
    assert fleet.parse_lb_health("return 200;\n") is None
    assert "return 503" in fleet.render_lb_health(draining=True)


def test_a_roll_waits_long_enough_for_the_load_balancer_to_notice() -> None:
    # Two failed checks, each up to interval + timeout apart, must fit in the drain wait.
    slowest_detection = fleet.LB_UNHEALTHY_THRESHOLD * (
        fleet.LB_CHECK_INTERVAL_SECONDS + fleet.LB_RESPONSE_TIMEOUT_SECONDS)
    assert fleet.drain_wait_seconds() > slowest_detection
    assert fleet.rejoin_wait_seconds() > fleet.LB_HEALTHY_THRESHOLD * fleet.LB_CHECK_INTERVAL_SECONDS
    assert fleet.drain_wait_seconds(interval=1, timeout=1, unhealthy=2) < fleet.drain_wait_seconds()
