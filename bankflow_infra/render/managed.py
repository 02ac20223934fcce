"""What the bundle takes from DigitalOcean's managed building blocks (issue 13), when the stack's
settings switch them on: the managed PostgreSQL cluster (through its connection pool), the
managed Valkey cluster, and the Network File Storage share for uploads.

The program fills these from the resources' outputs; passwords are secrets and stay out of reprs.
Everything None: the single-droplet bundle, exactly as before.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import quote, urlencode

from bankflow_infra.contract import layout
from bankflow_infra.render.model import BundleInputError
from bankflow_infra.settings import Settings


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


# --------------------------------------------------------------------------- what the bundle renders
# DigitalOcean's CA for each cluster (do.get_database_ca): public, so plain files under the bundle's
# tls/ (the agent copies tls/ to layout.TLS_DIR), mounted read-only into the app containers that
# connect. With verify-full the client checks the server's certificate chains to this CA AND names
# the host it dialled: a VPC neighbour or a DNS answer pointing elsewhere cannot pose as the cluster.
DATABASE_CA_FILE: Final = "tls/managed-database-ca.pem"
CACHE_CA_FILE: Final = "tls/managed-cache-ca.pem"
CA_CONTAINER_DIR: Final = "/etc/bankflow-ca"  # inside the app containers (a mount point only)
DATABASE_CA_CONTAINER_PATH: Final = f"{CA_CONTAINER_DIR}/database.pem"
CACHE_CA_CONTAINER_PATH: Final = f"{CA_CONTAINER_DIR}/cache.pem"
# Where a Valkey client finds the cache's CA: a rediss:// URL has no standard parameter for it
# (unlike libpq's sslrootcert), so the apps read this non-secret variable.
CACHE_CA_ENV: Final = "REDIS_CA_FILE"
# libpq's password file for the nightly logical dump from droplet 1 (render/backup.py): 0600 root,
# read by pg_dump through PGPASSFILE, so the password is never in an argv or an environment.
DATABASE_PGPASS_FILE: Final = "secrets/managed-database.pgpass"

# A DigitalOcean cluster's private host: "private-<name>-do-user-<n>-0.<region>.db.ondigitalocean.com".
_LABEL: Final = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
_HOST_RE: Final = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})+$")
_IDENT_RE: Final = re.compile(r"^[a-z_][a-z0-9_-]{0,62}$")  # DigitalOcean database, pool and user names
# DigitalOcean generates these passwords and does not promise an alphabet: anything printable
# without whitespace is accepted, percent-encoded into URLs and escaped in the pgpass file, so
# '@', ':' or '/' cannot change a URL's or a line's meaning (tests/render/test_managed_tls_live.py).
_PASSWORD_RE: Final = re.compile(r"^[\x21-\x7e]{8,256}$")
# NFS source: "<host or IPv4>:/<path>" (the share's mount_path behind its VPC address).
_NFS_RE: Final = re.compile(r"^[A-Za-z0-9.-]{1,253}:/[A-Za-z0-9._/-]{0,255}$")
_PEM_BEGIN: Final = "-----BEGIN CERTIFICATE-----"
_PEM_END: Final = "-----END CERTIFICATE-----"


class ManagedInputError(BundleInputError):
    """A managed service's input the renderer refuses; names the field, never a secret value."""


def _check_endpoint(what: str, host: str, ports: dict[str, int], ca_pem: str, password: str) -> list[str]:
    problems = []
    if not _HOST_RE.fullmatch(host):
        problems.append(f"{what}.host: {host!r} is not a DNS hostname (the cluster's private host)")
    for name, port in ports.items():
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            problems.append(f"{what}.{name}: {port!r} is not a port number")
    if not _PASSWORD_RE.fullmatch(password):
        problems.append(f"{what}.password: must be 8-256 printable characters, no spaces (value not shown)")
    text = ca_pem.strip()
    if not (text.startswith(_PEM_BEGIN) and text.endswith(_PEM_END)) or "PRIVATE KEY" in text:
        problems.append(
            f"{what}.ca_pem: must be DigitalOcean's CA certificate (PEM, do.get_database_ca): "
            "sslmode=verify-full cannot check the cluster without it"
        )
    return problems


