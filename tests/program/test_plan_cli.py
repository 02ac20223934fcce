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
    assert "userData: '[secret]'" in done.stdout
    assert "mockpw" not in done.stdout


def test_plan_tree_says_first_that_cloud_values_are_placeholders(tmp_path):
    done = plan("staging", "--out", str(tmp_path))
    first = done.stdout.splitlines()[0]
    assert "placeholders" in first
    assert "[secret]" in first


def _block_of(tree: str, resource: str) -> str:
    """The lines of one resource in the tree, up to the next resource."""
    return tree.split(f"  {resource}\n", 1)[1].split("+ ", 1)[0]


def test_plan_tree_shows_nested_inputs_in_full_one_item_a_line(tmp_path):
    done = plan("staging", "--out", str(tmp_path))
    tree = done.stdout
    assert not [line for line in tree.splitlines() if line.endswith("...")], "a value was cut"
    firewall = _block_of(tree, "server-firewall")
    # Every rule, each Cloudflare range on its own line (the last IPv6 range too), nothing cut.
    assert "      - portRange: '443'\n        protocol: tcp\n        sourceAddresses:\n" in firewall
    assert firewall.count("        - 2c0f:f248::/32\n") == 2  # in the 80 and the 443 rule
    ssh_rule = "      - portRange: '22'\n        protocol: tcp\n        sourceAddresses: [203.0.113.0/24]\n"
    assert ssh_rule in firewall
    certificate = _block_of(tree, "origin-cert-certificate")
    hostnames = "      hostnames:\n      - qa.conciliaextrato.com\n      - app.qa.conciliaextrato.com\n"
    assert hostnames in certificate
    assert "      csr: |\n        -----BEGIN CERTIFICATE REQUEST-----\n" in certificate
    bucket = _block_of(tree, "backups-bucket")
    assert "      lifecycleRules:\n      - abortIncompleteMultipartUploadDays: 1\n" in bucket
    assert "        expiration: {days: 30}\n" in bucket


@pytest.mark.parametrize("kind", ["file", "under-a-file"])
def test_out_to_an_unusable_path_is_one_clear_error_and_nothing_runs(tmp_path, kind):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory\n")
    out = blocker if kind == "file" else blocker / "bundle"
    done = plan("staging", "--out", str(out))
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1, done.stderr  # one line
    assert f"--out {out}:" in done.stderr
    assert "not a directory" in done.stderr
    assert "Traceback" not in done.stderr
    assert blocker.read_text() == "not a directory\n"


def test_run_outside_the_project_says_to_use_project_dir(tmp_path):
    done = plan("staging", cwd=tmp_path)
    assert done.returncode == 2
    assert "Pulumi.yaml" in done.stderr
    assert "--project-dir" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "build").exists()
    # ... and with it, the same plan works from anywhere.
    done = plan("staging", "--project-dir", str(REPO), "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr


def test_help_documents_every_option_and_the_exit_codes_without_markup():
    done = plan("--help")
    assert done.returncode == 0
    text = done.stdout
    for option in ("--json", "--out DIR", "--project-dir DIR", "--graph", "--changed-from FILE"):
        assert option in text
    assert "exit status:\n  0  " in text
    assert "\n  2  bad input" in text
    assert "`" not in text
    assert "``" not in text


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
