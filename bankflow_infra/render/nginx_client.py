"""Who the client is, what the apps are told about it, and what nginx logs (issue 12, items 4 and 8).

- ``cloudflare-realip.conf``: the client address from CF-Connecting-IP, believed only when the TCP
  peer is one of Cloudflare's ranges, and the ``$bankflow_*`` values that exist only for such a
  peer (the visitor's source port, the ray id, CF-Visitor, CF-IPCountry);
- ``proxy.conf``: every client-identity and routing header an app could act on is either set by
  nginx or removed, so a client can never speak for nginx or for Cloudflare;
- the JSON access log format and the per-client limits (both used by ``nginx.conf``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bankflow_infra import catalog
from bankflow_infra.render.model import ClientLimits
from bankflow_infra.settings import Settings

REALIP_FILE: Final = "cloudflare-realip.conf"
PROXY_FILE: Final = "proxy.conf"
HEADER: Final = "# Rendered by bankflow_infra.render.nginx -- do not edit on the host; change the settings.\n"

# A connect to a container on the same host either succeeds at once or the container is gone:
# waiting as long as for a slow response would only hold the client.
MAX_CONNECT_TIMEOUT_SECONDS: Final = 10


# The visitor's address as nginx knows it: $remote_addr after realip on one droplet; behind the
# load balancer (issue 13) realip can only take the PROXY header (Cloudflare's edge), so the
# visitor is $bankflow_client_addr, mapped in cloudflare-realip.conf (render/nginx_lb.py).
DIRECT_CLIENT: Final = "$remote_addr"
LB_CLIENT: Final = "$bankflow_client_addr"


def client_variable(behind_lb: bool) -> str:
    return LB_CLIENT if behind_lb else DIRECT_CLIENT


def _http_variable(header: str) -> str:
    """nginx's variable for a request header: ``X-Client-Source-Port`` -> ``$http_x_client_source_port``."""
    return "$http_" + header.lower().replace("-", "_")


# The values an app may believe, each set by nginx (see cloudflare-realip.conf for the $bankflow_*
# ones: empty unless the peer is Cloudflare). Header names are case-insensitive: nginx replaces a
# client's header of the same name, however spelled, and all of its copies.
SET_HEADERS: Final[tuple[tuple[str, str], ...]] = (
    ("Host", "$host"),
    ("X-Real-IP", "$remote_addr"),
    ("X-Forwarded-For", "$remote_addr"),
    ("CF-Connecting-IP", "$remote_addr"),
    ("X-Forwarded-Proto", "$scheme"),
    ("X-Forwarded-Host", "$host"),
    ("X-Request-ID", "$request_id"),
    (catalog.CLIENT_PORT_HEADER, "$bankflow_client_port"),
    ("CF-Ray", "$bankflow_cf_ray"),
    ("CF-Visitor", "$bankflow_cf_visitor"),
    ("CF-IPCountry", "$bankflow_cf_country"),
)

# Headers some framework, proxy or WAF treats as the client's address, the original URL, the host
# or the method, which nginx has no value for: removed (an empty proxy_set_header drops it).
# OWASP and PortSwigger's lists of host/IP/URL-override headers; CF-Connecting-IPv6/Pseudo-IPv4 are
# Cloudflare's pseudo-IPv4 pair; CF-Worker/CDN-Loop would let a client claim a Cloudflare hop.
STRIPPED_HEADERS: Final[tuple[str, ...]] = (
    "Forwarded",
    "X-Forwarded",
    "Forwarded-For",
    "X-Forwarded-Port",
    "X-Forwarded-Server",
    "X-Forwarded-Scheme",
    "X-Forwarded-Ssl",
    "X-Forwarded-Prefix",
    "X-Forwarded-Uri",
    "X-Forwarded-Path",
    "X-Original-Forwarded-For",
    "True-Client-IP",
    "X-Client-IP",
    "Client-IP",
    "X-Cluster-Client-IP",
    "X-Originating-IP",
    "X-Remote-IP",
    "X-Remote-Addr",
    "X-ProxyUser-Ip",
    "Fastly-Client-IP",
    "X-Envoy-External-Address",
    "CF-Connecting-IPv6",
    "CF-Pseudo-IPv4",
    "CF-Worker",
    "CDN-Loop",
    "X-Original-URL",
    "X-Original-URI",
    "X-Rewrite-URL",
    "X-Override-URL",
    "X-Original-Host",
    "X-Host",
    "X-HTTP-Host-Override",
    "X-HTTP-Method-Override",
    "X-HTTP-Method",
    "X-Method-Override",
)


