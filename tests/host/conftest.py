"""Fixtures of the host agent tests: a throw-away BANKFLOW_HOME with the stand-in runtime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.host.fixtures import HostEnv, make_host
from tests.support.tools import require_tool


@pytest.fixture
def host(tmp_path: Path) -> Iterator[HostEnv]:
    """A host whose 'containers' are local processes and whose nginx is the real one."""
    env = make_host(tmp_path, require_tool("nginx"))
    try:
        yield env
    finally:
        env.runtime.shutdown()
