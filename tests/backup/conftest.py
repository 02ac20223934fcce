"""Fixtures of the backup tests: real PostgreSQL, real S3 (moto) + real rclone, stand-in Docker."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.host import backup
from tests.backup.pg import PgCluster, start_cluster
from tests.backup.rig import PgStandinRuntime, Recorder, add_backup_files
from tests.conftest import require_tool
from tests.host.fixtures import HostEnv


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class S3:
    endpoint: str
    client: Any  # boto3 S3 client: the test's own view of the bucket

    def keys(self, bucket: str) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=bucket)
        return sorted(o["Key"] for o in listed.get("Contents", []))


@pytest.fixture(scope="session")
def s3() -> Iterator[S3]:
    """moto's S3 server on loopback (a real HTTP S3 API; any key is accepted)."""
    require_tool("rclone")
    try:
        import boto3
        from moto import server as server_module
    except ImportError:  # a dev dependency (pyproject): like a missing tool, fatal in CI
        message = "moto[server] is not installed: pip install -e '.[dev]'"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from botocore.config import Config

    port = _free_port()
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",  # noqa: S106 - moto accepts any key
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )
    try:
        yield S3(endpoint, client)
    finally:
        server.stop()


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
    from tests.host.fixtures import free_port

    env = HostEnv(home, run, bundles, free_port(), runtime)
    bucket = f"bankflow-test-{uuid.uuid4().hex[:12]}"
    s3.client.create_bucket(Bucket=bucket)
    recorder = Recorder(backup.run_process)
    monkeypatch.setattr(backup, "run_process", recorder)
    try:
        bundle = env.bundle("v1")
        add_backup_files(bundle, s3.endpoint, bucket)
        code, out, err = env.deploy(bundle)
        assert code == 0, out + err
        yield BackupHost(env, runtime, pg, s3, bucket, recorder)
    finally:
        runtime.shutdown()
