"""Fixtures of the host agent tests: a throw-away BANKFLOW_HOME with the stand-in runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_tool
from tests.host.fixtures import HostEnv, make_host


@pytest.fixture
def host(tmp_path: Path) -> Iterator[HostEnv]:
    """A host whose 'containers' are local processes and whose nginx is the real one."""
    env = make_host(tmp_path, require_tool("nginx"))
    try:
        yield env
    finally:
        env.runtime.shutdown()
