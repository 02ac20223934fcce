"""`health --origin` on a load-balanced stack: every droplet and the load balancer, for real.

A real nginx on 127.0.0.1 plays the fleet: three "droplets" whose 443 listeners have
``proxy_protocol`` on and require the origin-pull client certificate (as the rendered nginx does
behind DigitalOcean's load balancer, issue 13), and a "load balancer" listener with plain TLS (the
real one passes TCP through to a droplet; here it answers itself). The outputs' public addresses
are redirected to those ports by ``resolve``, keyed by IP, the way BANKFLOW_HEALTH_RESOLVE does.
nginx's access log records what each listener saw: the PROXY line's address, the SNI, the status.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from bankflow_infra.contract.outputs import StackOutputs, parse_outputs
from bankflow_infra.ops.health import check_health, format_table, report_document
from bankflow_infra.ops.health_fleet import LOAD_BALANCER_TARGET, is_fleet
from bankflow_infra.ops.health_proxy import proxy_v1_header
from bankflow_infra.ops.probes import Policy, pinned_context, plan_probes, run_async, run_rounds
from bankflow_infra.settings import APP_SERVICES
from tests.support.https import Certs, hostnames
from tests.support.outputs import HOST_PUBLIC_KEY, outputs_document
from tests.support.ports import free_port
from tests.support.tools import require_tool

FAST = Policy(timeout=2.0, deadline=8.0, attempts=2, backoff=0.05, poll_interval=0.1)
DROPLET_IPS = ("203.0.113.11", "203.0.113.12", "203.0.113.13")
LB_IP = "203.0.113.50"


def fleet_outputs(certs: Certs) -> StackOutputs:
    document = outputs_document(origin_certificate=certs.origin.pem, origin_ip=DROPLET_IPS[0]) | {
        "origin_pull_client": {"certificate": certs.sibling.pem,
                               "private_key": certs.sibling.key.read_text()},
        "origin_ips": [
            {"name": "bankflow-staging-server" + (f"-{n}" if n > 1 else ""), "ipv4": ip, "ipv6": None,
             "host_public_key": HOST_PUBLIC_KEY}
            for n, ip in enumerate(DROPLET_IPS, start=1)
        ],
        "load_balancer_ip": LB_IP,
    }  # fmt: skip
    return parse_outputs("staging", document, show_secrets=True)


@dataclass
class Fleet:
    ports: dict[str, int]  # IP in the outputs -> the local listener standing in for it
    log: Path

    @property
    def resolve(self) -> dict[str, tuple[str, int]]:
        return {ip: ("127.0.0.1", port) for ip, port in self.ports.items()}

    def seen(self) -> list[tuple[int, str, str, int]]:
        """(port, PROXY address or "-" without one, SNI, status) per request."""
        rows = [line.split() for line in self.log.read_text().splitlines() if line.strip()]
        return [(int(port), proxy, sni, int(status)) for port, proxy, sni, status in rows]


def _server(listen: str, certs: Certs, status: int) -> str:
    return f"""
    server {{
        listen {listen};
        ssl_certificate {certs.origin.cert}; ssl_certificate_key {certs.origin.key};
        ssl_client_certificate {certs.ca.cert}; ssl_verify_client on;
        location / {{ return {status} "answer\\n"; }}
    }}"""


@pytest.fixture
def start_fleet(tmp_path: Path, certs: Certs) -> Iterator[object]:
    nginx = require_tool("nginx")
    started: list[Path] = []

    def start(droplet_status: tuple[int, int, int] = (200, 200, 200)) -> Fleet:
        directory = tmp_path / f"nginx-{len(started)}"
        (directory / "tmp").mkdir(parents=True)
        ports = {ip: free_port() for ip in (*DROPLET_IPS, LB_IP)}
        servers = [_server(f"127.0.0.1:{ports[ip]} ssl proxy_protocol", certs, status)
                   for ip, status in zip(DROPLET_IPS, droplet_status, strict=True)]
        servers.append(_server(f"127.0.0.1:{ports[LB_IP]} ssl", certs, 200))
        temp = " ".join(f"{kind}_temp_path {directory}/tmp/{kind};" for kind in
                        ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        (directory / "nginx.conf").write_text(f"""
