"""``uploads-seed``: an empty uploads tree (a new stack's NFS share) filled with another stack's
snapshot, byte for byte; refused on a tree that holds anything; killed or failing anywhere, nothing
of the tree's own is touched and the next run finishes the job. ``uploads-aside``: a point in time
beside the live files of a shared tree, which it never touches. Real restic 0.14 against moto's
S3 on loopback (conftest.py); the kills are real SIGKILLs of a child process (seed_child.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from bankflow_infra.contract.exit_codes import FAILED, LOCKED, OK, USAGE
from bankflow_infra.contract.uploads import UPLOADS_CONFIG_FILE, UPLOADS_TAG
from bankflow_infra.host import state as st
from bankflow_infra.host.backups import uploads_restic, uploads_seed
from bankflow_infra.host.backups.config import backup_lock
from bankflow_infra.host.backups.uploads import ASIDE_PREFIX, backup_uploads
from bankflow_infra.host.backups.uploads_commands import cmd_uploads_aside, cmd_uploads_seed
from bankflow_infra.host.backups.uploads_migrate import tree_digest
from bankflow_infra.host.backups.uploads_restic import load_uploads_config, open_restic
from tests.host.uploads.conftest import PASSWORD, KillMidRestore, UploadsHost, started_restoring, write_tree
from tests.support.tools import REPO

OLD = "production"  # the single-droplet stack whose uploads move
NEW = "production-m1"  # the new stack on the managed pieces, its share mounted at host.live


def configure(host: UploadsHost, stack: str, uploads_dir: Path, backup_droplet: str | None) -> None:
    """The current release's backup/uploads.json: this host plays ``stack``."""
    current = st.read_current(host.paths)
    assert current is not None
    config = {
        "schema": 1,
        "stack": stack,
        "repository": host.repository,
        "uploads_dir": str(uploads_dir),
        "on_data_volume": backup_droplet is None,
        "backup_droplet": backup_droplet,
    }
    (host.paths.release_dir(current.release) / UPLOADS_CONFIG_FILE).write_text(json.dumps(config))


Tree = dict[str, tuple[str, int, str]]


def old_stack_snapshots(host: UploadsHost, tmp_path: Path) -> tuple[Tree, dt.datetime, Tree]:
    """Two snapshots of OLD's tree: (the tree at the first, a time between them, the tree at the second)."""
    old_tree = tmp_path / "old-volume" / "uploads"
    old_tree.mkdir(parents=True)
    configure(host, OLD, old_tree, None)
    write_tree(
        old_tree,
        {
            "statements/2026-11/a.ofx": b"OFXHEADER:100 A\n",
            "statements/b.pdf": os.urandom(200_000),
            "empty.txt": b"",
            "z/deep/er/c.csv": b"date;amount\n2026-11-01;10,00\n",
        },
    )
    (old_tree / "empty-dir").mkdir()
    os.chmod(old_tree / "statements/b.pdf", 0o640)
    backup_uploads(host.ctx)
    first = tree_digest(old_tree)
    # the --to-time grammar has whole seconds: a second after the first snapshot, truncated, is
    # still after it; the second snapshot comes a second later still
    time.sleep(1.1)
    between = dt.datetime.now(dt.UTC).replace(microsecond=0)
    time.sleep(1.1)
    write_tree(old_tree, {"statements/later.ofx": b"after the first snapshot\n"})
    (old_tree / "empty.txt").unlink()
    backup_uploads(host.ctx)
    second = tree_digest(old_tree)
    configure(host, NEW, host.live, socket.gethostname())  # now the new stack's droplet 1
    return first, between, second


def seed(host: UploadsHost, source: str | None = OLD, to_time: str | None = None) -> int:
    return cmd_uploads_seed(host.ctx, argparse.Namespace(source_stack=source, to_time=to_time))


def own_entries(live: Path) -> list[str]:
    return sorted(e.name for e in live.iterdir() if e.name.startswith(".bankflow-"))


