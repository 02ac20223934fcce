"""A picture of one stack from its offline plan: Mermaid and Graphviz DOT.

Resources come from the plan's recorder, grouped by layer (server, edge, stack) and component
(their Pulumi parent); resources of one type under one component are one box ("DnsRecord x6").
What runs on the droplet and who calls whom comes from the catalog, so the traffic path
(visitors → Cloudflare → firewall → droplet → nginx → app services → PostgreSQL/Redis) and the
backup path (PostgreSQL → nightly dump → the Spaces bucket) follow the code, not a drawing. A
scaled stack's plan (issue 13) has a load balancer between Cloudflare and the firewall and the
data in managed clusters and an NFS share (``DataHomes``): the drawing follows the plan's boxes.
Given a base plan (``plan --json`` of the target branch) boxes are marked added or changed and
the removed resources are listed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bankflow_infra.catalog import app_services
from bankflow_infra.settings import Settings

# The layer each component belongs to: the switch in Pulumi.<stack>.yaml that creates it
# (README "Stack config": bankflow:server.enabled, bankflow:edge.enabled).
LAYER_OF_COMPONENT: Final[Mapping[str, str]] = {
    "bankflow:index:Credentials": "server",
    "bankflow:index:Server": "server",
    "bankflow:index:DataVolume": "server",
    "bankflow:index:OriginCertificate": "server",
    "bankflow:index:Monitoring": "server",
    "bankflow:index:BackupAccess": "server",
    "bankflow:index:Host": "server",
    "bankflow:index:Edge": "edge",
    "bankflow:index:BackupBucket": "edge",
    "bankflow:index:BackupReplica": "edge",
    "bankflow:index:OriginPullCa": "server",
    "bankflow:index:OriginPulls": "edge",
    "bankflow:index:ZoneSecurity": "edge",
    # issue 13: the scaled shape's pieces serve the droplets (server.count, managed data, uploads)
    "bankflow:index:LoadBalancer": "server",
    "bankflow:index:ManagedDatabase": "server",
    "bankflow:index:ManagedCache": "server",
    "bankflow:index:SharedUploads": "server",
}
LAYER_TITLES: Final = {"server": "server layer", "edge": "edge layer", "stack": "stack-wide"}
MARKER: Final = "<!-- bankflow-infra plan --graph -->"

Change = str  # "added" | "changed" | "removed"


@dataclass(frozen=True)
class Box:
    id: str
    label: str
    layer: str
    component: str  # the parent component's name, "" for a top-level resource
    kind: str = ""  # the resource type's short name (Droplet), "" for what is not a resource
    change: Change | None = None


@dataclass
class Graph:
    stack: str
    boxes: list[Box] = field(default_factory=list)
    host: list[Box] = field(default_factory=list)  # what runs on the droplet (catalog)
    edges: list[tuple[str, str, str]] = field(default_factory=list)  # (from id, to id, label)
    removed: list[str] = field(default_factory=list)  # "Type name" of resources the change deletes
    titles: dict[str, str] = field(default_factory=dict)  # component name -> "name (Type)"

    def first_of(self, kind: str) -> str | None:
        return next((b.id for b in self.boxes if b.kind == kind), None)


def short_type(type_token: str) -> str:
    """``digitalocean:index/droplet:Droplet`` → ``Droplet``."""
    return type_token.rsplit(":", 1)[-1]


def node_id(*parts: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts))


def changes(
    now: Iterable[Mapping[str, Any]], base: Iterable[Mapping[str, Any]]
) -> dict[tuple[str, str], Change]:
    """(type, name) → added/changed/removed between two ``plan --json`` resource lists."""
    before = {(r["type"], r["name"]): r for r in base}
    after = {(r["type"], r["name"]): r for r in now}
    found: dict[tuple[str, str], Change] = {}
    for key, row in after.items():
        if key not in before:
            found[key] = "added"
        elif row["inputs"] != before[key]["inputs"] or row["parent"] != before[key]["parent"]:
            found[key] = "changed"
    found.update({key: "removed" for key in before if key not in after})
    return found


def _layer(row: Mapping[str, Any], component_types: Mapping[str, str]) -> str:
    parent_type = component_types.get(row["parent"] or "", row["type"])
    return LAYER_OF_COMPONENT.get(parent_type, "stack")


def _boxes(rows: list[dict[str, Any]], marks: Mapping[tuple[str, str], Change]) -> list[Box]:
    component_types = {r["name"]: r["type"] for r in rows if r["type"].startswith("bankflow:")}
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        if row["type"].startswith("bankflow:"):
            continue
        groups.setdefault((_layer(row, component_types), row["parent"] or "", row["type"]), []).append(row)
    boxes = []
    for (layer, component, type_token), members in sorted(groups.items()):
        kinds = {marks.get((m["type"], m["name"])) for m in members} - {None}
        label = short_type(type_token)
        if len(members) > 1:
            label += f" x{len(members)}"
        else:
            label += f"<br/>{members[0]['name']}"
        change = "added" if kinds == {"added"} else ("changed" if kinds else None)
        if change and len(members) > 1:
            label += f"<br/>({sum(1 for m in members if marks.get((m['type'], m['name'])))} {change})"
        kind = short_type(type_token)
        boxes.append(Box(node_id("r", component, kind), label, layer, component, kind, change))
    return boxes


@dataclass(frozen=True)
class DataHomes:
    """Where the apps' data lives: box ids. Today's droplet runs PostgreSQL and Redis itself; a
    scaled stack (issue 13) has managed clusters and an NFS share instead."""

    postgres: str = "h_postgres"
    redis: str = "h_redis"
    share: str | None = None  # the NFS share's box (uploads), None: the droplet's own disk

    @property
    def managed_database(self) -> bool:
        return self.postgres != "h_postgres"


def _host_boxes(settings: Settings, homes: DataHomes) -> tuple[list[Box], list[tuple[str, str, str]]]:
    """The droplet's services and who calls whom, from the catalog."""
    services = app_services(settings)
    boxes = [Box("h_nginx", "nginx<br/>TLS, real IP from Cloudflare", "host", "")]
    boxes += [Box(f"h_{s.name}", f"{s.name} :{s.port}", "host", "") for s in services]
    boxes += [
        Box(home, name, "host", "")
        for home, name in ((homes.postgres, "PostgreSQL"), (homes.redis, "Redis"))
        if home.startswith("h_")
    ]
    database_label = "" if homes.postgres.startswith("h_") else "pool, TLS verify-full"
    cache_label = "" if homes.redis.startswith("h_") else "rediss://"
    edges = [("h_nginx", f"h_{s.name}", s.hostnames[0]) for s in services]
    for service in services:
        edges += [
            (f"h_{service.name}", f"h_{callee}", variable) for variable, callee in service.calls.items()
        ]
        if "DATABASE_URL" in service.secret_env:
            edges.append((f"h_{service.name}", homes.postgres, database_label))
        if "REDIS_URL" in service.secret_env:
            edges.append((f"h_{service.name}", homes.redis, cache_label))
    return boxes, edges


