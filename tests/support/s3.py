"""A real S3 endpoint on loopback (moto's server) for the real rclone, and a recorder of the
rclone calls the agent makes.

moto accepts any key; the tests read the bucket back through their own boto3 client. moto is a
dev dependency (pyproject): like a missing tool, its absence skips locally and fails in CI.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
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
    reset_moto(endpoint)
    try:
        yield S3(endpoint, client)
    finally:
        reset_moto(endpoint)
        server.stop()


def reset_moto(endpoint: str) -> None:
    """moto's backends are global to the process: every moto server in one pytest worker shares
    its buckets. Each rig starts and leaves it empty, so no test sees another module's objects."""
    with contextlib.suppress(httpx.HTTPError):
        httpx.post(f"{endpoint}/moto-api/reset", timeout=10)


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


@dataclass
class TlsFront:
    """nginx terminating TLS in front of the moto server: pgBackRest speaks S3 over TLS only.

    Why nginx and not werkzeug's ssl_context: werkzeug closes each connection without a TLS
    close_notify, which OpenSSL 3 (pgBackRest 2.45) reports as "unexpected eof" and retries for
    a minute. The certificate (openssl, SAN localhost) is given to pgBackRest as
    repo1-storage-ca-file in the test's config only."""

    endpoint: str  # https://localhost:PORT
    ca_file: str
    process: Any

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except Exception:
            self.process.kill()


def tls_front(backend: str, directory: Any) -> TlsFront:
    import subprocess
    import time
    from pathlib import Path

    nginx, openssl = require_tool("nginx"), require_tool("openssl")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    cert, key = root / "s3.pem", root / "s3.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost", "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    os.chmod(cert, 0o644)
    port = free_port()
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = " ".join(f"{name}_temp_path {root}/{name};" for name in kinds)
    conf = root / "nginx.conf"
    conf.write_text(
        f"daemon off; pid {root}/nginx.pid; error_log {root}/error.log warn; worker_processes 1;\n"
        "events { worker_connections 256; }\n"
        f"http {{ access_log off; {temp}\n"
        f"  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert}; ssl_certificate_key {key};\n"
        "    client_max_body_size 0;\n"
        f"    location / {{ proxy_pass {backend}; proxy_set_header Host $http_host; proxy_http_version 1.1;\n"
        "      proxy_request_buffering off; } } }\n"
    )
    process = subprocess.Popen([nginx, "-c", str(conf), "-e", str(root / "error.log")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    import socket

    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return TlsFront(f"https://localhost:{port}", str(cert), process)
