"""`bankflow-infra cutover` and `retire`: exact commands, the checks that refuse, resume hints."""

from __future__ import annotations

import shlex

import pytest

from tests.ops.cli.rebuild.conftest import Result, Rig, outputs

STACK_LS = ["pulumi", "stack", "ls", "--json"]
R1_OUTPUTS = ["pulumi", "stack", "output", "--json", "--non-interactive", "-s", "production-r1"]
CUTOVER_STEPS = [
    ["bankflow-infra", "health", "production-r1", "--origin"],
    ["pulumi", "config", "set", "--path", "-s", "production", "bankflow:edge.originStack", "production-r1"],
    ["pulumi", "up", "-s", "production", "--yes"],
    ["bankflow-infra", "health", "production", "--wait"],
]


@pytest.fixture
def rebuilt(rig: Rig) -> Rig:
    """production-r1 exists as a finished `rebuild production` leaves it."""
    rig.add_rebuilt("production", "production-r1")
    return rig


def _refused(result: Result, command: str, message: str) -> None:
    assert result.code == 2
    assert result.out == ""
    assert result.err.startswith(f"bankflow-infra {command}: "), result.err
    assert message in result.err
    assert result.mutations() == []


# --------------------------------------------------------------------------- cutover


def test_cutover_checks_the_new_server_then_moves_the_edge_in_place(rebuilt: Rig) -> None:
    result = rebuilt.run("cutover", "production", "--to", "production-r1", "--yes")
    assert result.code == 0, result.err
    assert result.calls == [STACK_LS, R1_OUTPUTS, *CUTOVER_STEPS]
    assert "[3/4] pulumi up -s production --yes" in result.out
    # How to undo, while production's own server still runs.
    assert ("pulumi config rm --path -s production bankflow:edge.originStack && "
            "pulumi up -s production --yes") in result.out


def test_cutover_dry_run_prints_the_same_commands_and_runs_nothing(rebuilt: Rig) -> None:
    result = rebuilt.run("cutover", "production", "--to", "production-r1", "--dry-run")
    assert result.code == 0, result.err
    assert result.calls == []
    for step in CUTOVER_STEPS:
        assert f". {shlex.join(step)}\n" in result.out


def test_cutover_refuses_an_unhealthy_new_server_and_changes_nothing(rebuilt: Rig) -> None:
    rebuilt.ops_fail.add(tuple(CUTOVER_STEPS[0]))
    result = rebuilt.run("cutover", "production", "--to", "production-r1", "--yes")
    assert result.code == 2
    assert result.calls == [STACK_LS, R1_OUTPUTS, CUTOVER_STEPS[0]]
    assert "Nothing was changed." in result.err
    assert "Traffic has not moved" in result.err


