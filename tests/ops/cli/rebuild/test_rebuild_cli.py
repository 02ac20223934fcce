"""`bankflow-infra rebuild`: the exact commands, dry run, a failure at every step, bad input."""

from __future__ import annotations

import ipaddress
import shlex

import pytest

from bankflow_infra.settings import DO_RESERVED_RANGES
from tests.ops.cli.rebuild.conftest import Result, Rig

SET = ["config", "set", "--path", "-s", "production-r1"]
# What `rebuild production` runs, in order, after its one read-only query (`pulumi stack ls`).
REBUILD_STEPS = [
    ["pulumi", "stack", "init", "production-r1", "--copy-config-from", "production"],
    ["pulumi", *SET, "bankflow:edge.enabled", "false"],
    ["pulumi", *SET, "bankflow:edge.zoneSettings", "false"],
    ["pulumi", *SET, "bankflow:server.vpcCidr", "10.130.0.0/20"],
    ["pulumi", *SET, "bankflow:backups.bucketStack", "production"],
    ["bankflow-infra", "plan", "production-r1"],
    ["pulumi", "up", "-s", "production-r1", "--yes"],
    # the newest state: database to the newest archived WAL (the shared repository) + the uploads
    ["bankflow-infra", "restore", "production-r1", "--latest", "--source-stack", "production", "--yes"],
    ["bankflow-infra", "health", "production-r1", "--origin", "--wait"],
]
RESTORE_INDEX = 7
# Printed after a failed step 8 only: the nightly dump instead of the point-in-time restore.
DUMP_RESTORE = ["bankflow-infra", "restore", "production-r1", "--source-stack", "production", "--from",
                "latest", "--yes"]  # fmt: skip
STACK_LS = ["pulumi", "stack", "ls", "--json"]


def _never_moves_traffic(result: Result) -> None:
    """Nothing touches production itself: no edge.originStack change, no `up -s production`."""
    for call in result.calls:
        assert not any("originStack" in word for word in call), call
        assert call[:2] != ["pulumi", "up"] or call[call.index("-s") + 1] != "production", call
        assert not (call[0] == "bankflow-infra" and call[1] == "cutover"), call


def test_rebuild_runs_the_exact_sequence_with_a_fresh_vpc(rig: Rig) -> None:
    result = rig.run("rebuild", "production", "--yes")
    assert result.code == 0, result.err
    assert result.calls == [STACK_LS, *REBUILD_STEPS]
    _never_moves_traffic(result)
    fresh = ipaddress.ip_network("10.130.0.0/20")
    for used in ("10.110.16.0/20", "10.120.16.0/20", *DO_RESERVED_RANGES):  # staging, production
        assert not fresh.overlaps(ipaddress.ip_network(used))
    assert "[7/9] pulumi up -s production-r1 --yes" in result.out
    assert "bankflow-infra cutover production --to production-r1" in result.out  # the next step, not run


def test_dry_run_prints_the_same_commands_and_runs_nothing(rig: Rig) -> None:
    result = rig.run("rebuild", "production", "--dry-run")
    assert result.code == 0, result.err
    assert result.calls == []
    numbered = [line.strip() for line in result.out.splitlines() if line[:4].strip().rstrip(".").isdigit()]
    printed = [line.split(". ", 1)[1] for line in numbered]
    assert printed == [shlex.join(step) for step in REBUILD_STEPS]


