"""`bankflow-infra plan` of the scaled shape (issue 13): the committed example stack
(tests/fixtures/scaled-stack.yaml: 3 droplets, managed PostgreSQL/Valkey, NFS uploads) planned as
a real process from its own project directory, with graph assertions on the printed document."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from bankflow_infra.contract.fleet import LB_HEALTH_PORT
from bankflow_infra.contract.roll import ROLL_COMMAND
from tests.support.tools import REPO

FIXTURE = REPO / "tests" / "fixtures" / "scaled-stack.yaml"
STACK = "scaled"


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", project / "Pulumi.yaml")
    config = yaml.safe_load(FIXTURE.read_text(encoding="utf-8"))["config"]
    (project / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump({"config": config}), encoding="utf-8")
    return project


def _plan(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    project = _project(tmp_path)
    return subprocess.run(
        [sys.executable, "-m", "bankflow_infra.ops.cli", "plan", STACK, "--json",
         "--project-dir", str(project), "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _of_type(document: dict[str, Any], token: str) -> list[dict[str, Any]]:
    return [r for r in document["resources"] if r["type"] == token]


def test_plan_of_the_scaled_stack_shows_the_load_balanced_graph(tmp_path: Path) -> None:
    done = _plan(tmp_path)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    tag = f"stack-{STACK}"
    droplets = _of_type(document, "digitalocean:index/droplet:Droplet")
    assert sorted(d["name"] for d in droplets) == ["server-droplet", "server-droplet-2", "server-droplet-3"]
    assert all(tag in d["inputs"]["tags"] for d in droplets)
    (balancer,) = _of_type(document, "digitalocean:index/loadBalancer:LoadBalancer")
    assert balancer["inputs"]["dropletTag"] == tag
    assert balancer["inputs"]["healthcheck"]["port"] == LB_HEALTH_PORT
    firewalls = _of_type(document, "digitalocean:index/databaseFirewall:DatabaseFirewall")
    assert len(firewalls) == 2
    assert all(f["inputs"]["rules"] == [{"type": "tag", "value": tag}] for f in firewalls)
    (roll,) = _of_type(document, "command:local:Command")
    assert roll["inputs"]["create"] == ROLL_COMMAND
    assert roll["inputs"]["stdin"] == "[secret]"
    outputs = document["outputs"]
    assert len(outputs["origin_ips"]) == 3
    assert outputs["load_balancer_ip"] == balancer["inputs"].get("ip", outputs["load_balancer_ip"])
    assert outputs["database"]["database"] == "bankflow"
    # Nothing generated and secret reaches the screen: passwords, the deploy key.
    for marker in ("mockpw", "mockdb", "mockuser", "OPENSSH PRIVATE KEY"):
        assert marker not in done.stdout, marker
