"""`bankflow-infra plan`: the newcomer's first command, run as a real process."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support.tools import REPO


def plan(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bankflow_infra.ops.cli", "plan", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_plan_json_prints_resources_and_outputs_and_writes_the_bundle(stack, tmp_path):
    done = plan(stack, "--json", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert set(document) == {"resources", "outputs"}
    assert all(set(r) == {"type", "name", "parent", "inputs"} for r in document["resources"])
    types = {r["type"] for r in document["resources"]}
    assert {"digitalocean:index/droplet:Droplet", "cloudflare:index/dnsRecord:DnsRecord"} <= types
    assert document["outputs"]["deploy_private_key"] == "[secret]"
    assert document["outputs"]["environment"] == stack
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert {"release.json", "compose/base.yaml", "compose/app.yaml", "nginx/nginx.conf"} <= written
    # Secret files are written redacted: no generated password reaches the disk.
    env_file = (tmp_path / "secrets" / "app.env").read_text()
    assert "mockpw" not in env_file


def test_plan_tree_names_parents_and_hides_secrets(tmp_path):
    done = plan("staging", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    server_block = done.stdout.split("+ bankflow:index:Server  server\n", 1)[1].split("\n+ ", 1)[0]
    assert "\n  + digitalocean:index/droplet:Droplet  server-droplet\n" in server_block  # indented child
    assert 'userData: "[secret]"' in done.stdout
    assert "mockpw" not in done.stdout


def test_bad_config_fails_with_every_key_named_and_nothing_written(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(REPO / "Pulumi.yaml", project / "Pulumi.yaml")
    document = yaml.safe_load((REPO / "Pulumi.staging.yaml").read_text())
    document["config"]["bankflow:server"]["size"] = "big"
    document["config"]["bankflow:edge"]["originStack"] = "staging"
    document["config"]["bankflow:sever"] = {"size": "s-1vcpu-1gb"}  # a misspelt namespace key
    (project / "Pulumi.staging.yaml").write_text(yaml.safe_dump(document))
    done = plan("staging", "--project-dir", str(project), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "bankflow:server.size:" in done.stderr
    assert "bankflow:edge.originStack:" in done.stderr
    assert "bankflow:sever: unknown key" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_stack_lists_the_stacks_there():
    done = plan("prod")
    assert done.returncode == 2
    assert "Pulumi.prod.yaml" in done.stderr
    assert "production, staging" in done.stderr
