"""host-setup.sh: the shared uploads of a scaled stack (issue 13, uploads.shared).

Run for real against a temporary root filesystem (tests/bootstrap/rig.py); ``mount``/``findmnt``
are recording stand-ins: an NFS line of the test root's /etc/fstab mounts when the stand-in state
lists the share as reachable. What users rely on: the share is mounted at the uploads path before
anything later in the run (the agent, the containers it starts), Docker requires that mount after
a reboot, and a share that cannot be mounted stops the run -- never uploads on the droplet's disk.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bankflow_infra.contract.layout import UPLOADS_DIR
from tests.bootstrap.rig import HostSetupRig, Run, mode_of

SHARE = "10.130.16.20:/2633050/5a1b-uploads"
ENV = {"BANKFLOW_UPLOADS_NFS_SOURCE": SHARE}
FSTAB_LINE = f"{SHARE} {UPLOADS_DIR} nfs vers=4.1,hard,noatime,_netdev,nofail 0 0"
DROPIN = "/etc/systemd/system/docker.service.d/bankflow-uploads-share.conf"


@pytest.fixture
def rig(tmp_path: Path) -> HostSetupRig:
    rig = HostSetupRig(tmp_path)
    rig.update_state(nfs_shares=[SHARE])
    return rig


def _ok(rig: HostSetupRig, **env: str) -> Run:
    run = rig.run(**env)
    assert run.returncode == 0, f"host-setup failed:\n{run.stdout}\n{run.stderr}"
    return run


def _failed(rig: HostSetupRig, message: str, **env: str) -> Run:
    run = rig.run(**env)
    assert run.returncode != 0, run.stdout
    assert message in run.stderr, run.stderr
    return run


def test_without_the_variable_nothing_is_mounted_and_docker_is_untouched(rig: HostSetupRig) -> None:
    run = _ok(rig)
    assert "ok: uploads share (none: BANKFLOW_UPLOADS_NFS_SOURCE unset)" in run.lines
    assert not [c for c in run.commands if c[0] == "mount"]
    assert "nfs" not in rig.path("/etc/fstab").read_text()
    assert not rig.path(DROPIN).exists()
    assert "nfs-common" not in rig.state()["installed"]


def test_the_share_is_mounted_before_the_agent_and_docker_requires_it(rig: HostSetupRig) -> None:
    fstab_before = rig.path("/etc/fstab").read_text()
    run = _ok(rig, **ENV)
    fstab = rig.path("/etc/fstab").read_text()
    assert fstab.startswith(fstab_before + FSTAB_LINE + "\n")  # the root filesystem's line is kept
    assert fstab.count(f" {UPLOADS_DIR} ") == 1
    assert rig.state()["mount_sources"] == {UPLOADS_DIR: SHARE}
    assert "nfs-common" in rig.state()["installed"]
    assert rig.path(DROPIN).read_text().splitlines()[1:] == ["[Unit]", f"RequiresMountsFor={UPLOADS_DIR}"]
    assert mode_of(rig.path(DROPIN)) == 0o644
    share_line = next(i for i, line in enumerate(run.lines) if "uploads share" in line)
    assert "mounted" in run.lines[share_line]
    agent_line = next(
        i for i, line in enumerate(run.lines) if "host agent" in line or "agent" in line.split(":")[1]
    )
    assert share_line < agent_line
    # the volume migration never touches a shared tree
    assert (
        f"ok: uploads on the shared NFS share ({SHARE} at {UPLOADS_DIR}; never moved onto a volume)"
        in run.lines
    )


def test_a_second_run_changes_nothing_and_a_reboot_remounts(rig: HostSetupRig) -> None:
    _ok(rig, **ENV)
    again = _ok(rig, **ENV)
    assert f"ok: uploads share {SHARE} at {UPLOADS_DIR}" in again.lines
    assert again.lines[-1] == "host-setup: no changes"
    assert again.mutating() == []
    rig.update_state(mounts=[], mount_sources={})
    rebooted = _ok(rig, **ENV)
    assert f"changed: uploads share {SHARE} at {UPLOADS_DIR}: mounted" in rebooted.lines


def test_an_unreachable_share_stops_the_run_before_the_agent(rig: HostSetupRig) -> None:
    rig.update_state(nfs_shares=[])
    run = _failed(rig, f"cannot mount the uploads share {SHARE} at {UPLOADS_DIR}", **ENV)
    assert "must not write uploads to the local disk" in run.stderr
    assert not [line for line in run.lines if line.startswith(("changed: host agent", "ok: host agent"))]
    assert not rig.path("/opt/bankflow/bin/bankflow-agent").exists()


def test_files_on_the_local_disk_are_never_hidden_under_the_share(rig: HostSetupRig) -> None:
    _ok(rig)  # a single-droplet host: uploads on its own disk
    rig.path(UPLOADS_DIR).joinpath("statement.pdf").write_text("money")
    run = _failed(rig, "holds files on this droplet's own disk", **ENV)
    assert "nothing was mounted" in run.stderr
    assert not [c for c in run.commands if c[0] == "mount"]
    assert rig.path(UPLOADS_DIR).joinpath("statement.pdf").read_text() == "money"


def test_another_filesystem_at_the_uploads_path_is_refused(rig: HostSetupRig) -> None:
    _ok(rig, **ENV)
    rig.update_state(mount_sources={UPLOADS_DIR: "10.130.16.99:/other"})
    _failed(rig, f"has '10.130.16.99:/other' mounted, not the uploads share {SHARE}", **ENV)


@pytest.mark.parametrize("value", ["10.0.0.1", "10.0.0.1:relative", "host:/a b", "$(reboot):/x"])
def test_a_malformed_source_is_refused_before_anything_changes(rig: HostSetupRig, value: str) -> None:
    run = rig.run(BANKFLOW_UPLOADS_NFS_SOURCE=value)
    assert run.returncode == 2
    assert "BANKFLOW_UPLOADS_NFS_SOURCE=" in run.stderr
    assert "is not '<host>:/<path>'" in run.stderr
    assert run.commands == []
