"""A real nginx serving the rendered staging config on loopback, in front of three echo backends.

What a request through Cloudflare meets on the droplet, minus Docker: TLS with SNI, routing by
hostname, refusals, redirects, headers, client-IP trust, body limit and the upstream switch.
Local nginx may be older than the droplet's: see helpers.adapt_for_local_nginx (the only rewrite).
"""

from __future__ import annotations

import http.client
import socket
import ssl

import pytest

from bankflow_infra.contract.upstreams import CANDIDATE_SUFFIX, CANDIDATE_UPSTREAMS_FILE, render_upstreams
from tests.render.conftest import UNTRUSTED, StartNginx, with_body_limit
from tests.render.helpers import (
    Response,
    RunningNginx,
    https,
    load_settings,
    plain_http,
    start_backend,
    wait_for,
)

STAGING = load_settings("staging")
SECURITY_HEADERS = (
    "strict-transport-security",
    "x-content-type-options",
    "x-frame-options",
    "content-security-policy",
    "referrer-policy",
    "permissions-policy",
    "cross-origin-opener-policy",
)


def _get(live: RunningNginx, hostname: str, path: str = "/", **kwargs: object) -> Response:
    return https(live.params.https_port, live.cert_path, hostname, path, **kwargs)  # type: ignore[arg-type]


def _assert_security_headers(response: Response) -> None:
    for name in SECURITY_HEADERS:
        assert name in response.headers, f"{name} missing on a {response.status}"
    assert response.headers["strict-transport-security"] == (
        f"max-age={STAGING.nginx.hsts_max_age}; includeSubDomains"
    )
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert "x-xss-protection" not in response.headers
    assert response.headers.get("server") == "nginx"  # server_tokens off: no version
    assert "x-powered-by" not in response.headers  # the backend sends one; nginx hides it


@pytest.mark.parametrize(
    ("service", "hostname"), [(s, h) for s in ("site", "saas", "api") for h in STAGING.hostnames[s]]
)
def test_each_hostname_reaches_its_service(live: RunningNginx, service: str, hostname: str) -> None:
    response = _get(live, hostname, "/some/path?q=1")
    assert response.status == 200
    echoed = response.json()
    assert echoed["service"] == service
    assert echoed["path"] == "/some/path?q=1"
    sent = echoed["headers"]
    assert sent["host"] == hostname
    assert sent["x-forwarded-proto"] == "https"
    assert sent["x-request-id"] == response.headers["x-request-id"]  # one id from log to client
    assert sent.get("connection", "") != "close"  # HTTP/1.1 keepalive to the upstream


@pytest.mark.parametrize("service", ["site", "saas", "api"])
def test_app_health_goes_to_the_app_and_nginx_answers_its_own(live: RunningNginx, service: str) -> None:
    response = _get(live, STAGING.hostnames[service][0], "/health")
    assert response.status == 200
    assert response.json() == {**response.json(), "service": service, "path": "/health"}
    own = plain_http(live.params.health_port, "localhost", "/health")
    assert (own.status, own.body) == (200, b"ok\n")


def test_unknown_sni_is_refused_in_the_handshake(live: RunningNginx) -> None:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # so only the server's refusal can fail the handshake
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        https(live.params.https_port, live.cert_path, "unknown.example.com", context=context)


def test_unknown_host_is_refused(live: RunningNginx) -> None:
    known_sni = STAGING.hostnames["api"][0]
    response = _get(live, known_sni, host="evil.example.com")
    assert response.status == 421
    _assert_security_headers(response)
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        plain_http(live.params.http_port, "evil.example.com", "/")  # 444: closed, no answer


def test_http_redirects_to_https_keeping_path_and_query(live: RunningNginx) -> None:
    hostname = STAGING.hostnames["saas"][0]
    response = plain_http(live.params.http_port, hostname, "/a/b%20c?x=1&y=two")
    assert response.status == 301
    assert response.headers["location"] == f"https://{hostname}:{live.params.https_port}/a/b%20c?x=1&y=two"


@pytest.mark.parametrize(("path", "status"), [("/", 200), ("/missing", 404), ("/close", 502)])
def test_security_headers_on_every_response(live: RunningNginx, path: str, status: int) -> None:
    response = _get(live, STAGING.hostnames["api"][0], path)
    assert response.status == status
    _assert_security_headers(response)


def test_over_limit_upload_gets_413(live: RunningNginx) -> None:
    hostname = STAGING.hostnames["api"][0]
    small = _get(live, hostname, "/upload", method="POST", body=b"x" * 512)
    assert (small.status, small.json()["body_length"]) == (200, 512)
    big = _get(live, hostname, "/upload", method="POST", body=b"x" * 4096)  # limit is 1k in this instance
    assert big.status == 413
    _assert_security_headers(big)


