"""The redis start script and health check of compose/base.yaml, run for real against redis-server.

The script reads the password from its compose secret file (never an environment variable) and
hands it to ``redis-server -`` as config on stdin, so it never appears in the process arguments or
environment. This runs that exact script text (after compose's ``$$`` -> ``$``), with two
visible substitutions for a machine without Docker: no image entrypoint (it only drops to the
redis user) and a free loopback port plus a temporary data dir; the secret file is a temporary
one, named by REDIS_PASSWORD_FILE as compose's ``environment`` names the mounted one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bankflow_infra import catalog
from bankflow_infra.render import container_secrets, render_bundle
from tests.render.helpers import (
    CLOUDFLARE,
    SECRETS_NO_KEY,
    OriginCert,
    load_settings,
    make_secrets,
    wait_for,
)
from tests.support.ports import free_port
from tests.support.tools import require_tool, unavailable

PASSWORD = SECRETS_NO_KEY["redis_password"]
FILE_VARIABLE = "REDIS_PASSWORD_FILE"


@pytest.fixture
def redis_service(origin_cert: OriginCert) -> dict[str, Any]:
    bundle = render_bundle(
        load_settings("production"), make_secrets(origin_cert), CLOUDFLARE, origin_cert.cert_pem
    )
    service: dict[str, Any] = yaml.safe_load(bundle.file("compose/base.yaml").text)["services"]["redis"]
    return service


def _local(text: str, port: int, data: Path | None = None) -> str:
    text = text.replace("$$", "$").replace("docker-entrypoint.sh ", "")
    extra = f" --dir {data}" if data else ""
    return text.replace(f"-p {catalog.REDIS_PORT} ", f"-p {port} ").replace(
        f"--port {catalog.REDIS_PORT}", f"--port {port}{extra}"
    )


@pytest.fixture
def running_redis(
    redis_service: dict[str, Any], tmp_path: Path
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    require_tool("redis-server")
    port = free_port()
    secret = tmp_path / "redis_password"
    secret.write_text(PASSWORD)  # the bundle's file: the value, no newline
    script = _local(redis_service["command"][2], port, tmp_path)
    # the container's environment: where the file is, never the password
    assert redis_service["environment"] == {FILE_VARIABLE: container_secrets.container_path("REDIS_PASSWORD")}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), FILE_VARIABLE: str(secret)}
    process = subprocess.Popen(
        ["sh", "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield port, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _cli(cli: str, port: int, auth: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    if auth is not None:
        env["REDISCLI_AUTH"] = auth
    return subprocess.run(
        [cli, "--no-auth-warning", "-p", str(port), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
    )


def test_redis_requires_the_password_and_appends(
    running_redis: tuple[int, subprocess.Popen[bytes]], redis_service: dict[str, Any], tmp_path: Path
) -> None:
    cli = require_tool("redis-cli")
    port, process = running_redis
    assert wait_for(lambda: _cli(cli, port, PASSWORD, "ping").stdout.strip() == "PONG")
    assert "NOAUTH" in _cli(cli, port, None, "ping").stdout
    assert (
        "WRONGPASS"
        in _cli(cli, port, "not-the-password-000000", "ping").stdout
        + _cli(cli, port, "not-the-password-000000", "ping").stderr
    )
    assert _cli(cli, port, PASSWORD, "config", "get", "appendonly").stdout.split() == ["appendonly", "yes"]
    # `exec` made redis-server the script's process itself, and the password is not in its arguments
    cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().decode()
    assert "redis-server" in cmdline
    assert PASSWORD not in cmdline
    assert PASSWORD not in Path(f"/proc/{process.pid}/environ").read_bytes().decode()

    health = redis_service["healthcheck"]["test"]
    assert health[0] == "CMD-SHELL"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    right, wrong = tmp_path / "right", tmp_path / "wrong"
    right.write_text(PASSWORD)
    wrong.write_text("wrong-wrong-wrong-0000")
    check = _local(health[1], port)
    for secret, healthy in ((right, True), (wrong, False)):
        done = subprocess.run(["sh", "-c", check], env={**env, FILE_VARIABLE: str(secret)}, timeout=10)
        assert (done.returncode == 0) is healthy


@pytest.mark.parametrize("content", ["", None])
def test_redis_does_not_start_without_its_password_file(
    redis_service: dict[str, Any], tmp_path: Path, content: str | None
) -> None:
    require_tool("redis-server")
    port = free_port()
    secret = tmp_path / "redis_password"
    if content is not None:
        secret.write_text(content)
    script = _local(redis_service["command"][2], port, tmp_path)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), FILE_VARIABLE: str(secret)}
    # a redis without requirepass would be open to every container on the data network
    done = subprocess.run(["sh", "-c", script], env=env, capture_output=True, timeout=20)
    assert done.returncode != 0


@pytest.mark.parametrize("owned_by_redis", [True, False])
def test_redis_runs_as_its_compose_user_with_no_capability_reading_only_its_own_secret(
    redis_service: dict[str, Any], owned_by_redis: bool
) -> None:
    # compose/base.yaml: user "999:1000", cap_drop ALL and nothing added, no-new-privileges. The
    # agent makes the secret file the service's uid's (0600): then redis reads it; a root-owned
    # 0600 file (the agent's chown missing) leaves redis without its password, and it refuses.
    if os.geteuid() != 0:
        message = "needs root to start redis as another uid"
        unavailable(message)
    require_tool("redis-server")
    cli = require_tool("redis-cli")
    setpriv = require_tool("setpriv")
    assert redis_service["cap_drop"] == ["ALL"]
    assert "cap_add" not in redis_service
    uid, gid = (int(part) for part in redis_service["user"].split(":"))
    assert uid == catalog.SERVICE_UIDS["redis"]
    root = Path(tempfile.mkdtemp(prefix="bankflow-redis-"))
    try:
        root.chmod(0o755)
        data = root / "data"
        data.mkdir()
        os.chown(data, uid, gid)  # the named volume: the image's redis user's
        secret = root / "redis_password"
        secret.write_text(PASSWORD)
        secret.chmod(0o600)
        if owned_by_redis:
            os.chown(secret, uid, gid)
        port = free_port()
        script = _local(redis_service["command"][2], port, data)
        argv = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--bounding-set=-all",
                "--inh-caps=-all", "--no-new-privs", "sh", "-c", script]  # fmt: skip
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), FILE_VARIABLE: str(secret)}
        process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if owned_by_redis:
                assert wait_for(lambda: _cli(cli, port, PASSWORD, "ping").stdout.strip() == "PONG")
                status = Path(f"/proc/{process.pid}/status").read_text()
                assert f"Uid:\t{uid}\t" in status
                assert "CapEff:\t0000000000000000" in status
                assert _cli(cli, port, PASSWORD, "set", "k", "v").stdout.strip() == "OK"  # it can write
            else:
                assert process.wait(timeout=20) != 0
        finally:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=10)
    finally:
        shutil.rmtree(root, ignore_errors=True)
