"""The load-balanced bundle's nginx pieces (issue 13; ``settings.load_balanced`` only: a
single-droplet bundle renders exactly as before).

- the load balancer's health listener (:func:`lb_health_server`): plain HTTP on
  ``contract.fleet.LB_HEALTH_PORT``, answering the agent's ``lb-health.conf`` include.
"""

from __future__ import annotations

from bankflow_infra.contract.fleet import LB_HEALTH_INCLUDE, LB_HEALTH_PATH, LB_HEALTH_PORT
from bankflow_infra.render.model import NginxParams


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