@pytest.mark.parametrize("index", [1, 2, 3])
def test_cutover_failure_after_the_check_stops_and_prints_the_remaining_commands(
    rebuilt: Rig, index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    failing = CUTOVER_STEPS[index]
    if failing[0] == "pulumi":
        monkeypatch.setenv("PULUMI_STANDIN_FAIL_ON", shlex.join(failing[1:]))
    else:
        rebuilt.ops_fail.add(tuple(failing))
    result = rebuilt.run("cutover", "production", "--to", "production-r1", "--yes")
    assert result.code == 1
    assert result.calls == [STACK_LS, R1_OUTPUTS, *CUTOVER_STEPS[: index + 1]]
    remaining = " && ".join(shlex.join(step) for step in CUTOVER_STEPS[index:])
    assert f"cutover stopped at step {index + 1}/4" in result.err
    assert f"to resume: cd {shlex.quote(str(rebuilt.project))} && {remaining}\n" in result.err


@pytest.mark.parametrize(
    ("to", "message", "calls"),
    [
        ("production", "is STACK itself", []),
        ("nosuch", "unknown stack 'nosuch'", [STACK_LS]),
        ("staging", "an edge only moves to a server of the same environment", [STACK_LS]),
        ("bad/name", "'bad/name' is not a stack name", []),
    ],
)
def test_cutover_bad_input(rebuilt: Rig, to: str, message: str, calls: list[list[str]]) -> None:
    result = rebuilt.run("cutover", "production", "--to", to, "--yes")
    _refused(result, "cutover", message)
    assert result.calls == calls


def test_cutover_refuses_a_stack_without_a_deployed_server(rebuilt: Rig) -> None:
    rebuilt.fixture["outputs"]["production-r1"] = outputs("production-r1", "production", server=False)
    result = rebuilt.run("cutover", "production", "--to", "production-r1", "--yes")
    _refused(result, "cutover", "has no deployed server of its own")
    assert result.calls == [STACK_LS, R1_OUTPUTS]


def test_cutover_refuses_a_stack_whose_outputs_cannot_be_read(rebuilt: Rig) -> None:
    del rebuilt.fixture["outputs"]["production-r1"]
    result = rebuilt.run("cutover", "production", "--to", "production-r1", "--yes")
    _refused(result, "cutover", "no stack named 'production-r1'")


# --------------------------------------------------------------------------- retire


def test_retire_refuses_while_the_stack_serves_its_own_edge(rig: Rig) -> None:
    result = rig.run("retire", "production", "--yes")
    _refused(result, "retire", "its own server serves its edge")
    assert "bankflow-infra cutover production --to NEW" in result.err
    assert result.calls == [STACK_LS]


def test_retire_refuses_until_the_cutover_was_applied(rebuilt: Rig) -> None:
    rebuilt.point_edge("production", "production-r1", applied=False)  # config set, `up` not run
    result = rebuilt.run("retire", "production", "--yes")
    _refused(result, "retire", "the last `pulumi up` still serves from 'production'")


def test_retire_production_keeps_the_protected_data_volume(rebuilt: Rig) -> None:
    # The program declares the data volume whenever the stack configures one, server on or off,
    # so switching production's server off never asks Pulumi to drop the protected volume. The
    # droplet is protected only against an accidental replacement: the retire lifts exactly that
    # protection, after its config edit and right before the up that deletes the droplet.
    rebuilt.point_edge("production", "production-r1")
    result = rebuilt.run("retire", "production", "--yes")
    assert result.code == 0, result.err
    unprotects = [call for call in result.calls if call[1:3] == ["state", "unprotect"]]
    assert len(unprotects) == 1
    assert unprotects[0][3:6] == ["-s", "production", "--yes"]
    droplet = "bankflow:index:Server$digitalocean:index/droplet:Droplet::server-droplet"
    assert unprotects[0][6].endswith(droplet)
    config_edit = ["pulumi", "config", "set", "--path", "-s", "production",
                   "bankflow:server.enabled", "false"]
    up = ["pulumi", "up", "-s", "production", "--yes"]
    assert result.calls.index(config_edit) < result.calls.index(unprotects[0]) < result.calls.index(up)
    still_protected = result.out.split("Still protected")[1]
    assert "DataVolume$digitalocean:index/volume:Volume::data-volume" in still_protected
    assert not any("volume" in word for call in unprotects for word in call)


STAGING_RETIRE = [
    ["bankflow-infra", "health", "staging"],
    ["pulumi", "config", "set", "--path", "-s", "staging", "bankflow:server.enabled", "false"],
    ["pulumi", "up", "-s", "staging", "--yes"],
]


def test_retire_switches_off_the_old_server_once_the_edge_moved(rig: Rig) -> None:
    rig.add_rebuilt("staging", "staging-r1")
    rig.point_edge("staging", "staging-r1")
    result = rig.run("retire", "staging", "--yes")
    assert result.code == 0, result.err
    staging_outputs = ["pulumi", "stack", "output", "--json", "--non-interactive", "-s", "staging"]
    assert result.calls == [STACK_LS, staging_outputs, *STAGING_RETIRE]
    assert "edge is served by staging-r1" in result.out


def test_retire_refuses_a_server_that_serves_another_stacks_edge(rig: Rig) -> None:
    rig.add_rebuilt("staging", "staging-r1")
    rig.point_edge("staging", "staging-r1")
    config = rig.config("staging-r1")
    config["bankflow:edge"] = {**config["bankflow:edge"], "enabled": True, "originStack": "staging"}
    del config["bankflow:backups"]["bucketStack"]
    rig.write_stack("staging-r1", config)
    result = rig.run("retire", "staging", "--yes")
    _refused(result, "retire", "its server serves the edge of staging-r1")


def test_retire_dry_run_runs_nothing(rig: Rig) -> None:
    rig.add_rebuilt("staging", "staging-r1")
    rig.point_edge("staging", "staging-r1")
    result = rig.run("retire", "staging", "--dry-run")
    assert result.code == 0, result.err
    assert result.calls == []
    for step in STAGING_RETIRE:
        assert f". {shlex.join(step)}\n" in result.out
