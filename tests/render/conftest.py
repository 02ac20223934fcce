"""Fixtures of the renderer tests: a test certificate, real nginx binaries, running instances."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from bankflow_infra.contract.upstreams import render_upstreams
from bankflow_infra.render import CloudflareRanges, render_bundle
from bankflow_infra.render.model import ClientLimits
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
from tests.render.perimeter import Pem, make_ca, make_client_cert
from tests.support.tools import require_tool


@pytest.fixture(scope="session")
def origin_cert(tmp_path_factory: pytest.TempPathFactory) -> OriginCert:
    openssl = require_tool("openssl")
    return make_cert(openssl, tmp_path_factory.mktemp("cert"), all_hostnames())


@dataclasses.dataclass(frozen=True)
class PullPki:
    """The stack's origin-pull CA and the client certificate Cloudflare presents (``ours``), and a
    client certificate from another CA (``foreign``: another Cloudflare customer's, say)."""

    ca: Pem
    ours: Pem
    foreign: Pem


@pytest.fixture(scope="session")
def pull_pki(tmp_path_factory: pytest.TempPathFactory) -> PullPki:
    openssl = require_tool("openssl")
    directory = tmp_path_factory.mktemp("pull-pki")
    ca, other_ca = make_ca(openssl, directory, "stack"), make_ca(openssl, directory, "other")
    return PullPki(
        ca,
        make_client_cert(openssl, ca, directory, "cloudflare-for-stack"),
        make_client_cert(openssl, other_ca, directory, "cloudflare-for-other"),
    )


@pytest.fixture(scope="session")
def nginx_bin() -> str:
    return require_tool("nginx")


@pytest.fixture(scope="session")
def local_nginx_version(nginx_bin: str) -> tuple[int, int, int]:
    return nginx_version(nginx_bin)


class StartNginx(Protocol):
    """Start one nginx: ``limits`` replaces the droplet's client limits (smaller, so a cut-off shows
    within seconds); ``origin_pull_ca`` turns Authenticated Origin Pulls on with that CA."""

    def __call__(
        self,
        settings: Settings,
        cloudflare: CloudflareRanges,
        *,
        limits: ClientLimits | None = None,
        origin_pull_ca: str | None = None,
    ) -> RunningNginx: ...


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
    def start(
        settings: Settings,
        cloudflare: CloudflareRanges,
        *,
        limits: ClientLimits | None = None,
        origin_pull_ca: str | None = None,
    ) -> RunningNginx:
        root = factory.mktemp("nginx")
        params = local_params(root)
        if limits is not None:
            params = dataclasses.replace(params, limits=limits)
        bundle = render_bundle(
            settings, make_secrets(cert), cloudflare, cert.cert_pem, params, origin_pull_ca_pem=origin_pull_ca
        )
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
def start_module_nginx(
    tmp_path_factory: pytest.TempPathFactory,
    nginx_bin: str,
    local_nginx_version: tuple[int, int, int],
    origin_cert: OriginCert,
) -> Iterator[StartNginx]:
    """Like start_live_nginx, for instances a whole module's read-only tests share."""
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
