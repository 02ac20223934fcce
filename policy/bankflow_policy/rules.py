"""Each invariant as a small function over the SDK's args: ``check_*(args, report)``.

``report(message, urn)`` is the SDK's ReportViolation. Messages name the resource and the
property path, never a value (a violation of the secret rule must not print the secret).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from pulumi_policy import ReportViolation, ResourceValidationArgs, Secret, StackValidationArgs

from bankflow_policy.cloudflare import CLOUDFLARE_RANGES
from bankflow_policy.markers import (
    UNKNOWN,
    Path,
    dotted,
    field,
    known,
    known_items,
    plain_entries,
    plain_leaves,
    reveal,
)
from bankflow_policy.network import inbound_rules, normalised, outside, too_wide_for_ssh

DROPLET: Final = "digitalocean:index/droplet:Droplet"
VOLUME: Final = "digitalocean:index/volume:Volume"
BUCKET: Final = "digitalocean:index/spacesBucket:SpacesBucket"
FIREWALL: Final = "digitalocean:index/firewall:Firewall"
SPACES_KEY: Final = "digitalocean:index/spacesKey:SpacesKey"
# Issue 13: the managed PostgreSQL cluster (engine "pg") and the uploads share hold production data.
DATABASE_CLUSTER: Final = "digitalocean:index/databaseCluster:DatabaseCluster"
NFS: Final = "digitalocean:index/nfs:Nfs"
LOAD_BALANCER: Final = "digitalocean:index/loadBalancer:LoadBalancer"
# The second copy of a backups bucket, in another region: bankflow-<stack>-backups-replica.
REPLICA_SUFFIX: Final = "-backups-replica"
# The only Spaces grants that name one bucket; `fullaccess` is every bucket of the account.
SCOPED_PERMISSIONS: Final = ("read", "readwrite")
COMMAND: Final = "command:remote:Command"
DNS_RECORDS: Final = ("cloudflare:index/dnsRecord:DnsRecord", "cloudflare:index/record:Record")

SSH_PORT: Final = 22
WEB_PORTS: Final = (80, 443)
# Record types Cloudflare can proxy; a proxied record never publishes the origin's address.
PROXIABLE: Final = ("A", "AAAA", "CNAME")

# The production environment's stacks: `production`, and what `bankflow-infra rebuild` makes of
# it (production-r1, production-r2, ...). The droplet and volume also carry `env-production`.
PRODUCTION_STACK: Final = re.compile(r"production(-r[0-9]+)?")
PRODUCTION_TAG: Final = "env-production"

# Property names that say "this is a credential", at any depth of any resource's inputs.
SECRET_NAME: Final = re.compile(r"pass(word|wd|phrase)|secret|token|private_?key|api_?key|credential", re.I)
# Inputs of ours that carry secrets under innocent names: the deploy's .env bundle (stdin),
# command environments, the droplet's cloud-init with the host's private key (userData).
MUST_BE_SECRET: Final[dict[str, tuple[Path, ...]]] = {
    COMMAND: (("stdin",), ("environment",)),
    DROPLET: (("userData",),),
}
PRIVATE_KEY_BLOCK: Final = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
# A secret this short (or an address inside a secret SSH connection) is no evidence of a leak.
SHORTEST_TRACKED_SECRET: Final = 16


# --------------------------------------------------------------------------- environment


def stack_of(urn: str) -> str:
    """``urn:pulumi:production::bankflow::...`` -> ``production``."""
    return urn.removeprefix("urn:pulumi:").split("::", 1)[0]


def is_production_resource(urn: str, props: Mapping[str, Any]) -> bool:
    if PRODUCTION_STACK.fullmatch(stack_of(urn)):
        return True
    return PRODUCTION_TAG in known_items(field(props, "tags"))


def is_production(args: ResourceValidationArgs) -> bool:
    return is_production_resource(args.urn, args.props)


# --------------------------------------------------------------------------- protection


def holds_data(args: ResourceValidationArgs) -> bool:
    """The data volume, a bucket, the uploads share, the PostgreSQL cluster (not the cache)."""
    if args.resource_type == DATABASE_CLUSTER:
        return str(reveal(field(args.props, "engine"))) == "pg"
    return args.resource_type in (VOLUME, BUCKET, NFS)


def check_production_data_protected(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Production's data volume, backup buckets, database cluster and uploads share refuse
    `pulumi destroy` and replacement."""
    if not holds_data(args) or not is_production(args):
        return
    if not args.opts.protect:
        report(
            f"{args.resource_type} '{args.name}' holds production data and is not protected: "
            "set `protect=True` so no `up` or `destroy` can delete it",
            None,
        )


