"""nginx configuration of the droplet: plain text from settings, catalog and Cloudflare's ranges.

The files live together in one directory (``NginxParams.config_dir``; on the droplet the live
copy of the bundle's ``nginx/`` mounted over ``/etc/nginx``) and include each other by absolute
path:

- ``nginx.conf``             main file: process settings, logging, TLS, then the includes below
- ``upstreams.conf``         the app upstreams the public servers use (the agent rewrites it)
- ``upstreams-candidate.conf`` the ``*_candidate`` upstreams of the verify listener (the agent
                             points them at a new release before any public request can reach it)
- ``cloudflare-realip.conf`` the client IP from CF-Connecting-IP, trusted from Cloudflare only
- ``security-headers.conf``  HSTS + OWASP headers, included by every server (``always``)
- ``proxy.conf``             proxy headers, keepalive and timeouts, included by every proxy location
- ``sites.conf``             the servers: health (loopback), defaults that refuse, one per hostname,
                             and the verify listener: the same server per hostname on
                             ``contract.upstreams.CANDIDATE_PORT`` (published on the host's
                             127.0.0.1 only, see render/compose.py) proxying to the candidates

The shipped text targets the nginx of ``catalog.NGINX_IMAGE`` (>= 1.25.1: ``http2 on;``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bankflow_infra import catalog
from bankflow_infra.contract.release import MAINTENANCE_LISTEN, MAINTENANCE_RETRY_AFTER
from bankflow_infra.contract.upstreams import (
    CANDIDATE_PORT,
    CANDIDATE_SUFFIX,
    CANDIDATE_UPSTREAMS_FILE,
    DEFAULT_DRAIN_SECONDS,
    render_upstreams,
)
from bankflow_infra.render.model import NginxParams
from bankflow_infra.settings import Settings

MAIN_FILE: Final = "nginx.conf"
UPSTREAMS_FILE: Final = "upstreams.conf"
REALIP_FILE: Final = "cloudflare-realip.conf"
HEADERS_FILE: Final = "security-headers.conf"
PROXY_FILE: Final = "proxy.conf"
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

# A connect to a container on the same host either succeeds at once or the container is gone:
# waiting as long as for a slow response would only hold the client.
MAX_CONNECT_TIMEOUT_SECONDS: Final = 10

# What the bundle's upstreams.conf points at before the agent's first switch: a loopback address
# inside the nginx container where nothing listens (502), but which lets nginx start and pass
# `nginx -t` on a fresh host. The agent writes the real `<service>-<release>:<port>` file.
UNSWITCHED_RELEASE: Final = "none (placeholder until the agent's first switch)"

_HEADER = "# Rendered by bankflow_infra.render.nginx -- do not edit on the host; change the settings.\n"


def verify_port(params: NginxParams) -> int:
    """The verify listener's port: ``params.verify_port`` where NginxParams has one, else the
    droplet's (``contract.upstreams.CANDIDATE_PORT``, what the agent's --candidate-url defaults to)."""
    port = getattr(params, "verify_port", None)
    return port if isinstance(port, int) else CANDIDATE_PORT


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


def render_main(settings: Settings, params: NginxParams) -> str:
    temp_paths = []
    if params.temp_dir is not None:
        temp_paths = [
            f"    {kind}_temp_path {params.temp_dir}/{kind};"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        ]
    # JSON access log: one object per request, values escaped by nginx (escape=json). $uri, not
    # $request_uri: query strings can carry tokens and personal data that must not reach logs.
    log_format = (
        '\'{"time":"$time_iso8601","request_id":"$request_id","client":"$remote_addr",'
        '"peer":"$realip_remote_addr","host":"$host","method":"$request_method","path":"$uri",'
        '"protocol":"$server_protocol","status":$status,"bytes_sent":$body_bytes_sent,'
        '"request_time":$request_time,"upstream":"$upstream_addr","upstream_status":"$upstream_status",'
        '"upstream_time":"$upstream_response_time","user_agent":"$http_user_agent",'
        '"cf_ray":"$http_cf_ray","tls":"$ssl_protocol"}\''
    )
    lines = [
        _HEADER.rstrip("\n"),
        f"# Started as `nginx -g 'daemon off;'`; every path below is under {params.config_dir}.",
        *([f"user {params.user};"] if params.user else []),
        "worker_processes auto;",
        WORKER_SHUTDOWN,
        f"pid {params.pid_path};",
        f"error_log {params.error_log} warn;",
        "",
        "events {",
        "    worker_connections 1024;",
        "}",
        "",
        "http {",
        f"    {_include(params, UPSTREAMS_FILE)}",
        f"    {_include(params, CANDIDATE_UPSTREAMS_FILE)}",
        f"    {_include(params, REALIP_FILE)}",
        "",
        "    server_tokens off;",
        "    default_type application/octet-stream;",
        "    sendfile on;",
        "    keepalive_timeout 65s;",
        f"    client_max_body_size {settings.nginx.client_max_body_size};",
        *temp_paths,
        "",
        f"    log_format bankflow_json escape=json {log_format};",
        f"    access_log {params.access_log} bankflow_json;",
        "",
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
        "",
        f"    {_include(params, SITES_FILE)}",
        "}",
    ]
    return "\n".join(lines) + "\n"


def render_realip(ranges: Sequence[str]) -> str:
    lines = [
        _HEADER.rstrip("\n"),
        "# The client address is CF-Connecting-IP, believed only when the peer is one of Cloudflare's",
        "# ranges -- the same list the cloud firewall admits. Anyone else is logged as themselves.",
        *(f"set_real_ip_from {network};" for network in ranges),
        "real_ip_header CF-Connecting-IP;",
    ]
    return "\n".join(lines) + "\n"


def render_security_headers(settings: Settings) -> str:
    # `always`: also on 4xx/5xx answers nginx makes itself (a 502 page is still a page).
    # No X-XSS-Protection: deprecated, and its filter could be abused (OWASP Secure Headers).
    headers = (
        ("Strict-Transport-Security", f"max-age={settings.nginx.hsts_max_age}; includeSubDomains"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", "frame-ancestors 'none'"),
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Resource-Policy", "same-site"),
        ("X-Permitted-Cross-Domain-Policies", "none"),
        ("X-Request-ID", "$request_id"),  # lets support match a user's report to the JSON log line
    )
    lines = [_HEADER.rstrip("\n"), *(f'add_header {name} "{value}" always;' for name, value in headers)]
    return "\n".join(lines) + "\n"


def render_proxy(settings: Settings) -> str:
    timeout = settings.nginx.proxy_timeout_seconds
    connect = min(timeout, MAX_CONNECT_TIMEOUT_SECONDS)
    lines = [
        _HEADER.rstrip("\n"),
        "# HTTP/1.1 with an empty Connection header: keepalive to the upstream (upstreams.conf).",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "proxy_set_header Host $host;",
        "# Only the verified client address is passed on (see cloudflare-realip.conf): a client-sent",
        "# X-Forwarded-For or CF-Connecting-IP never reaches the app, so no app can be fooled by one.",
        "proxy_set_header X-Real-IP $remote_addr;",
        "proxy_set_header X-Forwarded-For $remote_addr;",
        "proxy_set_header CF-Connecting-IP $remote_addr;",
        "proxy_set_header X-Forwarded-Proto $scheme;",
        "proxy_set_header X-Forwarded-Host $host;",
        "proxy_set_header X-Request-ID $request_id;",
        f"proxy_connect_timeout {connect}s;",
        f"proxy_send_timeout {timeout}s;",
        f"proxy_read_timeout {timeout}s;",
        "# A refused or timed-out connect goes to the next server of the upstream: right after a switch",
        "# that is the previous release (a `backup` server), so a new container that dies is bypassed.",
        "# Never for a request already sent (non-idempotent ones are not retried), never on a 5xx.",
        "proxy_next_upstream error timeout;",
        "proxy_next_upstream_tries 2;",
        "proxy_hide_header X-Powered-By;",
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
        f"    listen 127.0.0.1:{params.health_port};",
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


def _default_servers(params: NginxParams) -> list[str]:
    return [
        "# Unknown Host on port 80: close the connection without an answer.",
        "server {",
        *_listen(params, params.http_port, " default_server"),
        "    return 444;",
        "}",
        "",
        "# Unknown SNI: refuse the TLS handshake. Known SNI but unknown Host: 421 Misdirected Request.",
        "server {",
        *_listen(params, params.https_port, " ssl default_server"),
        "    ssl_reject_handshake on;",
        f"    {_include(params, HEADERS_FILE)}",
        "    return 421;",
        "}",
    ]


def _verify_servers(hostname: str, upstream: str, params: NginxParams) -> list[str]:
    """The same server as the public one, on the verify port, proxying to the candidate upstream."""
    return [
        "server {",
        *_listen(params, verify_port(params), " ssl"),
        "    http2 on;",
        f"    server_name {hostname};",
        f"    {_include(params, HEADERS_FILE)}",
        "    location / {",
        f"        proxy_pass http://{upstream}{CANDIDATE_SUFFIX};",
        f"        {_include(params, PROXY_FILE)}",
        "    }",
        "}",
    ]


def _verify_default(params: NginxParams) -> list[str]:
    return [
        "# The verify listener: the agent checks a new release here, through this same config,",
        "# before any public request reaches it. Unknown SNI is refused as on the public port.",
        "server {",
        *_listen(params, verify_port(params), " ssl default_server"),
        "    ssl_reject_handshake on;",
        "    return 421;",
        "}",
    ]


def _hostname_servers(hostname: str, upstream: str, params: NginxParams) -> list[str]:
    return [
        "server {",
        *_listen(params, params.http_port),
        f"    server_name {hostname};",
        f"    {_include(params, HEADERS_FILE)}",
        f"    return 301 {_https_url(hostname, params)}$request_uri;",
        "}",
        "",
        "server {",
        *_listen(params, params.https_port, " ssl"),
        "    http2 on;",
        f"    server_name {hostname};",
        f"    {_include(params, HEADERS_FILE)}",
        "    location / {",
        f"        proxy_pass http://{upstream};",
        f"        {_include(params, PROXY_FILE)}",
        "    }",
        "}",
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
        f"    listen {address};",
        "    access_log off;",
        "    location / {",
        "        default_type text/html;",
        f"        add_header Retry-After {MAINTENANCE_RETRY_AFTER} always;",
        '        add_header Cache-Control "no-store" always;',
        f"        return 503 '{MAINTENANCE_PAGE}';",
        "    }",
        "}",
    ]


def render_sites(settings: Settings, params: NginxParams) -> str:
    maintenance = maintenance_server(maintenance_address(params))
    blocks = [_health_server(params), maintenance, _default_servers(params)]
    for service in catalog.app_services(settings):
        for hostname in service.hostnames:
            blocks.append(
                [f"# {hostname} -> {service.name}", *_hostname_servers(hostname, service.upstream, params)]
            )
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


def render_nginx_files(settings: Settings, params: NginxParams, ranges: Sequence[str]) -> dict[str, str]:
    """File name (inside the nginx dir) -> text."""
    return {
        MAIN_FILE: render_main(settings, params),
        UPSTREAMS_FILE: render_placeholder_upstreams(settings),
        CANDIDATE_UPSTREAMS_FILE: render_placeholder_upstreams(settings, CANDIDATE_SUFFIX),
        REALIP_FILE: render_realip(ranges),
        HEADERS_FILE: render_security_headers(settings),
        PROXY_FILE: render_proxy(settings),
        SITES_FILE: render_sites(settings, params),
    }
