"""``bankflow:database``, ``bankflow:cache`` and ``bankflow:uploads`` (issue 13): the managed
building blocks of a stack that outgrew one droplet.

Each key is absent, ``{managed: false}`` / ``{shared: false}`` (today's piece on the droplet),
``{managed: true}`` / ``{shared: true}`` (the defaults of ``defaults.scale_defaults``) or a mapping
overlaying those defaults::

    bankflow:database: {managed: {size: db-s-2vcpu-4gb, nodes: 2, maintenanceWindow: "sunday 04:00"}}
    bankflow:cache:    {managed: {size: db-s-1vcpu-2gb, nodes: 1, maintenanceWindow: "sunday 04:30"}}
    bankflow:uploads:  {shared: {sizeGb: 100}}

The checks that need the server's settings too (region, count, data volume) live in
:func:`check_scale`, called by ``parse.py`` once every section is parsed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from bankflow_infra.settings.checks import Problems, check, int_range, merged, typed
from bankflow_infra.settings.defaults import scale_defaults
from bankflow_infra.settings.model import (
    MaintenanceWindow,
    ManagedCacheSettings,
    ManagedDatabaseSettings,
    ScaleSettings,
    ServerSettings,
    SharedUploadsSettings,
)
from bankflow_infra.settings.slugs import (
    DATABASE_SIZES,
    HOW_TO_ADD_A_DATABASE_SLUG,
    MANAGED_DATABASE_REGIONS,
    NFS_MAX_SIZE_GB,
    NFS_MIN_SIZE_GB,
    NFS_REGIONS,
    SINGLE_NODE_ONLY_SIZES,
)

# digitalocean_database_cluster maintenance_window: `day` is validation.IsDayOfTheWeek (any case),
# `hour` "HH:MM" or "HH:MM:SS" (the API answers with seconds; the provider suppresses that diff).
WEEKDAYS: Final = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_WINDOW_RE: Final = re.compile(r"^([a-z]+) ([01][0-9]|2[0-3]):([0-5][0-9])$")
# A cluster's nodes: the primary and up to two standbys ("Database clusters may have zero, one, or
# two standby nodes", https://docs.digitalocean.com/products/databases/).
MAX_NODES: Final = 3
# The README runbook that moves a droplet's PostgreSQL into the managed cluster (issue 13).
RUNBOOK: Final = "docs/RUNBOOK-managed-database.md"


def maintenance_window(key: str, value: Any, problems: Problems) -> MaintenanceWindow:
    """``"<weekday> HH:MM"`` (UTC) -> MaintenanceWindow(day, "HH:MM:00")."""
    found = _WINDOW_RE.fullmatch(value.lower()) if isinstance(value, str) else None
    if found is None or found.group(1) not in WEEKDAYS:
        problems.add(key, f'must be "<weekday> HH:MM" in UTC (e.g. "sunday 04:00"), got {value!r}')
        return MaintenanceWindow(day="sunday", hour="04:00:00")
    day, hour, minute = found.groups()
    return MaintenanceWindow(day=day, hour=f"{hour}:{minute}:00")


def _switch(
    key: str, raw: Any, word: str, default: Mapping[str, Any], problems: Problems
) -> dict[str, Any] | None:
    """The mapping under ``<key>.<word>`` overlaid on ``default``; None when the piece stays on
    the droplet (key absent, ``<word>: false``). A malformed value is reported and read as the
    defaults: the author meant the managed piece, and the checks across sections must not add
    "missing" problems on top of the one that names the typo."""
    if raw is None:
        return None
    if not isinstance(raw, Mapping) or set(raw) != {word}:
        problems.add(
            key, f"must be a mapping with the one key {word} (true, false or a mapping), got {raw!r}"
        )
        return dict(default)
    value = raw[word]
    if value is False:
        return None
    if value is True:
        return dict(default)
    if not isinstance(value, Mapping):
        problems.add(f"{key}.{word}", f"must be true, false or a mapping with keys {', '.join(default)}")
        return dict(default)
    return merged(f"{key}.{word}", value, default, problems)


def _cluster(key: str, values: dict[str, Any], problems: Problems) -> tuple[str, int, MaintenanceWindow]:
    """Size, node count and maintenance window of a managed PostgreSQL or Valkey cluster."""
    size = typed(problems, f"{key}.size", values["size"], str, "db-s-1vcpu-1gb", "a size slug")
    check(
        problems,
        f"{key}.size",
        size in DATABASE_SIZES,
        f"{size!r} is not a known DigitalOcean database size (e.g. db-s-1vcpu-2gb, db-s-2vcpu-4gb, "
        f"gd-2vcpu-8gb). {HOW_TO_ADD_A_DATABASE_SLUG}",
    )
    nodes = int_range(problems, f"{key}.nodes", values["nodes"], 1, MAX_NODES)
    if nodes > 1 and size in SINGLE_NODE_ONLY_SIZES:
        problems.add(
            f"{key}.nodes",
            f"{size} is single-node only (DigitalOcean offers no standby on its smallest plan): "
            "choose db-s-1vcpu-2gb or larger for a standby",
        )
    window = maintenance_window(f"{key}.maintenanceWindow", values["maintenanceWindow"], problems)
    return size, nodes, window


def parse_database(raw: Any, env: str, problems: Problems) -> ManagedDatabaseSettings | None:
    values = _switch("database", raw, "managed", scale_defaults(env)["database"], problems)
    if values is None:
        return None
    size, nodes, window = _cluster("database.managed", values, problems)
    if env == "production" and nodes < 2:
        problems.add(
            "database.managed.nodes",
            "production's database needs a standby (2 or 3 nodes): with 1, a node failure or "
            "maintenance takes the database down until DigitalOcean replaces the node",
        )
    return ManagedDatabaseSettings(size=size, nodes=nodes, maintenance=window)


def parse_cache(raw: Any, env: str, problems: Problems) -> ManagedCacheSettings | None:
    values = _switch("cache", raw, "managed", scale_defaults(env)["cache"], problems)
    if values is None:
        return None
    size, nodes, window = _cluster("cache.managed", values, problems)
    return ManagedCacheSettings(size=size, nodes=nodes, maintenance=window)


def parse_uploads(raw: Any, env: str, problems: Problems) -> SharedUploadsSettings | None:
    values = _switch("uploads", raw, "shared", scale_defaults(env)["uploads"], problems)
    if values is None:
        return None
    size = int_range(problems, "uploads.shared.sizeGb", values["sizeGb"], NFS_MIN_SIZE_GB, NFS_MAX_SIZE_GB)
    return SharedUploadsSettings(size_gb=size)


def parse_scale(values: Mapping[str, Any], env: str, problems: Problems) -> ScaleSettings:
    return ScaleSettings(
        database=parse_database(values.get("database"), env, problems),
        cache=parse_cache(values.get("cache"), env, problems),
        uploads=parse_uploads(values.get("uploads"), env, problems),
    )


# --------------------------------------------------------------------------- across sections


def _missing_for_load_balancing(scale: ScaleSettings) -> list[str]:
    missing = []
    if scale.database is None:
        missing.append("bankflow:database.managed (PostgreSQL on one droplet cannot serve the others)")
    if scale.cache is None:
        missing.append("bankflow:cache.managed (sessions in one droplet's redis would log users out)")
    if scale.uploads is None:
        missing.append("bankflow:uploads.shared (a file uploaded to one droplet is missing on the others)")
    return missing


def _check_regions(server: ServerSettings, scale: ScaleSettings, problems: Problems) -> None:
    """Every managed piece joins the stack's VPC, so it must exist in the droplets' region."""
    region = server.region
    for key, piece in (("database.managed", scale.database), ("cache.managed", scale.cache)):
        if piece is not None and region not in MANAGED_DATABASE_REGIONS:
            problems.add(
                key,
                f"DigitalOcean offers no managed database in server.region {region!r} (it joins the "
                f"stack's VPC there); regions: {', '.join(MANAGED_DATABASE_REGIONS)}. "
                f"{HOW_TO_ADD_A_DATABASE_SLUG}",
            )
    if scale.uploads is not None and region not in NFS_REGIONS:
        problems.add(
            "uploads.shared",
            f"DigitalOcean Network File Storage is not known in server.region {region!r} (the share "
            f"joins the stack's VPC there); regions: {', '.join(NFS_REGIONS)} "
            "(bankflow_infra/settings/slugs.py NFS_REGIONS)",
        )


def _check_data_volume(env: str, server: ServerSettings, scale: ScaleSettings, problems: Problems) -> None:
    """The data volume holds the droplet's PostgreSQL and uploads. It may go (volumeSizeGb 0) only
    once neither lives there; production's volume is protected, so dropping it is a deliberate
    step of the runbook, never a side effect of switching the database to managed."""
    volume = server.volume_size_gb
    if server.count > 1 and volume > 0:
        problems.add(
            "server.volumeSizeGb",
            f"must be 0 with server.count {server.count}: a data volume attaches to one droplet only. "
            f"Move its PostgreSQL and uploads first ({RUNBOOK}), keep the volume until the move is "
            "verified, then set volumeSizeGb: 0 with count 1 (production's volume is protected: the "
            "runbook unprotects it on purpose), and only then raise the count",
        )
    both_moved = scale.database is not None and scale.uploads is not None
    if env == "production" and server.enabled and volume == 0 and not both_moved:
        on_volume = [
            name
            for name, piece in (("PostgreSQL", scale.database), ("the uploads", scale.uploads))
            if piece is None
        ]
        problems.add(
            "server.volumeSizeGb",
            f"production keeps {' and '.join(on_volume)} on a data volume: set 1 to 16384 (or move "
            f"them: bankflow:database.managed, bankflow:uploads.shared, {RUNBOOK})",
        )


def check_scale(env: str, server: ServerSettings, scale: ScaleSettings, problems: Problems) -> None:
    """The combinations that cannot work, each one clear error naming what to set."""
    if server.count > 1 and not server.enabled:
        problems.add("server.count", "more than one app droplet needs bankflow:server.enabled: true")
    managed_any = any(piece is not None for piece in (scale.database, scale.cache, scale.uploads))
    if managed_any and not server.enabled:
        problems.add(
            "server.enabled",
            "bankflow:database / cache / uploads belong to the stack that runs the droplets: "
            "remove them here or enable the server",
        )
        return
    if server.count > 1:
        missing = _missing_for_load_balancing(scale)
        if missing:
            problems.add(
                "server.count",
                f"{server.count} app droplets need every piece of state off the droplets; missing: "
                + "; ".join(missing),
            )
    _check_regions(server, scale, problems)
    _check_data_volume(env, server, scale, problems)
