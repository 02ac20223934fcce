"""The port holder: the one container that owns nginx's published ports and network namespace.

Pure. nginx joins the holder's network namespace (``network_mode: service:edge-ports``) instead of
publishing ports itself, so the agent can start a NEW nginx container beside the serving one
(``host/runtime_base.py``: both listen with ``reuseport`` on the same sockets' addresses) and stop
the old one gracefully afterwards: no moment without a listener. The holder is the Kubernetes
pod-sandbox pattern: the ``pause`` image does nothing but sleep, so it never needs an update and
is never recreated by a deploy (it is not a catalog base service; compose starts it as nginx's
dependency).

``net.ipv4.tcp_migrate_req=1`` (a per-network-namespace sysctl, Linux >= 5.14; Ubuntu 24.04 runs
6.8): when the old nginx closes its listening sockets, connections already in their accept queues
move to the new nginx's sockets of the same reuseport group instead of being reset (kernel commit
f9ac779f881c "net: Introduce net.ipv4.tcp_migrate_req", Documentation/networking/ip-sysctl.rst).
"""

from __future__ import annotations

from typing import Any, Final

from bankflow_infra import catalog
from bankflow_infra.contract.fleet import LB_HEALTH_PORT
from bankflow_infra.contract.upstreams import CANDIDATE_PORT
from bankflow_infra.render import nginx as nginx_conf
from bankflow_infra.render.model import NginxParams

PORT_HOLDER: Final = "edge-ports"
PORT_HOLDER_IMAGE: Final = catalog.PORT_HOLDER_IMAGE  # pinned by digest beside the other images
PAUSE_USER: Final = "65535:65535"  # the pause image's own non-root user
_PORT_HOLDER_LIMITS: Final = {"cpus": "0.05", "memory": "16M"}  # it sleeps


def published_ports(params: NginxParams, load_balanced: bool = False) -> list[dict[str, Any]]:
    """80 and 443 to nginx's listeners; the verify listener on the host's loopback only; behind a
    load balancer (issue 13) also its health check listener, on every address: the load balancer
    checks the droplet's VPC address (the firewalls admit the VPC / the load balancer only)."""
    tcp = {"protocol": "tcp", "mode": "host"}
    health = {"target": params.lb_health_port, "published": str(LB_HEALTH_PORT), **tcp}
    extra = [health] if load_balanced else []
    return [
        {"target": params.http_port, "published": str(catalog.HTTP_PORT), **tcp},
        {"target": params.https_port, "published": str(catalog.HTTPS_PORT), **tcp},
        # The verify listener (render/nginx.py): the host's loopback only, never the network.
        {
            "target": nginx_conf.verify_port(params),
            "host_ip": "127.0.0.1",
            "published": str(CANDIDATE_PORT),
            "protocol": "tcp",
            "mode": "host",
        },
        *extra,
    ]


def nginx_networking() -> dict[str, Any]:
    """nginx's own networking keys: none but the holder's namespace (no ports, no networks)."""
    return {"network_mode": f"service:{PORT_HOLDER}"}


def port_holder(
    params: NginxParams, edge_network: str, restart: str, logging: dict[str, Any], load_balanced: bool = False
) -> dict[str, Any]:
    return {
        "image": PORT_HOLDER_IMAGE,
        "restart": restart,
        "user": PAUSE_USER,
        "read_only": True,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "pids_limit": 4,  # /pause alone (issue 12, item 5: every container has a pids limit)
        "ports": published_ports(params, load_balanced),
        "networks": [edge_network],  # nginx reaches the app containers' aliases through it
        "sysctls": {"net.ipv4.tcp_migrate_req": "1"},
        "logging": logging,
        "deploy": {"resources": {"limits": dict(_PORT_HOLDER_LIMITS)}},
        # no healthcheck: the image has no binary but /pause; "running" is its health
    }
