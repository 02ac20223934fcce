"""Where ``health --origin`` goes in a stack with several droplets behind a load balancer.

A single-droplet stack (no ``load_balancer_ip``, at most one ``origin_ips`` entry) is probed as
before issue 13: every service at ``origin_ip:443``. A load-balanced stack is probed at every
droplet in ``origin_ips`` (roll order) and at the load balancer, every service at each:

- a droplet: ``<its ipv4>:443`` with a PROXY protocol v1 line first (ops/health_proxy.py), as
  the load balancer connects to it (nginx's 443 listener expects the line there);
- the load balancer: ``load_balancer_ip:443``, plain TLS, as Cloudflare connects (the load
  balancer passes TCP through, so the pinned origin certificate and the origin-pull client
  certificate are the droplets' own).

Network reach is the firewalls' business, not this module's: the droplets' 443 admits the load
balancer only and the load balancer admits Cloudflare only, so run ``--origin`` from where those
allow it (a droplet of the stack's VPC, an SSH tunnel) -- or without ``--origin``, through
Cloudflare, which sees the fleet as one.

Tests and debugging redirect a target with the same ``resolve`` mapping as hostnames, keyed by
the target's IP address (``BANKFLOW_HEALTH_RESOLVE=203.0.113.11=127.0.0.1:8443``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from bankflow_infra.catalog import HTTPS_PORT
from bankflow_infra.contract.outputs import StackOutputs

LOAD_BALANCER_TARGET: Final = "load-balancer"


@dataclass(frozen=True)
class FleetTarget:
    name: str  # the droplet's DigitalOcean name, or LOAD_BALANCER_TARGET
    address: tuple[str, int]  # where to connect
    proxy_protocol: bool  # send a PROXY v1 line first (a droplet behind the load balancer)


def is_fleet(outputs: StackOutputs) -> bool:
    """A stack whose traffic goes through a load balancer to several droplets."""
    return outputs.load_balancer_ip is not None or len(outputs.origin_ips) > 1


def fleet_targets(outputs: StackOutputs, resolve: Mapping[str, tuple[str, int]]) -> tuple[FleetTarget, ...]:
    """Every droplet (roll order), then the load balancer; each redirected by ``resolve[ip]``."""
    droplets = [(d.name, d.ipv4, True) for d in outputs.origin_ips]
    if outputs.load_balancer_ip is not None:
        droplets.append((LOAD_BALANCER_TARGET, outputs.load_balancer_ip, False))
    return tuple(
        FleetTarget(name, resolve.get(ip, (ip, HTTPS_PORT)), proxy) for name, ip, proxy in droplets
    )

