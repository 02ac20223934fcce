"""ops/roll.py's failure semantics with a scripted transport (the live version with real agents,
nginx and haproxy is tests/host/test_rolling_deploy.py): what runs, in which order, what is put
back, and what is named when something cannot be."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from bankflow_infra.contract.roll import RollTarget
from bankflow_infra.ops.roll import (
    AgentAnswer,
    RollTimings,
    TargetUnreachable,
    roll,
    roll_step,
    rollback_step,
    summary,
)

OLD, NEW = "aaaaaaaaaaaa", "bbbbbbbbbbbb"
TARGETS = [RollTarget(f"d{i}", f"203.0.113.{i}", 22, "root", "ssh-ed25519 AAAA") for i in (1, 2, 3)]
NO_WAIT = RollTimings(drain_wait=0, rejoin_wait=0, rejoin_checks=2)


@dataclass
class Droplets:
    """Agents that answer like the real one: status from their release, switch/rollback move it;
    ``fail`` maps (droplet, command) to an exit code, ``dead`` droplets are unreachable."""

    current: dict[str, str | None] = field(default_factory=lambda: {t.name: OLD for t in TARGETS})
    fail: dict[tuple[str, str], int] = field(default_factory=dict)
    dead: set[str] = field(default_factory=set)
    calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def agent(self, target: RollTarget, args: Sequence[str]) -> AgentAnswer:
        self.calls.append((target.name, tuple(args)))
        if target.name in self.dead:
            raise TargetUnreachable("Connection refused")
        code = self.fail.get((target.name, args[0]), 0)
        if args[0] == "status":
            return AgentAnswer(code, json.dumps({"current": self.current[target.name]}), "")
        if code == 0 and args[0] == "switch-staged":
            self.current[target.name] = args[1]
        if code == 0 and args[0] == "rollback":
            self.current[target.name] = args[1] if len(args) > 1 else OLD
        return AgentAnswer(code, "", f"{args[0]}: failed" if code else "")

    def commands(self, name: str) -> list[str]:
        return [args[0] for who, args in self.calls if who == name]


def run(droplets: Droplets, step=None):  # type: ignore[no-untyped-def]
    return roll(TARGETS, step or roll_step(NEW), droplets, timings=NO_WAIT)


def test_a_good_roll_migrates_once_then_each_droplet_drains_switches_and_rejoins_in_order() -> None:
    droplets = Droplets()
    result = run(droplets)
    assert result.ok
    assert result.switched == ["d1", "d2", "d3"]
    assert droplets.current == {"d1": NEW, "d2": NEW, "d3": NEW}
    assert droplets.commands("d1") == ["status", "migrate", "drain", "switch-staged", "undrain", "lb-health"]
    assert droplets.commands("d2") == ["status", "drain", "switch-staged", "undrain", "lb-health"]
    order = [who for who, args in droplets.calls if args[0] == "switch-staged"]
    assert order == ["d1", "d2", "d3"]
    assert summary(result) == "roll: done; switched: d1, d2, d3"


def test_a_failed_switch_puts_the_switched_droplets_back_in_reverse_and_stops() -> None:
    droplets = Droplets(fail={("d3", "switch-staged"): 1})
    result = run(droplets)
    assert not result.ok
    assert "d3: switch-staged failed (exit 1)" in str(result.failure)
    assert result.switched == ["d1", "d2"]
    assert result.reverted == ["d2", "d1"]
    assert droplets.current == {"d1": OLD, "d2": OLD, "d3": OLD}
    # the failing droplet rolled itself back: it is only undrained
    assert droplets.commands("d3") == ["status", "drain", "switch-staged", "undrain", "lb-health"]
    reverts = [(who, args) for who, args in droplets.calls if args[0] == "rollback"]
    assert reverts == [("d2", ("rollback", OLD)), ("d1", ("rollback", OLD))]


def test_a_failed_migration_switches_nothing() -> None:
    droplets = Droplets(fail={("d1", "migrate"): 1})
    result = run(droplets)
    assert not result.ok
    assert "migrate failed" in str(result.failure)
    assert not any(args[0] in ("drain", "switch-staged") for _, args in droplets.calls)


def test_an_unreachable_droplet_before_the_roll_changes_nothing() -> None:
    droplets = Droplets(dead={"d3"})
    result = run(droplets)
    assert "before any change" in str(result.failure)
    assert "d3" in str(result.failure)
    assert {args[0] for _, args in droplets.calls} == {"status"}


def test_a_droplet_that_does_not_rejoin_counts_as_switched_and_is_put_back() -> None:
    droplets = Droplets(fail={("d2", "lb-health"): 1})
    result = run(droplets)
    assert "d2: not back in rotation" in str(result.failure)
    assert result.switched == ["d1", "d2"]
    # its rollback cannot bring it back into rotation either: named, the others still put back
    assert result.reverted == ["d1"]
    assert len(result.problems) == 1
    assert "d2" in result.problems[0]
    assert droplets.current["d1"] == OLD
    assert droplets.commands("d3") == ["status"]
    assert "ATTENTION" in summary(result)


def test_droplets_already_on_the_release_are_skipped_and_not_migrated_again() -> None:
    droplets = Droplets(current={"d1": NEW, "d2": OLD, "d3": NEW})
    result = run(droplets)
    assert result.ok
    assert result.switched == ["d2"]
    assert result.skipped == ["d1", "d3"]
    assert [who for who, args in droplets.calls if args[0] == "migrate"] == ["d2"]


def test_a_rollback_across_droplets_uses_each_agents_previous_release() -> None:
    droplets = Droplets(current={t.name: NEW for t in TARGETS})
    result = run(droplets, rollback_step(None))
    assert result.ok
    assert droplets.current == {"d1": OLD, "d2": OLD, "d3": OLD}
    assert not any(args[0] == "migrate" for _, args in droplets.calls)


def test_a_new_droplet_gets_its_first_release_without_a_drain_and_is_drained_on_a_revert() -> None:
    droplets = Droplets(current={"d1": OLD, "d2": OLD, "d3": None}, fail={("d2", "lb-health"): 1})
    result = roll(TARGETS[::-1], roll_step(NEW), droplets, timings=NO_WAIT)  # d3 first
    assert droplets.commands("d3")[:4] == ["status", "migrate", "switch-staged", "undrain"]
    assert not result.ok
    assert any("d3: served nothing before: left drained" in p for p in result.problems)
    assert droplets.commands("d3")[-1] == "drain"
