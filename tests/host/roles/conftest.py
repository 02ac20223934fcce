"""Fixtures of the roles tests: one SCRAM-checking PostgreSQL 15 per module, a fresh host per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.host.fixtures import HostEnv
from tests.host.roles.rig import RecordingPgRuntime, tcp_scram_cluster
from tests.support.ports import free_port
from tests.support.postgres import PgCluster
from tests.support.tools import require_tool


@pytest.fixture(scope="module")
def pg() -> Iterator[PgCluster]:
    cluster = tcp_scram_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def roles_host(tmp_path: Path, pg: PgCluster) -> Iterator[HostEnv]:
    """A host with nothing deployed yet: stand-in apps, the real nginx, the real cluster."""
    nginx = require_tool("nginx")
    home, run, bundles = tmp_path / "home", tmp_path / "run", tmp_path / "bundles"
    for path in (home, run / "nginx-tmp", bundles):
        path.mkdir(parents=True)
    runtime = RecordingPgRuntime(run, nginx, home / "nginx" / "nginx.conf", pg)
    env = HostEnv(home, run, bundles, free_port(), runtime, verify_port=free_port())
    try:
        yield env
    finally:
        runtime.shutdown()
