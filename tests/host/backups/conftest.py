"""Fixtures of the backup tests: real PostgreSQL, real S3 (moto) + real rclone, stand-in Docker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bankflow_infra.host.backups import storage
from tests.host.backups.rig import PgStandinRuntime, add_backup_files
from tests.host.fixtures import HostEnv
from tests.support.ports import free_port
from tests.support.postgres import PgCluster, start_cluster
from tests.support.s3 import S3, Recorder, moto_s3
from tests.support.tools import require_tool


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    """One moto S3 server for the session; each test gets its own bucket."""
    with moto_s3() as server:
        yield server


@pytest.fixture
def pg() -> Iterator[PgCluster]:
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@dataclass
class BackupHost:
    env: HostEnv
    runtime: PgStandinRuntime
    pg: PgCluster
    s3: S3
    bucket: str
    rclone: Recorder

    @property
    def backups(self) -> Path:
        return self.env.home / "backups"


@pytest.fixture
def host(tmp_path: Path, pg: PgCluster, s3: S3, monkeypatch: pytest.MonkeyPatch) -> Iterator[BackupHost]:
    """A host with release v1 deployed (stand-in apps, real nginx), its backup config pointing at a
    fresh bucket on the moto server, and every rclone call recorded."""
    nginx = require_tool("nginx")
    home, run, bundles = tmp_path / "home", tmp_path / "run", tmp_path / "bundles"
    for path in (home, run / "nginx-tmp", bundles):
        path.mkdir(parents=True)
    runtime = PgStandinRuntime(run, nginx, home / "nginx" / "nginx.conf", pg)
    env = HostEnv(home, run, bundles, free_port(), runtime, verify_port=free_port())
    bucket = f"bankflow-test-{uuid.uuid4().hex[:12]}"
    s3.client.create_bucket(Bucket=bucket)
    recorder = Recorder(storage.run_process)
    monkeypatch.setattr(storage, "run_process", recorder)
    try:
        bundle = env.bundle("v1")
        add_backup_files(bundle, s3.endpoint, bucket)
        code, out, err = env.deploy(bundle)
        assert code == 0, out + err
        yield BackupHost(env, runtime, pg, s3, bucket, recorder)
    finally:
        runtime.shutdown()
