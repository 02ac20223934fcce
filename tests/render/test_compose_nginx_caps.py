"""nginx runs with exactly the capabilities compose/base.yaml keeps for it, and needs each of them.

No Docker here: the rendered nginx.conf runs under a real nginx whose master is root with its
capability bounding set cut to the compose service's ``cap_add`` (``setpriv``, as Docker does with
``cap_drop: [ALL]`` + ``cap_add``) and no-new-privileges; workers drop to an unprivileged user
(``nobody`` standing in for the image's ``nginx``, uid 101) and the logs go to a directory that
user owns (mode 0750), as catalog.service_log_dir("nginx") is on the droplet. Loopback only;
NET_BIND_SERVICE is not exercised (the test's ports are unprivileged ones).
"""

from __future__ import annotations

import dataclasses
import grp
import http.client
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bankflow_infra import catalog
from bankflow_infra.render import NginxParams, render_bundle
from tests.render.helpers import (
    CLOUDFLARE,
    OriginCert,
    install_for_local_nginx,
    load_settings,
    local_params,
    make_secrets,
    nginx_argv,
    nginx_version,
    wait_for,
)
from tests.support.tools import require_tool, unavailable

WORKER = "nobody"  # stands in for the image's `nginx` user


def _require_root() -> None:
    if os.geteuid() != 0:
        message = "needs root: the nginx master runs as root with a cut capability set"
        unavailable(message)


@pytest.fixture
def world() -> Iterator[Path]:
    # not pytest's tmp_path: as root that is a 0700 directory the worker user cannot enter
    root = Path(tempfile.mkdtemp(prefix="bankflow-nginx-caps-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _compose_caps(origin_cert: OriginCert) -> list[str]:
    secrets = make_secrets(origin_cert)
    bundle = render_bundle(load_settings("production"), secrets, CLOUDFLARE, origin_cert.cert_pem)
    nginx = yaml.safe_load(bundle.file("compose/base.yaml").text)["services"]["nginx"]
    assert nginx["cap_drop"] == ["ALL"]
    return list(nginx["cap_add"])


def _install(root: Path, nginx: str, origin_cert: OriginCert) -> tuple[NginxParams, Path]:
    worker = pwd.getpwnam(WORKER)
    logs = root / "logs"  # the service's own log directory: the worker user's, 0750
    params = dataclasses.replace(
        local_params(root),
        user=f"{WORKER} {grp.getgrgid(worker.pw_gid).gr_name}",
        access_log=str(logs / catalog.ACCESS_LOG_NAME),
        error_log=str(logs / "error.log"),
    )
    secrets = make_secrets(origin_cert)
    bundle = render_bundle(load_settings("staging"), secrets, CLOUDFLARE, origin_cert.cert_pem, params)
    conf = install_for_local_nginx(bundle, params, nginx_version(nginx))
    (Path(params.config_dir) / "upstreams.conf").touch()
    os.chown(logs, worker.pw_uid, worker.pw_gid)
    logs.chmod(0o750)
    return params, conf


def _health(params: NginxParams, timeout: float = 2) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", params.health_port, timeout=timeout)
    try:
        connection.request("GET", catalog.NGINX_HEALTH_PATH)
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


def _workers(master: int) -> dict[int, int]:
    """pid -> real uid of the master's children."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    uids = {}
    for pid in children:
        status = Path(f"/proc/{pid}/status").read_text()
        uids[int(pid)] = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    return uids


def _start(nginx: str, params: NginxParams, conf: Path, caps: list[str]) -> subprocess.Popen[bytes]:
    setpriv = require_tool("setpriv")
    bounding = ",".join(["-all", *(f"+{cap.lower()}" for cap in caps)])
    argv = [setpriv, f"--bounding-set={bounding}", "--inh-caps=-all", "--no-new-privs",
            *nginx_argv(nginx, params, conf, "-g", "daemon off;")]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _stop(process: subprocess.Popen[bytes]) -> str:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    return process.stderr.read().decode() if process.stderr else ""


def test_nginx_serves_and_reloads_with_exactly_its_compose_capabilities(
    world: Path, origin_cert: OriginCert
) -> None:
    _require_root()
    nginx = require_tool("nginx")
    caps = _compose_caps(origin_cert)
    params, conf = _install(world, nginx, origin_cert)
    process = _start(nginx, params, conf, caps)
    try:
        assert wait_for(lambda: _health(params) == 200, attempts=100), _stop(process)
        worker_uid = pwd.getpwnam(WORKER).pw_uid
        before = _workers(process.pid)
        assert before
        assert set(before.values()) == {worker_uid}  # workers never root
        log = Path(params.access_log)
        assert log.exists()  # opened by the root master in the worker user's 0750 directory
        process.send_signal(1)  # SIGHUP: what `nginx -s reload` sends
        # new workers serve; the old ones are told to quit and do
        assert wait_for(lambda: not set(before) & set(_workers(process.pid)), attempts=100)
        assert _health(params) == 200
        assert set(_workers(process.pid).values()) == {worker_uid}
    finally:
        _stop(process)


# what nginx says when the one capability is missing
REFUSALS = {
    "CHOWN": r"chown\(.*\) failed \(1: Operation not permitted\)",
    "DAC_OVERRIDE": r"open\(\) \".*\" failed \(13: Permission denied\)",
    "SETGID": r"setgid\(\d+\) failed \(1: Operation not permitted\)",
    "SETUID": r"setuid\(\d+\) failed \(1: Operation not permitted\)",
}


@pytest.mark.parametrize("missing", sorted(REFUSALS))
def test_nginx_does_not_serve_without_any_one_of_them(
    world: Path, origin_cert: OriginCert, missing: str
) -> None:
    # each kept capability is needed: CHOWN (temp dirs handed to the workers), DAC_OVERRIDE (the
    # master opens logs in a directory the worker user owns), SETGID/SETUID (workers drop to it)
    _require_root()
    nginx = require_tool("nginx")
    caps = _compose_caps(origin_cert)
    assert missing in caps
    params, conf = _install(world, nginx, origin_cert)
    process = _start(nginx, params, conf, [cap for cap in caps if cap != missing])
    error_log = Path(params.error_log)

    def refused() -> bool:  # the master exited, or its workers said why they could not start
        return process.poll() is not None or bool(
            error_log.exists() and re.search(REFUSALS[missing], error_log.read_text())
        )

    try:
        assert wait_for(refused, attempts=100)
        assert _health(params, timeout=1) != 200
    finally:
        said = _stop(process)
    said += error_log.read_text() if error_log.exists() else ""
    assert re.search(REFUSALS[missing], said), said