def test_an_empty_share_receives_the_old_stacks_newest_snapshot_byte_for_byte(
    host: UploadsHost, tmp_path: Path
) -> None:
    _, _, newest = old_stack_snapshots(host, tmp_path)
    (host.live / "lost+found").mkdir()  # a filesystem's own entry does not make the tree "not empty"
    assert seed(host) == OK, host.err.getvalue()
    (host.live / "lost+found").rmdir()
    assert tree_digest(host.live) == newest
    assert (host.live / "statements/b.pdf").stat().st_mode & 0o777 == 0o640
    assert own_entries(host.live) == []  # no scratch, no journal
    out = host.out.getvalue()
    files = sum(1 for kind, _, _ in newest.values() if kind == "file")
    assert f"of stack {OLD}" in out
    assert f"{files} files" in out
    assert host.audit_lines()[-1]["action"] == "uploads-seed"
    assert host.audit_lines()[-1]["result"] == "ok"
    assert PASSWORD not in out + host.err.getvalue()


def test_to_time_takes_the_snapshot_at_or_before_it(host: UploadsHost, tmp_path: Path) -> None:
    first, between, _ = old_stack_snapshots(host, tmp_path)
    assert seed(host, to_time=between.strftime("%Y-%m-%d %H:%M:%SZ")) == OK, host.err.getvalue()
    assert tree_digest(host.live) == first


