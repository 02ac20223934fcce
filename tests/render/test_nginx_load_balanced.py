"""The nginx text of a load-balanced bundle (issue 13: ``server.count`` > 1) against a
single-droplet one. The same config runs for real in tests/host/test_lb_listener.py and
tests/host/test_rolling_deploy.py (behind haproxy)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from bankflow_infra import catalog
from bankflow_infra.contract.fleet import LB_HEALTH_INCLUDE, LB_HEALTH_PATH, LB_HEALTH_PORT, parse_lb_health
from bankflow_infra.contract.upstreams import CANDIDATE_PORT
from bankflow_infra.render import Bundle, NginxParams, render_bundle
from bankflow_infra.settings import Settings
from tests.render.helpers import CLOUDFLARE, STACKS, OriginCert, load_settings, make_secrets


def scaled(stack: str) -> Settings:
    settings = load_settings(stack)
    return dataclasses.replace(settings, server=dataclasses.replace(settings.server, count=3))


def bundle(settings: Settings, cert: OriginCert) -> Bundle:
    return render_bundle(settings, make_secrets(cert), CLOUDFLARE, cert.cert_pem, NginxParams())


def servers(sites: str) -> list[str]:
    return re.findall(r"^server \{\n(.*?)^\}", sites, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("stack", STACKS)
def test_one_droplet_has_no_load_balancer_pieces(stack: str, origin_cert: OriginCert) -> None:
    one = bundle(load_settings(stack), origin_cert)
    nginx = "".join(f.text for f in one.files if f.path.startswith("nginx/"))
    assert "proxy_protocol" not in nginx
    assert str(LB_HEALTH_PORT) not in nginx
    assert not any(f.path == f"nginx/{LB_HEALTH_INCLUDE}" for f in one.files)


@pytest.mark.parametrize("stack", STACKS)
def test_the_health_listener_answers_the_agents_include_with_proxy_protocol(
    stack: str, origin_cert: OriginCert
) -> None:
    lb = bundle(scaled(stack), origin_cert)
    assert parse_lb_health(lb.file(f"nginx/{LB_HEALTH_INCLUDE}").text) is False  # ships serving
    listener = [s for s in servers(lb.file("nginx/sites.conf").text) if f":{LB_HEALTH_PORT}" in s or
                f"listen {LB_HEALTH_PORT}" in s]  # fmt: skip
    assert len(listener) == 1
    assert f"listen {LB_HEALTH_PORT} proxy_protocol reuseport;" in listener[0]
    assert f"location = {LB_HEALTH_PATH} {{" in listener[0]
    assert f"include {catalog.NGINX_CONFIG_DIR}/{LB_HEALTH_INCLUDE};" in listener[0]
    assert "ssl" not in listener[0]  # plain HTTP: the load balancer holds no client certificate


@pytest.mark.parametrize("stack", STACKS)
def test_every_public_443_listener_takes_the_proxy_header_and_the_verify_listener_does_not(
    stack: str, origin_cert: OriginCert
) -> None:
    sites = bundle(scaled(stack), origin_cert).file("nginx/sites.conf").text
    public = re.findall(rf"^\s*listen {catalog.HTTPS_PORT} (.*);$", sites, flags=re.MULTILINE)
    assert public
    assert all(options.startswith("ssl proxy_protocol") for options in public)
    verify = re.findall(rf"^\s*listen {CANDIDATE_PORT} (.*);$", sites, flags=re.MULTILINE)
    assert verify
    assert not any("proxy_protocol" in options for options in verify)


@pytest.mark.parametrize("stack", STACKS)
def test_behind_the_load_balancer_the_visitor_is_mapped_and_used_everywhere(
    stack: str, origin_cert: OriginCert
) -> None:
    settings = scaled(stack)
    lb = bundle(settings, origin_cert)
    realip = lb.file("nginx/cloudflare-realip.conf").text
    # PROXY headers believed from the VPC only (the load balancer's private side), not Cloudflare
    assert re.findall(r"^set_real_ip_from (\S+);$", realip, flags=re.MULTILINE) == [settings.server.vpc_cidr]
    assert "real_ip_header proxy_protocol;" in realip
    assert "geo $proxy_protocol_addr $bankflow_peer_is_cloudflare {" in realip
    proxy = lb.file("nginx/proxy.conf").text
    for header in ("X-Real-IP", "X-Forwarded-For", "CF-Connecting-IP"):
        assert f"proxy_set_header {header} $bankflow_client_addr;" in proxy
    assert "$remote_addr" not in proxy
    main = lb.file("nginx/nginx.conf").text
    assert "limit_req_zone $bankflow_client_addr " in main
    assert '"client_ip":"$bankflow_client_addr"' in main
