"""What a client can make nginx believe, hold or log (issue 12, items 4 and 8), on a real nginx.

The rendered staging config in front of echo backends that return every header they received.
``TRUSTED`` counts 127.0.0.1 as a Cloudflare address (the test plays Cloudflare), ``UNTRUSTED``
does not (the test plays a stranger who reached the origin). Limits are shrunk through
NginxParams.limits so that a cut-off shows within seconds; the droplet's values are checked in
test_nginx_limits_text.py.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from bankflow_infra import catalog
from bankflow_infra.render.model import ClientLimits
from bankflow_infra.render.nginx_client import SET_HEADERS, STRIPPED_HEADERS
from bankflow_infra.render.nginx_headers import STRICT_CSP
from tests.render.conftest import TRUSTED, UNTRUSTED, StartNginx
from tests.render.helpers import RunningNginx, _SNIConnection, https, load_settings, tls_context, wait_for
from tests.render.perimeter import log_lines, open_tls, read_status, request_head, trickle_until_closed

STAGING = load_settings("staging")
SITE, API = STAGING.hostnames["site"][0], STAGING.hostnames["api"][0]
PORT_HEADER = catalog.CLIENT_PORT_HEADER.lower()
VISITOR = "198.51.100.23"
RAY = "8f1e2d3c4b5a6978-GRU"
# What a client could try to speak for nginx or Cloudflare with: every header nginx sets or strips,
# with a forged value, and underscore spellings some frameworks read as the dashed name.
FORGED = {
    **{name: "6.6.6.6" for name, _ in SET_HEADERS if name != "Host"},
    **{name: "/admin" for name in STRIPPED_HEADERS},
    "Forwarded": "for=6.6.6.6;host=evil.example;proto=http",
    "X_Forwarded_For": "6.6.6.6",
    "X_Real_IP": "6.6.6.6",
}


@pytest.fixture(scope="module")
def nginx_pair(start_module_nginx: StartNginx) -> tuple[RunningNginx, RunningNginx]:
    return start_module_nginx(STAGING, TRUSTED), start_module_nginx(STAGING, UNTRUSTED)


def _echo(running: RunningNginx, hostname: str, headers: dict[str, str]) -> tuple[dict[str, str], int, Any]:
    """(headers the app received, this client's source port, the response)."""
    conn = _SNIConnection(running.params.https_port, hostname, tls_context(running.cert_path))
    try:
        conn.connect()
        source_port = conn.sock.getsockname()[1]
        conn.request("GET", "/some/path?token=secret", headers={"Host": hostname, **headers})
        answer = conn.getresponse()
        body = answer.read()
        assert answer.status == 200, body
        return dict(json.loads(body)["headers"]), source_port, answer
    finally:
        conn.close()


def test_from_cloudflare_the_app_gets_only_nginx_values(
    nginx_pair: tuple[RunningNginx, RunningNginx],
) -> None:
    trusted, _ = nginx_pair
    sent = {**FORGED, "CF-Connecting-IP": VISITOR, catalog.CLIENT_PORT_HEADER: "54321", "CF-Ray": RAY,
            "CF-Visitor": '{"scheme":"https"}', "CF-IPCountry": "BR"}  # fmt: skip
    got, _, _ = _echo(trusted, API, sent)
    assert (got["x-real-ip"], got["x-forwarded-for"], got["cf-connecting-ip"]) == (VISITOR,) * 3
    assert (got["host"], got["x-forwarded-host"], got["x-forwarded-proto"]) == (API, API, "https")
    assert (got[PORT_HEADER], got["cf-ray"], got["cf-visitor"], got["cf-ipcountry"]) == (
        "54321", RAY, '{"scheme":"https"}', "BR")  # fmt: skip
    for name in (*STRIPPED_HEADERS, "X_Forwarded_For", "X_Real_IP"):
        assert name.lower() not in got, f"{name} reached the app"
    assert "6.6.6.6" not in repr(got)
    assert "/admin" not in repr(got)


def test_from_anyone_else_cloudflares_headers_never_reach_the_app(
    nginx_pair: tuple[RunningNginx, RunningNginx],
) -> None:
    _, untrusted = nginx_pair
    sent = {**FORGED, "CF-Connecting-IP": VISITOR, catalog.CLIENT_PORT_HEADER: "54321", "CF-Ray": RAY,
            "CF-Visitor": '{"scheme":"http"}', "CF-IPCountry": "T1"}  # fmt: skip
    got, source_port, _ = _echo(untrusted, API, sent)
    assert (got["x-real-ip"], got["x-forwarded-for"], got["cf-connecting-ip"]) == ("127.0.0.1",) * 3
    assert got[PORT_HEADER] == str(source_port)  # the TCP peer is the client: its own port
    for name in ("cf-ray", "cf-visitor", "cf-ipcountry", *(n.lower() for n in STRIPPED_HEADERS)):
        assert name not in got, f"{name} reached the app"
    assert "6.6.6.6" not in repr(got)
    assert "/admin" not in repr(got)
    assert VISITOR not in repr(got)


def test_a_port_header_that_is_not_a_port_is_dropped(nginx_pair: tuple[RunningNginx, RunningNginx]) -> None:
    trusted, _ = nginx_pair
    got, _, _ = _echo(trusted, API, {catalog.CLIENT_PORT_HEADER: "1; drop table", "CF-Ray": "a b"})
    assert PORT_HEADER not in got
    assert "cf-ray" not in got


def _line_of(running: RunningNginx, request_id: str) -> dict[str, Any]:
    """The access log line of one request (written after the answer: polled, bounded)."""

    def matching() -> list[dict[str, Any]]:
        return [line for line in log_lines(running) if line["request_id"] == request_id]

    assert wait_for(lambda: bool(matching()))
    return matching()[0]


ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)$")


