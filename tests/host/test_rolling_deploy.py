"""A rolling deploy under load, for real on loopback (issue 13): three droplets (stand-in hosts,
real nginx with the rendered load-balanced config, the real agent), a real haproxy in front
configured like DigitalOcean's load balancer, load running through it during (a) a good roll,
(b) a failed roll, (c) a droplet that dies mid-roll. The rig: tests/host/fleet.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bankflow_infra.contract.fleet import LB_HEALTHY_THRESHOLD, LB_UNHEALTHY_THRESHOLD
from bankflow_infra.contract.roll import RollTarget
from bankflow_infra.ops.roll import RollTimings, roll, roll_step
from tests.host.fixtures import Load
from tests.host.fleet import (
    CHECK_INTERVAL_MS,
    CHECK_TIMEOUT_MS,
    Droplet,
    LoadBalancer,
    LocalTransport,
    fleet_settings,
    kill_droplet,
    make_droplet,
    receive,
    render_payload,
    start_haproxy,
)
from tests.render import helpers
from tests.support.tools import require_tool

INTERVAL, TIMEOUT = CHECK_INTERVAL_MS / 1000, CHECK_TIMEOUT_MS / 1000
# the contract's formulas (contract/fleet.py) with this load balancer's shorter timings
TIMINGS = RollTimings(
    drain_wait=LB_UNHEALTHY_THRESHOLD * (INTERVAL + TIMEOUT) + 0.5,
    rejoin_wait=LB_HEALTHY_THRESHOLD * INTERVAL + 0.5,
)


@dataclass
class Fleet:
    droplets: list[Droplet]
    lb: LoadBalancer
    cert: helpers.OriginCert
    transport: LocalTransport

    def stage(self, tag: str, markers: dict[str, tuple[str, ...]] | None = None) -> str:
        """Every droplet receives ``tag`` without switching; the roll's release id."""
        for droplet in self.droplets:
            payload = render_payload(droplet, tag, self.cert, (markers or {}).get(droplet.name, ()))
            code, out, err = receive(droplet, payload)
            assert code == 0, out + err
        return self.droplets[0].releases[tag]

    def currents(self) -> list[str | None]:
        return [d.host.current() for d in self.droplets]

    def load(self) -> Load:
        hosts = fleet_settings().all_hostnames
        return Load(self.lb.port, workers=4, max_seconds=120, hosts=hosts, tls=True)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    nginx, openssl, haproxy = require_tool("nginx"), require_tool("openssl"), require_tool("haproxy")
    droplets = [make_droplet(tmp_path, index, nginx) for index in (1, 2, 3)]
    cert_dir = tmp_path / "cert"
    helpers.make_cert(openssl, cert_dir, fleet_settings().all_hostnames)
    cert = helpers.OriginCert(
        (cert_dir / "origin.pem").read_text(), (cert_dir / "origin.key").read_text(), cert_dir / "origin.pem"
    )
    lb = None
    try:
        for droplet in droplets:
            code, out, err = receive(droplet, render_payload(droplet, "v1", cert), deploy=True)
            assert code == 0, out + err
        lb = start_haproxy(haproxy, droplets, tmp_path, proxy_protocol=True)
        time.sleep(TIMINGS.rejoin_wait)  # haproxy's first checks pass every droplet
        yield Fleet(droplets, lb, cert, LocalTransport({d.name: d for d in droplets}))
    finally:
        if lb is not None:
            lb.stop()
        for droplet in droplets:
            droplet.host.runtime.shutdown()


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
