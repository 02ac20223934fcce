"""The scale-out outputs (issue 13): every app droplet, the load balancer, the managed database.

Parsed by :func:`bankflow_infra.contract.outputs.parse_outputs` with its reader; kept here so the
outputs module stays one job. Absent in stacks deployed before issue 13 (read as "one droplet, no
load balancer, the database on the droplet").
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Final, Protocol

FLEET_OUTPUTS: Final = frozenset({"origin_ips", "load_balancer_ip", "load_balancer_ipv6", "database"})


@dataclass(frozen=True)
class OriginDroplet:
    """One app droplet, in roll order (the first is the one `ssh` and `origin_ip` name)."""

    name: str  # its DigitalOcean name, bankflow-<stack>-server[-N]
    ipv4: str
    ipv6: str | None
    host_public_key: str  # its pinned SSH host key (OpenSSH format)


@dataclass(frozen=True)
class ManagedDatabaseEndpoint:
    """The managed PostgreSQL cluster, without secrets: its private host (VPC only), the direct
    port (migrations, dumps) and the connection pool's port (the apps)."""

    cluster: str  # the cluster's DigitalOcean name
    host: str
    port: int
    pool_port: int
    database: str


class _Reader(Protocol):
    stack: str
    problems: list[str]

    def get(self, name: str) -> Any: ...
    def fail(self, name: str, expected: str, value: Any, got: str | None = None) -> None: ...
    def string(self, name: str, value: Any, expected: str = ..., nullable: bool = ...) -> str | None: ...
    def ip(self, name: str, value: Any, version: int) -> str | None: ...


def _port(r: _Reader, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        r.fail(name, "a port number", value, repr(value) if isinstance(value, int) else None)
        return 0
    return value


def _droplet(r: _Reader, name: str, item: Any) -> OriginDroplet | None:
    keys = ("name", "ipv4", "ipv6", "host_public_key")
    if not isinstance(item, dict) or any(k not in item for k in keys):
        r.fail(name, "an object {" + ", ".join(keys) + "}", item)
        return None
    droplet_name = r.string(f"{name}.name", item["name"], "a droplet name")
    ipv4 = r.ip(f"{name}.ipv4", item["ipv4"], 4)
    if ipv4 is None and item["ipv4"] is None:
        r.fail(f"{name}.ipv4", "an IPv4 address", None)
    ipv6 = r.ip(f"{name}.ipv6", item["ipv6"], 6)
    key = r.string(f"{name}.host_public_key", item["host_public_key"], "an OpenSSH public key")
    if droplet_name is None or ipv4 is None or key is None:
        return None
    return OriginDroplet(droplet_name, ipv4, ipv6, key)


def parse_origin_ips(r: _Reader) -> tuple[OriginDroplet, ...]:
    value = r.get("origin_ips")
    if value is None:
        return ()
    if not isinstance(value, list):
        r.fail("origin_ips", "a list of {name, ipv4, ipv6, host_public_key}", value)
        return ()
    found = [_droplet(r, f"origin_ips[{index}]", item) for index, item in enumerate(value)]
    droplets = tuple(d for d in found if d is not None)
    addresses = [d.ipv4 for d in droplets]
    if len(set(addresses)) != len(addresses):
        r.problems.append(f"stack output 'origin_ips' of stack {r.stack!r}: an address is listed twice")
    return droplets


def parse_load_balancer_ip(r: _Reader, version: int = 4) -> str | None:
    name = "load_balancer_ip" if version == 4 else "load_balancer_ipv6"
    return r.ip(name, r.get(name), version)


def parse_database(r: _Reader) -> ManagedDatabaseEndpoint | None:
    value = r.get("database")
    if value is None:
        return None
    keys = ("cluster", "host", "port", "pool_port", "database")
    if not isinstance(value, dict) or any(k not in value for k in keys):
        r.fail("database", "an object {" + ", ".join(keys) + "} or null", value)
        return None
    cluster = r.string("database.cluster", value["cluster"], "a cluster name")
    host = r.string("database.host", value["host"], "a hostname")
    database = r.string("database.database", value["database"], "a database name")
    port = _port(r, "database.port", value["port"])
    pool_port = _port(r, "database.pool_port", value["pool_port"])
    if host is not None and _is_ip(host) is False and "." not in host:
        r.fail("database.host", "a fully qualified hostname", host, repr(host))
        return None
    if cluster is None or host is None or database is None or not port or not pool_port:
        return None
    return ManagedDatabaseEndpoint(cluster, host, port, pool_port, database)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