def _check_database(db: ManagedDatabase) -> list[str]:
    ports = {"port": db.port, "pool_port": db.pool_port}
    problems = _check_endpoint("managed.database", db.host, ports, db.ca_pem, db.password)
    for name, value in (("pool_name", db.pool_name), ("database", db.database), ("user", db.user)):
        if not _IDENT_RE.fullmatch(value):
            problems.append(f"managed.database.{name}: {value!r} is not a database identifier (a-z 0-9 _ -)")
    return problems


def _check_cache(cache: ManagedCache) -> list[str]:
    ports = {"port": cache.port}
    problems = _check_endpoint("managed.cache", cache.host, ports, cache.ca_pem, cache.password)
    if not _IDENT_RE.fullmatch(cache.user):
        problems.append(f"managed.cache.user: {cache.user!r} is not a user name (a-z 0-9 _ -)")
    return problems


def _presence(label: str, config_key: str, in_settings: bool, given: bool) -> list[str]:
    if in_settings == given:
        return []
    if in_settings:
        return [f"{config_key} is set but the bundle got no managed.{label}: the program must pass it"]
    return [f"managed.{label} was given but {config_key} is not set: that piece runs on the droplet"]


def check(settings: Settings, managed: ManagedServices) -> None:
    """One error listing every problem: the settings and the endpoints must describe the same
    stack (a managed database in the config, its endpoint here), and every value must be usable."""
    pairs = (
        ("database", "bankflow:database.managed", settings.scale.database, managed.database),
        ("cache", "bankflow:cache.managed", settings.scale.cache, managed.cache),
        ("uploads", "bankflow:uploads.shared", settings.scale.uploads, managed.uploads),
    )
    problems = [
        problem
        for label, key, wanted, given in pairs
        for problem in _presence(label, key, wanted is not None, given is not None)
    ]
    if managed.database is not None:
        problems += _check_database(managed.database)
    if managed.cache is not None:
        problems += _check_cache(managed.cache)
    if managed.uploads is not None and not _NFS_RE.fullmatch(managed.uploads.nfs_source):
        problems.append(f"managed.uploads.nfs_source: {managed.uploads.nfs_source!r} is not '<host>:/<path>'")
    if problems:
        raise ManagedInputError("managed services: " + "; ".join(problems))


def _userinfo(user: str, password: str) -> str:
    return f"{quote(user, safe='')}:{quote(password, safe='')}"


def database_url(db: ManagedDatabase, *, direct: bool = False) -> str:
    """The apps' URL: through the connection pool (its name is the database name libpq sends);
    ``direct``: the cluster's own port and database (migrations, dumps). TLS verify-full against
    DigitalOcean's CA as mounted in the container."""
    port, name = (db.port, db.database) if direct else (db.pool_port, db.pool_name)
    query = urlencode({"sslmode": "verify-full", "sslrootcert": DATABASE_CA_CONTAINER_PATH}, safe="/")
    return f"postgresql://{_userinfo(db.user, db.password)}@{db.host}:{port}/{name}?{query}"


def cache_url(cache: ManagedCache) -> str:
    """Valkey over TLS (rediss://); the CA is in :data:`CACHE_CA_ENV` (no URL parameter for it)."""
    return f"rediss://{_userinfo(cache.user, cache.password)}@{cache.host}:{cache.port}/0"


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")  # libpq's escapes in a password file


def pgpass(db: ManagedDatabase) -> str:
    """``secrets/managed-database.pgpass``: the app role on the direct port, any database (pg_dump
    reads the app database, pg_dumpall --globals-only connects to ``postgres``)."""
    fields = (db.host, str(db.port), "*", db.user, db.password)
    return ":".join(_pgpass_field(f) for f in fields) + "\n"


def host_tls_path(bundle_path: str) -> str:
    """Where the agent puts a bundle's ``tls/<name>`` on the host (it copies tls/ to layout.TLS_DIR)."""
    return f"{layout.TLS_DIR}/{bundle_path.removeprefix('tls/')}"


def host_secret_path(bundle_path: str) -> str:
    """Where the agent puts a bundle's ``secrets/<name>`` on the host."""
    return f"{layout.SECRETS_DIR}/{bundle_path.removeprefix('secrets/')}"


def ca_files(managed: ManagedServices) -> dict[str, str]:
    """Bundle path -> text of each cluster's CA (public)."""
    files = {}
    if managed.database is not None:
        files[DATABASE_CA_FILE] = managed.database.ca_pem.strip() + "\n"
    if managed.cache is not None:
        files[CACHE_CA_FILE] = managed.cache.ca_pem.strip() + "\n"
    return files