def _peer_map(variable: str, source: str) -> list[str]:
    """``variable`` = ``source`` when the peer is Cloudflare, else empty."""
    return [f"map $bankflow_peer_is_cloudflare ${variable} {{", f"    1 {source};", '    default "";', "}"]


def render_realip(ranges: Sequence[str]) -> str:
    """One droplet: Cloudflare is the TCP peer. (Behind the load balancer: nginx_lb.py.)"""
    lines = [
        HEADER.rstrip("\n"),
        "# The client address is CF-Connecting-IP, believed only when the peer is one of Cloudflare's",
        "# ranges -- the same list the cloud firewall admits. Anyone else is logged as themselves.",
        *(f"set_real_ip_from {network};" for network in ranges),
        "real_ip_header CF-Connecting-IP;",
        "",
        "# 1 when the TCP peer (not the claimed client) is in Cloudflare's ranges.",
        "geo $realip_remote_addr $bankflow_peer_is_cloudflare {",
        "    default 0;",
        *(f"    {network} 1;" for network in ranges),
        "}",
        "",
        *client_port_map("$realip_remote_port"),
        *peer_maps(),
    ]
    return "\n".join(lines) + "\n"


def client_port_map(own_port: str) -> list[str]:
    port = _http_variable(catalog.CLIENT_PORT_HEADER)
    return [
        f"# The visitor's source port: {catalog.CLIENT_PORT_HEADER} (set by the zone's transform rule)",
        "# from Cloudflare, digits only; from anyone else the TCP peer is the client, so its own port.",
        f'map "$bankflow_peer_is_cloudflare:{port}" $bankflow_client_port {{',
        '    default "";',
        '    "~^1:(?<bankflow_port>[0-9]{1,5})$" $bankflow_port;',
        f'    "~^0:" {own_port};',
        "}",
    ]


def peer_maps() -> list[str]:
    """The values only Cloudflare may give: empty unless the peer is Cloudflare."""
    return [
        "",
        "# Cloudflare's ray id (joins our log line to Cloudflare's), from Cloudflare only, one token.",
        'map "$bankflow_peer_is_cloudflare:$http_cf_ray" $bankflow_cf_ray {',
        '    default "";',
        '    "~^1:(?<bankflow_ray>[0-9A-Za-z-]{1,64})$" $bankflow_ray;',
        "}",
        *_peer_map("bankflow_cf_visitor", "$http_cf_visitor"),
        *_peer_map("bankflow_cf_country", "$http_cf_ipcountry"),
    ]


def set_headers(behind_lb: bool = False) -> tuple[tuple[str, str], ...]:
    """SET_HEADERS with the visitor's address variable of the bundle's shape."""
    client = client_variable(behind_lb)
    return tuple((name, client if value == DIRECT_CLIENT else value) for name, value in SET_HEADERS)


