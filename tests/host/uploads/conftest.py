"""The uploads rig: a host root with a current release whose ``backup/uploads.json`` points the
REAL restic (0.14, Debian) at a REAL S3 API on loopback (moto's server, ``tests/support/s3.py``).
One S3 server per session; each test gets its own bucket, so repositories never mix.
"""

from __future__ import annotations

import io
import json
import os
import secrets as random_source
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.contract.uploads import UPLOADS_CONFIG_FILE, UPLOADS_SECRET_ENV
from bankflow_infra.host import state as st
from bankflow_infra.host.context import Context, Options
from bankflow_infra.host.runtime import Completed
from tests.support.s3 import S3, moto_s3
from tests.support.tools import require_tool

PASSWORD = "uploads-repo-password-for-tests-0001"  # noqa: S105 - a test value
STACK = "test"
ACCESS_KEY = "AKUPLOADSTEST000001"
SECRET_KEY = "dXBsb2Fkcy1zZWNyZXQta2V5LTAwMQ=="  # noqa: S105 - a test value (moto accepts any key)


@dataclass
class UploadsHost:
    paths: HostPaths
    live: Path  # the uploads tree the backups act on
    ctx: Context
    out: io.StringIO
    err: io.StringIO
    repository: str
    s3: S3
    bucket: str

    def write_secret(self, password: str | None = PASSWORD) -> None:
        lines = [f"RESTIC_PASSWORD={password}"] if password is not None else []
        lines += [f"AWS_ACCESS_KEY_ID={ACCESS_KEY}", f"AWS_SECRET_ACCESS_KEY={SECRET_KEY}"]
        path = self.paths.secrets / UPLOADS_SECRET_ENV
        path.write_text("\n".join(lines) + "\n")
        os.chmod(path, 0o600)

    def audit_lines(self) -> list[dict[str, object]]:
        log = self.paths.audit_log
        return [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3]:
    require_tool("restic")
    with moto_s3() as s3:
        yield s3


@pytest.fixture
def host(tmp_path: Path, s3_server: S3) -> UploadsHost:
    bucket = f"bankflow-{random_source.token_hex(4)}-backups"
    s3_server.client.create_bucket(Bucket=bucket)
    paths = HostPaths(tmp_path / "home")
    paths.ensure()
    live = tmp_path / "volume" / "uploads"
    live.mkdir(parents=True)
    release = "a" * 12
    st.write_current(paths, st.Current(release, release, "f" * 64))
    repository = f"s3:{s3_server.endpoint}/{bucket}/uploads"
    config = {
        "schema": 1,
        "stack": STACK,
        "repository": repository,
        "uploads_dir": str(live),
        "on_data_volume": True,
    }
    (paths.release_dir(release) / "backup").mkdir(parents=True)
    (paths.release_dir(release) / UPLOADS_CONFIG_FILE).write_text(json.dumps(config))
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(paths, None, Options(), "tester", out, err)  # type: ignore[arg-type] - no runtime needed
    result = UploadsHost(paths, live, ctx, out, err, repository, s3_server, bucket)
    result.write_secret()
    return result


def write_tree(root: Path, files: dict[str, bytes]) -> None:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def started_restoring(target: Path) -> bool:
    """restic has created something under ``target`` (its first directories)."""
    return target.is_dir() and any(target.iterdir())


@dataclass
class KillMidRestore:
    """A stand-in for the agent's process runner: every restic call runs for real, except that a
    ``restore`` is throttled and SIGKILLed as soon as it has created anything under its target.
    restic 0.14 makes the directories first and writes a pack's files only when the whole pack has
    arrived, after which it may exit within milliseconds; its first directories mean it is
    restoring and still downloading (seconds, throttled), so the kill lands halfway, never after
    the end. ``killed`` says, per restore, whether restic was still running when it was killed
    after starting to restore (False: nothing was tested)."""

    real: Any
    limit_kib: int = 300
    killed: list[bool] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], *, env: Mapping[str, str], timeout: float) -> Completed:
        if "restore" not in argv:
            result: Completed = self.real(argv, env=env, timeout=timeout)
            return result
        child = subprocess.Popen(
            [*argv, "--limit-download", str(self.limit_kib)],
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        target = Path(argv[argv.index("--target") + 1])
        deadline, started = time.monotonic() + 10, False
        while child.poll() is None and time.monotonic() < deadline and not started:
            started = started_restoring(target)
            time.sleep(0.01)
        self.killed.append(started and child.poll() is None)
        child.send_signal(signal.SIGKILL)
        return Completed(child.wait(), "", "killed")