def test_the_access_log_line_from_cloudflare(nginx_pair: tuple[RunningNginx, RunningNginx]) -> None:
    trusted, _ = nginx_pair
    headers = {"CF-Connecting-IP": VISITOR, catalog.CLIENT_PORT_HEADER: "54321", "CF-Ray": RAY}
    _, _, answer = _echo(trusted, API, headers)
    line = _line_of(trusted, answer.getheader("X-Request-ID"))
    assert ISO_MS.match(line["time"]), line["time"]
    assert (line["client_ip"], line["client_port"], line["cf_ray"]) == (VISITOR, "54321", RAY)
    assert (line["host"], line["method"], line["uri"], line["status"]) == (API, "GET", "/some/path", 200)
    assert line["upstream"] == trusted.backends["api"].address
    assert isinstance(line["bytes"], int)
    assert line["bytes"] > 0
    assert isinstance(line["request_time"], (int, float))
    assert "secret" not in repr(line)  # no query string in the log
    assert line["peer"] == "127.0.0.1"


def test_the_access_log_line_from_anyone_else(nginx_pair: tuple[RunningNginx, RunningNginx]) -> None:
    _, untrusted = nginx_pair
    _, source_port, answer = _echo(untrusted, SITE, {catalog.CLIENT_PORT_HEADER: "54321", "CF-Ray": RAY})
    line = _line_of(untrusted, answer.getheader("X-Request-ID"))
    assert (line["client_ip"], line["client_port"], line["cf_ray"]) == ("127.0.0.1", str(source_port), "")


def test_csp_per_service(nginx_pair: tuple[RunningNginx, RunningNginx]) -> None:
    trusted, _ = nginx_pair
    site = https(trusted.params.https_port, trusted.cert_path, SITE).headers["content-security-policy"]
    api = https(trusted.params.https_port, trusted.cert_path, API).headers["content-security-policy"]
    assert api == STRICT_CSP
    for directive in ("base-uri 'self'", "object-src 'none'", "frame-ancestors 'none'",
                      f"form-action 'self' https://{API}", "upgrade-insecure-requests"):  # fmt: skip
        assert directive in site
    misdirected = https(trusted.params.https_port, trusted.cert_path, SITE, host="evil.example.com")
    assert misdirected.headers["content-security-policy"] == STRICT_CSP


SLOW = ClientLimits(header_timeout_s=2, body_timeout_s=1)


def test_a_trickled_body_is_cut_off(start_live_nginx: StartNginx) -> None:
    running = start_live_nginx(STAGING, TRUSTED, limits=SLOW)
    with open_tls(running, API) as sock:
        sock.sendall(request_head(API, "/upload", length=100))
        took = trickle_until_closed(sock, b"x" * 100, interval=SLOW.body_timeout_s + 2, limit=30)
    assert took < SLOW.body_timeout_s + 2  # cut before the next byte was due
    with open_tls(running, API) as sock:  # a pause shorter than the bound is not cut
        sock.sendall(request_head(API, "/upload", length=3))
        for byte in b"abc":
            time.sleep(SLOW.body_timeout_s / 3)
            sock.sendall(bytes([byte]))
        assert read_status(sock) == 200


def test_a_trickled_header_is_cut_off_within_its_total_bound(start_live_nginx: StartNginx) -> None:
    running = start_live_nginx(STAGING, TRUSTED, limits=SLOW)
    with open_tls(running, API) as sock:
        # one byte every 0.25 s: each pause far below the bound, yet the header never completes
        took = trickle_until_closed(sock, b"GET / HTTP/1.1\r\nHost: " + b"a" * 200, interval=0.25, limit=30)
    assert SLOW.header_timeout_s - 0.5 < took < SLOW.header_timeout_s + 3


def test_requests_in_flight_beyond_the_per_ip_limit_are_refused(start_live_nginx: StartNginx) -> None:
    running = start_live_nginx(STAGING, TRUSTED, limits=ClientLimits(body_timeout_s=30, conn_per_ip=2))
    port, cert = running.params.https_port, running.cert_path
    held = [open_tls(running, API) for _ in range(2)]
    try:
        for sock in held:  # two uploads from one visitor, waiting for their bodies
            sock.sendall(request_head(API, "/upload", {"CF-Connecting-IP": VISITOR}, length=10))
        assert wait_for(lambda: https(port, cert, API, headers={"CF-Connecting-IP": VISITOR}).status == 429)
        assert "limiting connections by zone" in running.error_log()
        # the limit is per visitor (after realip), not per Cloudflare address
        assert https(port, cert, API, headers={"CF-Connecting-IP": "198.51.100.99"}).status == 200
    finally:
        for sock in held:
            sock.close()
    assert wait_for(lambda: https(port, cert, API, headers={"CF-Connecting-IP": VISITOR}).status == 200)


def test_requests_beyond_the_per_ip_rate_are_refused(start_live_nginx: StartNginx) -> None:
    running = start_live_nginx(STAGING, TRUSTED, limits=ClientLimits(rate_per_ip=1, burst_per_ip=3))
    port, cert = running.params.https_port, running.cert_path
    statuses = [https(port, cert, API, headers={"CF-Connecting-IP": VISITOR}).status for _ in range(10)]
    assert statuses[0] == 200
    assert 429 in statuses
    assert statuses.count(200) <= 5  # the burst plus what one second refills
    assert https(port, cert, API, headers={"CF-Connecting-IP": "198.51.100.99"}).status == 200
