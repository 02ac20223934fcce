"""Health probes against real HTTPS servers on 127.0.0.1 (threads; every wait bounded).

The hostnames are the staging ones from Pulumi.staging.yaml; ``resolve`` sends them to the local
servers, exactly as ``--origin`` sends them to origin_ip:443, with Host and SNI unchanged.
No assertion here is about elapsed time: overlap is shown by what the servers saw.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bankflow_infra.contract.outputs import OutputsError, StackOutputs, parse_outputs
from bankflow_infra.ops import probes
from bankflow_infra.ops.health import (
    BACKUP_STALE_AFTER,
    HealthReport,
    check_health,
    format_table,
    report_document,
)
from bankflow_infra.ops.probes import (
    Policy,
    ProbeResult,
    backoff_delay,
    keep_informative,
    parse_resolve,
    plan_probes,
    request_url,
)
from bankflow_infra.settings import APP_SERVICES
from tests.support.https import Behaviour, Certs, LocalHttps, Pair, hostnames
from tests.support.outputs import outputs_document
from tests.support.ports import free_port

# Short, so the failing cases finish quickly; backoff small for the same reason (its formula
# is tested on its own below).
FAST = Policy(timeout=2.0, deadline=8.0, attempts=3, backoff=0.05, poll_interval=0.1)


def _outputs(certs: Certs) -> StackOutputs:
    return parse_outputs("staging", outputs_document(origin_certificate=certs.origin.pem))


@contextmanager
def _servers(
    pair: Pair, behaviours: dict[str, Behaviour]
) -> Iterator[tuple[LocalHttps, dict[str, tuple[str, int]]]]:
    """One server answering every hostname in ``behaviours``; resolve maps them all to it."""
    with LocalHttps(pair, behaviours) as server:
        yield server, {host: ("127.0.0.1", server.port) for host in behaviours}


def _all(**kwargs: Any) -> dict[str, Behaviour]:
    return {host: Behaviour(**kwargs) for host in hostnames()}


def _by_service(report: HealthReport) -> dict[str, ProbeResult]:
    return {r.service: r for r in report.results}


# --------------------------------------------------------------------------- through the origin (pinned)


def test_healthy_origin_with_pinned_certificate_and_sni(certs: Certs) -> None:
    with _servers(certs.origin, _all()) as (server, resolve):
        report = check_health(_outputs(certs), "origin", FAST, resolve)
    assert report.healthy, format_table(report)
    assert [r.service for r in report.results] == list(APP_SERVICES)
    assert all(r.status == 200 and r.attempts == 1 and r.error is None for r in report.results)
    # TLS SNI and the Host header are the hostname, although the connection went to an IP.
    assert sorted(s for s in server.sni if s) == sorted(hostnames())
    assert server.requests == {host: 1 for host in hostnames()}


@pytest.mark.parametrize("presented", ["sibling", "self_signed"])
def test_origin_presenting_another_certificate_fails_the_pin(certs: Certs, presented: str) -> None:
    # "sibling" comes from the same CA as the pinned leaf: trusting the issuer would accept it.
    with _servers(getattr(certs, presented), _all()) as (server, resolve):
        report = check_health(_outputs(certs), "origin", FAST, resolve)
    assert not report.healthy
    for result in report.results:
        assert (result.error or "").startswith("TLS: not the pinned origin certificate")
        assert result.attempts == 1  # a wrong certificate is not retried
    assert server.total_requests == 0  # no request was sent over the untrusted connection
    assert sorted(s for s in server.sni if s) == sorted(hostnames())


def _with_origin_pull_client(certs: Certs, client: Pair) -> StackOutputs:
    document = outputs_document(origin_certificate=certs.origin.pem) | {
        "origin_pull_client": {"certificate": client.pem, "private_key": client.key.read_text()}
    }
    return parse_outputs("staging", document, show_secrets=True)


def test_origin_mode_presents_the_origin_pull_client_certificate(certs: Certs) -> None:
    # The origin requires a client certificate from the stack's origin-pull CA (issue 12): the
    # probe presents the one Cloudflare presents (output origin_pull_client).
    with LocalHttps(certs.origin, _all(), client_ca=certs.ca.cert) as server:
        resolve = {host: ("127.0.0.1", server.port) for host in hostnames()}
        with_client = check_health(_with_origin_pull_client(certs, certs.sibling), "origin", FAST, resolve)
        without = check_health(_outputs(certs), "origin", FAST, resolve)
        foreign = check_health(_with_origin_pull_client(certs, certs.self_signed), "origin", FAST, resolve)
    assert with_client.healthy, format_table(with_client)
    assert not without.healthy
    assert not foreign.healthy  # a certificate from no trusted CA gets no further than without one
    assert all(r.status is None for r in (*without.results, *foreign.results))


def test_an_origin_pull_client_that_is_not_pem_is_refused_without_its_value(certs: Certs) -> None:
    document = outputs_document(origin_certificate=certs.origin.pem) | {
        "origin_pull_client": {"certificate": certs.origin.pem, "private_key": "hunter2-not-a-key"}
    }
    expected = r"origin_pull_client\.private_key.*expected a PEM string"
    with pytest.raises(OutputsError, match=expected) as raised:
        parse_outputs("staging", document, show_secrets=True)
    assert "hunter2" not in str(raised.value)


def test_origin_mode_needs_the_origin_outputs(certs: Certs) -> None:
    document = outputs_document(origin_ip=None) | {"origin_stack": "production-r1"}
    outputs = parse_outputs("staging", document)
    with pytest.raises(OutputsError, match=r"'origin_ip' of stack 'staging' is null.*'production-r1'"):
        check_health(outputs, "origin", FAST)


def test_origin_mode_connects_to_origin_ip_443_by_default(certs: Certs) -> None:
    probes = plan_probes(_outputs(certs), "origin")
    assert {p.connect for p in probes} == {("203.0.113.10", 443)}
    assert request_url(probes[0]) == f"https://203.0.113.10:443{probes[0].path}"
    # Cloudflare mode goes where DNS points.
    assert {p.connect for p in plan_probes(_outputs(certs), "edge")} == {None}


# --------------------------------------------------------------------------- through the edge


def test_edge_mode_verifies_against_the_trust_roots(certs: Certs, test_ca_trust: ssl.SSLContext) -> None:
    with _servers(certs.origin, _all()) as (_server, resolve):
        healthy = check_health(_outputs(certs), "edge", FAST, resolve, trust=test_ca_trust)
    with _servers(certs.self_signed, _all()) as (impostor, resolve):
        rejected = check_health(_outputs(certs), "edge", FAST, resolve, trust=test_ca_trust)
    assert healthy.healthy, format_table(healthy)
    assert not rejected.healthy
    assert all((r.error or "").startswith("TLS: certificate rejected") for r in rejected.results)
    assert impostor.total_requests == 0


# --------------------------------------------------------------------------- failures and retries


def test_slow_service_times_out_within_the_deadline(certs: Certs) -> None:
    site = hostnames()[0]
    behaviours = _all() | {site: Behaviour(delay=3.0)}
    policy = Policy(timeout=0.5, deadline=3.0, attempts=3, backoff=0.05)
    with _servers(certs.origin, behaviours) as (_server, resolve):
        report = check_health(_outputs(certs), "origin", policy, resolve)
    results = _by_service(report)
    assert not report.healthy
    assert results["site"].error == "timeout after 0.5 s"
    assert results["site"].attempts == 3  # timeouts are retried
    assert results["site"].status is None
    assert all(results[s].healthy for s in ("saas", "api"))
    assert "timeout after 0.5 s" in format_table(report)


def test_503_then_healthy_is_retried(certs: Certs) -> None:
    site = hostnames()[0]
    with _servers(certs.origin, _all() | {site: Behaviour(statuses=[503, 503, 200])}) as (server, resolve):
        report = check_health(_outputs(certs), "origin", FAST, resolve)
    assert report.healthy, format_table(report)
    assert _by_service(report)["site"].attempts == 3
    assert server.requests[site] == 3  # the server counted every attempt


def test_503_that_stays_is_unhealthy_after_all_attempts(certs: Certs) -> None:
    site = hostnames()[0]
    with _servers(certs.origin, _all() | {site: Behaviour(statuses=[503])}) as (server, resolve):
        report = check_health(_outputs(certs), "origin", FAST, resolve)
    result = _by_service(report)["site"]
    assert (result.healthy, result.status, result.error, result.attempts) == (False, 503, "HTTP 503", 3)
    assert server.requests[site] == FAST.attempts


def test_4xx_is_not_retried(certs: Certs) -> None:
    site = hostnames()[0]
    with _servers(certs.origin, _all() | {site: Behaviour(statuses=[404, 200])}) as (server, resolve):
        report = check_health(_outputs(certs), "origin", FAST, resolve)
    assert _by_service(report)["site"].error == "HTTP 404"
    assert server.requests[site] == 1


def test_connection_refused(certs: Certs) -> None:
    resolve = {host: ("127.0.0.1", free_port()) for host in hostnames()}
    report = check_health(_outputs(certs), "origin", FAST, resolve)
    assert not report.healthy
    assert {r.error for r in report.results} == {"connection refused"}
    assert {r.attempts for r in report.results} == {3}  # connection errors are retried


def test_probes_run_concurrently(certs: Certs) -> None:
    # Each request is held until all of them are in flight at once (bounded wait): probes made one
    # after the other would never get there, and the servers would see at most 1.
    gate = len(hostnames())
    with _servers(certs.origin, _all(gate=gate)) as (server, resolve):
        policy = Policy(timeout=8.0, deadline=10.0, attempts=1)
        report = check_health(_outputs(certs), "origin", policy, resolve)
    assert report.healthy, format_table(report)
    assert server.max_in_flight >= gate


def test_concurrent_across_separate_servers(certs: Certs) -> None:
    with ExitStack() as stack:
        servers = [stack.enter_context(LocalHttps(certs.origin, {h: Behaviour()})) for h in hostnames()]
        resolve = {h: ("127.0.0.1", s.port) for h, s in zip(hostnames(), servers, strict=True)}
        report = check_health(_outputs(certs), "origin", FAST, resolve)
    assert report.healthy
    assert [s.total_requests for s in servers] == [1, 1, 1]
    assert [r.connect for r in report.results] == [f"127.0.0.1:{s.port}" for s in servers]


# --------------------------------------------------------------------------- --wait


def test_wait_until_healthy(certs: Certs) -> None:
    site = hostnames()[0]
    turns_healthy = Behaviour(statuses=[503] * 5 + [200])  # healthy from the 6th request on
    with _servers(certs.origin, _all() | {site: turns_healthy}) as (server, resolve):
        report = check_health(_outputs(certs), "origin", replace(FAST, wait=True), resolve)
    assert report.healthy, format_table(report)
    assert report.rounds >= 2
    assert server.requests[site] == 6


def test_wait_gives_up_at_the_deadline(certs: Certs) -> None:
    site = hostnames()[0]
    policy = Policy(timeout=0.5, deadline=4.0, attempts=2, backoff=0.05, wait=True, poll_interval=0.2)
    with _servers(certs.origin, _all() | {site: Behaviour(statuses=[503])}) as (server, resolve):
        report = check_health(_outputs(certs), "origin", policy, resolve)
    result = _by_service(report)["site"]
    assert not report.healthy
    assert report.rounds >= 2
    assert result.error == "HTTP 503"  # the last real answer, not "deadline reached"
    assert server.requests[site] >= 2


# --------------------------------------------------------------------------- reports


def test_json_document_shape(certs: Certs) -> None:
    site = hostnames()[0]
    with _servers(certs.origin, _all() | {site: Behaviour(statuses=[500])}) as (_server, resolve):
        report = check_health(_outputs(certs), "origin", FAST, resolve)
    document = report_document(report)
    assert set(document) == {"stack", "mode", "healthy", "rounds", "probes", "backup", "certificate_warning",
                             "pitr", "drill"}  # fmt: skip
    assert (document["stack"], document["mode"], document["healthy"], document["backup"]) == (
        "staging", "origin", False, None)
    assert [p["service"] for p in document["probes"]] == list(APP_SERVICES)
    for probe in document["probes"]:
        assert set(probe) == {"service", "target", "url", "connect", "healthy", "status", "latency_ms",
                              "attempts", "error"}
        assert probe["target"] is None  # one droplet: no per-droplet targets (tests/ops/health/test_fleet.py)
    assert document["probes"][0]["status"] == 500


def test_table_lists_every_service(certs: Certs) -> None:
    with _servers(certs.origin, _all()) as (_server, resolve):
        table = format_table(check_health(_outputs(certs), "origin", FAST, resolve))
    lines = table.splitlines()
    assert lines[1].split() == ["SERVICE", "URL", "STATUS", "LATENCY_MS", "ERROR"]
    for service, host in zip(APP_SERVICES, hostnames(), strict=True):
        assert any(line.startswith(service) and host in line for line in lines)
    assert lines[-1] == f"healthy: {len(APP_SERVICES)}/{len(APP_SERVICES)} services"


# --------------------------------------------------------------------------- backup age seam


@pytest.mark.parametrize(
    ("age", "stale"), [(timedelta(hours=3), False), (BACKUP_STALE_AFTER + timedelta(minutes=1), True)]
)
def test_backup_age_is_reported_and_warned(certs: Certs, age: timedelta, stale: bool) -> None:
    taken = datetime.now(UTC) - age
    with _servers(certs.origin, _all()) as (_server, resolve):
        report = check_health(_outputs(certs), "origin", FAST, resolve, newest_backup=lambda: taken)
    assert report.backup is not None
    assert report.backup.stale is stale
    assert report.healthy  # a stale backup warns; it does not make the services unhealthy
    assert ("WARNING: newest backup" in format_table(report)) is stale
    assert report_document(report)["backup"]["stale"] is stale


def test_no_backup_at_all_warns(certs: Certs) -> None:
    with _servers(certs.origin, _all()) as (_server, resolve):
        report = check_health(_outputs(certs), "origin", FAST, resolve, newest_backup=lambda: None)
    assert "WARNING: newest backup unknown: no backup found" in format_table(report)


# --------------------------------------------------------------------------- pure pieces


def test_backoff_doubles():
    assert [backoff_delay(Policy(), n) for n in range(3)] == [0.5, 1.0, 2.0]


def test_parse_resolve():
    assert parse_resolve("a.example.com=127.0.0.1:8443, B.example.com=[::1]:9443") == {
        "a.example.com": ("127.0.0.1", 8443), "b.example.com": ("::1", 9443)}
    assert parse_resolve("") == {}
    for bad in ("a.example.com", "a.example.com=127.0.0.1", "a=localhost:1", "a=127.0.0.1:0", "=1.2.3.4:5"):
        with pytest.raises(ValueError, match="host=IP:PORT"):
            parse_resolve(bad)


def test_request_url_brackets_ipv6(certs: Certs) -> None:
    probe = plan_probes(_outputs(certs), "edge", {hostnames()[0]: ("::1", 8443)})[0]
    assert request_url(probe) == f"https://[::1]:8443{probe.path}"


def test_keep_informative():
    old = ProbeResult("site", "u", None, False, 503, 1.0, 3, "HTTP 503")
    cut = ProbeResult("site", "u", None, False, None, None, 0, "deadline reached")
    new = ProbeResult("site", "u", None, True, 200, 1.0, 1, None)
    assert keep_informative([old], [cut]) == (old,)
    assert keep_informative([old], [new]) == (new,)


def test_leaves_the_threads_event_loop_usable(certs: Certs) -> None:
    # Pulumi's mock engine (plan, tests) calls asyncio.get_event_loop() later in the same process;
    # asyncio.run would have unset the loop and broken it.
    with _servers(certs.origin, _all()) as (_server, resolve):
        check_health(_outputs(certs), "origin", FAST, resolve)
    assert asyncio.get_event_loop_policy().get_event_loop() is not None


def test_a_hanging_resolver_cannot_hold_health_past_its_deadline(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15, 9: DNS is inside the deadline. The resolver here never answers until the test
    lets it go -- after check_health has returned, so it cannot have waited for it."""
    released = threading.Event()
    calls: list[str] = []

    def hanging(host: str, *_args: Any, **_kwargs: Any) -> list[tuple[Any, ...]]:
        calls.append(host)
        released.wait(60)
        return []

    monkeypatch.setattr(probes, "RESOLVER", hanging)
    policy = Policy(timeout=0.5, deadline=1.5, attempts=2, backoff=0.05)
    try:
        report = check_health(_outputs(certs), "edge", policy)  # no resolve override: real DNS path
        returned_while_hanging = not released.is_set()
    finally:
        released.set()
    assert returned_while_hanging
    assert not report.healthy
    assert set(calls) == {t.host for t in _outputs(certs).health}
    assert all((r.error or "").startswith("DNS: no answer for ") for r in report.results)


def test_edge_mode_resolves_itself_and_keeps_host_and_sni(
    certs: Certs, test_ca_trust: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _servers(certs.origin, _all()) as (server, _resolve):
        def local(host: str, port: int, *_args: Any, **_kwargs: Any) -> list[tuple[Any, ...]]:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", server.port))]

        monkeypatch.setattr(probes, "RESOLVER", local)
        report = check_health(_outputs(certs), "edge", FAST, trust=test_ca_trust)
    assert report.healthy, format_table(report)
    assert all(r.connect is None for r in report.results)  # shown as going where DNS points
