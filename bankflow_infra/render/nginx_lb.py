"""The load-balanced bundle's nginx pieces (issue 13; ``settings.load_balanced`` only: a
single-droplet bundle renders exactly as before).

- the load balancer's health listener (:func:`lb_health_server`): plain HTTP on
  ``contract.fleet.LB_HEALTH_PORT``, answering the agent's ``lb-health.conf`` include;
- who the visitor is behind the load balancer (:func:`render_lb_realip`): the load balancer
  forwards TCP (443 pass-through: nginx keeps terminating TLS and checking Cloudflare's client
  certificate) with the PROXY protocol, so the TCP peer is the load balancer and the address it
  was connected from -- Cloudflare's edge -- arrives in the PROXY header. nginx's realip takes
  ONE header per request, so it takes the PROXY one (trusted from the VPC only: the load
  balancer's private side), and CF-Connecting-IP is believed in a map, only when that PROXY
  address is one of Cloudflare's ranges: ``$bankflow_client_addr``, which the proxy headers,
  the access log and the per-client limits use instead of ``$remote_addr`` (nginx_client.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from bankflow_infra.contract.fleet import LB_HEALTH_INCLUDE, LB_HEALTH_PATH, LB_HEALTH_PORT
from bankflow_infra.render.model import NginxParams
from bankflow_infra.render.nginx_client import HEADER, LB_CLIENT, client_port_map, peer_maps

# An address as CF-Connecting-IP carries it (IPv4 or IPv6 text): anything else is not believed.
_ADDRESS_RE: Final = "[0-9A-Fa-f:.]{2,45}"


def listen_lines(params: NginxParams, port: int, suffix: str = "") -> list[str]:
    """``listen`` on each of ``params.listen_addresses`` (as render/nginx.py's servers)."""
    lines = []
    for address in params.listen_addresses:
        where = f"{address}:{port}" if address else str(port)
        lines.append(f"    listen {where}{suffix};")
    return lines


def lb_health_port(params: NginxParams) -> int:
    """The load balancer's health listener: ``contract.fleet.LB_HEALTH_PORT`` on every droplet
    (the load balancer's health check and the firewalls name it); tests running several nginx
    on one machine give each its own."""
    del params  # one fixed port on the droplet; the parameter keeps the call like verify_port's
    return LB_HEALTH_PORT


def lb_health_server(params: NginxParams) -> list[str]:
    """The load balancer's health check (load-balanced bundles only). Plain HTTP on its own port:
    the public 443 listener requires Cloudflare's client certificate, which DigitalOcean's health
    check does not have. ``proxy_protocol``: with PROXY protocol on, DigitalOcean's health checks
    send the header too ("Backend services need to accept PROXY protocol headers or the Droplets
    fail the load balancer's health checks", docs.digitalocean.com/glossary/proxy; "make sure your
    health check endpoint also accepts PROXY protocol", .../how-to-troubleshoot-load-balancer-
    health-check-issues); without it nginx answers 400 and every droplet is down. The answer is
    the agent's include: 200 serving, 503 while the droplet drains (host/lb_health.py).
    Reachable from the VPC only: the cloud firewall and ufw admit the port from there."""
    return [
        "# The load balancer's health check: 503 while the agent drains this droplet (lb-health.conf).",
        "# DigitalOcean sends its health checks with the PROXY protocol header when that is on.",
        "server {",
        *listen_lines(params, lb_health_port(params), " proxy_protocol reuseport"),
        "    access_log off;",
        f"    location = {LB_HEALTH_PATH} {{",
        "        default_type text/plain;",
        f"        include {params.config_dir}/{LB_HEALTH_INCLUDE};",
        "    }",
        "    location / {",
        "        return 404;",
        "    }",
        "}",
    ]


def render_lb_realip(ranges: Sequence[str], lb_sources: Sequence[str]) -> str:
    """``cloudflare-realip.conf`` of a load-balanced bundle. ``lb_sources``: where the load
    balancer connects from (the stack's VPC range); only from there is a PROXY header believed."""
    lines = [
        HEADER.rstrip("\n"),
        "# Behind the load balancer (PROXY protocol): the TCP peer is the load balancer, the address",
        "# it was connected from arrives in the PROXY header, believed from the VPC only.",
        *(f"set_real_ip_from {network};" for network in lb_sources),
        "real_ip_header proxy_protocol;",
        "",
        "# 1 when the load balancer's peer (the PROXY address) is in Cloudflare's ranges.",
        "geo $proxy_protocol_addr $bankflow_peer_is_cloudflare {",
        "    default 0;",
        *(f"    {network} 1;" for network in ranges),
        "}",
        "",
        "# The visitor: CF-Connecting-IP when that peer is Cloudflare, else the peer itself.",
        f'map "$bankflow_peer_is_cloudflare:$http_cf_connecting_ip" {LB_CLIENT} {{',
        "    default $remote_addr;",
        f'    "~^1:(?<bankflow_cf_client>{_ADDRESS_RE})$" $bankflow_cf_client;',
        "}",
        "",
        *client_port_map("$remote_port"),
        *peer_maps(),
    ]
    return "\n".join(lines) + "\n"
