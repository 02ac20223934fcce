"""The pure parts: names, VPC ranges, config edits, the step lists and the resume text."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from bankflow_infra.ops.rebuild import (
    ConfigEdit,
    RebuildError,
    apply_edits,
    check_new_stack_name,
    default_new_name,
    free_vpc_cidr,
    plan_cutover,
    plan_rebuild,
    plan_retire,
    rebuild_edits,
    shell_line,
    stop_message,
)
from bankflow_infra.ops.rebuild_prepare import protected_deletions
from bankflow_infra.ops.stack_inventory import Inventory
from bankflow_infra.settings import DO_RESERVED_RANGES, parse_settings
from bankflow_infra.stackfile import bankflow_values
from tests.support.tools import REPO


@pytest.mark.parametrize(
    ("stack", "existing", "expected"),
    [
        ("production", {"production", "staging"}, "production-r1"),
        ("production", {"production", "production-r1", "production-r2"}, "production-r3"),
        ("production-r1", {"production", "production-r1"}, "production-r2"),  # never production-r1-r1
    ],
)
def test_default_name_is_the_first_free_rn(stack: str, existing: set[str], expected: str) -> None:
    assert default_new_name(stack, existing) == expected


@pytest.mark.parametrize("name", ["", "-r1", "1234", "a/b", "a b", "x" * 101])
def test_unusable_new_names(name: str) -> None:
    with pytest.raises(RebuildError):
        check_new_stack_name(name)


def test_fresh_vpc_is_the_first_free_20_from_10_130() -> None:
    assert free_vpc_cidr(["10.110.16.0/20", "10.120.16.0/20"]) == "10.130.0.0/20"
    assert free_vpc_cidr(["10.130.0.0/20"]) == "10.130.16.0/20"
    assert free_vpc_cidr(["10.130.8.0/24"]) == "10.130.16.0/20"  # any overlap counts
    assert free_vpc_cidr(["10.130.0.0/16"]) == "10.131.0.0/20"
    assert free_vpc_cidr(["not a cidr", "2001:db8::/32"]) == "10.130.0.0/20"


def test_fresh_vpc_never_lands_in_digitalocean_reserved_ranges() -> None:
    used = [f"10.{octet}.0.0/16" for octet in range(130, 229)]
    chosen = ipaddress.ip_network(free_vpc_cidr(used))
    assert str(chosen) == "10.230.0.0/20"  # 10.229.0.0/16 is reserved
    assert not any(chosen.overlaps(ipaddress.ip_network(r)) for r in DO_RESERVED_RANGES)
    with pytest.raises(RebuildError, match="no free /20"):
        free_vpc_cidr(["10.128.0.0/9"])


def test_config_edits_follow_pulumi_config_set_path() -> None:
    assert ConfigEdit("edge.enabled", False).argv("p-r1") == (
        "pulumi", "config", "set", "--path", "-s", "p-r1", "bankflow:edge.enabled", "false")
    assert ConfigEdit("server.vpcCidr", "10.130.0.0/20").argv("p-r1")[-1] == "10.130.0.0/20"
    assert ConfigEdit("edge.originStack", None).argv("p") == (
        "pulumi", "config", "rm", "--path", "-s", "p", "bankflow:edge.originStack")
    values = {"edge": {"enabled": True, "originStack": "x"}, "environment": "production"}
    edited = apply_edits(values, [ConfigEdit("edge.enabled", False), ConfigEdit("edge.originStack", None),
                                  ConfigEdit("backups.bucketStack", "production")])
    assert edited == {"edge": {"enabled": False}, "environment": "production",
                      "backups": {"bucketStack": "production"}}
    assert values["edge"] == {"enabled": True, "originStack": "x"}  # the input is not modified


def test_step_kinds_and_which_steps_change_something() -> None:
    steps = plan_rebuild("production", "production-r1", [ConfigEdit("edge.enabled", False)])
    assert [(s.kind, s.changes) for s in steps] == [
        ("pulumi", True), ("pulumi", True), ("ops", False), ("pulumi", True), ("ops", True), ("ops", False)]
    assert [s.kind for s in plan_cutover("p", "p-r1")] == ["ops", "pulumi", "pulumi", "ops"]
    assert [s.name for s in plan_retire("p")] == ["edge health", "config server.enabled", "pulumi up"]


def test_rebuild_restores_the_newest_state_point_in_time_with_the_dump_as_fallback() -> None:
    steps = plan_rebuild("production", "production-r1", [ConfigEdit("edge.enabled", False)])
    restore = steps[-2]
    assert restore.command == "bankflow-infra restore production-r1 --latest --source-stack production --yes"
    assert restore.fallback is not None
    assert restore.fallback.command == (
        "bankflow-infra restore production-r1 --source-stack production --from latest --yes")
    assert [s.fallback for s in steps if s is not restore] == [None] * (len(steps) - 1)
    text = stop_message("rebuild", steps, len(steps) - 2, 1, None, "note").splitlines()
    assert text == [
        "rebuild stopped at step 5/6 (restore): `bankflow-infra restore production-r1 --latest "
        "--source-stack production --yes` exited 1.",
        "note",
        "Fix the cause above, then to resume: bankflow-infra restore production-r1 --latest --source-stack "
        "production --yes && bankflow-infra health production-r1 --origin --wait",
        "If the point-in-time restore cannot work (production has no pgBackRest archive, or it cannot be "
        "read), restore the latest nightly dump instead (the database as of that night, without the "
        "uploads): bankflow-infra restore production-r1 --source-stack production --from latest --yes && "
        "bankflow-infra health production-r1 --origin --wait",
    ]
    # a failure elsewhere offers no fallback
    assert "nightly dump" not in stop_message("rebuild", steps, len(steps) - 1, 1, None, "note")


def test_resume_text_is_exactly_the_remaining_commands() -> None:
    steps = plan_cutover("production", "production-r1")
    text = stop_message("cutover", steps, 2, 255, Path("/srv/infra"), "note")
    assert text.splitlines() == [
        "cutover stopped at step 3/4 (pulumi up): `pulumi up -s production --yes` exited 255.",
        "note",
        "Fix the cause above, then to resume: cd /srv/infra && pulumi up -s production --yes && "
        "bankflow-infra health production --wait",
    ]
    assert shell_line(steps[3:], None) == "bankflow-infra health production --wait"
    # A read-only check failing before any change: nothing was changed, the whole run remains.
    assert "Nothing was changed." in stop_message("cutover", steps, 0, 1, None, "note")


def test_protected_deletions() -> None:
    before = {("t:Volume", "data"): "urn:v", ("t:Bucket", "b"): "urn:b"}
    assert protected_deletions(before, {("t:Bucket", "b"): "urn:b"}) == ["urn:v"]
    assert protected_deletions(before, before) == []


def test_stacks_pointing_at_a_server() -> None:
    inventory = Inventory("bankflow", ("a", "b", "c", "d"), {
        "a": {"edge": {"originStack": "org/bankflow/d"}},
        "b": {"edge": {"enabled": False, "originStack": "d"}},  # no edge: serves nothing
        "c": {},
        "d": {},
    }, listed=True)
    assert inventory.pointing_at("d") == ["a"]
    assert inventory.unreadable() == []


def test_rebuilding_a_retired_cut_over_stack_turns_the_server_on_and_drops_the_origin() -> None:
    values = bankflow_values(yaml.safe_load((REPO / "Pulumi.production.yaml").read_text())["config"])
    retired = apply_edits(values, [ConfigEdit("server.enabled", False),
                                   ConfigEdit("edge.originStack", "production-r1")])
    source = parse_settings("bankflow", "production", retired)
    edits = rebuild_edits(source, "10.130.16.0/20")
    assert [(e.path, e.value) for e in edits] == [
        ("server.enabled", True),
        ("edge.enabled", False),
        ("edge.zoneSettings", False),
        ("edge.originStack", None),
        ("server.vpcCidr", "10.130.16.0/20"),
        ("backups.bucketStack", "production"),
    ]
    rebuilt = parse_settings("bankflow", "production-r2", apply_edits(retired, edits))
    assert rebuilt.server.enabled
    assert not rebuilt.edge.enabled
    assert rebuilt.edge.origin_stack is None
    assert rebuilt.backup_bucket_name == "bankflow-production-backups"
