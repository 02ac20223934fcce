"""The maintenance window behind a load balancer (issue 13): each droplet waits its turn, the
health gate asks the verify listener (the public one expects the load balancer's PROXY header),
the droplet drains before it reboots and rejoins only after the gate passes at the next boot.
Run for real against the stand-in host; apt/docker/systemctl are the recording stand-in."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.fleet import (
    LB_HEALTH_INCLUDE,
    fleet_position,
    patch_wait_seconds,
    render_lb_health,
)
from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.host import patching, patching_fleet
from bankflow_infra.host.context import Context, Options
from tests.host.fixtures import HostEnv
from tests.host.test_patching import Machine, serving
from tests.support.ports import free_port


def _context(host: HostEnv) -> tuple[Context, io.StringIO, io.StringIO]:
    """The public listener expects PROXY behind a load balancer: here it is a dead port, and
    only the verify listener (the stand-in nginx) answers."""
    out, err = io.StringIO(), io.StringIO()
    options = Options(health_timeout=2.0, verify_timeout=2.0, verify_url=f"http://127.0.0.1:{free_port()}",
                      candidate_url=f"http://127.0.0.1:{host.port}")  # fmt: skip
    return Context(HostPaths.from_env(str(host.home)), host.runtime, options, "test", out, err), out, err


def _behind_a_load_balancer(ctx: Context) -> None:
    (ctx.paths.nginx / LB_HEALTH_INCLUDE).write_text(render_lb_health(draining=False))


class Drains:
    """Records the window's drain/undrain calls, in order with the machine's commands."""

    def __init__(self, machine: Machine, answer: int = exit_codes.OK) -> None:
        self.machine, self.answer = machine, answer

    def __call__(self, _ctx: Context, draining: bool) -> int:
        self.machine.argvs.append(["drain" if draining else "undrain"])
        return self.answer


def test_droplets_take_turns_in_the_window() -> None:
    assert [fleet_position(f"bankflow-production-server{s}") for s in ("", "-2", "-10")] == [1, 2, 10]
    assert fleet_position("some-other-host") == 1
    assert [patch_wait_seconds(f"bankflow-production-server{s}") for s in ("", "-2", "-3")] == [0, 1200, 2400]


def test_patch_wait_sleeps_only_behind_a_load_balancer(host: HostEnv) -> None:
    ctx, out, _ = _context(serving(host))
    slept: list[float] = []
    assert patching_fleet.cmd_patch_wait(ctx, "bankflow-production-server-3", slept.append) == exit_codes.OK
    assert slept == []  # one droplet: no load balancer, no turn to wait
    assert "starts now" in out.getvalue()
    _behind_a_load_balancer(ctx)
    assert patching_fleet.cmd_patch_wait(ctx, "bankflow-production-server-3", slept.append) == exit_codes.OK
    assert slept == [2400]


def test_behind_a_load_balancer_the_gate_asks_the_verify_listener(host: HostEnv, tmp_path: Path) -> None:
    ctx, _, err = _context(serving(host))
    machine = Machine(tmp_path)
    # One droplet: the gate asks the public listener (here dead), as before issue 13.
    assert patching.run_window(ctx, machine.system()) == exit_codes.FAILED
    assert "public listener" in err.getvalue()
    _behind_a_load_balancer(ctx)
    assert patching.run_window(ctx, machine.system()) == exit_codes.OK


def test_it_drains_before_the_reboot_and_rejoins_after_the_gate(host: HostEnv, tmp_path: Path) -> None:
    ctx, _, _ = _context(serving(host))
    _behind_a_load_balancer(ctx)
    machine = Machine(tmp_path)
    machine.flag.write_text("*** System restart required ***\n")
    system = replace(machine.system(), set_draining=Drains(machine))
    assert patching.run_window(ctx, system) == exit_codes.OK
    assert machine.argvs.index(["drain"]) < machine.argvs.index(["systemctl", "reboot"])
    assert ["undrain"] not in machine.argvs
    machine.boot_id.write_text("boot-2\n")
    ctx, _, _ = _context(host)
    assert patching.after_reboot(ctx, system, sleep=lambda _: None) == exit_codes.OK
    assert machine.argvs[-1] == ["undrain"]


def test_a_droplet_that_cannot_drain_is_not_rebooted(host: HostEnv, tmp_path: Path) -> None:
    ctx, _, err = _context(serving(host))
    _behind_a_load_balancer(ctx)
    machine = Machine(tmp_path)
    machine.flag.write_text("*** System restart required ***\n")
    system = replace(machine.system(), set_draining=Drains(machine, exit_codes.FAILED))
    assert patching.run_window(ctx, system) == exit_codes.FAILED
    assert not machine.rebooted()
    assert "could not be drained" in err.getvalue()


def test_after_a_failed_gate_at_boot_the_droplet_stays_out_of_rotation(
    host: HostEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(patching, "AFTER_REBOOT_HEALTH_SECONDS", 0.0)  # one gate, no waiting for recovery
    ctx, _, _ = _context(serving(host))
    _behind_a_load_balancer(ctx)
    machine = Machine(tmp_path)
    machine.flag.write_text("x\n")
    system = replace(machine.system(), set_draining=Drains(machine))
    assert patching.run_window(ctx, system) == exit_codes.OK
    machine.boot_id.write_text("boot-2\n")
    ctx, _, _ = _context(host)
    ctx = Context(ctx.paths, ctx.runtime, replace(ctx.options, candidate_url=f"http://127.0.0.1:{free_port()}"),
                  "test", io.StringIO(), io.StringIO())  # fmt: skip
    assert patching.after_reboot(ctx, system, sleep=lambda _: None) == exit_codes.FAILED
    assert ["undrain"] not in machine.argvs
