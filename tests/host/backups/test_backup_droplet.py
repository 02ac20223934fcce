"""Several droplets share one database and one uploads share: only ``backup_droplet`` backs them up.

The bundle is the same on every droplet (render/backup.py, render/uploads_backup.py name droplet
1 by its hostname); each droplet's nightly timers run, and all but droplet 1 must exit 0 without
touching the bucket, or every dump and snapshot would be taken N times (the dump keys, named by
the second, could even collide).
"""

from __future__ import annotations

import argparse
import io
import socket
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.host.backups import uploads, uploads_commands
from bankflow_infra.host.backups.config import BackupUsageError, skip_reason
from bankflow_infra.host.backups.uploads_restic import UploadsConfig, parse_uploads_config
from bankflow_infra.host.context import Context, Options

UPLOADS = {"schema": 1, "stack": "production", "on_data_volume": False,
           "uploads_dir": "/opt/bankflow/uploads",
           "repository": "s3:https://nyc3.digitaloceanspaces.com/bankflow-production-backups/uploads"}


def test_skip_reason() -> None:
    assert skip_reason(None, "anything") is None  # one droplet: it backs up
    assert skip_reason("bankflow-production-server", "bankflow-production-server") is None
    reason = skip_reason("bankflow-production-server", "bankflow-production-server-2")
    assert reason is not None
    assert "bankflow-production-server-2) is not bankflow-production-server" in reason


def test_the_uploads_config_names_the_backup_droplet() -> None:
    config = parse_uploads_config(UPLOADS | {"backup_droplet": "bankflow-production-server"}, "uploads.json")
    assert config.backup_droplet == "bankflow-production-server"
    assert parse_uploads_config(UPLOADS, "uploads.json").backup_droplet is None
    with pytest.raises(BackupUsageError, match="backup_droplet: expected a droplet's hostname"):
        parse_uploads_config(UPLOADS | {"backup_droplet": "Not A Host"}, "uploads.json")


@pytest.mark.parametrize("mine", [True, False])
def test_only_the_backup_droplet_snapshots_the_share(
    mine: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = socket.gethostname()
    config = UploadsConfig("production", UPLOADS["repository"], tmp_path / "missing-tree", False,
                           here if mine else f"{here}-not-this-one")
    monkeypatch.setattr(uploads, "load_uploads_config", lambda _ctx: config)

    def no_restic(*_args: Any) -> None:
        pytest.fail("restic opened on a droplet that does not back up")

    monkeypatch.setattr(uploads, "open_restic", no_restic)
    out, err = io.StringIO(), io.StringIO()
    paths = HostPaths(tmp_path / "home")
    paths.ensure()
    ctx = Context(paths, None, Options(), "test", out, err, sleep=lambda _s: None)  # type: ignore[arg-type]
    code = uploads_commands.cmd_uploads_backup(ctx, argparse.Namespace())
    if mine:  # it goes on: the (missing) tree is checked before restic, and refused
        assert code == 2, out.getvalue() + err.getvalue()
    else:
        assert code == 0, err.getvalue()
        assert "which takes the stack's backups: nothing to do here" in out.getvalue()
