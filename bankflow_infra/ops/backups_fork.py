"""Point-in-time restore of a managed PostgreSQL cluster: a fork at time T, never the live cluster.

DigitalOcean restores a managed cluster only into a NEW cluster ("Restoring creates a new copy of
the cluster's primary node", docs.digitalocean.com/products/databases/postgresql/how-to/
restore-from-backups/): ``POST /v2/databases`` with ``backup_restore {database_name,
backup_created_at}`` (pydo ``databases.create_cluster``; the control panel calls it "fork").
Backups run daily and are kept seven days (same page); the control panel restores to "the latest
transaction available or a point in time" within them.

So ``restore STACK --to-time T`` on a stack whose outputs name a managed ``database``:

1. reads the live cluster (``GET /v2/databases``, by the name in the ``database`` output), its
   backups (``GET .../backups``) and its trusted sources (``GET .../firewall``) -- reads only;
2. refuses T in the future, or before the oldest backup DigitalOcean still keeps (nothing to
   restore from), or a fork name that is taken -- before anything is created;
3. creates the fork: the live cluster's engine, version, region, size, node count, VPC, tags
   and trusted sources (``rules``: a cluster without any accepts connections from anywhere, and
   this one holds the money data), restored at T (``--latest``: no timestamp; the API then
   takes the most recent daily backup, pydo create_cluster: "The most recent backup will be used
   if excluded" -- up to a day old, so for "just now" give ``--to-time``);
4. waits (bounded) until it is ``online`` and checks its trusted sources are the live
   cluster's (set again if DigitalOcean dropped them).

The live cluster receives GETs only. Pointing the stack at the fork is a deliberate second step
(docs/RUNBOOK-managed-database.md, "Bring a fork's data into service"), printed by the command.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

# DigitalOcean keeps PostgreSQL backups seven days (restore-from-backups page above). Only used
# to say how far back a restore can go; the cluster's own backup list is the authority.
BACKUP_RETENTION: Final = timedelta(days=7)
# A cluster name is part of its hostname: conservatively one DNS label, lower case.
_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
_COPIED: Final = ("engine", "version", "region", "size", "num_nodes", "private_network_uuid", "tags")
ONLINE: Final = "online"


class ForkError(Exception):
    """Refused before anything was created; the message says why and what would be valid."""


class DatabasesApi(Protocol):
    """The five DigitalOcean calls the fork needs (pydo in ops/backups_fork_api.py)."""

    def clusters(self) -> list[Mapping[str, Any]]: ...
    def backups(self, cluster_id: str) -> list[Mapping[str, Any]]: ...
    def firewall(self, cluster_id: str) -> list[Mapping[str, Any]]: ...
    def create(self, body: Mapping[str, Any]) -> Mapping[str, Any]: ...
    def cluster(self, cluster_id: str) -> Mapping[str, Any]: ...
    def set_firewall(self, cluster_id: str, rules: Sequence[Mapping[str, Any]]) -> None: ...


@dataclass(frozen=True)
class ForkPlan:
    source: Mapping[str, Any]  # the live cluster, as GET /v2/databases lists it
    fork_name: str
    target: datetime | None  # None (--latest): DigitalOcean's most recent daily backup
    oldest_backup: datetime
    rules: tuple[Mapping[str, Any], ...]  # the live cluster's trusted sources (type, value)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {key: self.source[key] for key in _COPIED if self.source.get(key) is not None}
        body["name"] = self.fork_name
        restore: dict[str, Any] = {"database_name": self.source["name"]}
        if self.target is not None:
            restore["backup_created_at"] = self.target.strftime("%Y-%m-%dT%H:%M:%SZ")
        body["backup_restore"] = restore
        # The trusted sources at creation (the create body's `rules`, pydo create_cluster): no
        # moment where a copy of the money data accepts connections from anywhere.
        body["rules"] = [dict(rule) for rule in self.rules]
        return body


def parse_api_time(text: Any) -> datetime | None:
    """DigitalOcean's ISO 8601 times ("2020-02-20T00:00:00Z"; the docs also show a space)."""
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def default_fork_name(source: str, target: datetime | None, now: datetime) -> str:
    stamp = (target or now).strftime("%Y%m%d-%H%M")
    return f"{source[: 63 - len(stamp) - 6]}-fork-{stamp}"


