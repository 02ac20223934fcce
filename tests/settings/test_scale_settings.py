"""Issue 13 item 1: server.count, database.managed, cache.managed, uploads.shared. Each bad value
is one problem naming its key and what would be valid; combinations that cannot work are one
clear error; today's stack files parse exactly as before."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from bankflow_infra.settings import TOP_LEVEL_KEYS, SettingsError, parse_settings
from bankflow_infra.settings.defaults import MAX_APP_DROPLETS, scale_defaults
from bankflow_infra.settings.model import (
    MaintenanceWindow,
    ManagedCacheSettings,
    ManagedDatabaseSettings,
    ScaleSettings,
    SharedUploadsSettings,
)
from bankflow_infra.settings.slugs import DATABASE_SIZES, MANAGED_DATABASE_REGIONS, NFS_REGIONS
from bankflow_infra.stackfile import settings_from_stack_file
from tests.settings.scaled import SCALED_STACK, SCALED_STACK_FILE, scaled_settings, scaled_values
from tests.support.tools import REPO

Values = dict[str, Any]
Edit = Callable[[Values], None]


def todays(stack: str) -> Values:
    document = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())
    return {k.split(":", 1)[1]: v for k, v in document["config"].items() if k.startswith("bankflow:")}


def problems(values: Values, stack: str = SCALED_STACK) -> list[str]:
    with pytest.raises(SettingsError) as raised:
        parse_settings("bankflow", stack, values)
    return list(raised.value.problems)


def scaled_with(edit: Edit) -> list[str]:
    values = scaled_values()
    edit(values)
    return problems(values)


def only(found: list[str], key: str) -> str:
    """The one problem of ``found``, which must name ``key``."""
    assert len(found) == 1, found
    assert found[0].startswith(f"bankflow:{key}: "), found
    return found[0]


# --------------------------------------------------------------------------- the two shapes


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_todays_stacks_stay_single_droplet_with_nothing_managed(stack):
    settings = parse_settings("bankflow", stack, todays(stack))
    assert settings.server.count == 1
    assert settings.scale == ScaleSettings()
    assert not settings.load_balanced


def test_the_scaled_fixture_is_three_droplets_with_everything_managed():
    settings = scaled_settings()
    assert settings.stack == SCALED_STACK
    assert settings.is_production
    assert settings.server.count == 3
    assert settings.load_balanced
    assert settings.server.volume_size_gb == 0
    assert settings.scale == ScaleSettings(
        database=ManagedDatabaseSettings("db-s-2vcpu-4gb", 2, MaintenanceWindow("sunday", "04:00:00")),
        cache=ManagedCacheSettings("db-s-1vcpu-2gb", 1, MaintenanceWindow("sunday", "04:30:00")),
        uploads=SharedUploadsSettings(size_gb=100),
    )


def test_the_scaled_fixture_reads_the_same_through_the_stack_file_reader():
    document = yaml.safe_load(SCALED_STACK_FILE.read_text())
    assert settings_from_stack_file("bankflow", SCALED_STACK, document, "x") == scaled_settings()


def test_the_new_keys_are_top_level_keys():
    assert {"database", "cache", "uploads"} <= set(TOP_LEVEL_KEYS)


@pytest.mark.parametrize(
    ("key", "off"),
    [("database", {"managed": False}), ("cache", {"managed": False}), ("uploads", {"shared": False})],
)
def test_false_is_todays_piece_like_an_absent_key(key, off):
    values = todays("staging")
    values[key] = off
    assert parse_settings("bankflow", "staging", values) == parse_settings(
        "bankflow", "staging", todays("staging")
    )


def test_true_takes_the_documented_defaults():
    values = todays("staging")
    values.update(database={"managed": True}, cache={"managed": True}, uploads={"shared": True})
    values["server"]["region"] = NFS_REGIONS[-1]
    scale = parse_settings("bankflow", "staging", values).scale
    defaults = scale_defaults("staging")
    assert scale.database is not None
    assert scale.cache is not None
    assert scale.uploads is not None
    assert (scale.database.size, scale.database.nodes) == (defaults["database"]["size"], 1)
    assert (scale.cache.size, scale.cache.nodes) == (defaults["cache"]["size"], defaults["cache"]["nodes"])
    assert scale.uploads.size_gb == defaults["uploads"]["sizeGb"]


def test_production_default_database_has_a_standby():
    values = scaled_values()
    values["database"] = {"managed": True}
    database = parse_settings("bankflow", SCALED_STACK, values).scale.database
    assert database is not None
    assert database.nodes == 2


# --------------------------------------------------------------------------- server.count


@pytest.mark.parametrize("count", [0, -1, MAX_APP_DROPLETS + 1, True, "3", 2.0])
def test_count_outside_1_to_the_maximum_is_refused(count):
    def edit(values: Values) -> None:
        values["server"]["count"] = count

    message = "\n".join(scaled_with(edit))
    assert f"bankflow:server.count: must be an integer from 1 to {MAX_APP_DROPLETS}" in message


def test_count_above_one_needs_every_managed_piece_in_one_error():
    values = todays("staging")
    values["server"]["count"] = 2
    values["server"]["volumeSizeGb"] = 0
    message = only(problems(values, "staging"), "server.count")
    for missing in ("bankflow:database.managed", "bankflow:cache.managed", "bankflow:uploads.shared"):
        assert missing in message


def test_count_above_one_names_only_what_is_missing():
    message = only(scaled_with(lambda v: v.pop("cache")), "server.count")
    assert "bankflow:cache.managed" in message
    assert "bankflow:database.managed" not in message
    assert "bankflow:uploads.shared" not in message


def test_count_above_one_with_a_data_volume_points_to_the_runbook():
    def edit(values: Values) -> None:
        values["server"]["volumeSizeGb"] = 50

    message = only(scaled_with(edit), "server.volumeSizeGb")
    assert "must be 0 with server.count 3" in message
    assert "RUNBOOK-managed-database.md" in message


def test_count_above_one_without_a_server_is_refused():
    def edit(values: Values) -> None:
        values["server"]["enabled"] = False
        values["edge"]["originStack"] = "production"

    found = scaled_with(edit)
    assert any(p.startswith("bankflow:server.count: ") for p in found)
    assert any(p.startswith("bankflow:server.enabled: ") and "database / cache / uploads" in p for p in found)


# --------------------------------------------------------------------------- data volume


def test_production_without_a_volume_says_what_still_lives_on_it():
    values = todays("production")
    values["server"]["volumeSizeGb"] = 0
    message = only(problems(values, "production"), "server.volumeSizeGb")
    assert "PostgreSQL and the uploads" in message


def test_production_with_a_managed_database_keeps_the_volume_for_the_uploads():
    values = todays("production")
    values["server"]["volumeSizeGb"] = 0
    values["database"] = {"managed": True}
    message = only(problems(values, "production"), "server.volumeSizeGb")
    assert "the uploads" in message
    assert "PostgreSQL" not in message


def test_production_may_keep_its_volume_while_the_data_moves_to_managed_pieces():
    # The runbook's middle state: the cluster and the share exist, the volume still holds the old
    # data until the move is verified (never deleted as a side effect of the switch).
    values = todays("production")
    values.update(database={"managed": True}, uploads={"shared": {"sizeGb": 50}}, cache={"managed": True})
    values["server"]["region"] = "nyc1"
    settings = parse_settings("bankflow", "production", values)
    assert settings.server.volume_size_gb == 50
    assert settings.scale.database is not None


def test_production_single_droplet_fully_moved_may_drop_its_volume():
    values = todays("production")
    values.update(database={"managed": True}, uploads={"shared": True})
    values["server"].update(region="nyc1", volumeSizeGb=0)
    assert parse_settings("bankflow", "production", values).server.volume_size_gb == 0


# --------------------------------------------------------------------------- database / cache


def _set(path: str, value: Any) -> Edit:
    def edit(values: Values) -> None:
        *parents, last = path.split(".")
        node = values
        for part in parents:
            node = node[part]
        node[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "key", "expected"),
    [
        (_set("database.managed.size", "db-huge"), "database.managed.size", "DATABASE_SIZES"),
        (
            _set("cache.managed.size", "s-2vcpu-4gb"),
            "cache.managed.size",
            "not a known DigitalOcean database size",
        ),
        (_set("database.managed.nodes", 4), "database.managed.nodes", "from 1 to 3"),
        (_set("cache.managed.nodes", 0), "cache.managed.nodes", "from 1 to 3"),
        (_set("database.managed.nodes", 1), "database.managed.nodes", "needs a standby"),
        (
            _set("database.managed.maintenanceWindow", "someday 04:00"),
            "database.managed.maintenanceWindow",
            "<weekday> HH:MM",
        ),
        (
            _set("database.managed.maintenanceWindow", "sunday 24:00"),
            "database.managed.maintenanceWindow",
            "UTC",
        ),
        (
            _set("cache.managed.maintenanceWindow", "sunday"),
            "cache.managed.maintenanceWindow",
            "sunday 04:00",
        ),
        (_set("cache.managed.maintenanceWindow", 4), "cache.managed.maintenanceWindow", "got 4"),
        (_set("cache.managed.maintenanceWindow", "sunday 04:30\n"), "cache.managed.maintenanceWindow", "UTC"),
        (_set("database.managed.pitrDays", 14), "database.managed.pitrDays", "unknown key"),
        (_set("database.managed", "yes"), "database.managed", "true, false or a mapping"),
        (_set("database", {"managed": True, "engine": "mysql"}), "database", "the one key managed"),
        (_set("database", ["managed"]), "database", "the one key managed"),
        (_set("uploads", {"managed": True}), "uploads", "the one key shared"),
        (_set("uploads.shared.sizeGb", 49), "uploads.shared.sizeGb", "from 50 to 16384"),
        (_set("uploads.shared.sizeGb", 16385), "uploads.shared.sizeGb", "from 50 to 16384"),
        (_set("uploads.shared.sizeGb", "100"), "uploads.shared.sizeGb", "integer"),
        (_set("uploads.shared.tier", "high"), "uploads.shared.tier", "unknown key"),
    ],
)
def test_a_bad_managed_value_is_one_problem_naming_its_key(edit, key, expected):
    message = only(scaled_with(edit), key)
    assert expected in message


def test_the_smallest_database_plan_has_no_standby():
    def edit(values: Values) -> None:
        values["cache"]["managed"].update(size="db-s-1vcpu-1gb", nodes=2)

    assert "single-node only" in only(scaled_with(edit), "cache.managed.nodes")


def test_a_window_is_read_in_any_case_and_stored_as_the_provider_answers():
    values = scaled_values()
    values["database"]["managed"]["maintenanceWindow"] = "Saturday 23:15"
    database = parse_settings("bankflow", SCALED_STACK, values).scale.database
    assert database is not None
    assert database.maintenance == MaintenanceWindow("saturday", "23:15:00")


def test_every_listed_size_is_accepted():
    for size in DATABASE_SIZES:
        values = scaled_values()
        values["cache"]["managed"]["size"] = size
        assert parse_settings("bankflow", SCALED_STACK, values).scale.cache is not None


# --------------------------------------------------------------------------- regions


def test_managed_pieces_must_exist_in_the_droplets_region():
    region = "atl1"  # droplets and Network File Storage, no managed databases
    assert region in NFS_REGIONS
    assert region not in MANAGED_DATABASE_REGIONS

    def edit(values: Values) -> None:
        values["server"]["region"] = region

    found = scaled_with(edit)
    assert {p.split(": ", 1)[0] for p in found} == {"bankflow:database.managed", "bankflow:cache.managed"}
    assert all(region in p for p in found)


def test_shared_uploads_must_exist_in_the_droplets_region():
    region = next(r for r in MANAGED_DATABASE_REGIONS if r not in NFS_REGIONS)

    def edit(values: Values) -> None:
        values["server"]["region"] = region

    message = only(scaled_with(edit), "uploads.shared")
    assert region in message
    assert "NFS_REGIONS" in message


def test_every_problem_of_a_broken_scaled_file_is_reported_at_once():
    values = copy.deepcopy(scaled_values())
    values["server"]["count"] = 11
    values["database"]["managed"]["size"] = "nope"
    values["uploads"]["shared"]["sizeGb"] = 10
    keys = {p.split(": ", 1)[0] for p in problems(values)}
    assert keys == {
        "bankflow:server.count",
        "bankflow:database.managed.size",
        "bankflow:uploads.shared.sizeGb",
    }
