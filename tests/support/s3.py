"""A real S3 endpoint on loopback (moto's server) for the real rclone, and a recorder of the
rclone calls the agent makes.

moto accepts any key; the tests read the bucket back through their own boto3 client. moto is a
dev dependency (pyproject): like a missing tool, its absence skips locally and fails in CI.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from bankflow_infra.host.runtime import Completed
from tests.support.ports import free_port
from tests.support.tools import require_tool


@dataclass
class S3:
    endpoint: str
    client: Any  # boto3 S3 client: the test's own view of the bucket

    def keys(self, bucket: str) -> list[str]:
        listed = self.client.list_objects_v2(Bucket=bucket)
        return sorted(o["Key"] for o in listed.get("Contents", []))


@contextmanager
def moto_s3() -> Iterator[S3]:
    """moto's S3 server on loopback (a real HTTP S3 API), for the real rclone."""
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

    port = free_port()
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


@dataclass
class Recorder:
    """Wraps the agent's process runner for rclone: records argv and environment of each call."""

    real: Any
    calls: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)
    tamper: Any = None  # (argv) -> argv: lets a test change what is uploaded

    def __call__(self, argv: Sequence[str], *, env: Mapping[str, str], timeout: float) -> Completed:
        argv = list(argv)
        if self.tamper is not None:
            argv = self.tamper(argv)
        self.calls.append((argv, dict(env)))
        result: Completed = self.real(argv, env=env, timeout=timeout)
        return result