def plan_fork(
    source_name: str,
    clusters: Sequence[Mapping[str, Any]],
    backups: Sequence[Mapping[str, Any]],
    rules: Sequence[Mapping[str, Any]],
    target: datetime | None,
    now: datetime,
    fork_name: str | None = None,
) -> ForkPlan:
    """Pure: the checked fork, or one ForkError before anything is created."""
    source = next((c for c in clusters if c.get("name") == source_name), None)
    if source is None:
        names = ", ".join(sorted(str(c.get("name")) for c in clusters)) or "none"
        raise ForkError(f"no managed database cluster named {source_name!r} (output database.cluster); "
                        f"the account has: {names}")
    if source.get("engine") != "pg":
        raise ForkError(f"cluster {source_name!r} is {source.get('engine')!r}, not PostgreSQL (pg)")
    times = sorted(t for t in (parse_api_time(b.get("created_at")) for b in backups) if t is not None)
    if not times:
        raise ForkError(f"cluster {source_name!r} has no backup yet (DigitalOcean takes the first within a "
                        "day of creation): nothing to restore from")
    if target is not None and target > now:
        raise ForkError(f"--to-time {target:%Y-%m-%d %H:%M:%SZ} is in the future")
    if target is not None and target < times[0]:
        raise ForkError(
            f"--to-time {target:%Y-%m-%d %H:%M:%SZ} is before the oldest backup DigitalOcean keeps of "
            f"{source_name!r} ({times[0]:%Y-%m-%d %H:%M:%SZ}; backups are kept "
            f"{BACKUP_RETENTION.days} days): choose a time after it, or restore a nightly dump "
            "(docs/RUNBOOK-managed-database.md)")
    name = fork_name or default_fork_name(source_name, target, now)
    if not _NAME_RE.match(name):
        raise ForkError(f"fork name {name!r}: 3-63 of a-z 0-9 -, starting with a letter")
    if any(c.get("name") == name for c in clusters):
        raise ForkError(f"a cluster named {name!r} exists already: choose another --fork-name")
    kept = tuple({"type": r["type"], "value": r["value"]} for r in rules if "type" in r and "value" in r)
    return ForkPlan(source, name, target, times[0], kept)


def create_fork(
    api: DatabasesApi,
    plan: ForkPlan,
    deadline_seconds: float,
    poll_seconds: float = 15.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[str], None] = lambda _line: None,
) -> tuple[Mapping[str, Any], bool]:
    """Create the fork, wait until online (bounded), make sure of its trusted sources.

    Returns (the fork as last read, online). Not online by the deadline: DigitalOcean keeps
    building it; the caller says how to follow it."""
    created = api.create(plan.body())
    fork_id = str(created.get("id"))
    progress(f"fork {plan.fork_name} ({fork_id}) is being created")
    fork, stop = created, clock() + deadline_seconds
    while fork.get("status") != ONLINE and clock() < stop:
        sleep(min(poll_seconds, max(stop - clock(), 0.0)))
        fork = api.cluster(fork_id)
    if fork.get("status") != ONLINE:
        return fork, False
    wanted = {(r["type"], r["value"]) for r in plan.rules}
    have = {(r.get("type"), r.get("value")) for r in api.firewall(fork_id)}
    if wanted != have:
        api.set_firewall(fork_id, plan.rules)
        progress(f"fork {plan.fork_name}: trusted sources set to the live cluster's ({len(plan.rules)})")
    return fork, True
