"""What the droplet's nginx files say about the perimeter (issue 12), and the inputs refused.

The live files (test_nginx_origin_pull.py, test_nginx_clients.py) show the behaviour with shrunk
limits and loopback paths; these pin the droplet's own values and the bundle's new file.
"""

from __future__ import annotations

import dataclasses
import re

import pytest

from bankflow_infra import catalog
from bankflow_infra.render import Bundle, BundleInputError, NginxParams, render_bundle
from bankflow_infra.render.model import ClientLimits
from bankflow_infra.render.nginx_client import SET_HEADERS, STRIPPED_HEADERS
from tests.render.conftest import PullPki
from tests.render.helpers import CLOUDFLARE, STACKS, OriginCert, load_settings, make_secrets


def _bundle(stack: str, cert: OriginCert, ca: str | None = None, params: NginxParams | None = None) -> Bundle:
    return render_bundle(
        load_settings(stack), make_secrets(cert), CLOUDFLARE, cert.cert_pem, params or NginxParams(),
        origin_pull_ca_pem=ca,
    )  # fmt: skip


def _servers(sites: str) -> list[str]:
    return re.findall(r"^server \{\n(.*?)^\}", sites, flags=re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("stack", STACKS)
def test_origin_pulls_on_every_public_https_server_only(
    stack: str, origin_cert: OriginCert, pull_pki: PullPki
) -> None:
    bundle = _bundle(stack, origin_cert, pull_pki.ca.cert_pem)
    assert bundle.file("tls/origin-pull-ca.pem").text == pull_pki.ca.cert_pem.strip() + "\n"
    servers = _servers(bundle.file("nginx/sites.conf").text)
    hostnames = load_settings(stack).all_hostnames
    checked = [s for s in servers if "ssl_verify_client on;" in s]
    assert len(checked) == len(hostnames)
    for server in checked:
        assert f"listen {catalog.HTTPS_PORT} ssl;" in server
        assert f"ssl_client_certificate {catalog.NGINX_TLS_DIR}/origin-pull-ca.pem;" in server
    # without the CA (edge without origin pulls): no file, no check
    plain = _bundle(stack, origin_cert)
    assert "ssl_verify_client" not in plain.file("nginx/sites.conf").text
    assert not any(f.path == "tls/origin-pull-ca.pem" for f in plain.files)


def test_a_new_origin_pull_ca_changes_nginx_only(origin_cert: OriginCert, pull_pki: PullPki) -> None:
    before = _bundle("production", origin_cert, pull_pki.ca.cert_pem)
    after = _bundle("production", origin_cert, pull_pki.foreign.cert_pem)  # any other certificate
    changed = {
        name for name, digest in after.service_digests.items() if before.service_digests[name] != digest
    }
    assert changed == {"nginx"}  # the agent recreates/reloads nginx and nothing else
    assert before.digest != after.digest


@pytest.mark.parametrize(
    "bad",
    [
        "not a certificate",
        "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n-----BEGIN EC PRIVATE KEY-----\nx\n",
        "-----BEGIN CERTIFICATE-----\nMIIB\n",
    ],
)
def test_an_origin_pull_ca_that_is_not_only_certificates_is_refused(
    origin_cert: OriginCert, bad: str
) -> None:
    with pytest.raises(BundleInputError, match=r"^origin_pull_ca_pem: must be .*certificate") as raised:
        _bundle("staging", origin_cert, bad)
    assert "MIIB" not in str(raised.value)


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(ClientLimits)])
def test_client_limits_must_be_positive(origin_cert: OriginCert, field: str) -> None:
    params = NginxParams(limits=dataclasses.replace(ClientLimits(), **{field: 0}))
    with pytest.raises(BundleInputError, match=f"^nginx.limits.{field}: must be a positive integer"):
        _bundle("staging", origin_cert, params=params)


@pytest.mark.parametrize("stack", STACKS)
def test_the_droplets_limits_log_and_sni_check(stack: str, origin_cert: OriginCert) -> None:
    bundle = _bundle(stack, origin_cert)
    main, sites = bundle.file("nginx/nginx.conf").text, bundle.file("nginx/sites.conf").text
    for line in (
        "client_header_timeout 10s;",
        "client_body_timeout 5s;",
        "send_timeout 10s;",
        "keepalive_timeout 30s;",
        "limit_conn_zone $binary_remote_addr zone=bankflow_conn_per_ip:10m;",
        "limit_req_zone $binary_remote_addr zone=bankflow_req_per_ip:10m rate=30r/s;",
        f"access_log {catalog.NGINX_CONTAINER_LOG_DIR}/{catalog.ACCESS_LOG_NAME} bankflow_json;",
    ):
        assert f"    {line}\n" in main
    proxied = [s for s in _servers(sites) if "proxy_pass" in s]
    assert len(proxied) == 2 * len(load_settings(stack).all_hostnames)  # public + verify
    for server in proxied:
        name = re.search(r"server_name (\S+);", server)
        assert name is not None
        assert f'if ($ssl_server_name !~* "^{re.escape(name.group(1))}$") {{\n        return 421;' in server
        assert "limit_conn bankflow_conn_per_ip 64;" in server
        assert "limit_req zone=bankflow_req_per_ip burst=300 nodelay;" in server


def test_every_header_the_review_named_is_set_or_stripped() -> None:
    handled = {name.lower() for name, _ in SET_HEADERS} | {name.lower() for name in STRIPPED_HEADERS}
    named = (
        "True-Client-IP", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
        "X-Forwarded-Port", "X-Forwarded-Server", "X-Real-IP", "X-Original-URL", "X-Rewrite-URL",
        "CF-Visitor", "CF-Connecting-IP", "CF-Ray", "X-Client-IP", "X-Cluster-Client-IP", "X-Host",
        "X-Original-Host",
        catalog.CLIENT_PORT_HEADER,
    )  # fmt: skip
    assert {name.lower() for name in named} <= handled
    assert len(handled) == len(SET_HEADERS) + len(STRIPPED_HEADERS)  # no header both set and stripped
