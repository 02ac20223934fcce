"""``bankflow-infra rollback STACK`` on a stack with several droplets behind the load balancer
(issue 13): every droplet from ``origin_ips``, in roll order, drained while it switches; a failure
puts the ones already switched back. The transport is scripted here (the engine runs against real
agents, nginx and haproxy in tests/host/test_rolling_deploy.py)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.contract.fleet import drain_wait_seconds, rejoin_wait_seconds
from bankflow_infra.contract.roll import RollTarget
from bankflow_infra.ops import roll_ssh
from bankflow_infra.ops.cli import main
from bankflow_infra.ops.roll import AgentAnswer
from tests.support.outputs import outputs_document

OLD, NEW = "aaaaaaaaaaaa", "bbbbbbbbbbbb"
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90LWEta2V5\n-----END OPENSSH PRIVATE KEY-----\n"


def fleet_outputs(tmp_path: Path) -> Path:
    document = outputs_document("staging")
    document["deploy_private_key"] = KEY
    document["origin_ips"] = [
        {"name": f"bankflow-staging-server{suffix}", "ipv4": f"203.0.113.{10 + i}", "ipv6": None,
         "host_public_key": f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{i}"}
        for i, suffix in enumerate(("", "-2", "-3"))
    ]  # fmt: skip
    document["load_balancer_ip"] = "203.0.113.100"
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(document))
    return path


def script(monkeypatch: pytest.MonkeyPatch, fail: dict[tuple[str, str], int]) -> list[Any]:
    current = {f"203.0.113.{10 + i}": NEW for i in range(3)}
    calls: list[Any] = []

    def agent(self: Any, target: RollTarget, args: Sequence[str]) -> AgentAnswer:
        calls.append((target.name, tuple(args), target.host_public_key, self.private_key == KEY))
        code = fail.get((target.name, args[0]), 0)
        if args[0] == "status":
            return AgentAnswer(0, json.dumps({"current": current[target.host]}), "")
        if code == 0 and args[0] == "rollback":
            current[target.host] = args[1] if len(args) > 1 else OLD
        return AgentAnswer(code, "", "rollback: failed" if code else "")

    monkeypatch.setattr(roll_ssh.SshRollTransport, "agent", agent)
    # the load balancer's waits (contract/fleet.py) are recorded, not slept
    monkeypatch.setattr(
        "bankflow_infra.ops.roll.time.sleep", lambda seconds: calls.append(("sleep", seconds))
    )
    return calls


def test_rollback_takes_every_droplet_back_one_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = script(monkeypatch, {})
    assert main(["rollback", "staging", "--yes", "--outputs", str(fleet_outputs(tmp_path))]) == 0
    steps = [call[0] if call[0] == "sleep" else (call[0], call[1][0]) for call in calls]
    steps = [step for step in steps if step == "sleep" or step[1] != "status"]
    drain, rejoin = float(drain_wait_seconds()), float(rejoin_wait_seconds())
    assert [call[1] for call in calls if call[0] == "sleep"] == [drain, rejoin] * 3
    assert [step for step in steps if step != "sleep"] == [
        (name, step)
        for name in ("bankflow-staging-server", "bankflow-staging-server-2", "bankflow-staging-server-3")
        for step in ("drain", "rollback", "undrain", "lb-health")
    ]
    agents = [call for call in calls if call[0] != "sleep"]
    assert all(with_key for *_, with_key in agents)
    assert {key for _, _, key, _ in agents} == {f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{i}" for i in range(3)}
    assert "rollback: done" in capsys.readouterr().err


def test_a_failed_rollback_puts_the_rolled_back_droplets_forward_again_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = script(monkeypatch, {("bankflow-staging-server-2", "rollback"): 1})
    assert main(["rollback", "staging", "--yes", "--outputs", str(fleet_outputs(tmp_path))]) == 1
    agents = [call for call in calls if call[0] != "sleep"]
    back = [(name, args) for name, args, _, _ in agents if args[0] == "rollback"]
    assert back == [
        ("bankflow-staging-server", ("rollback",)),
        ("bankflow-staging-server-2", ("rollback",)),
        ("bankflow-staging-server", ("rollback", NEW)),  # what it served before this rollback
    ]
    assert not any(name.endswith("-3") and args[0] != "status" for name, args, _, _ in agents)
    err = capsys.readouterr().err
    assert "FAILED" in err
    assert "bankflow-staging-server-2" in err
    assert "bm90LWEta2V5" not in err


def test_without_a_terminal_it_needs_yes_before_reading_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = script(monkeypatch, {})
    assert main(["rollback", "staging", "--outputs", str(fleet_outputs(tmp_path))]) == 2
    assert calls == []
    assert "without --yes" in capsys.readouterr().err
