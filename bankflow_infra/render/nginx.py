"""nginx configuration of the droplet: plain text from settings, catalog and Cloudflare's ranges.

The files live together in one directory (``NginxParams.config_dir``; on the droplet the live
copy of the bundle's ``nginx/`` mounted over ``/etc/nginx``) and include each other by absolute
path:

- ``nginx.conf``             main file: process settings, logging, TLS, then the includes below
- ``upstreams.conf``         the app upstreams the public servers use (the agent rewrites it)
- ``upstreams-candidate.conf`` the ``*_candidate`` upstreams of the verify listener (the agent
                             points them at a new release before any public request can reach it)
- ``cloudflare-realip.conf`` the client IP from CF-Connecting-IP, trusted from Cloudflare only, and
                             the values only Cloudflare may give (source port, ray id): nginx_client.py
- ``csp.conf``               the Content-Security-Policy per hostname (nginx_headers.py)
- ``security-headers.conf``  HSTS + OWASP headers, included by every server (``always``)
- ``proxy.conf``             what the apps are told (every client-identity header set by nginx or
                             removed), keepalive and timeouts, included by every proxy location
- ``lb-health.conf``         load-balanced bundles only: the load balancer health listener's answer
                             (serving; the agent's drain rewrites the live copy, host/lb_health.py)
- ``sites.conf``             the servers: health (loopback), defaults that refuse, one per hostname,
                             and the verify listener: the same server per hostname on
                             ``contract.upstreams.CANDIDATE_PORT`` (published on the host's
                             127.0.0.1 only, see render/compose.py) proxying to the candidates

Each public hostname's HTTPS server refuses a request whose Host is not the TLS SNI (421), limits
each client IP (after realip) and, with Authenticated Origin Pulls, accepts only a client
certificate from the stack's origin-pull CA (``NginxParams.client_ca_path``).

The shipped text targets the nginx of ``catalog.NGINX_IMAGE`` (>= 1.25.1: ``http2 on;``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from bankflow_infra import catalog
from bankflow_infra.contract.fleet import LB_HEALTH_INCLUDE, render_lb_health
from bankflow_infra.contract.release import MAINTENANCE_LISTEN, MAINTENANCE_RETRY_AFTER
from bankflow_infra.contract.upstreams import (
    CANDIDATE_SUFFIX,
    CANDIDATE_UPSTREAMS_FILE,
    DEFAULT_DRAIN_SECONDS,
    render_upstreams,
)
from bankflow_infra.render.model import NginxParams
from bankflow_infra.render.nginx_client import (
    MAX_CONNECT_TIMEOUT_SECONDS,
    PROXY_FILE,
    REALIP_FILE,
    access_log_lines,
    limit_lines,
    limit_zone_lines,
    render_proxy,
    render_realip,
)
from bankflow_infra.render.nginx_headers import CSP_FILE, HEADERS_FILE, render_csp, render_security_headers
from bankflow_infra.render.nginx_lb import lb_health_server, render_lb_realip
from bankflow_infra.settings import Settings

__all__ = [  # the split modules' names, still importable from here
    "HEADERS_FILE",
    "MAX_CONNECT_TIMEOUT_SECONDS",
    "PROXY_FILE",
    "REALIP_FILE",
    "render_proxy",
    "render_realip",
    "render_security_headers",
]

MAIN_FILE: Final = "nginx.conf"
UPSTREAMS_FILE: Final = "upstreams.conf"
SITES_FILE: Final = "sites.conf"

# Mozilla server-side TLS 6.0, "intermediate", minus its DHE suites (no DH parameters to manage,
# and every client Cloudflare connects with speaks ECDHE).
TLS_PROTOCOLS: Final = "TLSv1.2 TLSv1.3"
TLS_CIPHERS: Final = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
TLS_CURVES: Final = "X25519:prime256v1:secp384r1"

# What the bundle's upstreams.conf points at before the agent's first switch: a loopback address
# inside the nginx container where nothing listens (502), but which lets nginx start and pass
# `nginx -t` on a fresh host. The agent writes the real `<service>-<release>:<port>` file.
UNSWITCHED_RELEASE: Final = "none (placeholder until the agent's first switch)"

_HEADER = "# Rendered by bankflow_infra.render.nginx -- do not edit on the host; change the settings.\n"


def verify_port(params: NginxParams) -> int:
    """The verify listener's port: ``params.verify_port``, on the droplet
    ``contract.upstreams.CANDIDATE_PORT`` (what the agent's --candidate-url defaults to)."""
    return params.verify_port


def _include(params: NginxParams, name: str) -> str:
    return f"include {params.config_dir}/{name};"


def _listen(params: NginxParams, port: int, suffix: str = "") -> list[str]:
    lines = []
    for address in params.listen_addresses:
        where = f"{address}:{port}" if address else str(port)
        lines.append(f"    listen {where}{suffix};")
    return lines


# How long old workers may finish their in-flight requests after a reload; the agent's drain
# waits for them with the same bound before it stops a release.
WORKER_SHUTDOWN: Final = f"worker_shutdown_timeout {DEFAULT_DRAIN_SECONDS}s;"


def _temp_paths(params: NginxParams) -> list[str]:
    if params.temp_dir is None:
        return []
    return [
        f"    {kind}_temp_path {params.temp_dir}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    ]


def _tls_lines(params: NginxParams) -> list[str]:
    return [
        "    # TLS: Mozilla server-side TLS 6.0 intermediate (no DHE). Cloudflare Origin CA certificate.",
        f"    ssl_certificate {params.cert_path};",
        f"    ssl_certificate_key {params.key_path};",
        f"    ssl_protocols {TLS_PROTOCOLS};",
        f"    ssl_ciphers {TLS_CIPHERS};",
        f"    ssl_ecdh_curve {TLS_CURVES};",
        "    ssl_prefer_server_ciphers off;",
        "    ssl_session_cache shared:BankflowTLS:10m;",
        "    ssl_session_timeout 1d;",
        "    ssl_session_tickets off;",
    ]


def render_main(settings: Settings, params: NginxParams) -> str:
    lines = [
        _HEADER.rstrip("\n"),
        f"# Started as `nginx -g 'daemon off;'`; every path below is under {params.config_dir}.",
        *([f"user {params.user};"] if params.user else []),
        "worker_processes auto;",
        "worker_rlimit_nofile 16384;",
        WORKER_SHUTDOWN,
        f"pid {params.pid_path};",
        f"error_log {params.error_log} warn;",
        "",
        "events {",
        "    worker_connections 4096;",
        "}",
        "",
        "http {",
        f"    {_include(params, UPSTREAMS_FILE)}",
        f"    {_include(params, CANDIDATE_UPSTREAMS_FILE)}",
        f"    {_include(params, REALIP_FILE)}",
        f"    {_include(params, CSP_FILE)}",
        "",
        "    server_tokens off;",
        "    default_type application/octet-stream;",
        "    sendfile on;",
        f"    client_max_body_size {settings.nginx.client_max_body_size};",
        *_temp_paths(params),
        "",
        *(f"    {line}" for line in limit_zone_lines(params.limits, settings.load_balanced)),
        "",
        *(f"    {line}" for line in access_log_lines(params.access_log, settings.load_balanced)),
        "",
        *_tls_lines(params),
        "",
        f"    {_include(params, SITES_FILE)}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def _https_url(hostname: str, params: NginxParams) -> str:
    port = "" if params.https_port == catalog.HTTPS_PORT else f":{params.https_port}"
    return f"https://{hostname}{port}"


def _health_server(params: NginxParams) -> list[str]:
    # nginx's own health check (container healthcheck): loopback only, never through a hostname,
    # so each hostname's /health still reaches its app (Cloudflare's health checks use that one).
    return [
        "# nginx itself: the container's health check. Loopback only.",
        "server {",
        f"    listen 127.0.0.1:{params.health_port} reuseport;",
        "    access_log off;",
        f"    {_include(params, HEADERS_FILE)}",
        f"    location = {catalog.NGINX_HEALTH_PATH} {{",
        "        default_type text/plain;",
        '        return 200 "ok\\n";',
        "    }",
        "    location / {",
        "        return 404;",
        "    }",
        "}",
    ]


# `reuseport` (once per address:port, on its default server): a replacement nginx (new image)
# binds the same sockets beside the serving one in the port holder's network namespace, then the
# old one quits gracefully; without it the second bind fails (issue 12, item 6; host/runtime_base.py).
def _default_servers(params: NginxParams, proxy: str = "") -> list[str]:
    return [
        "# Unknown Host on port 80: close the connection without an answer.",
        "server {",
        *_listen(params, params.http_port, " default_server reuseport"),
        "    return 444;",
        "}",
        "",
        "# Unknown SNI: refuse the TLS handshake. Known SNI but unknown Host: 421 Misdirected Request.",
        "server {",
        *_listen(params, params.https_port, f" ssl{proxy} default_server reuseport"),
        "    ssl_reject_handshake on;",
        f"    {_include(params, HEADERS_FILE)}",
        "    return 421;",
        "}",
    ]


def _sni_must_match(hostname: str) -> list[str]:
    """421 when the TLS SNI is not this server's Host: the certificate and the client-certificate
    check belong to the SNI's server, so a request must not ride one hostname's TLS into another's
    app (RFC 9110 15.5.20: the client retries on a new connection). Case-insensitive, like DNS."""
    pattern = "^" + re.escape(hostname) + "$"
    return [
        f'    if ($ssl_server_name !~* "{pattern}") {{',
        "        return 421;",
        "    }",
    ]


def _proxied_server(
    hostname: str, port: int, upstream: str, params: NginxParams, aop: list[str], proxy: str = ""
) -> list[str]:
    """One hostname's HTTPS server on ``port``: TLS (``aop``: the client-certificate lines), the
    SNI check, the per-client limits, the headers and the proxy to ``upstream``."""
    return [
        "server {",
        *_listen(params, port, f" ssl{proxy}"),
        "    http2 on;",
        f"    server_name {hostname};",
        *aop,
        *_sni_must_match(hostname),
        *limit_lines(params.limits),
        f"    {_include(params, HEADERS_FILE)}",
        "    location / {",
        f"        proxy_pass http://{upstream};",
        f"        {_include(params, PROXY_FILE)}",
        "    }",
        "}",
    ]


def origin_pull_lines(params: NginxParams) -> list[str]:
    """Authenticated Origin Pulls: only a client certificate issued by the stack's origin-pull CA
    (the one Cloudflare presents for this stack's hostnames) gets through; none or another CA's
    -> 400. Any other Cloudflare customer's traffic carries no such certificate."""
    return [
        f"    ssl_client_certificate {params.client_ca_path};",
        "    ssl_verify_client on;",
        "    ssl_verify_depth 1;",
    ]


def _verify_servers(hostname: str, upstream: str, params: NginxParams) -> list[str]:
    """The same server as the public one, on the verify port, proxying to the candidate upstream.
    No client certificate: the port is published on the host's loopback only (never reached by
    Cloudflare) and the agent checking a release there holds none."""
    return _proxied_server(hostname, verify_port(params), f"{upstream}{CANDIDATE_SUFFIX}", params, [])


def _verify_default(params: NginxParams) -> list[str]:
    return [
        "# The verify listener: the agent checks a new release here, through this same config,",
        "# before any public request reaches it. Unknown SNI is refused as on the public port.",
        "server {",
        *_listen(params, verify_port(params), " ssl default_server reuseport"),
        "    ssl_reject_handshake on;",
        "    return 421;",
        "}",
    ]


def _hostname_servers(
    hostname: str, upstream: str, params: NginxParams, origin_pull: bool, proxy: str = ""
) -> list[str]:
    aop = origin_pull_lines(params) if origin_pull else []
    return [
        "server {",
        *_listen(params, params.http_port),
        f"    server_name {hostname};",
        f"    {_include(params, HEADERS_FILE)}",
        f"    return 301 {_https_url(hostname, params)}$request_uri;",
        "}",
        "",
        *_proxied_server(hostname, params.https_port, upstream, params, aop, proxy),
    ]


MAINTENANCE_PAGE: Final = (
    "<!doctype html><html lang=pt-BR><head><meta charset=utf-8><title>Em manutenção</title></head>"
    "<body><h1>Em manutenção</h1><p>Estamos restaurando dados. Voltamos em alguns minutos.</p>"
    "<h1>Under maintenance</h1><p>We are restoring data and will be back in a few minutes.</p></body></html>"
)


def maintenance_address(params: NginxParams) -> str:
    """The health port + 1 on loopback: 127.0.0.1:8082 in the container, which is what the agent
    writes into the upstreams (contract.release.MAINTENANCE_LISTEN; a render test checks they
    agree); tests running the rendered config get a free health port and with it this one."""
    return f"127.0.0.1:{params.health_port + 1}"


def maintenance_server(address: str = MAINTENANCE_LISTEN) -> list[str]:
    """The maintenance listener: 503 + the page (inline: no extra file) + Retry-After for every
    request. During a restore the agent points every app upstream here (host/maintenance.py), so
    each hostname's public server (its TLS, headers, logs) answers with this instead of a 502."""
    return [
        "# Maintenance (a restore is running): loopback only; the agent points the upstreams here.",
        "server {",
        f"    listen {address} reuseport;",
        "    access_log off;",
        "    location / {",
        "        default_type text/html;",
        f"        add_header Retry-After {MAINTENANCE_RETRY_AFTER} always;",
        '        add_header Cache-Control "no-store" always;',
        f"        return 503 '{MAINTENANCE_PAGE}';",
        "    }",
        "}",
    ]


def render_sites(settings: Settings, params: NginxParams, origin_pull: bool = False) -> str:
    maintenance = maintenance_server(maintenance_address(params))
    # behind the load balancer every public 443 connection starts with its PROXY header (nginx_lb.py)
    proxy = " proxy_protocol" if settings.load_balanced else ""
    blocks = [_health_server(params), maintenance, _default_servers(params, proxy)]
    if settings.load_balanced:
        blocks.insert(1, lb_health_server(params))
    for service in catalog.app_services(settings):
        for hostname in service.hostnames:
            servers = _hostname_servers(hostname, service.upstream, params, origin_pull, proxy)
            blocks.append([f"# {hostname} -> {service.name}", *servers])
    blocks.append(_verify_default(params))
    for service in catalog.app_services(settings):
        for hostname in service.hostnames:
            comment = f"# verify: {hostname} -> candidate {service.name}"
            blocks.append([comment, *_verify_servers(hostname, service.upstream, params)])
    body = "\n\n".join("\n".join(block) for block in blocks)
    return _HEADER + "\n" + body + "\n"


def render_placeholder_upstreams(settings: Settings, suffix: str = "") -> str:
    addresses = {s.upstream: f"127.0.0.1:{s.port}" for s in catalog.app_services(settings)}
    return render_upstreams(addresses, UNSWITCHED_RELEASE, app_release="", suffix=suffix)


def render_nginx_files(
    settings: Settings, params: NginxParams, ranges: Sequence[str], origin_pull: bool = False
) -> dict[str, str]:
    """File name (inside the nginx dir) -> text. ``origin_pull``: the public HTTPS servers require
    Cloudflare's client certificate (``params.client_ca_path`` holds the CA)."""
    lb_health = {LB_HEALTH_INCLUDE: render_lb_health(draining=False)} if settings.load_balanced else {}
    return {
        **lb_health,
        MAIN_FILE: render_main(settings, params),
        CSP_FILE: render_csp(settings),
        UPSTREAMS_FILE: render_placeholder_upstreams(settings),
        CANDIDATE_UPSTREAMS_FILE: render_placeholder_upstreams(settings, CANDIDATE_SUFFIX),
        REALIP_FILE: render_lb_realip(ranges, (settings.server.vpc_cidr,))
        if settings.load_balanced
        else render_realip(ranges),
        HEADERS_FILE: render_security_headers(settings),
        PROXY_FILE: render_proxy(settings, settings.load_balanced),
        SITES_FILE: render_sites(settings, params, origin_pull),
    }