def test_a_tree_that_holds_anything_is_refused_before_restic_runs(
    host: UploadsHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_stack_snapshots(host, tmp_path)
    write_tree(host.live, {"a-customer-upload.pdf": b"uploaded on the new stack\n"})
    before = tree_digest(host.live)
    calls: list[Sequence[str]] = []
    monkeypatch.setattr(uploads_restic, "run_process", lambda argv, **_: calls.append(argv))
    assert seed(host) == USAGE
    err = host.err.getvalue()
    assert f"the uploads directory {host.live} is not empty (1 entries: a-customer-upload.pdf)" in err
    assert "none of the uploads was touched" in err
    assert tree_digest(host.live) == before
    assert calls == []
    assert host.audit_lines()[-1]["result"] == "refused"


def test_bad_arguments_and_another_droplet_are_refused_before_anything(
    host: UploadsHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old_stack_snapshots(host, tmp_path)
    calls: list[Sequence[str]] = []
    monkeypatch.setattr(uploads_restic, "run_process", lambda argv, **_: calls.append(argv))
    assert seed(host, to_time="yesterday") == USAGE
    assert "--to-time: 'yesterday' is not 'YYYY-MM-DD HH:MM:SSZ' (UTC)" in host.err.getvalue()
    assert seed(host, source="-rf") == USAGE
    assert "--source-stack: '-rf' is not a stack name" in host.err.getvalue()
    configure(host, NEW, host.live, "bankflow-production-m1-server-1")
    assert seed(host) == USAGE
    assert "is not bankflow-production-m1-server-1" in host.err.getvalue()
    assert "run uploads-seed there" in host.err.getvalue()
    configure(host, NEW, host.live, socket.gethostname())
    with backup_lock(host.paths, "a backup", "uploads-backup"):
        assert seed(host) == LOCKED
    assert calls == []
    assert list(host.live.iterdir()) == []


def test_a_wrong_password_or_a_corrupt_pack_leaves_the_share_empty(host: UploadsHost, tmp_path: Path) -> None:
    old_stack_snapshots(host, tmp_path)
    host.write_secret("not-the-uploads-repository-password")
    assert seed(host) == FAILED
    err = host.err.getvalue()
    assert "does not open the uploads repository" in err
    assert "not-the-uploads" not in err
    assert PASSWORD not in err
    assert list(host.live.iterdir()) == []
    host.write_secret()
    # every pack with one byte flipped (same size): restic's --verify or its decryption refuses it
    for key in [k for k in host.s3.keys(host.bucket) if k.startswith("uploads/data/")]:
        body = bytearray(host.s3.client.get_object(Bucket=host.bucket, Key=key)["Body"].read())
        body[len(body) // 2] ^= 0xFF
        host.s3.client.put_object(Bucket=host.bucket, Key=key, Body=bytes(body))
    assert seed(host) == FAILED
    assert list(host.live.iterdir()) == []  # the half-restored scratch is removed
    assert "restoring snapshot" in host.err.getvalue().splitlines()[-1]
    assert "restic exited 1" in host.err.getvalue().splitlines()[-1]
    assert host.audit_lines()[-1]["result"] == "failed"


def test_restic_killed_halfway_leaves_the_share_empty_and_the_next_run_seeds(
    host: UploadsHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, newest = old_stack_snapshots(host, tmp_path)
    real_run = uploads_restic.run_process
    kill_mid_restore = KillMidRestore(real_run, limit_kib=100)
    monkeypatch.setattr(uploads_restic, "run_process", kill_mid_restore)
    assert seed(host) == FAILED
    assert kill_mid_restore.killed == [True]  # restic was still running when it was killed
    assert "restic was stopped" in host.err.getvalue()
    assert list(host.live.iterdir()) == []
    monkeypatch.setattr(uploads_restic, "run_process", real_run)
    assert seed(host) == OK, host.err.getvalue()
    assert tree_digest(host.live) == newest


def run_child(host: UploadsHost, kill_in: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.host.uploads.seed_child", str(host.paths.home), OLD, kill_in],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_the_agent_killed_while_restic_restores_leaves_only_scratch_the_next_run_removes(
    host: UploadsHost, tmp_path: Path
) -> None:
    _, _, newest = old_stack_snapshots(host, tmp_path)
    child = run_child(host, "restore")
    deadline = time.monotonic() + 20
    # the kill lands while restic downloads: see conftest.KillMidRestore for why not at a file
    while child.poll() is None and time.monotonic() < deadline:
        if any(started_restoring(scratch) for scratch in host.live.glob(f"{uploads_seed.SCRATCH_PREFIX}*")):
            break
        time.sleep(0.01)
    assert child.poll() is None, "the seed finished before the kill: nothing was tested"
    os.killpg(child.pid, signal.SIGKILL)  # the agent and its restic, as systemd stops a unit
    assert child.wait(timeout=10) == -signal.SIGKILL
    assert [e.name.startswith(uploads_seed.SCRATCH_PREFIX) for e in host.live.iterdir()] == [True]
    assert seed(host) == OK, host.err.getvalue()
    assert tree_digest(host.live) == newest
    assert own_entries(host.live) == []


def test_the_agent_killed_between_two_renames_is_finished_by_the_next_run(
    host: UploadsHost, tmp_path: Path
) -> None:
    _, _, newest = old_stack_snapshots(host, tmp_path)
    child = run_child(host, "move")
    assert child.wait(timeout=60) == -signal.SIGKILL
    assert child.stdout is not None
    assert "moved " in child.stdout.read()
    assert uploads_seed.JOURNAL_NAME in own_entries(host.live)  # half moved, on record
    assert seed(host) == OK, host.err.getvalue()
    assert "resuming the seed of snapshot" in host.out.getvalue()
    assert "(resumed)" in host.out.getvalue()
    assert tree_digest(host.live) == newest
    assert own_entries(host.live) == []


def test_a_file_written_during_the_seed_is_never_overwritten(
    host: UploadsHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, newest = old_stack_snapshots(host, tmp_path)
    real_restore = uploads_seed.restore_snapshot_into

    def restore_while_an_app_writes(*args: object) -> None:
        real_restore(*args)  # type: ignore[arg-type]
        # a name the snapshot has too, and one sorted after "empty-dir": that one moves first
        (host.live / "statements").mkdir()
        (host.live / "statements" / "b.pdf").write_bytes(b"written by an app during the seed\n")

    monkeypatch.setattr(uploads_seed, "restore_snapshot_into", restore_while_an_app_writes)
    assert seed(host) == FAILED
    err = host.err.getvalue()
    assert "appeared in the uploads tree during the seed and is not from the snapshot" in err
    assert f"move {host.live / 'statements'} out of the tree, then run uploads-seed again" in err
    assert (host.live / "statements" / "b.pdf").read_bytes() == b"written by an app during the seed\n"
    assert (host.live / "empty-dir").is_dir()  # half moved: the entries before the collision
    assert not (host.live / "z").exists()  # and none after it
    assert uploads_seed.JOURNAL_NAME in own_entries(host.live)
    # the operator moves the interloper out; the same command finishes the seed
    os.rename(host.live / "statements", tmp_path / "aside-statements")
    monkeypatch.setattr(uploads_seed, "restore_snapshot_into", real_restore)
    assert seed(host) == OK, host.err.getvalue()
    assert tree_digest(host.live) == newest


def test_a_tree_written_into_during_the_moves_fails_the_count_and_keeps_the_journal(
    host: UploadsHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, _, newest = old_stack_snapshots(host, tmp_path)
    real_move = uploads_seed._move_into_place

    def move_while_an_app_writes(source: Path, target: Path) -> None:
        real_move(source, target)
        if target.name == "empty-dir":  # an app writes into a directory already in place
            (target / "new-upload.pdf").write_bytes(b"uploaded meanwhile\n")

    monkeypatch.setattr(uploads_seed, "_move_into_place", move_while_an_app_writes)
    assert seed(host) == FAILED
    err = host.err.getvalue()
    assert "Something else writes into" in err
    assert f"to accept the tree as it is, remove {host.live / uploads_seed.JOURNAL_NAME}" in err
    assert uploads_seed.JOURNAL_NAME in own_entries(host.live)  # kept: nothing says "done"
    assert (host.live / "empty-dir" / "new-upload.pdf").read_bytes() == b"uploaded meanwhile\n"
    assert {k: v for k, v in tree_digest(host.live).items() if not k.startswith(".bankflow-")} == {
        **newest,
        "empty-dir/new-upload.pdf": tree_digest(host.live)["empty-dir/new-upload.pdf"],
    }


def test_a_journal_or_scratch_the_apps_could_have_planted_is_refused(
    host: UploadsHost, tmp_path: Path
) -> None:
    old_stack_snapshots(host, tmp_path)
    journal = host.live / uploads_seed.JOURNAL_NAME
    elsewhere = tmp_path / "database-dir"  # what a planted journal would have root move
    write_tree(elsewhere, {"PG_VERSION": b"15\n"})
    good = {
        "stack": OLD,
        "to_time": None,
        "snapshot": "a" * 64,
        "snapshot_time": "2026-11-30T00:00:00+00:00",
        "files": 1,
        "bytes": 3,
    }
    cases = [
        ("a garbled journal", "{not json", None, f"{journal}: not JSON"),
        (
            "a journal outside the scratch",
            json.dumps({**good, "scratch": "../../etc", "inner": "x"}),
            None,
            f"{journal}: not a seed journal this command wrote",
        ),
        (
            "a journal readable by others",
            json.dumps({**good, "scratch": ".bankflow-seeding-x", "inner": ".bankflow-seeding-x/u"}),
            0o644,
            "is not a journal this command wrote",
        ),
    ]
    for what, text, mode, message in cases:
        journal.write_text(text)
        os.chmod(journal, 0o600 if mode is None else mode)
        assert seed(host) == FAILED, what
        assert message in host.err.getvalue(), what
        assert [e.name for e in host.live.iterdir()] == [journal.name], what
    journal.unlink()
    journal.symlink_to(tmp_path / "a-journal-elsewhere.json")  # a link: never followed
    assert seed(host) == FAILED
    assert "(a link, or not root's 0600 file)" in host.err.getvalue()
    journal.unlink()
    # a root-owned journal whose restored tree is reached through a link the apps made
    scratch = host.live / ".bankflow-seeding-x"
    scratch.mkdir(mode=0o700)
    (scratch / "u").symlink_to(elsewhere)
    journal.write_text(json.dumps({**good, "scratch": scratch.name, "inner": f"{scratch.name}/u"}))
    os.chmod(journal, 0o600)
    assert seed(host) == FAILED
    assert "leads outside" in host.err.getvalue()
    assert tree_digest(elsewhere) == {"PG_VERSION": ("file", 3, tree_digest(elsewhere)["PG_VERSION"][2])}
    assert sorted(e.name for e in host.live.iterdir()) == sorted([journal.name, scratch.name])


def test_a_resume_must_be_asked_for_as_the_seed_was(host: UploadsHost, tmp_path: Path) -> None:
    _, _, newest = old_stack_snapshots(host, tmp_path)
    child = run_child(host, "move")
    assert child.wait(timeout=60) == -signal.SIGKILL
    assert seed(host, source=NEW) == USAGE
    assert f"a seed of stack {OLD}'s snapshot" in host.err.getvalue()
    assert f"run it again as it was given (--source-stack {OLD})" in host.err.getvalue()
    assert seed(host, to_time="2026-11-29 00:00:00Z") == USAGE
    assert seed(host) == OK, host.err.getvalue()
    assert tree_digest(host.live) == newest


def test_a_snapshot_of_a_lost_share_holds_no_file_and_is_refused(host: UploadsHost) -> None:
    configure(host, NEW, host.live, socket.gethostname())
    write_tree(host.live, {"x/y.txt": b"before the share was lost\n"})
    backup_uploads(host.ctx)
    before = tree_digest(host.live)
    time.sleep(1.1)
    lost_after = dt.datetime.now(dt.UTC).replace(microsecond=0)
    time.sleep(1.1)
    for path in sorted(host.live.rglob("*"), reverse=True):  # the share recreated empty...
        path.rmdir() if path.is_dir() else path.unlink()
    backup_uploads(host.ctx)  # ...and the 5-minute timer backed it up
    assert seed(host, source=None) == USAGE
    assert "holds no file: nothing to restore" in host.err.getvalue()
    assert "give --to-time from before the loss" in host.err.getvalue()
    assert list(host.live.iterdir()) == []
    assert seed(host, source=None, to_time=lost_after.strftime("%Y-%m-%d %H:%M:%SZ")) == OK, (
        host.err.getvalue()
    )
    assert tree_digest(host.live) == before


def test_a_snapshot_holding_lost_and_found_seeds_a_share_that_has_its_own(
    host: UploadsHost, tmp_path: Path
) -> None:
    """A share's root may show lost+found: snapshots taken before the backup excluded it hold one."""
    old_tree = tmp_path / "share-before" / "uploads"
    write_tree(old_tree, {"lost+found/#1234": b"fsck's\n", "a.pdf": b"statement\n"})
    configure(host, OLD, old_tree, None)
    restic = open_restic(host.ctx, load_uploads_config(host.ctx))
    restic.ensure_repository()
    restic.run("a backup without excludes", ["backup", "--host", OLD, "--tag", UPLOADS_TAG, str(old_tree)])
    configure(host, NEW, host.live, socket.gethostname())
    write_tree(host.live, {"lost+found/#9": b"the new share's own\n"})
    assert seed(host) == OK, host.err.getvalue()
    assert tree_digest(host.live / "a.pdf") == tree_digest(old_tree / "a.pdf")
    assert (host.live / "lost+found" / "#9").read_bytes() == b"the new share's own\n"
    assert not (host.live / "lost+found" / "#1234").exists()
    assert own_entries(host.live) == []
    # and the backup leaves a tree's lost+found out from now on
    backup_uploads(host.ctx)
    listing = restic.run("listing", ["ls", "latest", "--host", NEW])
    assert "/lost+found" not in listing
    assert "/a.pdf" in listing


# --------------------------------------------------------------------------- uploads-aside


def aside(host: UploadsHost, source: str | None = None, to_time: str | None = None) -> int:
    return cmd_uploads_aside(host.ctx, argparse.Namespace(source_stack=source, to_time=to_time))


def set_aside(live: Path) -> list[Path]:
    return sorted(p for p in live.iterdir() if p.name.startswith(ASIDE_PREFIX))


def test_aside_puts_a_point_in_time_beside_the_live_files_and_touches_nothing_else(host: UploadsHost) -> None:
    configure(host, NEW, host.live, socket.gethostname())  # a scaled stack's share
    write_tree(host.live, {"a.ofx": b"statement v1\n", "dir/b.pdf": os.urandom(50_000)})
    backup_uploads(host.ctx)
    at_t = tree_digest(host.live)
    time.sleep(1.1)
    target = dt.datetime.now(dt.UTC).replace(microsecond=0)
    time.sleep(1.1)
    (host.live / "dir" / "b.pdf").unlink()  # lost after T
    (host.live / "a.ofx").write_bytes(b"statement v2\n")
    backup_uploads(host.ctx)
    live = tree_digest(host.live)
    assert aside(host, to_time=target.strftime("%Y-%m-%d %H:%M:%SZ")) == OK, host.err.getvalue()
    [restored] = set_aside(host.live)
    assert tree_digest(restored) == at_t  # the tree of T, byte for byte
    assert restored.stat().st_mode & 0o777 == 0o700  # root's: the apps share the tree
    assert {k: v for k, v in tree_digest(host.live).items() if not k.startswith(ASIDE_PREFIX)} == live
    assert [e.name for e in host.live.iterdir() if e.name.startswith(".bankflow-")] == [restored.name]
    assert f"at {restored} (root's only); the live uploads were not touched" in host.out.getvalue()
    assert host.audit_lines()[-1]["action"] == "uploads-aside"
    # the same snapshot twice: refused before restic restores anything
    assert aside(host, to_time=target.strftime("%Y-%m-%d %H:%M:%SZ")) == USAGE
    assert "is already set aside" in host.err.getvalue()
    # the next uploads backup leaves the copy out: restoring it gives the live tree only
    backup_uploads(host.ctx)
    fresh = host.live.parent / "fresh"
    fresh.mkdir()
    configure(host, NEW, fresh, socket.gethostname())
    assert seed(host, source=None) == OK, host.err.getvalue()
    assert tree_digest(fresh) == live


def test_aside_killed_or_failing_leaves_the_live_files_and_no_copy(
    host: UploadsHost, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(host, NEW, host.live, socket.gethostname())
    write_tree(host.live, {"big.bin": os.urandom(2_000_000), "small.txt": b"x\n"})
    backup_uploads(host.ctx)
    live = tree_digest(host.live)
    kill_mid_restore = KillMidRestore(uploads_restic.run_process)
    monkeypatch.setattr(uploads_restic, "run_process", kill_mid_restore)
    assert aside(host) == FAILED
    assert kill_mid_restore.killed == [True]
    assert "none of the uploads was touched" in host.err.getvalue()
    assert tree_digest(host.live) == live  # no scratch, no half copy
    monkeypatch.setattr(uploads_restic, "run_process", kill_mid_restore.real)
    host.write_secret("not-the-uploads-repository-password")
    assert aside(host) == FAILED
    assert tree_digest(host.live) == live
    host.write_secret()
    (host.live / uploads_seed.JOURNAL_NAME).write_text("{}")  # a seed half done: finish it first
    assert aside(host) == USAGE
    assert "run uploads-seed to finish it first" in host.err.getvalue()
