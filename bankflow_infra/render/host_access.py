"""Who may reach the droplet, as the two host files files/bootstrap/host-setup.sh applies (issue 12).

- ``host/firewall-allow``: the host firewall's sources, one ``PORT/tcp CIDR`` a line -- 22 from
  ``server.sshAllowedCidrs``, 80 and 443 from Cloudflare's ranges. The same lists the program gives
  the DigitalOcean cloud firewall and nginx's ``set_real_ip_from``, so the host is a second layer
  with the same rules, not a different policy. The host learns Cloudflare's ranges from this file:
  they come from ``cloudflare.get_ip_ranges()`` at every ``pulumi up``; a change changes the
  bundle, which re-runs the bootstrap, which applies the new rules (add first, then remove).
  Load balanced (issue 13, ``server.count`` > 1): the load balancer, not Cloudflare, connects to
  the droplets, from its address in the stack's VPC ("Load balancers automatically connect to
  Droplets that reside in the same VPC network as the load balancer", DigitalOcean's load
  balancer docs, how-to/manage). So 443 (TCP pass-through, PROXY protocol) and the load
  balancer's health check port (contract/fleet.py LB_HEALTH_PORT, plain HTTP) are admitted from
  the VPC range only, and 80 from nobody (the load balancer forwards 443 alone). The cloud
  firewall narrows this further to the load balancer itself (``source_load_balancer_uids``).
- ``host/operators``: ``server.operators``, one ``NAME KEYTYPE KEY [COMMENT]`` a line: the named
  accounts host-setup.sh creates, with sudo (audited) and their key in a root-owned file.

Pure functions of the settings and the ranges; nothing secret (public keys and address ranges).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Final

from bankflow_infra import catalog
from bankflow_infra.contract.fleet import LB_HEALTH_PORT
from bankflow_infra.render.model import BundleInputError, CloudflareRanges
from bankflow_infra.settings import Settings
from bankflow_infra.settings.model import OperatorAccount

FIREWALL_ALLOW_PATH: Final = "host/firewall-allow"
OPERATORS_PATH: Final = "host/operators"
SSH_PORT: Final = catalog.SSH_PORT
WEB_PORTS: Final = (catalog.HTTP_PORT, catalog.HTTPS_PORT)


LOAD_BALANCED_PORTS: Final = (catalog.HTTPS_PORT, LB_HEALTH_PORT)


def render_firewall_allow(
    ssh_allowed_cidrs: Sequence[str], cloudflare: CloudflareRanges, load_balancer_vpc: str | None = None
) -> str:
    """The host firewall's allow list. Refuses input that would lock SSH out or open a port to all.
    ``load_balancer_vpc``: the VPC range the load balancer connects from (a load-balanced stack)."""
    if not ssh_allowed_cidrs:
        raise BundleInputError("server.sshAllowedCidrs: empty; the host firewall would lock SSH out")
    lines = ["# Installed by BankFlow (bankflow_infra/render/host_access.py): PORT/tcp SOURCE-CIDR"]
    rules = [(SSH_PORT, cidr) for cidr in ssh_allowed_cidrs]
    if load_balancer_vpc is None:
        rules += [(port, cidr) for port in WEB_PORTS for cidr in cloudflare.validated()]
    else:
        cloudflare.validated()  # nginx still trusts these (behind the load balancer's PROXY header)
        rules += [(port, load_balancer_vpc) for port in LOAD_BALANCED_PORTS]
    for port, cidr in rules:
        network = ipaddress.ip_network(cidr, strict=True)
        if network.prefixlen == 0:
            raise BundleInputError(f"{cidr!r} would open port {port} to every address")
        lines.append(f"{port}/tcp {network}")
    return "\n".join(lines) + "\n"


def render_operators(operators: Sequence[OperatorAccount]) -> str:
    """server.operators as host-setup.sh reads them (validated by settings/server.py)."""
    lines = ["# Installed by BankFlow (bankflow_infra/render/host_access.py): NAME PUBLIC-KEY"]
    lines += [f"{operator.name} {operator.public_key}" for operator in operators]
    return "\n".join(lines) + "\n"


def render_host_access_files(settings: Settings, cloudflare: CloudflareRanges) -> dict[str, str]:
    """Bundle path -> text: the host firewall's sources and the named operators."""
    return {
        FIREWALL_ALLOW_PATH: render_firewall_allow(
            settings.server.ssh_allowed_cidrs,
            cloudflare,
            settings.server.vpc_cidr if settings.load_balanced else None,
        ),
        OPERATORS_PATH: render_operators(settings.server.operators),
    }
