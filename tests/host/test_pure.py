"""Pure pieces of the agent: manifest validation, base-change detection, prune plan, upstreams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bankflow_infra.contract.upstreams import render_upstreams
from bankflow_infra.host.agent import changed_base, previous_release, prune_plan
from bankflow_infra.host.manifest import ManifestError, parse_manifest
from bankflow_infra.host.state import Current
from tests.host.fixtures import HostEnv
from tests.host.standin import LocalProcessRuntime


def manifest_data(tmp_path: Path) -> dict[str, object]:
    env = HostEnv(tmp_path, tmp_path, tmp_path, 1, LocalProcessRuntime(tmp_path, "nginx", tmp_path / "c"))
    data: dict[str, object] = json.loads((env.bundle("v1") / "release.json").read_text())
    return data


def test_manifest_problems_are_all_listed(tmp_path: Path) -> None:
    data = manifest_data(tmp_path)
    data["schema"] = 2
    data["nginx_dir"] = "../../etc"
    data["app_services"][0]["upstream"] = "x; include /etc/passwd"  # type: ignore[index]
    with pytest.raises(ManifestError) as error:
        parse_manifest(data)
    assert [p.split(":")[0] for p in error.value.problems] == [
        "schema",
        "app_services[0].upstream",
        "nginx_dir",
    ]


def test_manifest_ignores_keys_it_does_not_use(tmp_path: Path) -> None:
    data = {**manifest_data(tmp_path), "tls_dir": "tls", "nginx_conf": "/etc/nginx/nginx.conf"}
    assert parse_manifest(data).app_names() == ("site", "saas", "api")


def test_changed_base_ignores_nginx_and_unchanged_services(tmp_path: Path) -> None:
    manifest = parse_manifest(manifest_data(tmp_path))
    running = {"postgres": "pg-1", "redis": "redis-0", "nginx": "other"}
    assert changed_base(manifest, running, first=False) == ["redis"]
    assert changed_base(manifest, running, first=True) == ["postgres", "redis"]


def test_prune_plan_keeps_newest_and_the_app_release_of_kept_ones() -> None:
    order = ["r7", "r6", "r5", "r4", "r3", "r2", "r1"]  # most recent first
    plan = prune_plan(order, sorted(order), {"r3": "r1"}, 5, Current("r7", "r7", "f"))
    assert plan == ["r2"]  # r1 runs the containers of kept r3


def test_prune_plan_never_removes_current_or_previous() -> None:
    assert prune_plan(["r2", "r1"], ["r1", "r2"], {}, 1, Current("r2", "r2", "f")) == []


def test_previous_release_is_the_latest_other_than_current() -> None:
    history = [{"release": "a"}, {"release": "b"}, {"release": "a"}]
    assert previous_release(history, "a") == "b"
    assert previous_release([{"release": "a"}], "a") is None


def test_upstream_include_format() -> None:
    assert render_upstreams({"bankflow_site": "site-abc:3000"}, "abc") == (
        "# bankflow release abc -- written by the host agent; do not edit by hand\n"
        "upstream bankflow_site {\n    server site-abc:3000 max_fails=0;\n    keepalive 16;\n}\n"
    )
