"""Fixtures of the renderer tests: a test certificate, real nginx binaries, running instances."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bankflow_infra.contract.upstreams import render_upstreams
from bankflow_infra.render import CloudflareRanges, render_bundle
from bankflow_infra.settings import APP_SERVICES, Settings
from tests.render.helpers import (
    Backend,
    OriginCert,
    RunningNginx,
    all_hostnames,
    install_for_local_nginx,
    load_settings,
    local_params,
    make_cert,
    make_secrets,
    nginx_version,
    start_backend,
    start_nginx,
)
from tests.support.tools import require_tool


@pytest.fixture(scope="session")
def origin_cert(tmp_path_factory: pytest.TempPathFactory) -> OriginCert:
    openssl = require_tool("openssl")
    return make_cert(openssl, tmp_path_factory.mktemp("cert"), all_hostnames())


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return require_tool("nginx")


@pytest.fixture(scope="session")
def local_nginx_version(nginx_bin: str) -> tuple[int, int, int]:
    return nginx_version(nginx_bin)


StartNginx = Callable[[Settings, CloudflareRanges], RunningNginx]

# The trusted ranges of the live tests include loopback, so requests from the test count as
# coming from Cloudflare; UNTRUSTED does not.
TRUSTED = CloudflareRanges(ipv4=("173.245.48.0/20", "127.0.0.1/32"), ipv6=("2400:cb00::/32",))
UNTRUSTED = CloudflareRanges(ipv4=("173.245.48.0/20",), ipv6=("2400:cb00::/32",))
BODY_LIMIT = "1k"  # small, so the over-limit upload test sends little


def _launcher(
    factory: pytest.TempPathFactory,
    nginx: str,
    version: tuple[int, int, int],
    cert: OriginCert,
    started: list[RunningNginx | Backend],
) -> StartNginx:
    def start(settings: Settings, cloudflare: CloudflareRanges) -> RunningNginx:
        root = factory.mktemp("nginx")
        params = local_params(root)
        bundle = render_bundle(settings, make_secrets(cert), cloudflare, cert.cert_pem, params)
        conf = install_for_local_nginx(bundle, params, version)
        backends = {name: start_backend(name) for name in APP_SERVICES}
        started.extend(backends.values())
        # What the agent does at a switch: point each upstream at the release's containers.
        upstreams = {f"bankflow_{name}": backend.address for name, backend in backends.items()}
        (Path(params.config_dir) / "upstreams.conf").write_text(render_upstreams(upstreams, "test00000001"))
        running = start_nginx(nginx, params, conf, cert.cert_path, backends)
        started.append(running)
        return running

    return start


def _stop_all(started: list[RunningNginx | Backend]) -> None:
    for item in reversed(started):
        item.stop()


@pytest.fixture
def start_live_nginx(
    tmp_path_factory: pytest.TempPathFactory,
    nginx_bin: str,
    local_nginx_version: tuple[int, int, int],
    origin_cert: OriginCert,
) -> Iterator[StartNginx]:
    """Start real nginx instances serving a rendered bundle on loopback, one echo backend per app
    service behind the upstream include; all stopped when the test ends, whatever happened."""
    started: list[RunningNginx | Backend] = []
    try:
        yield _launcher(tmp_path_factory, nginx_bin, local_nginx_version, origin_cert, started)
    finally:
        _stop_all(started)


@pytest.fixture(scope="module")
def live(
    tmp_path_factory: pytest.TempPathFactory,
    nginx_bin: str,
    local_nginx_version: tuple[int, int, int],
    origin_cert: OriginCert,
) -> Iterator[RunningNginx]:
    """One nginx (staging settings, 1k body limit, loopback trusted) shared by read-only tests."""
    started: list[RunningNginx | Backend] = []
    try:
        start = _launcher(tmp_path_factory, nginx_bin, local_nginx_version, origin_cert, started)
        yield start(with_body_limit(load_settings("staging"), BODY_LIMIT), TRUSTED)
    finally:
        _stop_all(started)


def with_body_limit(settings: Settings, limit: str) -> Settings:
    return dataclasses.replace(
        settings, nginx=dataclasses.replace(settings.nginx, client_max_body_size=limit)
    )


@pytest.fixture
def staging() -> Settings:
    return load_settings("staging")
