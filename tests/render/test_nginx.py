"""The rendered nginx configuration: accepted by a real `nginx -t`, and the shipped text itself."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from bankflow_infra import catalog
from bankflow_infra.contract.upstreams import CANDIDATE_PORT, CANDIDATE_UPSTREAMS_FILE, DEFAULT_DRAIN_SECONDS
from bankflow_infra.render import Bundle, NginxParams, render_bundle
from bankflow_infra.render.nginx import TLS_CIPHERS, origin_pull_lines
from tests.render.conftest import PullPki
from tests.render.helpers import (
    CLOUDFLARE,
    STACKS,
    OriginCert,
    adapt_for_local_nginx,
    install_for_local_nginx,
    load_settings,
    local_params,
    make_secrets,
    nginx_argv,
)


def _shipped(stack: str, cert: OriginCert) -> Bundle:
    return render_bundle(load_settings(stack), make_secrets(cert), CLOUDFLARE, cert.cert_pem)


@pytest.mark.parametrize("stack", STACKS)
def test_nginx_accepts_the_rendered_config(
    stack: str,
    tmp_path: Path,
    nginx_bin: str,
    local_nginx_version: tuple[int, int, int],
    origin_cert: OriginCert,
) -> None:
    params = local_params(tmp_path)
    bundle = render_bundle(
        load_settings(stack), make_secrets(origin_cert), CLOUDFLARE, origin_cert.cert_pem, params
    )
    conf = install_for_local_nginx(bundle, params, local_nginx_version)
    done = subprocess.run(
        nginx_argv(nginx_bin, params, conf, "-t"), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr
    assert "[warn]" not in done.stderr, done.stderr


@pytest.mark.parametrize("stack", STACKS)
def test_shipped_config_uses_the_http2_directive(stack: str, origin_cert: OriginCert) -> None:
    # The droplet's nginx (catalog.NGINX_IMAGE) is >= 1.25.1: `http2 on;`, never the deprecated
    # listen parameter. Only the tests' adapt_for_local_nginx rewrites it, for an older local nginx.
    major, minor = (int(part) for part in catalog.NGINX_IMAGE.split(":")[1].split("-")[0].split(".")[:2])
    assert (major, minor) >= (1, 25)  # `http2 on` came in 1.25.1; every supported branch has it
    sites = _shipped(stack, origin_cert).file("nginx/sites.conf").text
    hostnames = load_settings(stack).all_hostnames
    assert sites.count("http2 on;") == 2 * len(hostnames)  # the public server and the verify one
    assert not re.search(r"^\s*listen [^;]*\bhttp2\b", sites, flags=re.MULTILINE)


def test_adapt_for_local_nginx_only_touches_old_versions() -> None:
    text = "server {\n    listen 443 ssl;\n    http2 on;\n}\n"
    assert adapt_for_local_nginx(text, (1, 27, 0)) == text
    assert adapt_for_local_nginx(text, (1, 25, 1)) == text
    assert adapt_for_local_nginx(text, (1, 22, 1)) == "server {\n    listen 443 ssl http2;\n}\n"


@pytest.mark.parametrize("stack", STACKS)
def test_one_https_server_per_hostname_with_tls_policy(stack: str, origin_cert: OriginCert) -> None:
    bundle = _shipped(stack, origin_cert)
    settings = load_settings(stack)
    sites, main = bundle.file("nginx/sites.conf").text, bundle.file("nginx/nginx.conf").text
    for hostname in settings.all_hostnames:
        # the :80 redirect, the :443 server and the verify listener's
        assert sites.count(f"server_name {hostname};") == 3
        assert f"return 301 https://{hostname}$request_uri;" in sites
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in main
    assert "ssl_prefer_server_ciphers off;" in main
    assert "ssl_session_tickets off;" in main
    assert "ssl_session_cache shared:" in main
    assert "ssl_session_timeout" in main
    assert f"ssl_ciphers {TLS_CIPHERS};" in main
    assert all(c.startswith("ECDHE-") and ("GCM" in c or "CHACHA20" in c) for c in TLS_CIPHERS.split(":"))
    assert not re.search(r"(?<!EC)DHE-", main)
    assert "ssl_dhparam" not in main
    assert "server_tokens off;" in main
    assert f"client_max_body_size {settings.nginx.client_max_body_size};" in main
    assert "escape=json" in main
    # upstreams.conf is the first include: every later file may name its upstreams
    includes = re.findall(r"^\s*include (\S+);", main, flags=re.MULTILINE)
    assert includes[0] == f"{catalog.NGINX_CONFIG_DIR}/upstreams.conf"
    assert "ssl_reject_handshake on;" in sites
    assert "return 444;" in sites


@pytest.mark.parametrize("stack", STACKS)
def test_security_headers_and_realip(stack: str, origin_cert: OriginCert) -> None:
    bundle = _shipped(stack, origin_cert)
    settings = load_settings(stack)
    headers = bundle.file("nginx/security-headers.conf").text
    header_lines = [line for line in headers.splitlines() if line.startswith("add_header")]
    assert header_lines
    assert all(line.endswith(" always;") for line in header_lines)
    assert f'Strict-Transport-Security "max-age={settings.nginx.hsts_max_age}; includeSubDomains"' in headers
    for name in (
        "X-Content-Type-Options",
        "X-Frame-Options",
        "Referrer-Policy",
        "Permissions-Policy",
        "Cross-Origin-Opener-Policy",
        "Content-Security-Policy",
    ):
        assert f"add_header {name} " in headers
    assert "X-XSS-Protection" not in "".join(f.text for f in bundle.files)
    realip = bundle.file("nginx/cloudflare-realip.conf").text
    assert [
        line.split()[1].rstrip(";") for line in realip.splitlines() if line.startswith("set_real_ip_from")
    ] == [*CLOUDFLARE.ipv4, *CLOUDFLARE.ipv6]
    assert "real_ip_header CF-Connecting-IP;" in realip
    proxy = bundle.file("nginx/proxy.conf").text
    timeout = settings.nginx.proxy_timeout_seconds
    for line in (
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $host;",
        "proxy_set_header X-Request-ID $request_id;",
        f"proxy_read_timeout {timeout}s;",
    ):
        assert line in proxy


def test_nginx_defaults_are_the_droplets() -> None:
    params = NginxParams()
    assert (params.http_port, params.https_port) == (catalog.HTTP_PORT, catalog.HTTPS_PORT)
    assert params.config_dir == catalog.NGINX_CONFIG_DIR


@pytest.mark.parametrize("stack", STACKS)
def test_verify_listener_mirrors_each_public_server_with_candidate_upstreams(
    stack: str, origin_cert: OriginCert, pull_pki: PullPki
) -> None:
    bundle = render_bundle(
        load_settings(stack),
        make_secrets(origin_cert),
        CLOUDFLARE,
        origin_cert.cert_pem,
        origin_pull_ca_pem=pull_pki.ca.cert_pem,
    )
    sites, main = bundle.file("nginx/sites.conf").text, bundle.file("nginx/nginx.conf").text
    servers = re.findall(r"^server \{\n(.*?)^\}", sites, flags=re.MULTILINE | re.DOTALL)
    public = {_name(s): s for s in servers if f"listen {catalog.HTTPS_PORT} ssl;" in s}
    verify = {_name(s): s for s in servers if f"listen {CANDIDATE_PORT} ssl;" in s}
    assert set(verify) == set(public) == set(load_settings(stack).all_hostnames)
    client_check = "".join(f"{line}\n" for line in origin_pull_lines(NginxParams()))
    for hostname, text in verify.items():
        # the same server (SNI check, limits, headers, proxy settings) without the client
        # certificate (loopback only: the agent holds none); the upstream is the candidate one
        assert client_check in public[hostname]
        expected = (
            public[hostname]
            .replace(client_check, "")
            .replace(f"listen {catalog.HTTPS_PORT} ssl;", f"listen {CANDIDATE_PORT} ssl;")
        )
        upstream = re.search(r"proxy_pass http://(\w+);", expected)
        assert upstream is not None
        assert text == expected.replace(
            upstream.group(0), f"proxy_pass http://{upstream.group(1)}_candidate;"
        )
    includes = re.findall(r"^\s*include (\S+);", main, flags=re.MULTILINE)
    assert f"{catalog.NGINX_CONFIG_DIR}/{CANDIDATE_UPSTREAMS_FILE}" in includes
    assert f"worker_shutdown_timeout {DEFAULT_DRAIN_SECONDS}s;" in main
    proxy = bundle.file("nginx/proxy.conf").text
    assert "proxy_next_upstream error timeout;" in proxy  # never http_5xx: a 500 is not retried
    assert bundle.file(f"nginx/{CANDIDATE_UPSTREAMS_FILE}").text.count("_candidate {") == 3


def _name(server: str) -> str:
    found = re.search(r"server_name (\S+);", server)
    return found.group(1) if found else ""
