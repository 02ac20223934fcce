"""The invariants of a stack that outgrew one droplet (issue 13): the load balancer, the managed
PostgreSQL/Valkey clusters and their firewalls. ``check_*(args, report)`` like ``rules``.

What each rule reads, from terraform-provider-digitalocean (the schema the SDK bridges):
- ``digitalocean_loadbalancer`` ``firewall``: ``allow``/``deny`` lists of ``"ip:1.2.3.4"`` or
  ``"cidr:1.2.0.0/16"`` (loadbalancer/resource_loadbalancer.go); a load balancer without allow
  rules admits everyone. ``forwarding_rule``: ``entry_protocol`` http/https/http2/http3/tcp/udp.
- ``digitalocean_database_firewall`` ``rule``: ``type`` droplet/k8s/ip_addr/tag/app and ``value``
  (pulumi_digitalocean ``DatabaseFirewallRuleArgs``). A cluster with no trusted source accepts
  connections from any address that has the password
  (https://docs.digitalocean.com/products/databases/postgresql/how-to/secure/).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pulumi_policy import PolicyResource, ReportViolation, ResourceValidationArgs, StackValidationArgs

from bankflow_policy.markers import UNKNOWN, field, known, known_items, reveal
from bankflow_policy.network import inbound_rules, normalised, outside, parse_network
from bankflow_policy.rules import DATABASE_CLUSTER, FIREWALL, LOAD_BALANCER, cloudflare_ranges, stack_of

DATABASE_FIREWALL: Final = "digitalocean:index/databaseFirewall:DatabaseFirewall"

# PostgreSQL, redis/Valkey, and DigitalOcean's managed PostgreSQL (direct) / pool ports: nothing
# of ours listens on them publicly, and the managed clusters are reached inside the VPC only.
DATABASE_PORTS: Final = (5432, 6379, 25060, 25061)
# TCP pass-through: nginx on the droplets keeps terminating TLS, so Cloudflare's client
# certificate (Authenticated Origin Pulls) is still checked there. An https entry would terminate
# TLS at the load balancer, which has no such check.
LB_PORT: Final = 443
LB_PROTOCOL: Final = "tcp"
# The tag every droplet of a stack carries (bankflow_infra/components/server.py stack_tag_name),
# deliberately restated: the policy does not trust the program it checks.
STACK_TAG_PREFIX: Final = "stack-"


def stack_tag(urn: str) -> str:
    return f"{STACK_TAG_PREFIX}{stack_of(urn)}"


# --------------------------------------------------------------------------- load balancer


def _lb_sources(entries: list[Any]) -> tuple[list[str], list[str]]:
    """(addresses, unreadable entries) of a load balancer firewall's ``allows``."""
    addresses, unreadable = [], []
    for entry in entries:
        kind, _, source = str(reveal(entry)).partition(":")
        if kind in ("ip", "cidr") and parse_network(source) is not None:
            addresses.append(source)
        else:
            unreadable.append(str(reveal(entry)))
    return addresses, unreadable


