"""Pure parts of the backup piece: the exec argv of DockerRuntime, the rendered files, names,
retention and listing rules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bankflow_infra.host.backups import archive, storage
from bankflow_infra.host.runtime import Completed, DockerRuntime, Project, RuntimeFailure

REL = "abc123def456"
BUNDLE = Path("/opt/bankflow/releases") / REL
BASE = Project("bankflow", BUNDLE, (BUNDLE / "compose/base.yaml",), BUNDLE / "release.env", REL)
ACCESS, SECRET = "DO00ABCDEFGHIJKLMNOP", "c2VjcmV0K2tleS9mb3Ivc3BhY2VzPT0rK3NlY3JldA=="


class FileRecorder:
    def __init__(self, result: Completed | None = None) -> None:
        self.calls: list[tuple[list[str], Path | None, Path | None]] = []
        self.result = result or Completed(0, "out", "")

    def __call__(
        self,
        argv: Sequence[str],
        *,
        stdin_path: Path | None = None,
        stdout_path: Path | None = None,
        timeout: float | None = None,
    ) -> Completed:
        self.calls.append((list(argv), stdin_path, stdout_path))
        return self.result


# --------------------------------------------------------------------------- DockerRuntime.exec


def test_docker_exec_argv_is_compose_exec_without_a_tty() -> None:
    recorder = FileRecorder()
    runtime = DockerRuntime(file_runner=recorder)
    out = runtime.exec(BASE, "postgres", ["pg_dump", "--format=custom", "-U", "bankflow", "-d", "bankflow"],
                       stdout_path=Path("/opt/bankflow/backups/x.dump"))  # fmt: skip
    assert out == "out"
    assert recorder.calls == [
        (
            ["docker", "compose", "-p", "bankflow", "-f", f"{BUNDLE}/compose/base.yaml",
             "--env-file", f"{BUNDLE}/release.env", "exec", "-T", "postgres",
             "pg_dump", "--format=custom", "-U", "bankflow", "-d", "bankflow"],
            None,
            Path("/opt/bankflow/backups/x.dump"),
        )
    ]  # fmt: skip


def test_docker_exec_with_stdin_and_failure_message() -> None:
    recorder = FileRecorder(Completed(1, "", "pg_restore: error: could not read from input file\n"))
    runtime = DockerRuntime(file_runner=recorder)
    with pytest.raises(
        RuntimeFailure, match="pg_restore in postgres exited 1: pg_restore: error: could not read"
    ):
        runtime.exec(BASE, "postgres", ["pg_restore", "--list"], stdin_path=Path("/tmp/d.dump"))
    assert recorder.calls[0][0][-4:] == ["-T", "postgres", "pg_restore", "--list"]
    assert recorder.calls[0][1] == Path("/tmp/d.dump")


def test_subprocess_file_runner_streams_files(tmp_path: Path) -> None:
    from bankflow_infra.host.runtime import subprocess_file_runner

    source = tmp_path / "in"
    source.write_bytes(b"PGDMP" + bytes(range(256)) * 100)
    target = tmp_path / "out"
    done = subprocess_file_runner(["cat"], stdin_path=source, stdout_path=target, timeout=30)
    assert done.returncode == 0
    assert target.read_bytes() == source.read_bytes()
    assert target.stat().st_mode & 0o777 == 0o600


# --------------------------------------------------------------------------- names, retention, listing


def test_dump_names_and_their_times() -> None:
    when = datetime(2026, 11, 25, 3, 15, 0, tzinfo=UTC)
    name = archive.dump_name("production-r1", when)
    assert name == "bankflow-production-r1-20261125T031500Z"
    assert archive.KEY_RE.match(f"{name}.dump").group("stack") == "production-r1"  # type: ignore[union-attr]
    assert archive.time_of(f"{name}.dump") == when
    assert archive.time_of(f"{name}.globals.sql") == when
    assert archive.time_of("notes.txt") is None
    assert archive.sidecar_keys(f"{name}.dump") == (f"{name}.globals.sql", f"{name}.sha256")


def test_local_prune_plan_keeps_recent_and_foreign_files() -> None:
    now = datetime(2026, 11, 25, 3, 15, tzinfo=UTC)
    names = [
        "bankflow-p-20261117T031500Z.dump",  # 8 days
        "bankflow-p-20261117T031500Z.sha256",
        "bankflow-p-20261118T031600Z.dump",  # just under 7 days
        "bankflow-p-20261125T031500Z.dump",
        "random-20200101T000000Z.dump",
        ".bankflow-p-20261101T000000Z.dump.partial",
    ]
    assert archive.local_prune_plan(names, now, 7) == [
        ".bankflow-p-20261101T000000Z.dump.partial",
        "bankflow-p-20261117T031500Z.dump",
        "bankflow-p-20261117T031500Z.sha256",
    ]


def test_backup_rows_newest_first_without_sidecars() -> None:
    objects = [
        archive.RemoteObject("bankflow-s-20261124T031500Z.dump", 10, None),
        archive.RemoteObject("bankflow-s-20261124T031500Z.sha256", 1, None),
        archive.RemoteObject("bankflow-s-20261125T031500Z.dump", 20, "ab"),
        archive.RemoteObject("something-else.txt", 5, None),
    ]
    rows = archive.backup_rows(objects, datetime(2026, 11, 25, 4, 15, tzinfo=UTC))
    assert [(r["key"], r["age_seconds"]) for r in rows] == [
        ("bankflow-s-20261125T031500Z.dump", 3600),
        ("bankflow-s-20261124T031500Z.dump", 90000),
    ]


def test_checksum_file_round_trip() -> None:
    text = archive.checksum_text({"a.dump": "0" * 64, "a.globals.sql": "1" * 64})
    assert text == f"{'0' * 64}  a.dump\n{'1' * 64}  a.globals.sql\n"
    assert archive.parse_checksums(text) == {"a.dump": "0" * 64, "a.globals.sql": "1" * 64}


def test_rclone_argv_holds_no_credentials_and_a_clean_environment(tmp_path: Path) -> None:
    seen: list[tuple[list[str], dict[str, str]]] = []

    def runner(argv: Sequence[str], *, env: dict[str, str], timeout: float) -> Completed:  # type: ignore[override]
        seen.append((list(argv), dict(env)))
        return Completed(0, "[]", "")

    bucket = storage.Bucket(tmp_path / "rclone.conf", "bankflow-backups", "bankflow-s-backups",
                           "https://fra1.digitaloceanspaces.com", tmp_path, runner)  # fmt: skip
    bucket.list()
    argv, env = seen[0]
    assert argv[:5] == ["rclone", "--config", str(tmp_path / "rclone.conf"), "--s3-endpoint",
                        "https://fra1.digitaloceanspaces.com"]  # fmt: skip
    assert argv[-1] == "bankflow-backups:bankflow-s-backups"
    assert sorted(env) == ["HOME", "LANG", "PATH"]


class _ListedBucket:
    """Just the listing a resolve needs: the real Bucket talks to rclone (tested in the drill)."""

    name = "bankflow-production-backups"

    def __init__(self, keys: list[str]) -> None:
        from bankflow_infra.host.backups.archive import RemoteObject

        self.objects = {k: RemoteObject(k, 100, None) for k in keys}

    def list(self):
        return list(self.objects.values())

    def stat(self, key):
        return self.objects.get(key)


def test_latest_is_the_newest_dump_of_the_wanted_stack_not_of_the_whole_bucket() -> None:
    from bankflow_infra.host.backups.config import BackupUsageError
    from bankflow_infra.host.backups.restore import resolve_key

    # After a cutover both servers upload to the environment's bucket until the old one retires.
    bucket = _ListedBucket(
        [
            "bankflow-production-20261124T031500Z.dump",
            "bankflow-production-r1-20261125T031500Z.dump",
            "bankflow-production-20261123T031500Z.dump",
        ]
    )
    assert resolve_key(bucket, "latest", "production").key == "bankflow-production-20261124T031500Z.dump"  # type: ignore[arg-type]
    assert (
        resolve_key(bucket, "latest", "production-r1").key == "bankflow-production-r1-20261125T031500Z.dump"
    )  # type: ignore[arg-type]
    with pytest.raises(BackupUsageError, match="no backups of stack staging"):
        resolve_key(bucket, "latest", "staging")  # type: ignore[arg-type]