worker_processes 1; pid {directory}/nginx.pid; error_log {directory}/error.log;
events {{ worker_connections 64; }}
http {{
    {temp}
    log_format fleet '$server_port $proxy_protocol_addr $ssl_server_name $status';
    access_log {directory}/access.log fleet;
    {"".join(servers)}
}}
""")  # fmt: skip
        subprocess.run([nginx, "-p", str(directory), "-c", str(directory / "nginx.conf")],
                       check=True, capture_output=True, timeout=30)
        started.append(directory)
        for _ in range(100):  # bounded: until the pid file says nginx is up
            if (directory / "nginx.pid").exists():
                break
            time.sleep(0.05)
        return Fleet(ports, directory / "access.log")

    yield start
    for directory in started:
        subprocess.run([nginx, "-p", str(directory), "-c", str(directory / "nginx.conf"), "-s", "stop"],
                       capture_output=True, timeout=30)


def test_a_load_balanced_stack_is_probed_at_every_droplet_and_the_load_balancer(
    certs: Certs, start_fleet: object
) -> None:
    fleet = start_fleet()  # type: ignore[operator]
    report = check_health(fleet_outputs(certs), "origin", FAST, fleet.resolve)
    assert report.healthy, format_table(report)
    targets = ["bankflow-staging-server", "bankflow-staging-server-2", "bankflow-staging-server-3",
               LOAD_BALANCER_TARGET]
    assert [(r.target, r.service) for r in report.results] == [(t, s) for t in targets for s in APP_SERVICES]
    seen = fleet.seen()
    for ip in DROPLET_IPS:  # each droplet got every hostname, each after a PROXY line naming the prober
        assert sorted((proxy, sni) for port, proxy, sni, _ in seen if port == fleet.ports[ip]) == sorted(
            ("127.0.0.1", host) for host in hostnames())
    # the load balancer gets plain TLS, as Cloudflare sends it (the balancer adds the PROXY line)
    assert sorted((proxy, sni) for port, proxy, sni, _ in seen if port == fleet.ports[LB_IP]) == sorted(
        ("-", host) for host in hostnames())
    table = format_table(report)
    assert table.splitlines()[1].split() == ["SERVICE", "TARGET", "URL", "STATUS", "LATENCY_MS", "ERROR"]
    total = 4 * len(APP_SERVICES)
    assert table.splitlines()[-1] == f"healthy: {total}/{total} probes on 3 droplets and the load balancer"
    assert {p["target"] for p in report_document(report)["probes"]} == set(targets)


def test_a_draining_droplet_is_named_and_the_others_stay_healthy(certs: Certs, start_fleet: object) -> None:
    fleet = start_fleet((200, 503, 200))  # type: ignore[operator]
    report = check_health(fleet_outputs(certs), "origin", FAST, fleet.resolve)
    assert not report.healthy
    failing = {(r.target, r.status) for r in report.results if not r.healthy}
    assert failing == {("bankflow-staging-server-2", 503)}
    assert format_table(report).splitlines()[-1] == "UNHEALTHY: " + ", ".join(
        f"{service}@bankflow-staging-server-2" for service in APP_SERVICES)


def test_without_the_proxy_line_the_droplet_refuses(certs: Certs, start_fleet: object) -> None:
    # Why the droplet probes send the PROXY line: nginx's proxy_protocol listener refuses a bare
    # TLS handshake, so a probe without it would call every healthy droplet unhealthy.
    fleet = start_fleet()  # type: ignore[operator]
    outputs = fleet_outputs(certs)
    planned = plan_probes(outputs, "origin", fleet.resolve)
    assert all(p.proxy_protocol is (p.target != LOAD_BALANCER_TARGET) for p in planned)
    probes = [replace(p, proxy_protocol=False) for p in planned]
    assert outputs.origin_certificate is not None
    context = pinned_context(outputs.origin_certificate, outputs.origin_pull_client)
    results, _ = run_async(run_rounds(probes[:1], context, FAST, True))
    assert not results[0].healthy
    assert results[0].status is None  # refused before any HTTP answer


def test_a_single_droplet_stack_is_probed_as_before(certs: Certs) -> None:
    outputs = parse_outputs("staging", outputs_document(origin_certificate=certs.origin.pem))
    assert len(outputs.origin_ips) == 1
    assert not is_fleet(outputs)
    probes = plan_probes(outputs, "origin")
    expected = [(None, False, ("203.0.113.10", 443))] * len(APP_SERVICES)
    assert [(p.target, p.proxy_protocol, p.connect) for p in probes] == expected


@pytest.mark.parametrize(
    ("client", "server", "line"),
    [
        (("127.0.0.1", 40000), ("127.0.0.2", 443), b"PROXY TCP4 127.0.0.1 127.0.0.2 40000 443\r\n"),
        (("::1", 40000, 0, 0), ("::1", 443, 0, 0), b"PROXY TCP6 ::1 ::1 40000 443\r\n"),
        (("127.0.0.1", 1), ("::1", 443, 0, 0), b"PROXY UNKNOWN\r\n"),
    ],
)
def test_proxy_v1_header(client: tuple[object, ...], server: tuple[object, ...], line: bytes) -> None:
    assert proxy_v1_header(client, server) == line
