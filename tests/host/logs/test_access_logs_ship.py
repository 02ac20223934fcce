"""Issue 12, item 4: rotated access logs reach the bucket whole, once, and are removed here only
after the object was checked; a kill or a failed upload loses nothing.

Real rclone against moto's S3 on loopback; the files are in nginx's access-log format
(test_access_logs_e2e.py makes them with the real nginx and logrotate).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bankflow_infra import catalog
from bankflow_infra.host.access_logs_ship import ship_access_logs
from bankflow_infra.host.backups.storage import run_process
from tests.host.logs.ship_rig import (
    BUCKET,
    PREFIX,
    access_line,
    bucket_texts,
    open_test_bucket,
    write_rotated,
)
from tests.support.ports import free_port
from tests.support.s3 import S3, Recorder
from tests.support.tools import REPO

LOG = catalog.ACCESS_LOG_NAME
STAMPS = ("20261130T010000", "20261130T020000", "20261130T030000")



@pytest.fixture
def logs(tmp_path: Path) -> Path:
    directory = tmp_path / "logs" / "nginx"
    directory.mkdir(parents=True)
    return directory


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    return directory


def _three_hours(logs: Path) -> dict[str, str]:
    texts = {}
    for hour, stamp in enumerate(STAMPS):
        lines = [access_line(hour * 1000 + n) for n in range(300)]
        write_rotated(logs, stamp, lines)
        texts[f"{LOG}-{stamp}"] = "".join(lines)
    return texts


def _by_file(objects: dict[str, str]) -> dict[str, str]:
    """Bucket texts keyed by the local file name they came from (key: PREFIX/<name>.<sha>.gz)."""
    out = {}
    for key, text in objects.items():
        assert key.startswith(f"{PREFIX}/"), key
        assert key.endswith(".gz"), key
        out[key.removeprefix(f"{PREFIX}/").rsplit(".", 2)[0]] = text
    return out


def test_every_rotated_file_reaches_the_bucket_whole_then_leaves_the_host(
    s3: S3, logs: Path, spool: Path, tmp_path: Path
) -> None:
    texts = _three_hours(logs)
    (logs / LOG).write_text(access_line(9999))  # the live log: never shipped
    calls = Recorder(real=run_process)
    bucket = open_test_bucket(s3, tmp_path, calls)

    report = ship_access_logs(bucket, logs, LOG, PREFIX, spool, settle=60)

    assert report.failed == []
    assert report.kept == []
    assert len(report.shipped) == 3
    assert _by_file(bucket_texts(s3)) == texts  # every line of every hour, nothing else
    assert sorted(p.name for p in logs.iterdir()) == [LOG]  # removed here, the live log kept
    assert list(spool.iterdir()) == []
    uploads = [argv for argv, _ in calls.calls if "copyto" in argv]
    assert len(uploads) == 3

    again = ship_access_logs(bucket, logs, LOG, PREFIX, spool, settle=60)  # a re-run: nothing to do
    assert (again.shipped, again.failed) == ([], [])
    assert len([argv for argv, _ in calls.calls if "copyto" in argv]) == 3
    assert all("secret" not in " ".join(argv).lower() for argv, _ in calls.calls)  # the key stays in the file


@pytest.mark.parametrize("moment", ["before", "after"])
def test_a_shipper_killed_in_the_middle_of_an_upload_loses_nothing_and_uploads_nothing_twice(
    s3: S3, logs: Path, spool: Path, tmp_path: Path, moment: str
) -> None:
    """Killed (SIGKILL) while the second file is being uploaded: before rclone stored it, or after
    it did but before the shipper checked it and removed the file. The next run finishes."""
    texts = _three_hours(logs)
    open_test_bucket(s3, tmp_path)  # writes rclone.conf for the child
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.host.logs.ship_child",
         s3.endpoint, str(tmp_path), str(logs), str(spool), moment],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "uploading", child.stderr.read() if child.stderr else ""
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    # At the kill: the first file is in the bucket and gone here; the second is still here.
    remaining = sorted(p.name for p in logs.iterdir())
    assert remaining == [f"{LOG}-{STAMPS[1]}", f"{LOG}-{STAMPS[2]}"]
    calls = Recorder(real=run_process)

    report = ship_access_logs(open_test_bucket(s3, tmp_path, calls), logs, LOG, PREFIX, spool, settle=60)

    assert report.failed == [], report.failed
    assert _by_file(bucket_texts(s3)) == texts
    assert list(logs.iterdir()) == []
    uploads = [argv for argv, _ in calls.calls if "copyto" in argv]
    # "after": the killed run had stored the second file: found there, checked, not sent again
    assert len(uploads) == (2 if moment == "before" else 1)


def test_a_failed_upload_keeps_the_file_for_the_next_run(
    s3: S3, logs: Path, spool: Path, tmp_path: Path
) -> None:
    texts = _three_hours(logs)
    unreachable = open_test_bucket(s3, tmp_path, endpoint=f"http://127.0.0.1:{free_port()}")

    failed = ship_access_logs(unreachable, logs, LOG, PREFIX, spool, settle=60)

    assert len(failed.failed) == 3
    assert failed.shipped == []
    assert "127.0.0.1" in failed.failed[0]  # says where it could not upload to
    assert sorted(p.name for p in logs.iterdir()) == sorted(texts)  # nothing removed
    retried = ship_access_logs(open_test_bucket(s3, tmp_path), logs, LOG, PREFIX, spool, settle=60)
    assert len(retried.shipped) == 3
    assert _by_file(bucket_texts(s3)) == texts


def test_an_object_of_that_name_with_other_content_is_never_overwritten(
    s3: S3, logs: Path, spool: Path, tmp_path: Path
) -> None:
    texts = _three_hours(logs)
    bucket = open_test_bucket(s3, tmp_path)
    ship_access_logs(bucket, logs, LOG, PREFIX, spool, settle=60)
    key = next(k for k in s3.keys(BUCKET) if STAMPS[0] in k)
    first = next(name for name in texts if STAMPS[0] in name)
    write_rotated(logs, STAMPS[0], [texts[first]])  # the same text again: the same object name
    s3.client.put_object(Bucket=BUCKET, Key=key, Body=b"something else")  # ...but not that content

    report = ship_access_logs(bucket, logs, LOG, PREFIX, spool, settle=60)

    assert len(report.failed) == 1
    assert "never overwritten" in report.failed[0]
    assert s3.client.get_object(Bucket=BUCKET, Key=key)["Body"].read() == b"something else"
    assert (logs / first).exists()  # kept


def test_what_nginx_may_still_write_or_its_container_planted_is_never_read_nor_removed(
    s3: S3, logs: Path, spool: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "root-only.txt"
    secret.write_text("not a log\n")
    secret.chmod(0o600)
    (logs / f"{LOG}-20261130T040000").symlink_to(secret)  # a symlink named like a rotated log
    hard = tmp_path / "elsewhere.log"
    hard.write_text(access_line(1))
    os.link(hard, logs / f"{LOG}-20261130T050000")  # a second name for another file
    os.mkfifo(logs / f"{LOG}-20261130T060000")  # would block a plain open()
    fresh = write_rotated(logs, "20261130T070000", [access_line(2)], age=0)  # just rotated

    report = ship_access_logs(open_test_bucket(s3, tmp_path), logs, LOG, PREFIX, spool, settle=60)

    assert report.shipped == []
    assert report.failed == []
    assert len(report.kept) == 4
    assert s3.keys(BUCKET) == []
    assert secret.read_text() == "not a log\n"
    assert hard.read_text() == access_line(1)
    assert len(list(logs.iterdir())) == 4
    assert fresh.exists()


def test_a_file_another_process_still_holds_open_waits_for_the_next_run(
    s3: S3, logs: Path, spool: Path, tmp_path: Path
) -> None:
    """nginx keeps writing a renamed log until it reopens its files: however old the file's last
    write, it is not shipped (and removed) while a process has it open."""
    rotated = write_rotated(logs, STAMPS[0], [access_line(1)], age=3600)
    writer = subprocess.Popen(["sh", "-c", 'exec 3>>"$1"; exec sleep 30', "sh", str(rotated)])
    try:
        for _ in range(100):  # until the shell holds the file
            if any(fd.resolve() == rotated for fd in Path(f"/proc/{writer.pid}/fd").iterdir()):
                break
            time.sleep(0.02)
        held = ship_access_logs(open_test_bucket(s3, tmp_path), logs, LOG, PREFIX, spool, settle=60)
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert held.shipped == []
    assert held.kept == [f"{rotated.name}: still open in a process (nginx has not reopened its log yet)"]
    assert rotated.exists()
    assert s3.keys(BUCKET) == []
    released = ship_access_logs(open_test_bucket(s3, tmp_path), logs, LOG, PREFIX, spool, settle=60)
    assert len(released.shipped) == 1
