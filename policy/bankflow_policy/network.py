"""Reading DigitalOcean firewall rules: which ports a rule opens and what its sources cover."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from bankflow_policy.markers import field, items, reveal

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Source kinds other than addresses (DigitalOcean API "sources"): none of them is Cloudflare.
OTHER_SOURCE_FIELDS = ("sourceTags", "sourceDropletIds", "sourceLoadBalancerUids", "sourceKubernetesIds")
# "ports": "0" or "all" (or none given) opens every port of a TCP/UDP rule (DigitalOcean API docs,
# https://docs.digitalocean.com/reference/api/digitalocean/#tag/Firewalls).
ALL_PORTS = ("", "0", "all")
PORTED_PROTOCOLS = ("tcp", "udp")
# Wider than this and not private: "the internet, in pieces" (two /1 halves, a public /8).
WIDEST_OPERATOR_PREFIX = {4: 16, 6: 32}


@dataclass(frozen=True)
class InboundRule:
    index: int
    protocol: str
    port_range: str
    addresses: tuple[str, ...]
    other_sources: tuple[str, ...]  # names of non-address source fields that are set

    def opens(self, port: int) -> bool:
        """Whether this rule lets ``port`` in (TCP or UDP; ICMP has no ports)."""
        if self.protocol not in PORTED_PROTOCOLS:
            return False
        text = self.port_range.strip().lower()
        if text in ALL_PORTS:
            return True
        low, _, high = text.partition("-")
        try:
            return int(low) <= port <= int(high or low)
        except ValueError:
            return True  # a range nobody can read is treated as open: fail closed


def inbound_rules(props: Mapping[str, Any]) -> list[InboundRule]:
    """A ``digitalocean:index/firewall:Firewall``'s inbound rules, read from its inputs."""
    rules = []
    for index, raw in enumerate(items(field(props, "inboundRules"))):
        rule = reveal(raw) if isinstance(reveal(raw), Mapping) else {}
        rules.append(
            InboundRule(
                index=index,
                protocol=str(field(rule, "protocol") or "").lower(),
                port_range=str(field(rule, "portRange") or ""),
                addresses=tuple(str(a) for a in items(field(rule, "sourceAddresses"))),
                other_sources=tuple(name for name in OTHER_SOURCE_FIELDS if items(field(rule, name))),
            )
        )
    return rules


def parse_network(text: str) -> Network | None:
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        return None


def too_wide_for_ssh(text: str) -> bool:
    """A source that is (part of) the open internet rather than an operator's range."""
    network = parse_network(text)
    if network is None:
        return True  # unreadable: fail closed
    if network.is_private and network.prefixlen > 0:
        return False
    return network.prefixlen < WIDEST_OPERATOR_PREFIX[network.version]


def normalised(ranges: Iterable[str]) -> set[Network]:
    return {n for n in (parse_network(r) for r in ranges) if n is not None}


def outside(sources: Iterable[str], allowed: set[Network]) -> list[str]:
    """The sources that are not inside one of the ``allowed`` networks."""
    stray = []
    for text in sources:
        network = parse_network(text)
        inside = network is not None and any(
            network.version == a.version and network.subnet_of(a)  # type: ignore[arg-type]
            for a in allowed
        )
        if not inside:
            stray.append(text)
    return stray
