"""The one-time move of the uploads from the root disk onto the data volume: killed (SIGKILL)
halfway through the copy and inside the switch, then resumed; every file verified."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.host.backups.config import BackupFailed, BackupUsageError
from bankflow_infra.host.backups.uploads_migrate import migrate_uploads, sync_tree, tree_digest, verify_trees
from bankflow_infra.host.context import Context, Options
from tests.host.uploads.conftest import write_tree
from tests.support.tools import REPO


def _host(tmp_path: Path) -> tuple[Context, Path]:
    paths = HostPaths(tmp_path / "home")
    paths.ensure()
    volume = tmp_path / "volume"
    volume.mkdir()
    files = {f"statements/{n:02d}.pdf": os.urandom(2000 + n) for n in range(12)}
    write_tree(paths.uploads, {**files, "top.txt": b"top\n"})
    (paths.uploads / "empty-dir").mkdir()
    ctx = Context(paths, None, Options(), "test", io.StringIO(), io.StringIO())  # type: ignore[arg-type]
    return ctx, volume


def _kill_child(ctx: Context, volume: Path, pause_in: str, after: str) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.host.uploads.migrate_child",
            str(ctx.paths.home),
            str(volume),
            pause_in,
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for line in child.stdout:  # bounded: the child's tree has 13 files
        if line.startswith(after):
            break
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=10) == -signal.SIGKILL


def test_a_kill_during_the_copy_leaves_the_old_tree_serving_and_the_next_run_resumes(tmp_path: Path) -> None:
    ctx, volume = _host(tmp_path)
    old = ctx.paths.uploads
    original = tree_digest(old)

    _kill_child(ctx, volume, "copy", "copied")  # killed after the first file
    assert not old.is_symlink()
    assert tree_digest(old) == original  # the root disk's tree, untouched, still the one mounted
    assert not (volume / "uploads").exists()

    message = migrate_uploads(ctx, volume)
    assert "each verified by size and sha256" in message
    assert old.is_symlink()
    assert Path(os.readlink(old)) == volume / "uploads"
    assert tree_digest(volume / "uploads") == original
    assert tree_digest(ctx.paths.uploads_root_disk_copy) == original  # never deleted in the same step
    assert migrate_uploads(ctx, volume).startswith("nothing to do")


def test_a_kill_inside_the_switch_is_completed_by_the_next_run(tmp_path: Path) -> None:
    ctx, volume = _host(tmp_path)
    original = tree_digest(ctx.paths.uploads)

    _kill_child(ctx, volume, "link", "linking")
    assert not os.path.lexists(ctx.paths.uploads)  # renamed aside, the symlink not yet made
    assert tree_digest(volume / "uploads") == original

    assert "resumed" in migrate_uploads(ctx, volume)
    assert ctx.paths.uploads.is_symlink()
    assert tree_digest(ctx.paths.uploads) == original  # through the symlink, as the apps see it


def test_a_copy_that_differs_is_never_switched(tmp_path: Path) -> None:
    ctx, volume = _host(tmp_path)
    stage = volume / "copy"
    sync_tree(ctx.paths.uploads, stage)
    target = stage / "statements" / "03.pdf"
    data = bytearray(target.read_bytes())
    data[100] ^= 0xFF  # same size, other bytes
    target.write_bytes(bytes(data))
    with pytest.raises(BackupFailed, match=r"statements/03\.pdf"):
        verify_trees(ctx.paths.uploads, stage)


def test_two_trees_with_files_are_not_merged(tmp_path: Path) -> None:
    ctx, volume = _host(tmp_path)
    write_tree(volume / "uploads", {"other.pdf": b"from another droplet\n"})
    with pytest.raises(BackupUsageError, match="refusing to merge"):
        migrate_uploads(ctx, volume)
    assert not ctx.paths.uploads.is_symlink()


def test_a_fresh_host_points_at_the_volume_tree(tmp_path: Path) -> None:
    paths = HostPaths(tmp_path / "home")
    paths.ensure()
    paths.uploads.mkdir()  # what the bootstrap's directory step makes
    volume = tmp_path / "volume"
    write_tree(
        volume / "uploads", {"kept-on-the-volume.pdf": b"carried by the volume\n"}
    )  # a replaced droplet
    ctx = Context(paths, None, Options(), "test", io.StringIO(), io.StringIO())  # type: ignore[arg-type]
    migrate_uploads(ctx, volume)
    assert (paths.uploads / "kept-on-the-volume.pdf").read_bytes() == b"carried by the volume\n"