def test_client_ip_from_cloudflare_header_when_peer_is_trusted(live: RunningNginx) -> None:
    # The live instance trusts 127.0.0.1/32 as a "Cloudflare" range.
    response = _get(
        live,
        STAGING.hostnames["api"][0],
        "/",
        headers={"CF-Connecting-IP": "198.51.100.23", "X-Forwarded-For": "6.6.6.6"},
    )
    sent = response.json()["headers"]
    assert sent["x-real-ip"] == "198.51.100.23"
    assert sent["x-forwarded-for"] == "198.51.100.23"  # the client's own X-Forwarded-For is dropped
    assert sent["cf-connecting-ip"] == "198.51.100.23"


def test_client_ip_header_ignored_when_peer_is_not_trusted(start_live_nginx: StartNginx) -> None:
    untrusted = start_live_nginx(STAGING, UNTRUSTED)  # loopback is not a Cloudflare range here
    response = _get(
        untrusted,
        STAGING.hostnames["api"][0],
        "/",
        headers={"CF-Connecting-IP": "198.51.100.23", "X-Forwarded-For": "6.6.6.6"},
    )
    sent = response.json()["headers"]
    assert sent["x-real-ip"] == "127.0.0.1"
    assert sent["x-forwarded-for"] == "127.0.0.1"
    assert sent["cf-connecting-ip"] == "127.0.0.1"  # a forged header never reaches the app


def test_http2_is_offered(live: RunningNginx) -> None:
    context = ssl.create_default_context(cafile=str(live.cert_path))
    context.set_alpn_protocols(["h2", "http/1.1"])
    hostname = STAGING.hostnames["site"][0]
    with (
        socket.create_connection(("127.0.0.1", live.params.https_port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=hostname) as tls,
    ):
        assert tls.selected_alpn_protocol() == "h2"


@pytest.mark.parametrize(
    ("cipher", "accepted"),
    [
        ("ECDHE-RSA-AES128-GCM-SHA256", True),
        ("ECDHE-RSA-CHACHA20-POLY1305", True),
        ("AES128-GCM-SHA256", False),  # static RSA key exchange: no forward secrecy
        ("DHE-RSA-AES128-GCM-SHA256", False),  # DHE: not offered
        ("ECDHE-RSA-AES128-SHA", False),  # CBC
    ],
)
def test_tls12_cipher_policy(live: RunningNginx, cipher: str, accepted: bool) -> None:
    context = ssl.create_default_context(cafile=str(live.cert_path))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(f"{cipher}:@SECLEVEL=0")  # the client offers only this suite
    hostname = STAGING.hostnames["site"][0]
    with socket.create_connection(("127.0.0.1", live.params.https_port), timeout=10) as raw:
        if accepted:
            with context.wrap_socket(raw, server_hostname=hostname) as tls:
                assert tls.cipher()[0] == cipher
        else:
            with pytest.raises(ssl.SSLError):
                context.wrap_socket(raw, server_hostname=hostname)


def test_traffic_moves_after_the_upstream_include_is_rewritten(start_live_nginx: StartNginx) -> None:
    running = start_live_nginx(with_body_limit(STAGING, "1m"), UNTRUSTED)
    hostname = STAGING.hostnames["api"][0]
    assert _get(running, hostname).json()["service"] == "api"
    new_api = start_backend("api-next-release")
    try:
        addresses = {f"bankflow_{name}": backend.address for name, backend in running.backends.items()}
        addresses["bankflow_api"] = new_api.address
        upstreams = running.conf.parent / "upstreams.conf"
        upstreams.write_text(render_upstreams(addresses, "next00000001"))  # what the agent writes
        running.reload()
        assert wait_for(lambda: _get(running, hostname).json()["service"] == "api-next-release")
        assert _get(running, STAGING.hostnames["site"][0]).json()["service"] == "site"  # others unchanged
    finally:
        new_api.stop()


def _service_at(port: int, running: RunningNginx, hostname: str) -> str:
    response = https(port, running.cert_path, hostname)
    return str(response.json()["service"]) if response.status == 200 else f"HTTP {response.status}"


def test_verify_listener_reaches_only_the_candidate_upstreams(start_live_nginx: StartNginx) -> None:
    running = start_live_nginx(with_body_limit(STAGING, "1m"), UNTRUSTED)
    hostname = STAGING.hostnames["api"][0]
    verify = running.params.verify_port
    candidate = start_backend("api-candidate")
    try:
        addresses = {f"bankflow_{name}": backend.address for name, backend in running.backends.items()}
        addresses["bankflow_api"] = candidate.address
        (running.conf.parent / CANDIDATE_UPSTREAMS_FILE).write_text(
            render_upstreams(addresses, "next00000001", suffix=CANDIDATE_SUFFIX)  # what the agent writes
        )
        running.reload()
        # the verify listener serves the candidate with the same TLS, Host routing and headers ...
        assert wait_for(lambda: _service_at(verify, running, hostname) == "api-candidate")
        through_verify = https(verify, running.cert_path, hostname)
        _assert_security_headers(through_verify)
        # ... while the public listener still serves the release it served
        assert _get(running, hostname).json()["service"] == "api"
    finally:
        candidate.stop()
