"""Issue 12, item 3 on the host: host-setup.sh gives each service its own log directory, owned by
that service's uid (which resolves, for logrotate's `su`), keeps the parent root's, refuses a
planted symlink instead of chowning through it, and installs the access-log shipping units.

Runs the real script in the bootstrap rig (tests/bootstrap/rig.py) with the real useradd and
groupadd writing the test root filesystem's /etc/passwd and /etc/group (`--prefix`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bankflow_infra import catalog
from bankflow_infra.contract import layout
from bankflow_infra.render import host_files
from tests.bootstrap.rig import HostSetupRig, mode_of, owner_of
from tests.host.logs.rig import require_root
from tests.render.helpers import load_settings
from tests.support.tools import REPO, require_tool

ISSUE_12_FILES = (
    host_files.SERVICE_LOG_DIRS,
    host_files.ACCESS_LOGROTATE,
    host_files.ACCESS_SERVICE,
    host_files.ACCESS_TIMER,
)


@pytest.fixture
def rig(tmp_path: Path) -> HostSetupRig:
    require_root()  # chown to the service uids
    rig = HostSetupRig(tmp_path)
    for tool in ("useradd", "groupadd"):
        # the real account tools (the rig records stand-ins for them by default)
        (rig.standins / tool).unlink(missing_ok=True)
        (rig.real_bin / tool).symlink_to(require_tool(tool))
    etc = rig.path("/etc")
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (etc / "group").write_text("root:x:0:\n")
    for name in ("shadow", "gshadow"):
        (etc / name).write_text("root:*::\n" if name == "gshadow" else "root:*:19000:0:99999:7:::\n")
    rendered = host_files.render_host_files(load_settings("production"))
    for path in ISSUE_12_FILES:
        (rig.payload / path).write_text(rendered[path])
    return rig


def _accounts(rig: HostSetupRig, name: str) -> dict[int, str]:
    rows = [line.split(":") for line in rig.path(f"/etc/{name}").read_text().splitlines()]
    return {int(row[2]): row[0] for row in rows}


def test_each_service_gets_its_own_log_directory_owned_by_its_uid(rig: HostSetupRig) -> None:
    run = rig.run()
    assert run.returncode == 0, run.stderr

    logs = rig.path(layout.LOGS_DIR)
    assert (mode_of(logs), owner_of(logs)) == (0o755, (0, 0))  # the parent: root's, no container's
    for service, uid in catalog.SERVICE_UIDS.items():
        directory = rig.path(catalog.service_log_dir(service))
        assert (mode_of(directory), owner_of(directory)) == (0o750, (uid, uid)), service
        assert uid in _accounts(rig, "passwd"), service  # logrotate's `su` resolves the uid...
        assert uid in _accounts(rig, "group"), service  # ...and the gid
    assert _accounts(rig, "passwd")[catalog.SERVICE_UIDS["site"]] == "bankflow-site"
    assert rig.path(host_files.ACCESS_LOGROTATE_INSTALLED).read_text() == (
        rig.payload / host_files.ACCESS_LOGROTATE
    ).read_text()
    assert rig.path("/etc/systemd/system/bankflow-access-logs.timer").is_file()
    assert run.called("systemctl", "enable", "bankflow-access-logs.timer") == 1

    again = rig.run()
    assert again.returncode == 0, again.stderr
    assert [line for line in again.changed if "log" in line] == []  # nothing to do the second time


def test_a_planted_symlink_in_place_of_a_service_directory_is_refused_not_followed(
    rig: HostSetupRig, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "root-owned"
    elsewhere.mkdir(mode=0o700)
    logs = rig.path(layout.LOGS_DIR)
    logs.mkdir(parents=True)
    (logs / "api").symlink_to(elsewhere)  # what a container could do while it mounted the parent

    run = rig.run()

    assert run.returncode != 0
    assert f"{layout.LOGS_DIR}/api is a symlink or not a directory" in run.stderr
    assert (mode_of(elsewhere), owner_of(elsewhere)) == (0o700, (0, 0))  # never chowned through


def test_a_bundle_without_the_issue_12_files_leaves_the_logs_as_they_were(rig: HostSetupRig) -> None:
    for path in ISSUE_12_FILES:
        (rig.payload / path).unlink()
    run = rig.run()
    assert run.returncode == 0, run.stderr
    assert "ok: per-service log directories (not in this bundle)" in run.lines
    assert "ok: access-log shipping (not in this bundle)" in run.lines


def test_the_uploads_tree_becomes_the_apps_shared_group_once(rig: HostSetupRig) -> None:
    # saas and api write uploads as their own uids with group catalog.UPLOADS_GID (issue 12):
    # files a root-run container wrote before the change become group-writable, once; a link a
    # container planted in the tree is never followed.
    uploads = rig.path(layout.UPLOADS_DIR)
    (uploads / "2026").mkdir(parents=True)
    (uploads / "2026" / "statement.ofx").write_text("OFXHEADER:100\n")
    outside = rig.path("/etc/outside")
    outside.write_text("root only\n")
    (uploads / "planted").symlink_to(outside)
    run = rig.run()
    assert run.returncode == 0, run.stderr
    assert "uploads tree: group" in run.stdout
    for path in (uploads, uploads / "2026"):
        assert (path.stat().st_gid, path.stat().st_mode & 0o7777) == (catalog.UPLOADS_GID, 0o2770)
    statement = (uploads / "2026" / "statement.ofx").stat()
    assert (statement.st_gid, statement.st_mode & 0o060) == (catalog.UPLOADS_GID, 0o060)
    assert (outside.stat().st_gid, outside.stat().st_mode & 0o777) == (0, 0o644)  # never followed
    again = rig.run()
    assert f"ok: uploads tree: group {catalog.UPLOADS_GID}, 2770" in again.stdout


def test_host_setup_uses_the_catalogs_uploads_group() -> None:
    script = (REPO / "files" / "bootstrap" / "host-setup.sh").read_text()
    assert f"readonly UPLOADS_GID={catalog.UPLOADS_GID}\n" in script
