from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def host_root() -> Iterator[Path]:
    """A temporary host root every service uid can traverse (pytest's tmp_path is root's 0700:
    logrotate working as a service's uid could not even reach that service's directory)."""
    root = Path(tempfile.mkdtemp(prefix="bankflow-logs-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)
