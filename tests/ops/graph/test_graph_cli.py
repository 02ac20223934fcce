"""`bankflow-infra plan STACK --graph`: the stack's picture, run as a real process."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys

import pytest

from bankflow_infra.ops import graph_readme
from tests.support.tools import REPO


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bankflow_infra.ops.cli", "plan", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def staging_plan(tmp_path_factory: pytest.TempPathFactory) -> dict:
    done = cli("staging", "--json", "--out", str(tmp_path_factory.mktemp("bundle")))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def staging_mermaid() -> str:
    done = cli("staging", "--graph")
    assert done.returncode == 0, done.stderr
    return done.stdout


def edges(mermaid: str) -> set[tuple[str, str]]:
    return set(re.findall(r"^  (\w+) -->(?:\|\"[^\"]*\"\|)? (\w+)$", mermaid, re.MULTILINE))


def labels(mermaid: str) -> dict[str, str]:
    return dict(re.findall(r'^\s+(\w+)\["([^"]*)"\]$', mermaid, re.MULTILINE))


def test_every_resource_is_in_a_box_of_its_layer_and_component(staging_plan, staging_mermaid):
    resources = [r for r in staging_plan["resources"] if not r["type"].startswith("bankflow:")]
    counted = 0
    for label in labels(staging_mermaid).values():
        many = re.match(r"^\w+ x(\d+)$", label)
        counted += int(many.group(1)) if many else ("<br/>" in label and not label.startswith("nginx"))
    assert counted == len(resources)
    server = staging_mermaid.split('subgraph L_server["server layer"]', 1)[1].split("\n  end\n", 1)[0]
    assert 'subgraph C_server["server (Server)"]' in server
    assert 'r_server_Droplet["Droplet<br/>server-droplet"]' in server
    edge = staging_mermaid.split('subgraph L_edge["edge layer"]', 1)[1].split("\n  end\n", 1)[0]
    assert 'r_edge_DnsRecord["DnsRecord x6"]' in edge
    assert 'r_backups_SpacesBucket["SpacesBucket<br/>backups-bucket"]' in edge


def test_traffic_and_backup_paths_follow_the_catalog(staging_mermaid):
    found = edges(staging_mermaid)
    traffic = ["visitors", "r_edge_DnsRecord", "r_server_Firewall", "r_server_Droplet", "h_nginx"]
    assert set(itertools.pairwise(traffic)) <= found
    assert {("h_nginx", "h_site"), ("h_nginx", "h_saas"), ("h_nginx", "h_api")} <= found
    # Who needs data, from the catalog: site does not, saas and api do; saas calls api.
    data = {("h_saas", "h_postgres"), ("h_saas", "h_redis"), ("h_api", "h_postgres"), ("h_api", "h_redis")}
    assert data | {("h_saas", "h_api")} <= found
    assert not {("h_site", "h_postgres"), ("h_site", "h_redis")} & found
    assert {("h_postgres", "h_dumps"), ("h_dumps", "r_backups_SpacesBucket")} <= found


def test_dot_has_the_same_boxes_and_paths(staging_mermaid):
    done = cli("staging", "--graph", "dot")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('digraph "staging" {')
    assert done.stdout.count("{") == done.stdout.count("}")
    assert set(re.findall(r"^\s+(\w+) -> (\w+)", done.stdout, re.MULTILINE)) == edges(staging_mermaid)
    assert set(re.findall(r"^\s+(\w+) \[label=", done.stdout, re.MULTILINE)) >= set(labels(staging_mermaid))


def test_changed_from_marks_added_changed_and_removed(staging_plan, tmp_path):
    base = json.loads(json.dumps(staging_plan))
    base["resources"] = [r for r in base["resources"] if r["name"] != "server-vpc"]  # the change adds it
    droplet = next(r for r in base["resources"] if r["name"] == "server-droplet")
    droplet["inputs"]["size"] = "s-1vcpu-1gb"  # the change resizes it
    old_tag = {"type": "digitalocean:index/tag:Tag", "name": "old-tag", "parent": None, "inputs": {}}
    base["resources"].append(old_tag)  # the change removes it
    (tmp_path / "base.json").write_text(json.dumps(base))
    done = cli("staging", "--graph", "markdown", "--changed-from", str(tmp_path / "base.json"))
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.startswith("<!-- bankflow-infra plan --graph -->\n**staging** compared with `base.json`:")
    assert "1 boxes added, 1 changed (yellow), 1 resources removed" in text
    assert "\n```mermaid\nflowchart LR\n" in text
    assert "  class r_server_Vpc added\n" in text
    assert "  class r_server_Droplet changed\n" in text
    assert 'x_0["Tag old-tag"]' in text
    assert "  class x_0 removed\n" in text


def test_without_a_base_nothing_is_marked(staging_mermaid):
    assert not re.search(r"^  class .* (added|changed|removed)$", staging_mermaid, re.MULTILINE)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--changed-from", "base.json"), "--changed-from needs --graph"),
        (("--graph", "--changed-from", "missing.json"), "--changed-from missing.json: No such file"),
        (("--graph", "--changed-from", "README.md"), "not a plan document"),
    ],
)
def test_bad_base_is_one_error_exit_2(args, message):
    done = cli("staging", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stderr.count("\n") == 1
    assert done.stdout == ""


def test_the_readme_diagrams_are_current():
    # Regenerated exactly as scripts/readme-diagrams does; stale → run ./scripts/readme-diagrams.
    diagrams = {stack: graph_readme.plan_graph(REPO, stack) for stack in ("staging", "production")}
    committed = graph_readme.current_block((REPO / "README.md").read_text())
    assert committed == graph_readme.block(diagrams), "stale: run ./scripts/readme-diagrams"


def test_a_scaled_stack_is_drawn_with_its_load_balancer_and_managed_data(tmp_path):
    """Issue 13's shape: traffic through the load balancer, the apps' data in the managed clusters
    and the NFS share; no PostgreSQL, Redis or pgBackRest on the droplets."""
    (tmp_path / "Pulumi.yaml").write_bytes((REPO / "Pulumi.yaml").read_bytes())
    (tmp_path / "Pulumi.scaled.yaml").write_bytes((REPO / "tests/fixtures/scaled-stack.yaml").read_bytes())
    done = cli("scaled", "--project-dir", str(tmp_path), "--graph")
    assert done.returncode == 0, done.stderr
    found, boxes = edges(done.stdout), labels(done.stdout)
    traffic = ["visitors", "r_edge_DnsRecord", "r_load_balancer_LoadBalancer", "r_server_Firewall",
               "r_server_Droplet", "h_nginx"]
    assert set(itertools.pairwise(traffic)) <= found
    assert ("r_edge_DnsRecord", "r_server_Firewall") not in found  # Cloudflare reaches the LB only
    database, cache = "r_database_DatabaseCluster", "r_cache_DatabaseCluster"
    assert {("h_saas", database), ("h_api", database), ("h_saas", cache), ("h_api", cache)} <= found
    assert not {("h_site", database), ("h_site", cache)} & found
    assert {(database, "h_dumps"), ("h_dumps", "r_backups_SpacesBucket")} <= found
    assert {("r_uploads_Nfs", "h_uploads"), ("h_uploads", "r_backups_SpacesBucket")} <= found
    assert not {"h_postgres", "h_redis", "h_pitr"} & set(boxes)
    assert boxes["r_server_Droplet"] == "Droplet x3"
