"""Uploads: snapshot, change, snapshot, restore to a time; the tree equals the tree at that time
byte for byte, the previous tree is kept until discarded; refusals leave the live tree untouched.
Real restic 0.14 against moto's S3 on loopback (conftest.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from bankflow_infra.contract.exit_codes import FAILED, LOCKED, OK, USAGE
from bankflow_infra.contract.uploads import UPLOADS_SECRET_ENV
from bankflow_infra.host.backups import uploads_restic
from bankflow_infra.host.backups.config import BackupFailed, BackupUsageError, backup_lock
from bankflow_infra.host.backups.uploads import (
    backup_uploads,
    discard_previous_uploads,
    prepare_uploads_restore,
    swap_back_uploads,
    swap_in_uploads,
    uploads_status,
)
from bankflow_infra.host.backups.uploads_commands import (
    cmd_uploads_backup,
    cmd_uploads_check,
    cmd_uploads_snapshots,
    cmd_uploads_status,
)
from bankflow_infra.host.backups.uploads_migrate import tree_digest
from bankflow_infra.host.backups.uploads_restic import load_uploads_config, open_restic
from tests.host.uploads.conftest import (
    ACCESS_KEY,
    PASSWORD,
    SECRET_KEY,
    KillMidRestore,
    UploadsHost,
    write_tree,
)
from tests.support.s3 import Recorder


def _siblings(live: Path) -> list[str]:
    return sorted(p.name for p in live.parent.iterdir() if p.name != live.name)


def _first_tree(host: UploadsHost) -> None:
    write_tree(
        host.live,
        {"a.txt": b"statement A v1\n", "keep/b.bin": os.urandom(50_000), "gone.txt": b"deleted later\n"},
    )
    os.chmod(host.live / "a.txt", 0o640)


def _change_tree(host: UploadsHost) -> None:
    (host.live / "a.txt").write_bytes(b"statement A v2, edited after T\n")
    (host.live / "gone.txt").unlink()
    write_tree(host.live, {"new/c.txt": b"added after T\n", "keep/b2.bin": os.urandom(1000)})


def test_restore_to_a_time_gives_the_tree_of_that_time_and_keeps_the_previous(
    host: UploadsHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder(uploads_restic.run_process)
    monkeypatch.setattr(uploads_restic, "run_process", recorder)
    _first_tree(host)
    before_any = dt.datetime.now(dt.UTC)
    first = backup_uploads(host.ctx)
    assert first.created_repository
    assert first.files == 3
    at_t = tree_digest(host.live)
    target = dt.datetime.now(dt.UTC)
    _change_tree(host)
    second = backup_uploads(host.ctx)
    assert not second.created_repository
    assert second.snapshot_id != first.snapshot_id
    changed = tree_digest(host.live)
    with pytest.raises(BackupUsageError, match="is before the first uploads snapshot"):
        prepare_uploads_restore(host.ctx, before_any - dt.timedelta(seconds=1))
    assert _siblings(host.live) == []

    prepared = prepare_uploads_restore(host.ctx, target)
    assert prepared.snapshot_id.startswith(first.snapshot_id)  # restic 0.14 reports the short id
    assert tree_digest(host.live) == changed  # live untouched while preparing
    assert tree_digest(prepared.path) == at_t

    swap_in_uploads(host.ctx, prepared)
    assert tree_digest(host.live) == at_t  # byte for byte, the tree at T
    assert (host.live / "a.txt").stat().st_mode & 0o777 == 0o640
    assert tree_digest(prepared.previous) == changed  # kept until discarded
    assert cmd_uploads_status(host.ctx, argparse.Namespace()) == OK
    status = json.loads(host.out.getvalue()[host.out.getvalue().index("{") :])
    assert status == uploads_status(host.ctx) | {"newest_snapshot": status["newest_snapshot"]}
    assert status["count"] == 2
    assert status["newest_snapshot"]["id"].startswith(second.snapshot_id)

    assert discard_previous_uploads(host.ctx) == [prepared.previous.name]
    assert _siblings(host.live) == []
    # the password and the key reach restic in its environment only, never in an argv
    assert {"init", "backup", "snapshots", "restore"} <= {a for argv, _ in recorder.calls for a in argv}
    for argv, env in recorder.calls:
        assert not any(secret in a for a in argv for secret in (PASSWORD, ACCESS_KEY, SECRET_KEY)), argv
        assert env["RESTIC_PASSWORD"] == PASSWORD
        assert not {k for k in env if k.startswith(("RESTIC_REPOSITORY", "AWS_PROFILE", "AWS_SESSION"))}


def test_swap_back_puts_the_tree_from_before_the_restore_back(host: UploadsHost) -> None:
    _first_tree(host)
    backup_uploads(host.ctx)
    _change_tree(host)
    changed = tree_digest(host.live)
    prepared = prepare_uploads_restore(host.ctx, None)  # the newest snapshot: the first one here
    swap_in_uploads(host.ctx, prepared)
    assert tree_digest(host.live) != changed
    swap_back_uploads(host.ctx, prepared)
    assert tree_digest(host.live) == changed
    assert _siblings(host.live) == []
    # Undoing twice, or undoing a restore that never swapped in, never touches the live tree.
    swap_back_uploads(host.ctx, prepared)
    assert tree_digest(host.live) == changed
    unswapped = prepare_uploads_restore(host.ctx, None)
    swap_back_uploads(host.ctx, unswapped)
    swap_back_uploads(host.ctx, unswapped)
    assert tree_digest(host.live) == changed
    assert _siblings(host.live) == []
    with pytest.raises(BackupUsageError, match=r"no uploads snapshots in .* for stack other"):
        prepare_uploads_restore(host.ctx, None, of_stack="other")  # snapshots are per stack

    # restic check reads the data back: a healthy repository passes, a damaged pack is found
    assert cmd_uploads_check(host.ctx, argparse.Namespace(read_data_percent=100)) == OK
    assert "no errors were found" in host.out.getvalue()
    packs = [k for k in host.s3.keys(host.bucket) if k.startswith("uploads/data/")]
    # one byte flipped, same size (a missing or shorter object makes restic retry for minutes)
    body = bytearray(host.s3.client.get_object(Bucket=host.bucket, Key=packs[0])["Body"].read())
    body[len(body) // 2] ^= 0xFF
    host.s3.client.put_object(Bucket=host.bucket, Key=packs[0], Body=bytes(body))
    assert cmd_uploads_check(host.ctx, argparse.Namespace(read_data_percent=100)) == FAILED
    assert host.audit_lines()[-1]["result"] == "failed"


def test_one_backup_or_restore_at_a_time(host: UploadsHost, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Sequence[str]] = []
    monkeypatch.setattr(uploads_restic, "run_process", lambda argv, **_: calls.append(argv))
    with backup_lock(host.paths, "a restore", "restore"):
        assert cmd_uploads_backup(host.ctx, argparse.Namespace()) == LOCKED
    assert "another backup or restore is running" in host.err.getvalue()
    assert host.audit_lines()[-1]["result"] == "refused"
    assert calls == []


def test_a_wrong_password_is_refused_and_the_live_tree_is_untouched(host: UploadsHost) -> None:
    _first_tree(host)
    open_restic(host.ctx, load_uploads_config(host.ctx)).ensure_repository()  # made with the right one
    live = tree_digest(host.live)
    host.write_secret("not-the-uploads-repository-password")
    with pytest.raises(BackupFailed, match="does not open the uploads repository") as refused:
        prepare_uploads_restore(host.ctx, None)
    assert "not-the-uploads" not in str(refused.value)
    assert PASSWORD not in str(refused.value)
    assert tree_digest(host.live) == live
    assert _siblings(host.live) == []
    # the timer's command: exit 1, one line on stderr, on record in the audit log
    assert cmd_uploads_backup(host.ctx, argparse.Namespace()) == FAILED
    assert "does not open the uploads repository" in host.err.getvalue()
    assert host.audit_lines()[-1]["result"] == "failed"


def test_a_missing_password_file_is_refused_before_restic_runs(
    host: UploadsHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Sequence[str]] = []
    monkeypatch.setattr(uploads_restic, "run_process", lambda argv, **_: calls.append(argv))
    (host.paths.secrets / UPLOADS_SECRET_ENV).unlink()
    assert cmd_uploads_backup(host.ctx, argparse.Namespace()) == USAGE
    assert f"{UPLOADS_SECRET_ENV} is missing" in host.err.getvalue()
    assert cmd_uploads_snapshots(host.ctx, argparse.Namespace(json=True)) == USAGE
    host.write_secret(password=None)
    with pytest.raises(BackupUsageError, match="no value for RESTIC_PASSWORD"):
        prepare_uploads_restore(host.ctx, None)
    assert calls == []


def test_restic_killed_halfway_through_a_restore_leaves_the_live_tree_untouched(
    host: UploadsHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_tree(host.live, {"big.bin": os.urandom(3_000_000), "small.txt": b"x\n"})
    backup_uploads(host.ctx)
    (host.live / "small.txt").write_bytes(b"changed after the snapshot\n")
    live = tree_digest(host.live)
    kill_mid_restore = KillMidRestore(uploads_restic.run_process)
    monkeypatch.setattr(uploads_restic, "run_process", kill_mid_restore)
    with pytest.raises(BackupFailed, match="restic was stopped"):
        prepare_uploads_restore(host.ctx, None)
    assert kill_mid_restore.killed == [True]  # restic was still running when it was killed
    assert tree_digest(host.live) == live
    assert _siblings(host.live) == []  # the scratch and the half-restored tree are gone
