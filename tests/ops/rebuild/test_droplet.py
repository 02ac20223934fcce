"""`rebuild STACK --droplet N`: one droplet of a load-balanced stack replaced, nothing else.

Through the rebuild rig (tests/ops/cli/rebuild/conftest.py): the recording pulumi stand-in on
PATH answers `stack ls` / `stack output` from its fixture and records every other call, so the
assertions are on the exact pulumi commands the real CLI would have run.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.ops.cli import parser
from bankflow_infra.ops.rebuild_droplet import droplet_urn
from tests.ops.cli.rebuild.conftest import Rig, outputs
from tests.support.outputs import HOST_PUBLIC_KEY
from tests.support.tools import REPO

URN_LISTS = sorted((REPO / "tests" / "program" / "urns").glob("*.txt"))


@pytest.fixture
def rig(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Rig:
    return Rig(tmp_path, capsys, monkeypatch)


def fleet_outputs(stack: str, droplets: int) -> dict[str, Any]:
    document = outputs(stack, stack)
    document["origin_ips"] = [
        {"name": f"bankflow-{stack}-server" + (f"-{n}" if n > 1 else ""), "ipv4": f"203.0.113.{20 + n}",
         "ipv6": None, "host_public_key": HOST_PUBLIC_KEY}
        for n in range(1, droplets + 1)
    ]
    document["origin_ip"] = "203.0.113.21"
    document["load_balancer_ip"] = "203.0.113.50" if droplets > 1 else None
    return document


def deployed(rig: Rig, stack: str, droplets: int) -> None:
    rig.fixture["outputs"][stack] = fleet_outputs(stack, droplets)


def test_replaces_exactly_droplet_n_and_verifies_the_fleet(rig: Rig) -> None:
    deployed(rig, "production", 3)
    result = rig.run("rebuild", "production", "--droplet", "2", "--yes")
    assert result.code == 0, result.err
    urn = droplet_urn("bankflow", "production", 2)
    assert urn.endswith("::server-droplet-2")
    assert result.mutations() == [
        # production's droplets are protected against an accidental replacement: lifted on this URN only
        ["pulumi", "state", "unprotect", "-s", "production", "--yes", urn],
        ["pulumi", "up", "-s", "production", "--replace", urn, "--target", urn, "--target-dependents",
         "--yes"],
    ]
    assert result.calls[-1] == ["bankflow-infra", "health", "production", "--origin", "--wait"]
    # no other droplet, no other stack, no config edit
    everything = " ".join(" ".join(call) for call in result.calls)
    assert "server-droplet-3" not in everything
    assert not re.search(r"::server-droplet(\s|$)", everything)
    assert not any(call[1:2] == ["config"] and "--json" not in call for call in result.calls)
    assert "Replace droplet 2 of 3 of production" in result.out


def test_a_staging_droplet_is_not_protected_so_nothing_is_unprotected(rig: Rig) -> None:
    deployed(rig, "staging", 2)
    result = rig.run("rebuild", "staging", "--droplet", "1", "--yes")
    assert result.code == 0, result.err
    urn = droplet_urn("bankflow", "staging", 1)
    assert result.mutations() == [
        ["pulumi", "up", "-s", "staging", "--replace", urn, "--target", urn, "--target-dependents", "--yes"]]


def test_a_droplet_out_of_range_is_refused_before_anything_changes(rig: Rig) -> None:
    deployed(rig, "production", 3)
    result = rig.run("rebuild", "production", "--droplet", "4", "--yes")
    assert result.code == 2
    assert "--droplet 4: stack 'production' has droplets 1 to 3" in result.err
    assert result.mutations() == []


@pytest.mark.parametrize("dry_run", [False, True])
def test_a_single_droplet_stack_is_pointed_to_the_emergency_rebuild(rig: Rig, dry_run: bool) -> None:
    deployed(rig, "production", 1)
    result = rig.run("rebuild", "production", "--droplet", "1", "--yes", *(["--dry-run"] if dry_run else []))
    assert result.code == 2
    assert "has one droplet" in result.err
    assert "bankflow-infra rebuild production (docs/RUNBOOK-emergency.md)" in result.err
    assert result.mutations() == []
    if dry_run:
        assert result.calls == []  # a dry run calls nothing at all


def test_droplet_and_a_new_stack_name_do_not_mix(rig: Rig) -> None:
    deployed(rig, "production", 3)
    result = rig.run("rebuild", "production", "--droplet", "2", "--name", "production-r9", "--yes")
    assert result.code == 2
    assert "--name and --vpc-cidr belong to the fresh-stack rebuild" in result.err
    assert result.calls == []


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_droplet_must_be_a_positive_number(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parser().parse_args(["rebuild", "production", "--droplet", value])
    assert exited.value.code == 2
    assert "is not a droplet number" in capsys.readouterr().err


def test_a_failed_replacement_says_what_to_run_to_resume(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    deployed(rig, "production", 3)
    monkeypatch.setenv("PULUMI_STANDIN_FAIL_ON", "up -s production")
    result = rig.run("rebuild", "production", "--droplet", "3", "--yes")
    assert result.code == 1
    urn = droplet_urn("bankflow", "production", 3)
    assert "The other droplets of production keep serving" in result.err
    assert f"--replace {shlex.quote(urn)} --target {shlex.quote(urn)}" in result.err  # the exact resume line
    assert ["bankflow-infra", "health", "production", "--origin", "--wait"] not in result.calls


@pytest.mark.parametrize("urn_list", URN_LISTS, ids=lambda path: path.stem)
def test_the_droplet_urns_are_the_programs(urn_list: Path) -> None:
    # The committed URN lists are what the program declares (tests/program/test_urns.py): every
    # droplet there must be the URN `rebuild --droplet N` replaces, in order. The stack and the
    # project come from the URNs themselves (a list's file name need not be its stack's).
    lines = urn_list.read_text().splitlines()
    droplets = [line for line in lines if "digitalocean:index/droplet:Droplet" in line]
    assert droplets, f"{urn_list.name} lists no droplet"
    stack, project = droplets[0].split("::")[0].removeprefix("urn:pulumi:"), droplets[0].split("::")[1]
    names = [line.rsplit("::", 1)[-1] for line in droplets]
    numbers = [1 if name == "server-droplet" else int(name.rsplit("-", 1)[-1]) for name in names]
    assert sorted(droplets) == sorted(droplet_urn(project, stack, n) for n in numbers)
    assert sorted(numbers) == list(range(1, len(numbers) + 1))
