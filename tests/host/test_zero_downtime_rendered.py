"""Zero downtime with the RENDERED nginx config: the real renderer's nginx.conf, TLS and routing.

``bankflow_infra.render.render_bundle`` produces the bundles (staging settings, different image
tags), with NginxParams moving ports and paths to loopback and to this test's BANKFLOW_HOME:
nginx reads the agent's live dir, the certificate from ``$HOME/tls`` and the key from
``$HOME/secrets`` -- exactly where the agent installs them. The app "containers" are local
processes (LocalProcessRuntime stands in for Docker, which has no engine on this machine).
Requests go over HTTPS with each public hostname as SNI, as Cloudflare's do. The only change to
rendered text is the renderer tests' own ``adapt_for_local_nginx`` (nginx 1.22 has no ``http2 on``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.host.manifest import bundle_release_id
from tests.host.fixtures import HostEnv, Load, make_host
from tests.host.rendered_nginx import loopback_nginx_params
from tests.support.tools import require_tool

# Tests that measure failed requests under load share one worker: two of them at once on two
# cores starve each other's nginx and stand-ins, and a timing failure would hide a real one.
pytestmark = pytest.mark.xdist_group("under-load")

render = pytest.importorskip("bankflow_infra.render")
helpers = pytest.importorskip("tests.render.helpers")


@pytest.fixture
def rendered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[HostEnv, Any]]:
    host = make_host(tmp_path, require_tool("nginx"))
    # the droplet's verify listener port is fixed; here a free one (other nginx may run)
    monkeypatch.setattr(render.nginx, "verify_port", lambda _params: host.verify_port)
    host.candidate_url = f"https://127.0.0.1:{host.verify_port}"
    params = loopback_nginx_params(host)
    host.verify_url = f"https://127.0.0.1:{params.https_port}"
    try:
        yield host, params
    finally:
        host.runtime.shutdown()


def write_rendered(host: HostEnv, params: Any, tag: str, openssl: str) -> Path:
    settings = helpers.load_settings("staging")
    settings = replace(settings, release=replace(settings.release, tag=tag))
    cert_dir = host.run / "cert"
    if not (cert_dir / "origin.pem").exists():
        helpers.make_cert(openssl, cert_dir, settings.all_hostnames)
    cert = helpers.OriginCert(
        (cert_dir / "origin.pem").read_text(), (cert_dir / "origin.key").read_text(), cert_dir / "origin.pem"
    )
    bundle = render.render_bundle(
        settings, helpers.make_secrets(cert), helpers.CLOUDFLARE, cert.cert_pem, params
    )
    version = helpers.nginx_version(host.runtime.nginx)
    target = host.bundles / str(bundle.digest)  # a hex dir name: the release id is its first 12 chars
    for item in (*bundle.files, *bundle.secret_files):
        path = target / item.path
        path.parent.mkdir(parents=True, exist_ok=True)
        text = (
            helpers.adapt_for_local_nginx(item.text, version) if item.path.startswith("nginx/") else item.text
        )
        path.write_text(text)
        os.chmod(path, item.mode)
    return target


def test_rendered_config_three_deploys_and_a_rollback_under_load(rendered: tuple[HostEnv, Any]) -> None:
    host, params = rendered
    openssl = require_tool("openssl")
    host.drain = 1.0
    bundles = [write_rendered(host, params, f"v{i}", openssl) for i in range(1, 5)]
    code, out, err = host.deploy(bundles[0])
    assert code == 0, out + err
    hosts = helpers.load_settings("staging").all_hostnames
    with Load(params.https_port, workers=4, max_seconds=60, hosts=hosts, tls=True) as load:
        time.sleep(0.5)
        for bundle in bundles[1:]:
            code, out, err = host.deploy(bundle)
            assert code == 0, out + err
        code, _, err = host.agent("rollback")
        assert code == 0, err
        time.sleep(0.5)
    assert load.result.failures == []
    assert load.result.total > 100
    assert set(load.result.releases) == {bundle_release_id(b) for b in bundles}
