"""Rigs for doctor's tests: the fake APIs on loopback, the environment pointing doctor at them,
saved stack outputs whose SSH endpoint is a loopback port, and SSH stand-ins on loopback."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bankflow_infra.ops.doctor_apis import (
    CLOUDFLARE_TOKEN_ENV,
    CLOUDFLARE_URL_ENV,
    DIGITALOCEAN_TOKEN_ENV,
    DIGITALOCEAN_URL_ENV,
)
from tests.support.fake_apis import CF_TOKEN, DO_TOKEN, FakeApis, fake_apis
from tests.support.outputs import outputs_document

SSH_BANNER = b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n"


@pytest.fixture
def apis() -> Iterator[FakeApis]:
    with fake_apis() as running:
        yield running


@pytest.fixture
def doctor_env(apis: FakeApis, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeApis:
    """Tokens and base URLs as a test run sets them; no pulumi on PATH (a first `up` unless
    --outputs is given)."""
    monkeypatch.setenv(DIGITALOCEAN_TOKEN_ENV, DO_TOKEN)
    monkeypatch.setenv(CLOUDFLARE_TOKEN_ENV, CF_TOKEN)
    monkeypatch.setenv(DIGITALOCEAN_URL_ENV, apis.digitalocean_url)
    monkeypatch.setenv(CLOUDFLARE_URL_ENV, apis.cloudflare_url)
    empty = tmp_path / "no-pulumi"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    return apis


@contextmanager
def ssh_standin(answer: bytes | None) -> Iterator[int]:
    """A loopback port that answers like sshd (``answer``) or accepts and stays silent (None)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            with connection:
                connection.sendall(answer or b"")

    if answer is not None:
        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
    try:
        yield int(server.getsockname()[1])
    finally:
        stop.set()
        server.close()


def write_outputs(path: Path, ssh_port: int, stack: str = "staging") -> Path:
    document = outputs_document(stack, origin_ip="127.0.0.1")
    document["ssh"]["port"] = ssh_port
    path.write_text(json.dumps(document), encoding="utf-8")
    return path
