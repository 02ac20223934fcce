"""A rolling deploy under load, for real on loopback (issue 13): three droplets (stand-in hosts,
real nginx with the rendered load-balanced config, the real agent), a real haproxy in front
configured like DigitalOcean's load balancer, load running through it during (a) a good roll,
(b) a failed roll, (c) a droplet that dies mid-roll. The rig: tests/host/fleet.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bankflow_infra.contract.fleet import LB_UNHEALTHY_THRESHOLD
from bankflow_infra.contract.roll import RollTarget
from bankflow_infra.ops.roll import roll, roll_step
from tests.host.fleet import (
    INTERVAL,
    TIMEOUT,
    TIMINGS,
    Droplet,
    Fleet,
    kill_droplet,
    running_fleet,
)
from tests.support.tools import require_tool

# Tests that measure failed requests under load share one worker: two of them at once on two
# cores starve each other's nginx and stand-ins, and a timing failure would hide a real one.
pytestmark = pytest.mark.xdist_group("under-load")


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    tools = (require_tool("nginx"), require_tool("openssl"), require_tool("haproxy"))
    with running_fleet(tmp_path, *tools) as running:
        yield running


def targets(fleet: Fleet) -> list[RollTarget]:
    return [d.target for d in fleet.droplets]


def count_migrations(droplet: Droplet) -> int:
    return sum(1 for call in droplet.host.runtime.journal() if call["call"] == "run_once")


def test_a_good_roll_under_load_switches_every_droplet_with_no_failed_request(fleet: Fleet) -> None:
    release = fleet.stage("v2")
    runs_before = [count_migrations(d) for d in fleet.droplets]
    with fleet.load() as load:
        time.sleep(0.5)
        result = roll(targets(fleet), roll_step(release), fleet.transport, timings=TIMINGS)
        time.sleep(0.5)
    assert result.ok, result
    assert result.switched == [d.name for d in fleet.droplets]
    assert fleet.currents() == [d.releases["v2"] for d in fleet.droplets]
    assert load.result.failures == []
    assert load.result.total > 100
    # migrations once, on the first droplet, before any switch; no droplet ran them again
    migrations = [(name, args) for name, args in fleet.transport.calls if args[0] == "migrate"]
    assert migrations == [(fleet.droplets[0].name, ("migrate", "--release", release))]
    first_switch = next(i for i, (_, args) in enumerate(fleet.transport.calls) if args[0] == "switch-staged")
    assert fleet.transport.calls.index(migrations[0]) < first_switch
    migrated = [count_migrations(d) for d in fleet.droplets]
    assert migrated == [runs_before[0] + 1, runs_before[1], runs_before[2]]


def test_a_failed_roll_puts_the_switched_droplets_back_and_never_reaches_the_rest(fleet: Fleet) -> None:
    before = fleet.currents()
    release = fleet.stage("v2", {fleet.droplets[1].name: ("standin-unhealthy",)})
    with fleet.load() as load:
        time.sleep(0.5)
        result = roll(targets(fleet), roll_step(release), fleet.transport, timings=TIMINGS)
        time.sleep(0.5)
    assert not result.ok
    assert fleet.droplets[1].name in str(result.failure)
    assert "switch-staged failed" in str(result.failure)
    assert result.switched == [fleet.droplets[0].name]
    assert result.reverted == [fleet.droplets[0].name]
    assert result.problems == []
    assert fleet.currents() == before  # droplet 1 back on v1, 2 reverted itself, 3 untouched
    third = fleet.droplets[2].name
    assert [args[0] for name, args in fleet.transport.calls if name == third] == ["status"]
    assert load.result.failures == []
    # every droplet serves again behind the load balancer
    for droplet in fleet.droplets:
        answer = fleet.transport.agent(droplet.target, ["lb-health"])
        assert answer.code == 0, answer.out


def test_a_droplet_dying_mid_roll_stops_it_and_traffic_stays_on_the_healthy_ones(fleet: Fleet) -> None:
    before = fleet.currents()
    release = fleet.stage("v2")
    victim = fleet.droplets[1]
    killed_at: list[float] = []

    def say(text: str) -> None:
        if text.startswith(f"roll {victim.name}: drain") and not killed_at:
            killed_at.append(time.time())
            kill_droplet(victim)  # dies while still in rotation, just before its turn

    with fleet.load() as load:
        time.sleep(0.5)
        result = roll(targets(fleet), roll_step(release), fleet.transport, timings=TIMINGS, say=say)
        time.sleep(2.0)
    assert not result.ok
    assert "unreachable" in str(result.failure)
    assert victim.name in str(result.failure)
    assert result.reverted == [fleet.droplets[0].name]
    currents = fleet.currents()
    assert currents[0] == before[0]
    assert currents[2] == before[2]
    # the requests that reached haproxy before its checks marked the dead droplet down and were
    # sent there fail (haproxy retries the connect, then gives up); none that started after
    marked_down = killed_at[0] + LB_UNHEALTHY_THRESHOLD * (INTERVAL + TIMEOUT) + INTERVAL + 0.5
    late = [t for t in load.result.failure_started if t > marked_down]
    assert late == [], load.result.failures
    assert load.result.total - len(load.result.failures) > 100
    print(f"dead droplet: {len(load.result.failures)} failed requests of {load.result.total}")
