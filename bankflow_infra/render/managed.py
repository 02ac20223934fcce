"""What the bundle takes from DigitalOcean's managed building blocks (issue 13), when the stack's
settings switch them on: the managed PostgreSQL cluster (through its connection pool), the
managed Valkey cluster, and the Network File Storage share for uploads.

The program fills these from the resources' outputs; passwords are secrets and stay out of reprs.
Everything None: the single-droplet bundle, exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ManagedDatabase:
    host: str  # the cluster's private hostname (VPC only)
    port: int  # direct connections (migrations, dumps)
    pool_port: int  # the connection pool (the apps)
    pool_name: str  # the pool's name: the database name the apps connect to through the pool
    database: str
    user: str  # the app role (a DatabaseUser)
    password: str = field(repr=False)
    ca_pem: str = field(repr=False, default="")  # DigitalOcean's CA for the cluster (verify-full)


@dataclass(frozen=True)
class ManagedCache:
    host: str  # private hostname
    port: int
    user: str
    password: str = field(repr=False)
    ca_pem: str = field(repr=False, default="")


@dataclass(frozen=True)
class SharedUploads:
    nfs_source: str  # "<host>:<path>" as the share is mounted (NfsAttachment / the share's mount path)


@dataclass(frozen=True)
class ManagedServices:
    database: ManagedDatabase | None = None
    cache: ManagedCache | None = None
    uploads: SharedUploads | None = None
