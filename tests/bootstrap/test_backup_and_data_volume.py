"""host-setup.sh: the backup client package and the production data volume (issue 5).

Run for real against a temporary root filesystem (tests/bootstrap/rig.py); ``findmnt`` and
``mount`` are recording stand-ins that mount what the test root's /etc/fstab names, when the
label is "attached" in the stand-in state.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bankflow_infra import catalog
from bankflow_infra.contract.layout import DATA_VOLUME_MOUNT
from tests.bootstrap.rig import HostSetupRig, Run, mode_of, owner_of, running_as_root

LABEL = "bankflow-data"
FSTAB_LINE = f"LABEL={LABEL} {DATA_VOLUME_MOUNT} ext4 defaults,nofail,discard 0 2"


@pytest.fixture
def rig(tmp_path: Path) -> HostSetupRig:
    return HostSetupRig(tmp_path)


def _ok(rig: HostSetupRig, **env: str) -> Run:
    run = rig.run(**env)
    assert run.returncode == 0, f"host-setup failed:\n{run.stdout}\n{run.stderr}"
    return run


def test_rclone_is_installed_once(rig: HostSetupRig) -> None:
    run = _ok(rig)
    assert "changed: backup client (installed rclone)" in run.lines
    assert any(c[0] == "apt-get" and "install" in c and "rclone" in c for c in run.commands)
    again = _ok(rig)
    assert "ok: backup client (rclone)" in again.lines


def test_without_a_label_no_volume_is_touched(rig: HostSetupRig) -> None:
    run = _ok(rig)
    assert "ok: data volume (none: BANKFLOW_DATA_VOLUME_LABEL unset)" in run.lines
    assert not any(c[0] in ("mount", "findmnt") for c in run.commands)
    assert LABEL not in rig.path("/etc/fstab").read_text()
    assert not rig.path(DATA_VOLUME_MOUNT).exists()


def test_volume_is_added_to_fstab_mounted_and_gets_the_postgres_dir(rig: HostSetupRig) -> None:
    fstab_before = rig.path("/etc/fstab").read_text()

    run = _ok(rig, BANKFLOW_DATA_VOLUME_LABEL=LABEL)

    fstab = rig.path("/etc/fstab").read_text()
    assert fstab.startswith(fstab_before + FSTAB_LINE + "\n")  # the root filesystem's line is kept
    assert fstab.count(FSTAB_LINE) == 1
    assert mode_of(rig.path("/etc/fstab")) == 0o644
    mount_dir = str(rig.path(DATA_VOLUME_MOUNT))
    assert ["mount", "--", mount_dir] in run.commands
    # findmnt before (not mounted) and after (mounted)
    assert run.commands.count(["findmnt", "--mountpoint", mount_dir]) == 2
    assert rig.state()["mounts"] == [DATA_VOLUME_MOUNT]
    # the data dir the compose file binds (catalog.postgres_data_dir), created after the mount
    data = rig.path(f"{DATA_VOLUME_MOUNT}/postgres")
    assert data.is_dir()
    assert mode_of(data) == 0o700
    if running_as_root():
        assert owner_of(data) == (70, 70)
    expected = (
        f"changed: data volume LABEL={LABEL} at {DATA_VOLUME_MOUNT}: fstab entry, mount point, "
    )
    assert any(line.startswith(expected + "mounted, postgres/") for line in run.lines), run.stdout


def test_volume_second_run_changes_nothing(rig: HostSetupRig) -> None:
    _ok(rig, BANKFLOW_DATA_VOLUME_LABEL=LABEL)
    files_before = rig.snapshot()

    run = _ok(rig, BANKFLOW_DATA_VOLUME_LABEL=LABEL)

    assert f"ok: data volume LABEL={LABEL} at {DATA_VOLUME_MOUNT}" in run.lines
    assert run.lines[-1] == "host-setup: no changes"
    assert run.mutating() == []
    assert rig.snapshot() == files_before


def test_volume_is_remounted_after_a_reboot_without_the_mount(rig: HostSetupRig) -> None:
    _ok(rig, BANKFLOW_DATA_VOLUME_LABEL=LABEL)
    rig.update_state(mounts=[])
    run = _ok(rig, BANKFLOW_DATA_VOLUME_LABEL=LABEL)
    assert run.changed == [f"changed: data volume LABEL={LABEL} at {DATA_VOLUME_MOUNT}: mounted"]
    assert rig.path("/etc/fstab").read_text().count(FSTAB_LINE) == 1


def test_a_stale_fstab_line_for_the_mount_point_is_replaced(rig: HostSetupRig) -> None:
    fstab = rig.path("/etc/fstab")
    fstab.write_text(fstab.read_text() + f"/dev/sdb {DATA_VOLUME_MOUNT} ext4 defaults 0 0\n")
    _ok(rig, BANKFLOW_DATA_VOLUME_LABEL=LABEL)
    lines = fstab.read_text().splitlines()
    assert [line for line in lines if DATA_VOLUME_MOUNT in line] == [FSTAB_LINE]
    assert lines[0].startswith("LABEL=cloudimg-rootfs")


def test_unattached_volume_fails_and_creates_no_data_dir_on_the_root_disk(rig: HostSetupRig) -> None:
    rig.update_state(volume_labels=[])
    run = rig.run(BANKFLOW_DATA_VOLUME_LABEL=LABEL)
    assert run.returncode != 0
    assert f"cannot mount the data volume (LABEL={LABEL})" in run.stderr
    assert not rig.path(f"{DATA_VOLUME_MOUNT}/postgres").exists()


@pytest.mark.skipif(not running_as_root(), reason="ownership is only enforced when running as root")
def test_postgres_dir_mode_and_owner_are_enforced(rig: HostSetupRig) -> None:
    _ok(rig, BANKFLOW_DATA_VOLUME_LABEL=LABEL)
    data = rig.path(f"{DATA_VOLUME_MOUNT}/postgres")
    data.chmod(0o755)
    import os

    os.chown(data, 0, 0)
    run = _ok(rig, BANKFLOW_DATA_VOLUME_LABEL=LABEL)
    assert mode_of(data) == 0o700
    assert owner_of(data) == (70, 70)
    volume = f"data volume LABEL={LABEL} at {DATA_VOLUME_MOUNT}"
    assert run.changed == [f"changed: {volume}: postgres/ owner, postgres/ mode 0700"]


def test_bad_label_is_refused_before_anything_runs(rig: HostSetupRig) -> None:
    run = rig.run(BANKFLOW_DATA_VOLUME_LABEL="bad label; rm -rf /")
    assert run.returncode != 0
    assert "BANKFLOW_DATA_VOLUME_LABEL must be" in run.stderr
    assert run.commands == []


def test_print_config_shows_the_volume_settings(rig: HostSetupRig) -> None:
    run = rig.run("--print-config", BANKFLOW_DATA_VOLUME_LABEL=LABEL)
    config = dict(line.split("=", 1) for line in run.lines)
    assert config["DATA_VOLUME_LABEL"] == LABEL
    assert config["DATA_VOLUME_MOUNT"] == DATA_VOLUME_MOUNT


def test_the_mount_point_is_where_the_renderer_puts_postgres_data() -> None:
    import yaml

    from bankflow_infra.stackfile import settings_from_stack_file

    stack_file = Path(__file__).resolve().parents[2] / "Pulumi.production.yaml"
    if not stack_file.exists():
        pytest.skip("no production stack file")
    settings = settings_from_stack_file("bankflow", "production", yaml.safe_load(stack_file.read_text()),
                                        str(stack_file))  # fmt: skip
    data_dir = catalog.postgres_data_dir(settings)
    assert data_dir in (None, f"{DATA_VOLUME_MOUNT}/postgres")
