"""Who may reach the droplet, as the two host files files/bootstrap/host-setup.sh applies (issue 12).

- ``host/firewall-allow``: the host firewall's sources, one ``PORT/tcp CIDR`` a line -- 22 from
  ``server.sshAllowedCidrs``, 80 and 443 from Cloudflare's ranges. The same lists the program gives
  the DigitalOcean cloud firewall and nginx's ``set_real_ip_from``, so the host is a second layer
  with the same rules, not a different policy. The host learns Cloudflare's ranges from this file:
  they come from ``cloudflare.get_ip_ranges()`` at every ``pulumi up``; a change changes the
  bundle, which re-runs the bootstrap, which applies the new rules (add first, then remove).
- ``host/operators``: ``server.operators``, one ``NAME KEYTYPE KEY [COMMENT]`` a line: the named
  accounts host-setup.sh creates, with sudo (audited) and their key in a root-owned file.

Pure functions of the settings and the ranges; nothing secret (public keys and address ranges).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Final

from bankflow_infra import catalog
from bankflow_infra.render.model import BundleInputError, CloudflareRanges
from bankflow_infra.settings import Settings
from bankflow_infra.settings.model import OperatorAccount

FIREWALL_ALLOW_PATH: Final = "host/firewall-allow"
OPERATORS_PATH: Final = "host/operators"
SSH_PORT: Final = catalog.SSH_PORT
WEB_PORTS: Final = (catalog.HTTP_PORT, catalog.HTTPS_PORT)


def render_firewall_allow(ssh_allowed_cidrs: Sequence[str], cloudflare: CloudflareRanges) -> str:
    """The host firewall's allow list. Refuses input that would lock SSH out or open a port to all."""
    if not ssh_allowed_cidrs:
        raise BundleInputError("server.sshAllowedCidrs: empty; the host firewall would lock SSH out")
    lines = ["# Installed by BankFlow (bankflow_infra/render/host_access.py): PORT/tcp SOURCE-CIDR"]
    rules = [(SSH_PORT, cidr) for cidr in ssh_allowed_cidrs]
    rules += [(port, cidr) for port in WEB_PORTS for cidr in cloudflare.validated()]
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
        FIREWALL_ALLOW_PATH: render_firewall_allow(settings.server.ssh_allowed_cidrs, cloudflare),
        OPERATORS_PATH: render_operators(settings.server.operators),
    }
