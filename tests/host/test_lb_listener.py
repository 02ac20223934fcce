"""One load-balanced droplet for real (issue 13): the rendered nginx (staging with server.count 3)
run by the stand-in host (tests/host/fleet.py), the agent's drain/undrain, and who nginx believes
the visitor is when connections arrive with the PROXY protocol header, as DigitalOcean's load
balancer sends them.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from bankflow_infra.contract.fleet import LB_HEALTH_INCLUDE, parse_lb_health
from bankflow_infra.host.lb_health import probe
from tests.host.fixtures import make_host
from tests.host.fleet import Droplet, fleet_settings, make_droplet, receive, render_payload
from tests.render import helpers
from tests.support.tools import require_tool

CLOUDFLARE_EDGE = "173.245.48.7"  # inside helpers.CLOUDFLARE's 173.245.48.0/20
ELSEWHERE = "198.51.100.9"  # documentation range: not Cloudflare
VISITOR = "203.0.113.50"


@pytest.fixture
def droplet(tmp_path: Path) -> Iterator[Droplet]:
    nginx, openssl = require_tool("nginx"), require_tool("openssl")
    one = make_droplet(tmp_path, 1, nginx)
    cert = helpers.make_cert(openssl, tmp_path / "cert", fleet_settings().all_hostnames)
    try:
        code, out, err = receive(one, render_payload(one, "v1", cert), deploy=True)
        assert code == 0, out + err
        yield one
    finally:
        one.host.runtime.shutdown()


def https_get_with_proxy(droplet: Droplet, source: str, headers: dict[str, str]) -> int:
    """GET / on the public 443 listener, the connection opened by a PROXY v1 header naming
    ``source`` (the load balancer's peer), then TLS with the public hostname as SNI."""
    hostname = fleet_settings().all_hostnames[0]
    raw = socket.create_connection(("127.0.0.1", droplet.params.https_port), timeout=10)
    raw.sendall(f"PROXY TCP4 {source} 10.10.0.5 40123 443\r\n".encode())
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # a self-signed test cert
    with context.wrap_socket(raw, server_hostname=hostname) as conn:
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        conn.sendall(f"GET / HTTP/1.1\r\nHost: {hostname}\r\n{extra}Connection: close\r\n\r\n".encode())
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def last_access(droplet: Droplet) -> dict[str, object]:
    lines = (droplet.host.run / "access.log").read_text().splitlines()
    entry: dict[str, object] = json.loads(lines[-1])
    return entry


def test_cf_connecting_ip_is_believed_only_when_the_proxy_peer_is_cloudflare(droplet: Droplet) -> None:
    claim = {"CF-Connecting-IP": VISITOR, "CF-Ray": "8f1e2d3c4b5a6978-GRU"}
    assert https_get_with_proxy(droplet, CLOUDFLARE_EDGE, claim) == 200
    entry = last_access(droplet)
    assert (entry["client_ip"], entry["peer"], entry["cf_ray"]) == (VISITOR, CLOUDFLARE_EDGE, claim["CF-Ray"])

    assert https_get_with_proxy(droplet, ELSEWHERE, claim) == 200
    entry = last_access(droplet)
    assert (entry["client_ip"], entry["peer"], entry["cf_ray"]) == (ELSEWHERE, ELSEWHERE, "")


def test_a_connection_without_the_proxy_header_is_not_served(droplet: Droplet) -> None:
    hostname = fleet_settings().all_hostnames[0]
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", droplet.params.https_port), timeout=10)
    request = f"GET / HTTP/1.1\r\nHost: {hostname}\r\nConnection: close\r\n\r\n".encode()

    def plain_tls_request() -> bytes:
        with context.wrap_socket(raw, server_hostname=hostname) as conn:
            conn.sendall(request)
            return conn.recv(65536)

    # nginx reads the TLS ClientHello as a broken PROXY header and closes the connection
    with pytest.raises((ssl.SSLError, ConnectionError)):
        plain_tls_request()


def test_drain_fails_the_health_check_and_undrain_passes_it_again(droplet: Droplet) -> None:
    host = droplet.host
    include = host.live / LB_HEALTH_INCLUDE
    assert probe(droplet.lb_url) == 200
    assert parse_lb_health(include.read_text()) is False

    code, out, err = host.agent("drain", "--url", droplet.lb_url)
    assert code == 0, out + err
    assert probe(droplet.lb_url) == 503
    assert parse_lb_health(include.read_text()) is True
    code, out, _ = host.agent("drain", "--url", droplet.lb_url)  # idempotent: says so, changes nothing
    assert code == 0
    assert "already draining" in out
    code, out, _ = host.agent("lb-health", "--url", droplet.lb_url)
    assert code == 1
    assert "draining" in out
    assert "503" in out

    code, out, err = host.agent("undrain", "--url", droplet.lb_url)
    assert code == 0, out + err
    assert probe(droplet.lb_url) == 200
    code, out, _ = host.agent("lb-health", "--url", droplet.lb_url)
    assert code == 0
    assert "serving" in out
    results = [(e["action"], e["result"]) for e in host.audit() if e.get("phase") == "end"]
    assert results[-3:] == [("drain", "ok"), ("drain", "noop"), ("undrain", "ok")]


def test_a_drained_droplet_stays_drained_through_a_switch(droplet: Droplet, tmp_path: Path) -> None:
    host = droplet.host
    cert = helpers.OriginCert(
        (tmp_path / "cert" / "origin.pem").read_text(),
        (tmp_path / "cert" / "origin.key").read_text(),
        tmp_path / "cert" / "origin.pem",
    )
    assert host.agent("drain", "--url", droplet.lb_url)[0] == 0
    code, out, err = receive(droplet, render_payload(droplet, "v2", cert))
    assert code == 0, out + err
    code, out, err = host.agent("switch-staged", droplet.releases["v2"])
    assert code == 0, out + err
    assert "migrate" not in out  # the roll ran the migrations once, before it began
    assert host.current() == droplet.releases["v2"]
    assert probe(droplet.lb_url) == 503  # the bundle's "serving" include did not replace the live one


def test_drain_is_refused_on_a_single_droplet_host(tmp_path: Path) -> None:
    host = make_host(tmp_path, require_tool("nginx"))
    try:
        code, out, err = host.deploy(host.bundle("v1"))
        assert code == 0, out + err
        code, _, err = host.agent("drain")
        assert code == 2
        assert "no load balancer health listener" in err
        assert LB_HEALTH_INCLUDE in err
    finally:
        host.runtime.shutdown()
