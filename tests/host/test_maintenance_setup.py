"""host-setup.sh installs the maintenance window's units (issue 12 item 6), run for real in the
bootstrap sandbox (``tests/bootstrap/rig.py``: a temporary root filesystem, recording stand-ins
for systemctl and the other system managers)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bankflow_infra.contract import layout
from bankflow_infra.render.host_files import fill_template
from tests.bootstrap.rig import HostSetupRig, Run, mode_of

UNITS = ("bankflow-maintenance.service", "bankflow-maintenance.timer", "bankflow-maintenance-resume.service")


@pytest.fixture
def rig(tmp_path: Path) -> HostSetupRig:
    rig = HostSetupRig(tmp_path)
    values = {
        "bankflow-maintenance.service": {"AGENT_BIN": layout.AGENT_BIN},
        "bankflow-maintenance.timer": {"TIME_UTC": "04:30"},
        "bankflow-maintenance-resume.service": {"AGENT_BIN": layout.AGENT_BIN, "STATE_DIR": layout.STATE_DIR},
    }
    for name in UNITS:
        (rig.payload / "host" / name).write_text(fill_template(f"systemd/{name}", values[name]))
    return rig


def ok(rig: HostSetupRig) -> Run:
    run = rig.run()
    assert run.returncode == 0, f"host-setup failed:\n{run.stdout}\n{run.stderr}"
    return run


def test_the_window_timer_runs_and_the_resume_unit_waits_for_a_boot(rig: HostSetupRig) -> None:
    run = ok(rig)
    for name in UNITS:
        assert mode_of(rig.path(f"/etc/systemd/system/{name}")) == 0o644
    assert ["systemctl", "enable", "bankflow-maintenance.timer"] in run.commands
    assert ["systemctl", "restart", "bankflow-maintenance.timer"] in run.commands
    assert ["systemctl", "enable", "bankflow-maintenance-resume.service"] in run.commands
    # never started by the setup: it runs at boot, and only after the window's own reboot
    assert not any(c[:1] == ["systemctl"] and "bankflow-maintenance-resume.service" in c
                   and c[1] in ("start", "restart") for c in run.commands)  # fmt: skip
    # unattended upgrades still hold Docker back and never reboot: the window does both
    unattended = rig.path("/etc/apt/apt.conf.d/51bankflow-unattended-upgrades").read_text()
    assert '"docker-ce";' in unattended
    assert 'Automatic-Reboot "false"' in unattended
    assert "maintenance window" in unattended


def test_a_second_run_changes_nothing(rig: HostSetupRig) -> None:
    ok(rig)
    run = ok(rig)
    assert not [c for c in run.mutating() if any("maintenance" in a for a in c)], run.commands


def test_a_bundle_without_the_units_is_fine(rig: HostSetupRig) -> None:
    for name in UNITS:
        (rig.payload / "host" / name).unlink()
    run = ok(rig)
    assert "ok: bankflow-maintenance.timer (not in this bundle)" in run.lines
    assert not rig.path("/etc/systemd/system/bankflow-maintenance.timer").exists()