def check_backup_buckets_versioned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every Spaces bucket keeps old versions: an overwrite or delete leaves the previous one."""
    if args.resource_type != BUCKET:
        return
    versioning = reveal(known(args.props, "versioning")) if "versioning" in args.props else None
    if versioning is UNKNOWN:
        return
    has_flag = isinstance(versioning, Mapping) and "enabled" in versioning
    enabled = known(versioning, "enabled") if has_flag else None
    if enabled is not UNKNOWN and reveal(enabled) is not True:
        report(f"Spaces bucket '{args.name}' is not versioned: set versioning.enabled=true", None)


def check_spaces_keys_cannot_reach_the_replica(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """No key is fullaccess, and a key that can write a backups bucket has no grant on any
    replica: the replica is the copy a stolen droplet key cannot destroy."""
    if args.resource_type != SPACES_KEY:
        return
    grants = [g for g in known_items(field(args.props, "grants")) if isinstance(g, Mapping)]
    permissions = {str(reveal(g.get("permission"))) for g in grants}
    if permissions - set(SCOPED_PERMISSIONS):
        report(f"Spaces key '{args.name}' has a grant other than read/readwrite on one bucket", None)
    buckets = [(str(reveal(g.get("bucket"))), str(reveal(g.get("permission")))) for g in grants]
    writes_a_primary = any(p == "readwrite" and not b.endswith(REPLICA_SUFFIX) for b, p in buckets)
    if writes_a_primary and any(b.endswith(REPLICA_SUFFIX) for b, _ in buckets):
        report(
            f"Spaces key '{args.name}' writes a backups bucket and reaches its replica: a stolen key "
            "could destroy both copies; the replica belongs to the replication workflow's key only",
            None,
        )


def check_production_droplet_replaced_only_by_rebuild(
    args: StackValidationArgs, report: ReportViolation
) -> None:
    """A policy never sees the step (create/update/replace), so the guard is `protect`: the engine
    refuses to delete, and therefore to replace, a protected droplet; planned replacements go
    through `bankflow-infra rebuild` and `cutover`, which build a new stack beside it.

    A stack check because of issue 13: droplets behind the stack's load balancer (more than one)
    hold no data (settings refuse a data volume with server.count > 1) and serve beside each other,
    and `rebuild STACK --droplet N` replaces one of them with `pulumi up --replace`, which `protect`
    would refuse; they need not be protected. The one droplet of today's shape still must be."""
    droplets = [r for r in args.resources if r.resource_type == DROPLET]
    if len(droplets) > 1 and any(r.resource_type == LOAD_BALANCER for r in args.resources):
        return
    for droplet in droplets:
        if is_production_resource(droplet.urn, droplet.props) and not droplet.opts.protect:
            report(
                f"production droplet '{droplet.name}' is not protected: a change that forces a "
                "replacement would delete the running server in an `up`. Set `protect=True`; replace it "
                "with `bankflow-infra rebuild` and `cutover`",
                droplet.urn,
            )


# --------------------------------------------------------------------------- firewall


