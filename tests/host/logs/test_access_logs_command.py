"""`access-logs-ship` as the timer runs it: the serving release's bucket and key, one line per
file, exit 1 when an upload failed, a clear refusal without a release, one run at a time."""

from __future__ import annotations

import argparse
import io
import json
import os
from pathlib import Path

import pytest

from bankflow_infra import catalog
from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.contract.release import BACKUP_CONFIG_FILE, RCLONE_CONFIG
from bankflow_infra.host import state as st
from bankflow_infra.host.access_logs_ship import LOCK_NAME, cmd_access_logs_ship
from bankflow_infra.host.backups.config import BackupUsageError
from bankflow_infra.host.context import Context, Options
from bankflow_infra.render.backup import render_backup_config, render_rclone_config
from tests.host.logs.ship_rig import BUCKET, PREFIX, access_line, bucket_texts, write_rotated
from tests.render.helpers import load_settings
from tests.support.ports import free_port
from tests.support.s3 import S3

RELEASE = "abc123def456"



def _host(tmp_path: Path, endpoint: str) -> HostPaths:
    paths = HostPaths(tmp_path / "home")
    paths.ensure()
    config = json.loads(render_backup_config(load_settings("production")))
    assert config["bucket"] == BUCKET
    bundle = paths.release_dir(RELEASE)
    (bundle / "backup").mkdir(parents=True)
    (bundle / BACKUP_CONFIG_FILE).write_text(json.dumps({**config, "endpoint": endpoint}))
    fd = os.open(paths.secrets / RCLONE_CONFIG, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, render_rclone_config("test", "test").encode())
    os.close(fd)
    st.write_current(paths, st.Current(RELEASE, RELEASE, ""))
    return paths


def _run(paths: HostPaths, logs: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(paths, None, Options(), "test", out, err)  # type: ignore[arg-type] - no runtime needed
    args = argparse.Namespace(dir=logs, name=catalog.ACCESS_LOG_NAME, prefix=PREFIX, settle=60.0)
    return cmd_access_logs_ship(ctx, args), out.getvalue(), err.getvalue()


def test_the_command_ships_into_the_serving_releases_bucket(s3: S3, tmp_path: Path) -> None:
    paths = _host(tmp_path, s3.endpoint)
    logs = tmp_path / "nginx"
    logs.mkdir()
    write_rotated(logs, "20261130T010000", [access_line(n) for n in range(10)])

    code, out, err = _run(paths, logs)

    assert (code, err) == (exit_codes.OK, "")
    assert f"access-logs-ship: {catalog.ACCESS_LOG_NAME}-20261130T010000 -> {PREFIX}/" in out
    assert list(bucket_texts(s3).values()) == ["".join(access_line(n) for n in range(10))]
    assert "nothing to ship" in _run(paths, logs)[1]


def test_a_failed_upload_fails_the_run_and_keeps_the_file(s3: S3, tmp_path: Path) -> None:
    paths = _host(tmp_path, f"http://127.0.0.1:{free_port()}")
    logs = tmp_path / "nginx"
    logs.mkdir()
    kept = write_rotated(logs, "20261130T010000", [access_line(1)])

    code, _, err = _run(paths, logs)

    assert code == exit_codes.FAILED
    assert "(retried next run)" in err
    assert kept.exists()


def test_without_a_release_it_says_so_and_changes_nothing(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path / "home")
    paths.ensure()
    with pytest.raises(BackupUsageError, match="no release deployed yet"):
        _run(paths, tmp_path)


def test_one_run_at_a_time(s3: S3, tmp_path: Path) -> None:
    paths = _host(tmp_path, s3.endpoint)
    logs = tmp_path / "nginx"
    logs.mkdir()
    write_rotated(logs, "20261130T010000", [access_line(1)])
    with st.exclusive_lock(paths.state / LOCK_NAME, "access-logs-ship", "other"):
        code, out, _ = _run(paths, logs)
    assert code == exit_codes.OK
    assert "another run is shipping" in out
    assert s3.keys(BUCKET) == []
