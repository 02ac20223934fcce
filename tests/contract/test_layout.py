"""The host tree: one definition for the agent, the rendered files and the bootstrap script."""

from __future__ import annotations

from pathlib import Path

from bankflow_infra.contract import layout


def test_every_folder_lives_under_the_root() -> None:
    paths = layout.HostPaths(Path("/srv/x"))
    folders = [paths.bin, paths.releases, paths.nginx, paths.secrets, paths.tls, paths.state,
               paths.logs, paths.uploads, paths.backups]
    assert len(set(folders)) == len(folders)
    assert all(f.parent == paths.home for f in folders)
    # The audit log and the agent's state are out of reach of the containers' logs/ mount.
    assert paths.audit_log.parent == paths.state != paths.logs


def test_the_bootstrap_environment_names_the_same_tree() -> None:
    env = layout.bootstrap_environment()
    assert env["BANKFLOW_HOME"] == layout.HOST_ROOT
    assert env["BANKFLOW_BIN_DIR"] == layout.BIN_DIR
    assert env["BANKFLOW_SECRETS_DIR"] == layout.SECRETS_DIR
    assert env["BANKFLOW_BACKUPS_DIR"] == layout.BACKUPS_DIR
    assert f"{layout.BIN_DIR}/{layout.AGENT_NAME}" == layout.AGENT_BIN


def test_the_home_can_be_moved_by_the_environment(monkeypatch) -> None:
    monkeypatch.setenv(layout.HOME_ENV, "/tmp/elsewhere")
    assert layout.HostPaths.from_env().home == Path("/tmp/elsewhere")
    assert layout.HostPaths.from_env("/explicit").home == Path("/explicit")
