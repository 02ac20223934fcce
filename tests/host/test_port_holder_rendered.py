"""The rendered base project: nginx owns no port and no network; the port holder owns both.

This is what lets the agent start a second nginx container beside the serving one
(``host/runtime_base.py``): two containers cannot publish the same host port, but two nginx
masters in ONE network namespace can listen on the same address with ``reuseport``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bankflow_infra import catalog
from bankflow_infra.contract.upstreams import CANDIDATE_PORT
from bankflow_infra.render import render_bundle
from bankflow_infra.render.edge_ports import PORT_HOLDER
from tests.render.helpers import CLOUDFLARE, STACKS, all_hostnames, load_settings, make_cert, make_secrets
from tests.support.tools import require_tool


def base_compose(stack: str, tmp_path: Path) -> dict[str, Any]:
    cert = make_cert(require_tool("openssl"), tmp_path, all_hostnames())
    bundle = render_bundle(load_settings(stack), make_secrets(cert), CLOUDFLARE, cert.cert_pem)
    document = yaml.safe_load(bundle.file("compose/base.yaml").text)
    assert isinstance(document, dict)
    return document


@pytest.mark.parametrize("stack", STACKS)
def test_nginx_joins_the_port_holder_which_alone_publishes(stack: str, tmp_path: Path) -> None:
    services = base_compose(stack, tmp_path)["services"]
    nginx, holder = services["nginx"], services[PORT_HOLDER]
    assert nginx["network_mode"] == f"service:{PORT_HOLDER}"
    assert "ports" not in nginx
    assert "networks" not in nginx  # compose refuses networks beside network_mode
    published = [(str(p["published"]), p.get("host_ip")) for p in holder["ports"]]
    assert published == [
        (str(catalog.HTTP_PORT), None),
        (str(catalog.HTTPS_PORT), None),
        (str(CANDIDATE_PORT), "127.0.0.1"),  # the verify listener: the host's loopback only
    ]
    assert holder["networks"] == ["edge"]  # nginx reaches the apps' aliases through it
    assert [name for name, s in services.items() if "ports" in s] == [PORT_HOLDER]
    # accept queues of the old nginx's sockets move to the new one's instead of being reset
    assert holder["sysctls"] == {"net.ipv4.tcp_migrate_req": "1"}
    assert holder["image"].startswith("registry.k8s.io/pause:3.10@sha256:")
    assert holder["read_only"] is True
    assert holder["cap_drop"] == ["ALL"]


def test_the_holder_is_not_a_service_the_agent_recreates(tmp_path: Path) -> None:
    """The agent recreates base services from the manifest's list; the holder is not in it, so a
    deploy never takes the ports away (compose starts it as nginx's dependency)."""
    cert = make_cert(require_tool("openssl"), tmp_path, all_hostnames())
    bundle = render_bundle(load_settings("staging"), make_secrets(cert), CLOUDFLARE, cert.cert_pem)
    manifest = yaml.safe_load(bundle.file("release.json").text)
    assert PORT_HOLDER not in manifest["base_services"]
    assert "nginx" in manifest["base_services"]
