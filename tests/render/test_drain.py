"""How long a switch drains each service is the catalog's, carried to the agent in the manifest."""

from __future__ import annotations

import json

import pytest

from bankflow_infra import catalog
from bankflow_infra.contract.upstreams import DEFAULT_DRAIN_SECONDS
from bankflow_infra.host.manifest import parse_manifest
from bankflow_infra.render import render_bundle
from tests.render import helpers
from tests.render.conftest import TRUSTED


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_the_agent_reads_each_services_drain_bound_from_the_catalog(stack: str, origin_cert) -> None:
    settings = helpers.load_settings(stack)
    bundle = render_bundle(settings, helpers.make_secrets(origin_cert), TRUSTED, origin_cert.cert_pem)
    manifest = parse_manifest(json.loads(bundle.file("release.json").text))
    wanted = {s.name: s.drain_seconds for s in catalog.app_services(settings)}
    assert {s.name: s.drain_seconds for s in manifest.app_services} == wanted
    # The switch waits for the slowest service it stops; nginx ends old workers at its
    # worker_shutdown_timeout anyway, so no bound may exceed it.
    assert manifest.drain_seconds() == max(wanted.values())
    assert all(0 < seconds <= DEFAULT_DRAIN_SECONDS for seconds in wanted.values())
    assert wanted["site"] < wanted["api"]
