"""host-setup.sh's uploads steps, run for real against a temporary root filesystem
(tests/bootstrap/rig.py): restic installed, the uploads timer installed when the bundle has it,
the agent asked to move the uploads onto the data volume (a recording stand-in agent here: the
move itself is tested in test_uploads_migrate.py), a stack without a volume told so."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from bankflow_infra.contract.layout import DATA_VOLUME_MOUNT, HOST_ROOT, UPLOADS_DIR
from tests.bootstrap.rig import HostSetupRig, Run

UNITS = ("bankflow-uploads-backup.service", "bankflow-uploads-backup.timer")


@pytest.fixture
def rig(tmp_path: Path) -> HostSetupRig:
    return HostSetupRig(tmp_path)


def _standin_agent(rig: HostSetupRig, exit_code: int, says: str) -> Path:
    record = rig.tmp / "agent-calls.jsonl"
    script = rig.payload / "agent" / "bankflow-agent"
    script.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$*\" >> {shlex.quote(str(record))}\n"
        f"echo {shlex.quote(says)}\n"
        f"exit {exit_code}\n"
    )
    script.chmod(0o755)
    return record


def test_without_a_volume_the_uploads_stay_on_the_root_disk_and_say_so(rig: HostSetupRig) -> None:
    record = _standin_agent(rig, 0, "uploads-migrate: should not run")
    run = rig.run()
    assert run.returncode == 0, run.stderr
    assert (
        f"ok: uploads on the droplet's root disk ({UPLOADS_DIR}; this stack has no data volume)" in run.lines
    )
    assert "changed: uploads backup client (installed restic)" in run.lines
    assert "ok: bankflow-uploads-backup.timer (not in this bundle)" in run.lines
    assert not record.exists()


def test_with_a_volume_the_agent_moves_the_uploads_and_the_timer_is_enabled(rig: HostSetupRig) -> None:
    record = _standin_agent(rig, 0, "uploads-migrate: moved 3 files (42 bytes) onto the data volume")
    for name in UNITS:
        (rig.payload / "host" / name).write_text(f"[Unit]\nDescription={name}\n")
    run = _with_volume(rig)
    assert run.returncode == 0, run.stderr
    home, volume = rig.path(HOST_ROOT), rig.path(DATA_VOLUME_MOUNT)
    assert record.read_text().splitlines() == [
        f"--home {home} --actor host-setup uploads-migrate --volume {volume}"
    ]
    assert (
        "changed: uploads on the data volume: uploads-migrate: moved 3 files (42 bytes) onto the data volume"
        in run.lines
    )
    for name in UNITS:
        assert rig.path(f"/etc/systemd/system/{name}").read_text() == f"[Unit]\nDescription={name}\n"
    assert ["systemctl", "restart", "bankflow-uploads-backup.timer"] in run.commands


def test_a_failed_move_fails_the_bootstrap_with_the_agents_message(rig: HostSetupRig) -> None:
    _standin_agent(rig, 1, "uploads-migrate: failed: verification of the copy failed for a.pdf")
    run = _with_volume(rig)
    assert run.returncode != 0
    assert "moving the uploads onto the data volume: uploads-migrate: failed: verification" in run.stderr


def _with_volume(rig: HostSetupRig) -> Run:
    return rig.run(BANKFLOW_DATA_VOLUME_LABEL="bankflow-data")
