"""Pure pieces of the release switch: base-change detection and the upstream include it writes."""

from __future__ import annotations

from pathlib import Path

from bankflow_infra.contract.upstreams import render_upstreams
from bankflow_infra.host.manifest import parse_manifest
from bankflow_infra.host.switch import changed_base
from tests.host.test_manifest import manifest_data


def test_changed_base_ignores_nginx_and_unchanged_services(tmp_path: Path) -> None:
    manifest = parse_manifest(manifest_data(tmp_path))
    running = {"postgres": "pg-1", "redis": "redis-0", "nginx": "other"}
    assert changed_base(manifest, running, first=False) == ["redis"]
    assert changed_base(manifest, running, first=True) == ["postgres", "redis"]


def test_upstream_include_format() -> None:
    assert render_upstreams({"bankflow_site": "site-abc:3000"}, "abc") == (
        "# bankflow release abc app abc -- written by the host agent; do not edit by hand\n"
        "upstream bankflow_site {\n    server site-abc:3000 max_fails=0;\n    keepalive 16;\n}\n"
    )