def _data_homes(graph: Graph, rows: list[dict[str, Any]]) -> DataHomes:
    """The managed clusters' and the share's boxes when the plan has them (by their component)."""
    by_type = {r["type"]: r["name"] for r in rows if r["type"].startswith("bankflow:")}

    def cluster_of(component_type: str) -> str | None:
        component = by_type.get(component_type)
        return next(
            (b.id for b in graph.boxes if b.kind == "DatabaseCluster" and b.component == component), None
        )

    return DataHomes(
        cluster_of("bankflow:index:ManagedDatabase") or "h_postgres",
        cluster_of("bankflow:index:ManagedCache") or "h_redis",
        graph.first_of("Nfs"),
    )


def _traffic(graph: Graph, dns: str | None, firewall: str | None, droplet: str) -> None:
    """Cloudflare → (the load balancer →) the droplets' firewall → the droplet(s)."""
    balancer = graph.first_of("LoadBalancer")
    if not (dns and firewall):
        return
    if balancer is None:
        graph.edges += [(dns, firewall, "443 from Cloudflare's ranges only"), (firewall, droplet, "")]
        return
    graph.edges += [
        (dns, balancer, "443 from Cloudflare's ranges only"),
        (balancer, firewall, "TCP 443 pass-through + PROXY, health :8404"),
        (firewall, droplet, "from the load balancer only, every droplet of the stack tag"),
    ]


