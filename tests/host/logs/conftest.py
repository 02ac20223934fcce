from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.host.logs.ship_rig import BUCKET
from tests.support.s3 import S3, moto_s3


@pytest.fixture
def host_root() -> Iterator[Path]:
    """A temporary host root every service uid can traverse (pytest's tmp_path is root's 0700:
    logrotate working as a service's uid could not even reach that service's directory)."""
    root = Path(tempfile.mkdtemp(prefix="bankflow-logs-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def s3() -> Iterator[S3]:
    """moto on loopback (empty: moto_s3 resets moto's process-wide store) with the stack's bucket."""
    with moto_s3() as server:
        server.client.create_bucket(Bucket=BUCKET)
        yield server