def check_load_balancer_admits_cloudflare_only(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """The load balancer's own firewall allows exactly Cloudflare's published ranges."""
    if args.resource_type != LOAD_BALANCER:
        return
    firewall = reveal(known(args.props, "firewall")) if "firewall" in args.props else None
    if firewall is UNKNOWN:
        return
    allows = known_items(field(firewall, "allows")) if isinstance(firewall, Mapping) else []
    where = f"load balancer '{args.name}' firewall"
    if not allows:
        report(f"{where} has no allow rules, so it admits the whole internet: allow Cloudflare only", None)
        return
    addresses, unreadable = _lb_sources(allows)
    allowed = normalised(cloudflare_ranges(args))
    stray = outside(addresses, allowed) + unreadable
    if stray:
        report(f"{where} allows {', '.join(stray)}, which is not Cloudflare's", None)
    missing = sorted(str(n) for n in allowed - normalised(addresses))
    if missing:
        report(
            f"{where} leaves out Cloudflare ranges {', '.join(missing)}: the allow list must be exactly "
            "Cloudflare's published list as 'cidr:<range>' (policy config cloudflareRanges)",
            None,
        )


def check_load_balancer_forwards_443_tcp_only(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every forwarding rule is TCP 443 -> TCP 443: TLS passes through to nginx untouched."""
    if args.resource_type != LOAD_BALANCER:
        return
    rules = [reveal(r) for r in known_items(field(args.props, "forwardingRules"))]
    if not rules and "forwardingRules" in args.props and known(args.props, "forwardingRules") is not UNKNOWN:
        report(f"load balancer '{args.name}' has no forwarding rule: it must forward TCP 443 to 443", None)
    for index, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            continue
        shape = (
            str(reveal(rule.get("entryProtocol"))).lower(),
            reveal(rule.get("entryPort")),
            str(reveal(rule.get("targetProtocol"))).lower(),
            reveal(rule.get("targetPort")),
        )
        if shape != (LB_PROTOCOL, LB_PORT, LB_PROTOCOL, LB_PORT):
            report(
                f"load balancer '{args.name}' forwarding rule {index} is {shape[0]} {shape[1]} -> "
                f"{shape[2]} {shape[3]}: only tcp {LB_PORT} -> tcp {LB_PORT} (TLS pass-through, so nginx "
                "keeps checking Cloudflare's client certificate)",
                None,
            )


# --------------------------------------------------------------------------- databases


def check_database_firewall_admits_only_the_stack_tag(
    args: ResourceValidationArgs, report: ReportViolation
) -> None:
    """A managed cluster's trusted sources are the stack's droplets, by their tag, and nothing else."""
    if args.resource_type != DATABASE_FIREWALL:
        return
    expected = stack_tag(args.urn)
    rules = [reveal(r) for r in known_items(field(args.props, "rules"))]
    if not rules and known(args.props, "rules") is not UNKNOWN:
        report(
            f"database firewall '{args.name}' has no rule: a cluster without trusted sources accepts "
            f"any address; trust the tag {expected} only",
            None,
        )
    for index, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            continue
        kind, value = known(rule, "type"), known(rule, "value")
        if UNKNOWN in (kind, value):
            continue
        if (reveal(kind), reveal(value)) != ("tag", expected):
            report(
                f"database firewall '{args.name}' rule {index} trusts {reveal(kind)} "
                f"{reveal(value)!s}: only the stack's droplets may connect (type tag, value {expected})",
                None,
            )


def check_no_database_port_published(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """No droplet firewall rule opens a database port, from any source."""
    if args.resource_type != FIREWALL:
        return
    for rule in inbound_rules(args.props):
        opened = [port for port in DATABASE_PORTS if rule.opens(port)]
        if opened:
            report(
                f"firewall '{args.name}' inbound rule {rule.index} ({rule.protocol} "
                f"{rule.port_range or 'all'}) opens database port(s) {', '.join(map(str, opened))}: the "
                "databases are reached inside the VPC through their own firewalls only",
                None,
            )


def _guarded_clusters(firewalls: list[PolicyResource]) -> set[str]:
    """URNs (and ids) of the clusters some database firewall points at: the engine gives a stack
    policy each resource's dependencies; the id is a fallback once both exist."""
    guarded: set[str] = set()
    for firewall in firewalls:
        guarded |= {r.urn for r in firewall.property_dependencies.get("clusterId", [])}
        guarded |= {r.urn for r in firewall.dependencies}
        cluster_id = reveal(known(firewall.props, "clusterId")) if "clusterId" in firewall.props else None
        if isinstance(cluster_id, str) and cluster_id:
            guarded.add(cluster_id)
    return guarded


def _known_id(resource: PolicyResource) -> str | None:
    """The resource's id when its outputs carry one (after an update; unknown in a first preview)."""
    value = reveal(known(resource.props, "id")) if "id" in resource.props else None
    return value if isinstance(value, str) and value else None


def check_every_database_cluster_has_a_firewall(args: StackValidationArgs, report: ReportViolation) -> None:
    """Every managed cluster has a DatabaseFirewall: without one it admits any address."""
    firewalls = [r for r in args.resources if r.resource_type == DATABASE_FIREWALL]
    guarded = _guarded_clusters(firewalls)
    for cluster in args.resources:
        if cluster.resource_type != DATABASE_CLUSTER:
            continue
        if cluster.urn not in guarded and _known_id(cluster) not in guarded:
            report(
                f"database cluster '{cluster.name}' has no DatabaseFirewall: it accepts connections from "
                "any address that has the password; add one trusting the stack's droplet tag",
                cluster.urn,
            )