def _backup_paths(graph: Graph, settings: Settings, homes: DataHomes, bucket: str) -> None:
    if homes.managed_database:  # DigitalOcean keeps the point-in-time backups; our dump is the copy
        graph.host.append(
            Box("h_dumps", f"nightly pg_dump {settings.backups.time_utc} UTC (droplet 1)", "host", "")
        )
        graph.edges += [
            (homes.postgres, "h_dumps", "pg_dump, TLS verify-full"),
            ("h_dumps", bucket, "rclone upload"),
        ]
    else:
        graph.host += [
            Box("h_dumps", f"nightly pg_dump {settings.backups.time_utc} UTC", "host", ""),
            Box("h_pitr", "pgBackRest: WAL every ≤60 s, full weekly, incremental nightly", "host", ""),
        ]
        graph.edges += [
            ("h_postgres", "h_dumps", "backup"),
            ("h_dumps", bucket, "rclone upload"),
            ("h_postgres", "h_pitr", "archive_command"),
            ("h_pitr", bucket, "encrypted, /pgbackrest"),
        ]
    graph.host.append(Box("h_uploads", "uploads (restic every 5 min)", "host", ""))
    if homes.share is not None:
        graph.edges.append((homes.share, "h_uploads", "NFS, mounted on every droplet"))
    graph.edges.append(("h_uploads", bucket, "encrypted, /uploads"))


def build_graph(
    stack: str,
    rows: list[dict[str, Any]],
    settings: Settings,
    base_rows: list[dict[str, Any]] | None = None,
) -> Graph:
    marks = changes(rows, base_rows) if base_rows is not None else {}
    graph = Graph(stack, _boxes(rows, marks))
    graph.titles = {
        r["name"]: f"{r['name']} ({short_type(r['type'])})" for r in rows if r["type"].startswith("bankflow:")
    }
    graph.removed = sorted(f"{short_type(t)} {n}" for (t, n), kind in marks.items() if kind == "removed")
    graph.boxes.insert(0, Box("visitors", "visitors", "outside", ""))
    dns, firewall = graph.first_of("DnsRecord"), graph.first_of("Firewall")
    replica_parents = {r["name"] for r in rows if r["type"] == "bankflow:index:BackupReplica"}
    buckets = [b for b in graph.boxes if b.kind == "SpacesBucket"]
    bucket = next((b.id for b in buckets if b.component not in replica_parents), None)
    replica = next((b.id for b in buckets if b.component in replica_parents), None)
    droplet = graph.first_of("Droplet")
    if dns:
        graph.edges.append(("visitors", dns, "HTTPS via the Cloudflare proxy"))
    if droplet:
        homes = _data_homes(graph, rows)
        graph.host, host_edges = _host_boxes(settings, homes)
        _traffic(graph, dns, firewall, droplet)
        graph.edges += [(droplet, "h_nginx", ""), *host_edges]
        if not bucket:  # a rebuild stack uploads to its environment's original bucket
            graph.boxes.append(Box("bucket_elsewhere", settings.backup_bucket_name, "outside", ""))
            bucket = "bucket_elsewhere"
        _backup_paths(graph, settings, homes, bucket)
    if bucket and replica:
        graph.edges.append((bucket, replica, "hourly rclone copy, never delete (backup-replica)"))
    return graph