def render_proxy(settings: Settings, behind_lb: bool = False) -> str:
    timeout = settings.nginx.proxy_timeout_seconds
    connect = min(timeout, MAX_CONNECT_TIMEOUT_SECONDS)
    lines = [
        HEADER.rstrip("\n"),
        "# HTTP/1.1 with an empty Connection header: keepalive to the upstream (upstreams.conf).",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "# Only values nginx sets reach the app: the verified client address (cloudflare-realip.conf),",
        "# Cloudflare's own headers only from Cloudflare; a client-sent X-Forwarded-For, True-Client-IP,",
        "# X-Original-URL ... is replaced or removed. Names with '_' never pass: underscores_in_headers off.",
        *(f"proxy_set_header {name} {value};" for name, value in set_headers(behind_lb)),
        *(f'proxy_set_header {name} "";' for name in STRIPPED_HEADERS),
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


# The access log (Marco Civil da Internet art. 15: date, time, IP and source port), one JSON object
# per line, values escaped by nginx (escape=json). Field -> nginx value; numbers unquoted.
# $uri, not $request_uri: query strings can carry tokens and personal data that must not reach logs.
ACCESS_LOG_FIELDS: Final[tuple[tuple[str, str], ...]] = (
    ("time", '"$bankflow_time_ms"'),  # ISO 8601, milliseconds, the container's offset (UTC)
    ("client_ip", '"$remote_addr"'),  # after realip: the visitor
    ("client_port", '"$bankflow_client_port"'),
    ("cf_ray", '"$bankflow_cf_ray"'),
    ("host", '"$host"'),
    ("method", '"$request_method"'),
    ("uri", '"$uri"'),
    ("status", "$status"),
    ("bytes", "$body_bytes_sent"),
    ("request_time", "$request_time"),
    ("upstream", '"$upstream_addr"'),
    ("upstream_status", '"$upstream_status"'),
    ("upstream_time", '"$upstream_response_time"'),
    ("request_id", '"$request_id"'),
    ("peer", '"$realip_remote_addr"'),  # the TCP peer: a Cloudflare address in production
    ("protocol", '"$server_protocol"'),
    ("tls", '"$ssl_protocol"'),
    ("user_agent", '"$http_user_agent"'),
)
ACCESS_LOG_FORMAT: Final = "bankflow_json"


def access_log_lines(access_log: str, behind_lb: bool = False) -> list[str]:
    """``http``-level lines: the millisecond timestamp, the JSON format and the log file. Behind
    the load balancer the client is the mapped visitor and the peer the load balancer's own peer
    (Cloudflare's edge, from the PROXY header: $remote_addr after realip)."""
    lb_fields = {"client_ip": f'"{LB_CLIENT}"', "peer": '"$remote_addr"'} if behind_lb else {}
    body = ",".join(f'"{name}":{lb_fields.get(name, value)}' for name, value in ACCESS_LOG_FIELDS)
    return [
        "# $time_iso8601 has whole seconds: the milliseconds come from $msec (the same clock reading).",
        'map "$time_iso8601|$msec" $bankflow_time_ms {',
        "    default $time_iso8601;",
        '    "~^(?<bf_time>[0-9-]{10}T[0-9:]{8})(?<bf_zone>[^|]*)[|][0-9]+[.](?<bf_ms>[0-9]{3})$"',
        '        "$bf_time.$bf_ms$bf_zone";',
        "}",
        f"log_format {ACCESS_LOG_FORMAT} escape=json '{{{body}}}';",
        f"access_log {access_log} {ACCESS_LOG_FORMAT};",
    ]


CONN_ZONE: Final = "bankflow_conn_per_ip"
REQ_ZONE: Final = "bankflow_req_per_ip"


def limit_zone_lines(limits: ClientLimits, behind_lb: bool = False) -> list[str]:
    """``http``-level: timeouts for every server and the per-client-IP zones. The key is
    $binary_remote_addr after realip (which runs first): the visitor, never Cloudflare's address;
    behind the load balancer the mapped visitor (a text key: more memory per entry, same bound)."""
    key = LB_CLIENT if behind_lb else "$binary_remote_addr"
    return [
        "# Slow clients: the header within this total bound, the body and the answer without a longer",
        "# pause than these (a body trickled slower is cut with 408).",
        f"client_header_timeout {limits.header_timeout_s}s;",
        f"client_body_timeout {limits.body_timeout_s}s;",
        f"send_timeout {limits.send_timeout_s}s;",
        f"keepalive_timeout {limits.keepalive_timeout_s}s;",
        "keepalive_requests 1000;",
        "keepalive_time 1h;",
        "reset_timedout_connection on;",
        f"limit_conn_zone {key} zone={CONN_ZONE}:10m;",
        f"limit_req_zone {key} zone={REQ_ZONE}:10m rate={limits.rate_per_ip}r/s;",
        "limit_conn_status 429;",
        "limit_req_status 429;",
        "limit_conn_log_level warn;",
        "limit_req_log_level warn;",
    ]


def limit_lines(limits: ClientLimits) -> list[str]:
    """Inside each hostname's server (not the loopback maintenance/health servers, whose only
    client is nginx itself or the container's health check)."""
    return [
        f"    limit_conn {CONN_ZONE} {limits.conn_per_ip};",
        f"    limit_req zone={REQ_ZONE} burst={limits.burst_per_ip} nodelay;",
    ]
