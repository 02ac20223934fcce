"""The stack outputs' names, JSON types, secrecy and meanings: the one list the program exports,
the parser in :mod:`outputs` reads and the README's table shows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class OutputSpec:
    name: str
    json_type: str  # as the README states it
    secret: bool
    meaning: str


OUTPUTS: Final = (
    OutputSpec("environment", "string", False, "`staging` or `production`"),
    OutputSpec("origin_ip", "string or null", False,
               "this stack's own droplet IPv4 (null when `server.enabled` is false)"),
    OutputSpec("origin_ipv6", "string or null", False, "this stack's own droplet IPv6"),
    OutputSpec("ssh", "object or null", False,
               "`{host, port, user, host_public_key}` of this stack's droplet; "
               "the host key is the pinned one"),
    OutputSpec("deploy_private_key", "secret string or null", True,
               "the generated deploy key (OpenSSH format)"),
    OutputSpec("urls", "object", False, "service → `https://` URL (`site`, `saas`, `api`)"),
    OutputSpec("health", "list", False, "`{service, url, host, path}` per public service, for health probes"),
    OutputSpec("release", "string or null", False,
               "sha256 of the deployed host bundle; its first 12 hex digits are the release id that "
               "`releases` lists on the host"),
    OutputSpec("origin_stack", "string", False,
               "the stack whose droplet serves this stack's edge (itself unless `edge.originStack`)"),
    OutputSpec("backup_bucket", "object or null", False,
               "`{name, region, endpoint}` of the environment's Spaces bucket for backups"),
    OutputSpec("backup_replica", "object or null", False,
               "`{name, region, endpoint}` of its replica in another region (no droplet key reaches it)"),
    OutputSpec("backup_replica_key", "secret object or null", True,
               "`{access_key, secret_key}` of the replication workflow "
               "(reads the bucket, writes the replica)"),
    OutputSpec("backup_drill_key", "secret object or null", True,
               "`{access_key, secret_key}` of the restore drill (reads both buckets, writes nothing)"),
    OutputSpec("backup_repository", "secret object or null", True,
               "`{cipher_pass, uploads_password}` of the backups in the bucket (pgBackRest, restic): "
               "a rebuild stack and the restore drill read them"),
    OutputSpec("origin_certificate", "string or null", False,
               "the Origin CA certificate (PEM), to pin when probing the origin directly"),
    OutputSpec("origin_cert_expires_on", "string or null", False,
               "its expiry (Origin CA certificates are not renewed automatically)"),
    OutputSpec("origin_pull_client", "secret object or null", True,
               "`{certificate, private_key}` Cloudflare presents to this stack's nginx "
               "(Authenticated Origin Pulls); an edge with `edge.originStack` uploads it"),
    OutputSpec("origin_ips", "list or null", False,
               "`{name, ipv4, ipv6, host_public_key}` of every app droplet, in roll order "
               "(the first is the one `ssh` names)"),
    OutputSpec("load_balancer_ip", "string or null", False,
               "the load balancer's IPv4 when `server.count` > 1 (the DNS records point at it)"),
    OutputSpec("load_balancer_ipv6", "string or null", False,
               "the load balancer's IPv6 (dual stack); an edge with `edge.originStack` points AAAA at it"),
    OutputSpec("database", "object or null", False,
               "`{cluster, host, port, pool_port, database}` of the managed PostgreSQL cluster "
               "(private host, no secret); null when PostgreSQL runs on the droplet"),
)
OUTPUT_NAMES: Final = tuple(spec.name for spec in OUTPUTS)
SECRET_OUTPUTS: Final = frozenset(spec.name for spec in OUTPUTS if spec.secret)


def readme_table() -> str:
    """The README's "Stack outputs" table, as a test compares it."""
    rows = ["| output | type | meaning |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {s.json_type} | {s.meaning} |" for s in OUTPUTS]
    return "\n".join(rows) + "\n"