def check_no_internet_ssh(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Port 22 only from operators' ranges: never 0.0.0.0/0, ::/0 or the internet in pieces."""
    if args.resource_type != FIREWALL:
        return
    for rule in inbound_rules(args.props):
        wide = [a for a in rule.addresses if too_wide_for_ssh(a)] if rule.opens(SSH_PORT) else []
        if wide:
            report(
                f"firewall '{args.name}' inbound rule {rule.index} ({rule.protocol} "
                f"{rule.port_range or 'all'}) opens port {SSH_PORT} to {', '.join(wide)}: "
                "SSH is for the operators' ranges only (server.sshAllowedCidrs)",
                None,
            )


def cloudflare_ranges(args: ResourceValidationArgs) -> tuple[str, ...]:
    configured = args.get_config().get("cloudflareRanges")
    return tuple(configured) if configured else CLOUDFLARE_RANGES


# A droplet behind the stack's load balancer (issue 13) admits 443 from that load balancer only;
# the load balancer's own firewall admits exactly Cloudflare (policy load-balancer-cloudflare-only).
LOAD_BALANCER_SOURCE: Final = "sourceLoadBalancerUids"


def check_web_only_from_cloudflare(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """80/443 are open to exactly Cloudflare's published ranges (or to the stack's load balancer,
    itself Cloudflare-only) and to nothing else."""
    if args.resource_type != FIREWALL:
        return
    allowed = normalised(cloudflare_ranges(args))
    rules = inbound_rules(args.props)
    for port in WEB_PORTS:
        opening = [r for r in rules if r.opens(port)]
        sources = [a for r in opening for a in r.addresses]
        where = f"firewall '{args.name}' port {port}"
        stray = outside(sources, allowed)
        if stray:
            report(f"{where} admits {', '.join(stray)}, which is not Cloudflare's", None)
        others = sorted({name for r in opening for name in r.other_sources} - {LOAD_BALANCER_SOURCE})
        if others:
            report(f"{where} admits {', '.join(others)} sources; only Cloudflare may reach it", None)
        missing = sorted(str(n) for n in allowed - normalised(sources))
        if sources and missing:
            report(
                f"{where} leaves out Cloudflare ranges {', '.join(missing)}: the allowed sources "
                "must be exactly Cloudflare's published list (policy config cloudflareRanges)",
                None,
            )


# --------------------------------------------------------------------------- DNS


def check_dns_proxied(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Every A/AAAA/CNAME record goes through Cloudflare's proxy, hiding the origin address."""
    if args.resource_type not in DNS_RECORDS:
        return
    record_type = str(field(args.props, "type") or "").upper()
    if record_type in PROXIABLE and field(args.props, "proxied") is not True:
        report(
            f"DNS record '{args.name}' ({record_type}) is not proxied: it would publish the origin's "
            "address and let clients bypass Cloudflare. Set proxied=true",
            None,
        )


# --------------------------------------------------------------------------- secrets


def _has_value(value: Any) -> bool:
    value = reveal(value)
    if isinstance(value, str):
        return value.strip() != ""
    if isinstance(value, Mapping):
        return len(value) > 0
    return isinstance(value, list | tuple) and len(value) > 0


def _plain_at(props: Mapping[str, Any], path: Path) -> bool:
    """Whether the input at ``path`` is set and no secret marker covers it."""
    value: Any = props
    for key in path:
        if isinstance(value, Secret) or not isinstance(value, Mapping) or key not in value:
            return False
        value = known(value, key)
        if value is UNKNOWN:
            return False
    return not isinstance(value, Secret) and _has_value(value)


def plain_secret_paths(args: ResourceValidationArgs) -> list[tuple[str, str]]:
    """(path, why) for each input that holds a secret without Pulumi's secret marker."""
    found: dict[str, str] = {}
    for path, value in plain_entries(args.props):
        name = path[-1]
        named_secret = isinstance(name, str) and SECRET_NAME.search(name) is not None
        if named_secret and not isinstance(value, Secret) and _has_value(value):
            found.setdefault(dotted(path), "its name says it is a credential")
    for path in MUST_BE_SECRET.get(args.resource_type, ()):
        if _plain_at(args.props, path):
            found.setdefault(dotted(path), "it carries the stack's secrets")
    for path, leaf in plain_leaves(args.props):
        if isinstance(leaf, str) and PRIVATE_KEY_BLOCK.search(leaf):
            found.setdefault(dotted(path), "it holds a private key")
    return sorted(found.items())


def check_no_plain_secret_inputs(args: ResourceValidationArgs, report: ReportViolation) -> None:
    """Secrets reach a resource only as Pulumi secrets, so state and logs keep them encrypted."""
    for path, why in plain_secret_paths(args):
        report(
            f"{args.resource_type} '{args.name}' input '{path}' is not a Pulumi secret but {why}: "
            "wrap it in pulumi.Output.secret (or read it with config.require_secret)",
            None,
        )


def _secret_texts(secrets: Iterable[Secret]) -> set[str]:
    """The secret strings worth tracking: each marker around a string of at least
    SHORTEST_TRACKED_SECRET characters. A marker around a structure (an SSH connection: host,
    user, pinned public host key, private key) also wraps public parts, so only the strings
    marked on their own count; the private key inside is marked on its own where it is made."""
    texts: set[str] = set()
    for secret in secrets:
        inner = reveal(secret)
        if isinstance(inner, str):
            if len(inner) >= SHORTEST_TRACKED_SECRET and not _is_address(inner):
                texts.add(inner)
        else:
            texts |= _secret_texts(_secrets_in(inner))  # a secret nested in a secret
    return texts


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _secrets_in(value: Any) -> list[Secret]:
    """The outermost secret markers inside ``value``."""
    if isinstance(value, Secret):
        return [value]
    found: list[Secret] = []
    if isinstance(value, Mapping):
        for key in list(value):
            found += _secrets_in(known(value, key))
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for index in range(len(value)):
            found += _secrets_in(known(value, index))
    return found


def check_secret_values_stay_secret(args: StackValidationArgs, report: ReportViolation) -> None:
    """A value that is secret in one resource is never plain in another (a password copied into a
    command line, a key into a tag): the stack-wide half of the secret rule."""
    secrets = _secret_texts(s for r in args.resources for s in _secrets_in(r.props))
    for resource in args.resources:
        for path, leaf in plain_leaves(resource.props):
            if isinstance(leaf, str) and any(secret in leaf for secret in secrets):
                report(
                    f"{resource.resource_type} '{resource.name}' property '{dotted(path)}' holds, in "
                    "plain text, a value the stack keeps secret elsewhere",
                    resource.urn,
                )
