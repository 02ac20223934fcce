"""`bankflow-infra status STACK` as a process, against a loopback "droplet" and local HTTPS.

The droplet is tests/ops/cli/remote's rig: the real sshd with the pinned host key, the REAL
host agent installed as shipped (launcher, system python3), the docker stand-in (Docker has no
engine here). Two staging releases are deployed with the program's own registered payloads.
Health goes "through Cloudflare" to LocalHttps on 127.0.0.1 (BANKFLOW_HEALTH_RESOLVE), trusted
through SSL_CERT_FILE = the test CA, as the public roots are. Size and region come from the
committed Pulumi.staging.yaml (the process runs in the repository).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from bankflow_infra.ops.cli.health import HEALTH_RESOLVE_ENV
from tests.ops.cli.remote.conftest import agent_host, remote_host, staging_plans  # noqa: F401 -- fixtures
from tests.ops.cli.remote.rig import RemoteHost
from tests.ops.cli.remote.test_commands_over_ssh import Plans, seed
from tests.ops.status.schema import STATUS_SCHEMA
from tests.support.https import Behaviour, Certs, LocalHttps, hostnames
from tests.support.tools import REPO

CLI = str(Path(sys.executable).parent / "bankflow-infra")


@pytest.fixture
def edge(certs: Certs) -> Iterator[dict[str, str]]:
    """The environment that sends the edge probes to a healthy local server."""
    with LocalHttps(certs.origin, {h: Behaviour() for h in hostnames()}) as server:
        yield {HEALTH_RESOLVE_ENV: ",".join(f"{h}=127.0.0.1:{server.port}" for h in hostnames()),
               "SSL_CERT_FILE": str(certs.ca.cert)}


def seed_without_spaces_key(host: RemoteHost, plans: Plans) -> tuple[str, str]:
    """Both releases deployed, then the host's Spaces key removed: the agent's `backups` then
    refuses on the host itself, so no test ever sends rclone towards the real Spaces endpoint
    (the agent runs rclone with a fixed PATH: no stand-in can take its place over SSH)."""
    ids = seed(host, plans)
    (host.home / "secrets" / "rclone.conf").unlink()
    return ids


def status(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    done = subprocess.run([CLI, "status", *argv], env={**os.environ, **env}, cwd=REPO, capture_output=True,
                          text=True, timeout=180, check=False)
    return done.returncode, done.stdout, done.stderr


def drift_file(tmp_path: Path, drifted: bool | None, stack: str = "staging", hours_ago: int = 2) -> Path:
    from datetime import UTC, datetime, timedelta

    checked = (datetime.now(UTC) - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    path = tmp_path / f"drift-{stack}.json"
    path.write_text(json.dumps({"schema": 1, "stack": stack, "checked_at": checked, "drifted": drifted,
                                "preview": "success", "run_url": "https://github.com/o/r/actions/runs/9",
                                "problems": []}))
    return path


def test_status_json_over_ssh(agent_host: RemoteHost, staging_plans: Plans,  # noqa: F811
                              edge: dict[str, str], tmp_path: Path) -> None:
    first, second = seed_without_spaces_key(agent_host, staging_plans)
    outputs = agent_host.write_outputs()
    code, out, err = status(["staging", "--outputs", outputs, "--json", "--drift",
                             str(drift_file(tmp_path, False))], edge)
    document: dict[str, Any] = json.loads(out)
    jsonschema.validate(document, STATUS_SCHEMA)
    assert document["stack"] == "staging"
    assert document["environment"] == "staging"
    assert document["releases"]["serving"] == second
    assert [(r["release"], r["current"], r["previous"]) for r in document["releases"]["kept"]] == [
        (second, True, False), (first, False, True)]
    deploys = document["deploys"]["entries"]
    assert [(d["action"], d["release"], d["result"]) for d in deploys] == [
        ("deploy", second, "ok"), ("deploy", first, "ok")]
    assert all(d["actor"] and d["time"] for d in deploys)
    assert document["health"]["healthy"] is True, document["health"]["probes"]
    assert document["server"] | {"error": None} == {
        "own": True, "origin_stack": "staging", "origin_ip": "203.0.113.10", "enabled": True,
        "size": "s-2vcpu-4gb", "region": "nyc3", "error": None}
    assert document["archive"] == {"state": "not configured", "lag_seconds": None}
    assert document["certificate"]["expires_on"] == "2027-01-01T00:00:00Z"
    assert document["drift"]["state"] == "clean"
    # The rig's host has no backup configuration: the agent's answer is an error, shown as such
    # and counted as something needing attention (exit 1), while every other section still shows.
    assert "no Spaces key on this host" in document["backup"]["error"]
    assert code == 1, err
    assert any(p.startswith("backup:") for p in document["problems"])
    assert [p for p in document["problems"] if not p.startswith("backup:")] == []


def test_status_screen(agent_host: RemoteHost, staging_plans: Plans,  # noqa: F811
                       edge: dict[str, str], tmp_path: Path) -> None:
    first, second = seed_without_spaces_key(agent_host, staging_plans)
    code, out, err = status(["staging", "--outputs", agent_host.write_outputs(), "--drift",
                             str(drift_file(tmp_path, True))], edge)
    assert code == 1, err
    lines = out.splitlines()
    assert lines[0].startswith("stack staging (staging) droplet 203.0.113.10, s-2vcpu-4gb in nyc3")
    assert any(second in line and "serving" in line for line in lines)
    assert any(first in line and "previous" in line for line in lines)
    assert "Last deploys (audit log)" in out
    assert sum("healthy" in line for line in lines) >= len(hostnames())
    assert "archive lag" in out
    assert "not configured" in out
    assert "drifted (checked" in out
    assert "drift: the stack drifted" in out
    assert "\x1b[" not in out  # piped: no colour codes
    assert "Traceback" not in err


def test_a_stack_without_a_server_still_shows_health(edge: dict[str, str], tmp_path: Path) -> None:
    from tests.support.outputs import outputs_document

    saved = tmp_path / "outputs.json"
    saved.write_text(json.dumps(outputs_document("staging", origin_ip=None, origin_stack="staging-r1")))
    code, out, err = status(["staging", "--outputs", str(saved), "--json"], edge)
    document = json.loads(out)
    jsonschema.validate(document, STATUS_SCHEMA)
    assert document["server"]["own"] is False
    assert document["server"]["origin_stack"] == "staging-r1"
    assert document["releases"] == {"serving": None, "kept": [], "error": None}
    assert document["health"]["healthy"] is True
    assert document["drift"]["state"] == "unknown"
    assert code == 0, (document["problems"], err)


def test_an_unreachable_droplet_is_a_section_error_not_a_crash(
        remote_host: RemoteHost, edge: dict[str, str], tmp_path: Path) -> None:  # noqa: F811
    outputs = remote_host.outputs_document()
    outputs["ssh"]["port"] = remote_host.server.port
    remote_host.server.close()  # nothing listens there any more
    saved = tmp_path / "outputs.json"
    saved.write_text(json.dumps(outputs))
    code, out, _ = status(["staging", "--outputs", str(saved), "--json"], edge)
    document = json.loads(out)
    assert code == 1
    assert "ssh to stack 'staging'" in document["releases"]["error"]
    assert document["health"]["healthy"] is True


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["production"], "are for environment 'staging', but stack 'production' is 'production'"),
        (["staging", "--drift", "/nonexistent/drift.json"], None),
        (["staging", "--last", "0"], "invalid choice"),
    ],
    ids=["other-environment", "missing-drift-file", "bad-last"],
)
def test_bad_input(argv: list[str], message: str | None, edge: dict[str, str], tmp_path: Path) -> None:
    from tests.support.outputs import outputs_document

    saved = tmp_path / "outputs.json"
    saved.write_text(json.dumps(outputs_document("staging", origin_ip=None)))
    code, out, err = status([*argv, "--outputs", str(saved), "--json"], edge)
    if message is None:  # an unreadable drift record: the drift section says so, the rest shows
        assert json.loads(out)["drift"]["state"] == "error"
        assert code == 1
        return
    assert code == 2
    assert message in err
    assert out == ""
