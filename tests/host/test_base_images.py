"""Base services whose image changed are recreated; nginx is replaced beside itself under load.

Issue 12 item 6: postgres and redis were re-pulled only when their definition changed, and nginx
was never recreated (a new nginx image was recorded as deployed while the old one kept running).
The stand-in (``tests/host/standin.py``) resolves image references through ``registry.json`` and
replaces nginx with a second REAL nginx master beside the first (both listen with reuseport),
then SIGQUIT to the old one -- what two nginx containers sharing the port holder's network
namespace do. The load is bounded (workers, a hard time cap) and goes to 127.0.0.1 only.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bankflow_infra.host.manifest import bundle_release_id
from tests.host.fixtures import NGINX_IMAGE, POSTGRES_IMAGE, HostEnv, Load
from tests.support.tools import REPO, find_tool, require_tool, unavailable

# Tests that measure failed requests under load share one worker: two of them at once on two
# cores starve each other's nginx and stand-ins, and a timing failure would hide a real one.
pytestmark = pytest.mark.xdist_group("under-load")

TAIL_SECONDS = 0.5
NEW_NGINX = "nginx:1.28.1-alpine"


def nginx_pid(host: HostEnv) -> int:
    pid = host.runtime._nginx_pid()
    assert pid is not None, "nginx is not running"
    return pid


def calls(host: HostEnv, name: str) -> list[dict[str, object]]:
    return [c for c in host.runtime.journal() if c["call"] == name]


def move_tag(host: HostEnv, image: str, digest: str) -> None:
    """The registry now answers ``image`` with another image (a tag that moved)."""
    registry = host.run / "registry.json"
    known = json.loads(registry.read_text()) if registry.is_file() else {}
    registry.write_text(json.dumps({**known, image: digest}))


def test_new_nginx_image_replaces_nginx_under_load(host: HostEnv) -> None:
    assert host.deploy(host.bundle("v1"))[0] == 0
    before = nginx_pid(host)
    with Load(host.port, workers=6, max_seconds=60) as load:
        time.sleep(TAIL_SECONDS)
        code, out, err = host.deploy(host.bundle("v1", nginx_image=NEW_NGINX))
        time.sleep(TAIL_SECONDS)
    assert code == 0, err
    assert "replace-nginx:" in out
    after = nginx_pid(host)
    assert after != before  # a new nginx master serves: the new image runs
    done = calls(host, "replace_nginx_done")
    assert done
    assert done[-1]["old_alive"] is False  # the old one quit (gracefully, SIGQUIT)
    # This machine's network namespace may have net.ipv4.tcp_migrate_req=0: then a connection
    # still in the accept queue of the old nginx's socket when it closes is reset (the kernel's
    # reuseport behaviour; production sets the sysctl, see the namespace test below). Nothing
    # else may fail: no refused connection, no 502, no timeout.
    assert [f for f in load.result.failures if "ConnectionResetError" not in f] == []
    assert len(load.result.failures) <= 2
    assert load.result.total > 50
    # the apps were not touched: only nginx changed
    assert "keeping the containers of release" in out


def private_network_namespace() -> list[str] | None:
    """``unshare --net`` (as root; else with a user namespace) if this machine allows it."""
    unshare, ip = find_tool("unshare"), find_tool("ip")
    if unshare is None or ip is None:
        return None
    argv = [unshare, "--net"] if os.geteuid() == 0 else [unshare, "--net", "--map-root-user"]
    probe = subprocess.run([*argv, ip, "link", "set", "lo", "up"], capture_output=True, timeout=30,
                           check=False)  # fmt: skip
    return argv if probe.returncode == 0 else None


def test_with_the_port_holders_sysctl_no_request_fails_across_replacements(tmp_path: Path) -> None:
    """Three nginx replacements under load in a private network namespace with
    net.ipv4.tcp_migrate_req=1, as the port holder's (render/edge_ports.py): zero failures."""
    nginx = require_tool("nginx")
    namespace = private_network_namespace()
    if namespace is None:
        unavailable("no private network namespace here (unshare --net refused)")
    ip = find_tool("ip")
    script = (
        f"{ip} link set lo up && echo 1 > /proc/sys/net/ipv4/tcp_migrate_req && "
        f"exec {sys.executable} -m tests.host.replace_under_load {tmp_path} {nginx}"
    )
    done = subprocess.run([*namespace, "sh", "-c", script], capture_output=True, text=True, cwd=REPO,
                          timeout=240, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["failures"] == []
    assert result["total"] > 100


def test_a_tag_moved_to_a_new_image_recreates_that_base_service_only(host: HostEnv) -> None:
    assert host.deploy(host.bundle("v1"))[0] == 0
    move_tag(host, POSTGRES_IMAGE, "sha256:" + "1" * 64)
    code, out, err = host.deploy(host.bundle("v2"))
    assert code == 0, err
    assert "base service postgres has a new image: recreating" in out
    recreated = calls(host, "recreate")
    assert [c["services"] for c in recreated] == [["postgres"]]
    assert calls(host, "replace_nginx") == []
    # recorded: the next deploy with nothing new recreates nothing
    code, out, err = host.deploy(host.bundle("v3"))
    assert code == 0, err
    assert len(calls(host, "recreate")) == 1
    assert "apply-base" not in out


def test_a_moved_nginx_tag_replaces_nginx(host: HostEnv) -> None:
    assert host.deploy(host.bundle("v1"))[0] == 0
    before = nginx_pid(host)
    move_tag(host, NGINX_IMAGE, "sha256:" + "2" * 64)
    code, _, err = host.deploy(host.bundle("v2"))
    assert code == 0, err
    assert nginx_pid(host) != before
    assert len(calls(host, "replace_nginx")) == 1
    assert host.get("site")[0] == 200


def test_a_new_nginx_config_alone_is_a_reload_not_a_replacement(host: HostEnv) -> None:
    assert host.deploy(host.bundle("v1"))[0] == 0
    before = nginx_pid(host)
    code, _, err = host.deploy(host.bundle("v1", nginx_version="2"))
    assert code == 0, err
    assert calls(host, "replace_nginx") == []
    assert nginx_pid(host) == before
    assert "version 2" in (host.live / "nginx.conf").read_text()


def test_rollback_leaves_the_newer_nginx_running(host: HostEnv) -> None:
    one = host.bundle("v1")
    assert host.deploy(one)[0] == 0
    assert host.deploy(host.bundle("v2", nginx_image=NEW_NGINX))[0] == 0
    pid = nginx_pid(host)
    code, _, err = host.agent("rollback")
    assert code == 0, err
    assert host.current() == bundle_release_id(one)
    assert len(calls(host, "replace_nginx")) == 1
    assert nginx_pid(host) == pid
    # and the next deploy of the same images replaces nothing (the record says what runs)
    assert host.deploy(host.bundle("v3", nginx_image=NEW_NGINX))[0] == 0
    assert len(calls(host, "replace_nginx")) == 1


def test_a_deploy_after_an_older_agent_replaces_nginx_only_when_its_digest_changed(host: HostEnv) -> None:
    assert host.deploy(host.bundle("v1"))[0] == 0
    (host.home / "state" / "base-images.json").unlink()  # as an agent before issue 12 left it
    assert host.deploy(host.bundle("v2"))[0] == 0
    assert calls(host, "replace_nginx") == []  # same nginx digest: recorded as the baseline
    (host.home / "state" / "base-images.json").unlink()
    (host.home / "state" / "base-images.json.1").unlink(missing_ok=True)
    assert host.deploy(host.bundle("v3", nginx_version="3"))[0] == 0
    assert len(calls(host, "replace_nginx")) == 1  # the digest moved: it may be a new image