@pytest.mark.parametrize("index", range(len(REBUILD_STEPS)))
def test_a_failure_at_any_step_stops_before_traffic_moves_and_prints_the_resume_commands(
    rig: Rig, index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = REBUILD_STEPS[index]
    if failing[0] == "pulumi":
        monkeypatch.setenv("PULUMI_STANDIN_FAIL_ON", shlex.join(failing[1:]))
    else:
        rig.ops_fail.add(tuple(failing))
    result = rig.run("rebuild", "production", "--yes")
    assert result.code == 1
    assert result.calls == [STACK_LS, *REBUILD_STEPS[: index + 1]]  # nothing after the failure
    _never_moves_traffic(result)
    remaining = " && ".join(shlex.join(step) for step in REBUILD_STEPS[index:])
    assert f"rebuild stopped at step {index + 1}/{len(REBUILD_STEPS)}" in result.err
    assert f"to resume: cd {shlex.quote(str(rig.project))} && {remaining}\n" in result.err
    assert "Traffic has not moved: production still serves" in result.err
    fallback = " && ".join(shlex.join(step) for step in [DUMP_RESTORE, *REBUILD_STEPS[index + 1 :]])
    if index == RESTORE_INDEX:  # the dump as the fallback, with the steps after it
        assert result.err.endswith(
            "restore the latest nightly dump instead (the database as of that night, without the "
            f"uploads): cd {shlex.quote(str(rig.project))} && {fallback}\n"
        )
    else:
        assert "nightly dump" not in result.err


def test_fail_at_the_nth_pulumi_call(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_STANDIN_FAIL_AT", "3")  # stack ls, stack init, then the first config set
    result = rig.run("rebuild", "production", "--yes")
    assert result.code == 1
    assert result.calls == [STACK_LS, *REBUILD_STEPS[:2]]
    assert "stopped at step 2/9 (config edge.enabled)" in result.err


def test_default_name_and_range_skip_existing_stacks_even_without_a_file(rig: Rig) -> None:
    # production-r1 exists only in the backend (no file here): its range comes from `pulumi config`.
    rig.add_stack("production-r1")
    rig.fixture["config"]["production-r1"] = {"bankflow:server": {"vpcCidr": "10.130.0.0/20"}}
    result = rig.run("rebuild", "production", "--dry-run")
    assert result.code == 0, result.err
    assert result.calls == []
    # A dry run asks pulumi nothing, so a stack without a file is unknown to it (and it says so).
    assert "pulumi stack init production-r1 " in result.out
    assert "the real run also asks `pulumi stack ls`" in result.out
    result = rig.run("rebuild", "production", "--yes")
    assert result.code == 0, result.err
    assert result.calls[:2] == [STACK_LS, ["pulumi", "config", "--json", "-s", "production-r1"]]
    assert ["pulumi", "stack", "init", "production-r2", "--copy-config-from", "production"] in result.calls
    assert ["pulumi", "config", "set", "--path", "-s", "production-r2", "bankflow:server.vpcCidr",
                "10.130.16.0/20"] in result.calls


def test_rebuilding_a_rebuild_keeps_the_environment_bucket_and_drops_the_stale_origin(rig: Rig) -> None:
    rig.add_rebuilt("production", "production-r1")
    rig.point_edge("production", "production-r1")
    result = rig.run("rebuild", "production", "--dry-run")
    assert result.code == 0, result.err
    assert "pulumi config rm --path -s production-r2 bankflow:edge.originStack" in result.out
    assert "pulumi config set --path -s production-r2 bankflow:server.vpcCidr 10.130.16.0/20" in result.out
    result = rig.run("rebuild", "production-r1", "--dry-run")
    assert "pulumi stack init production-r2 --copy-config-from production-r1" in result.out
    assert "bankflow:backups.bucketStack production\n" in result.out  # dumps keep going to production's


def _refused(result: Result, message: str) -> None:
    assert result.code == 2
    assert result.out == ""
    lines = result.err.strip().splitlines()
    assert lines[0].startswith("bankflow-infra rebuild: "), result.err
    assert message in result.err
    assert result.mutations() == []


@pytest.mark.parametrize(
    ("argv", "message", "queries"),
    [
        (["nosuch"], "unknown stack 'nosuch'", [STACK_LS]),
        (["production", "--name", "staging"], "stack 'staging' already exists", [STACK_LS]),
        (["production", "--name", "production"], "is STACK itself", []),
        (["production", "--name", "prod r1"], "'prod r1' is not a usable stack name", []),
        (["production", "--name", "1234"], "'1234' is not a usable stack name", []),
        (["production", "--name", "x" * 101], "is not a usable stack name", []),
        (["production", "--vpc-cidr", "10.120.0.0/16"], "overlaps stack 'production'", [STACK_LS]),
        (["production", "--vpc-cidr", "10.244.0.0/20"], "which DigitalOcean reserves", [STACK_LS]),
    ],
)
def test_bad_input_is_one_clear_error_and_runs_nothing(
    rig: Rig, argv: list[str], message: str, queries: list[list[str]]
) -> None:
    result = rig.run("rebuild", *argv, "--yes")
    _refused(result, message)
    assert result.calls == queries


def test_bad_config_of_the_new_stack_stops_before_anything_runs(rig: Rig) -> None:
    config = rig.config("production")
    config["bankflow:server"] = {**config["bankflow:server"], "volumeSizeGb": 0}  # production needs one
    rig.write_stack("production", config)
    result = rig.run("rebuild", "production", "--yes")
    _refused(result, "bankflow:server.volumeSizeGb")
    assert result.calls == [STACK_LS]


def test_without_a_terminal_it_needs_yes(rig: Rig) -> None:
    result = rig.run("rebuild", "production")
    assert result.code == 2
    assert "without --yes" in result.err
    assert result.mutations() == []


def test_on_a_terminal_it_asks_and_a_no_runs_nothing(rig: Rig) -> None:
    questions: list[str] = []

    def decline(question: str) -> bool:
        questions.append(question)
        return False

    result = rig.run("rebuild", "production", confirm=decline)
    assert result.code == 1
    assert questions == ["Run these 9 steps? [y/N] "]
    assert result.mutations() == []
    result = rig.run("rebuild", "production", confirm=lambda _question: True)
    assert result.code == 0, result.err
    assert result.mutations()[0] == REBUILD_STEPS[0]
