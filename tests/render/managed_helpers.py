"""The scaled shape of issue 13 for the renderer tests: the production settings with three app
droplets and every managed piece on, and the endpoints the program would pass (fixed values)."""

from __future__ import annotations

import dataclasses

from bankflow_infra.render import ManagedCache, ManagedDatabase, ManagedServices, SharedUploads
from bankflow_infra.settings import Settings
from bankflow_infra.settings.model import (
    MaintenanceWindow,
    ManagedCacheSettings,
    ManagedDatabaseSettings,
    ScaleSettings,
    SharedUploadsSettings,
)
from tests.render.helpers import load_settings

# Distinctive values, so a leak check finds them anywhere they should not be. ':' '@' '/' on
# purpose: they must be percent-encoded in URLs and escaped in the pgpass file.
DATABASE_PASSWORD = "AVNS_dbTest:Pass@w/rd-7f3a9c"  # noqa: S105 - a test value
CACHE_PASSWORD = "AVNS_cacheTestPassw0rd-2b8e41"  # noqa: S105 - a test value
FAKE_CA = "-----BEGIN CERTIFICATE-----\nTUlJRGZha2UtZG8tZGF0YWJhc2UtY2E=\n-----END CERTIFICATE-----\n"
DATABASE_HOST = "private-bankflow-scaled-db-do-user-1-0.b.db.ondigitalocean.com"
CACHE_HOST = "private-bankflow-scaled-cache-do-user-1-0.b.db.ondigitalocean.com"
NFS_SOURCE = "10.130.16.20:/2633050/5a1b-uploads"

MAINTENANCE = MaintenanceWindow("sunday", "04:00:00")


def scaled_settings(
    database: bool = True, cache: bool = True, uploads: bool = True, count: int = 3
) -> Settings:
    """Production with ``count`` droplets and the chosen managed pieces (no data volume)."""
    base = load_settings("production")
    scale = ScaleSettings(
        database=ManagedDatabaseSettings("db-s-2vcpu-4gb", 2, MAINTENANCE) if database else None,
        cache=ManagedCacheSettings("db-s-1vcpu-2gb", 1, MAINTENANCE) if cache else None,
        uploads=SharedUploadsSettings(100) if uploads else None,
    )
    server = dataclasses.replace(base.server, count=count, volume_size_gb=0)
    return dataclasses.replace(base, stack="scaled", server=server, scale=scale)


def managed_database(ca_pem: str = FAKE_CA, **changes: object) -> ManagedDatabase:
    db = ManagedDatabase(
        host=DATABASE_HOST,
        port=25060,
        pool_port=25061,
        pool_name="bankflow-pool",
        database="bankflow",
        user="bankflow_app",
        password=DATABASE_PASSWORD,
        ca_pem=ca_pem,
    )
    return dataclasses.replace(db, **changes)  # type: ignore[arg-type]


def managed_cache(ca_pem: str = FAKE_CA) -> ManagedCache:
    return ManagedCache(host=CACHE_HOST, port=25061, user="default", password=CACHE_PASSWORD, ca_pem=ca_pem)


def managed_services(database: bool = True, cache: bool = True, uploads: bool = True) -> ManagedServices:
    return ManagedServices(
        database=managed_database() if database else None,
        cache=managed_cache() if cache else None,
        uploads=SharedUploads(NFS_SOURCE) if uploads else None,
    )
