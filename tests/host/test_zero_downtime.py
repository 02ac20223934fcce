"""Zero downtime, measured: continuous requests through the REAL nginx while the agent switches.

The "containers" are local processes (LocalProcessRuntime stands in for Docker, which has no
engine on this machine); nginx, its graceful reload and the agent are the real ones. The nginx
config is the minimal Host-routed http config of ``tests/host/fixtures.py`` that includes the
agent's live upstreams.conf: ``bankflow_infra.render`` has no loopback-runnable config yet
(its nginx.conf uses container paths and TLS), so these tests do not use the rendered one.
The load is bounded: it stops after the switches plus a short tail, with a hard time cap.
"""

from __future__ import annotations

import time

import pytest

from bankflow_infra.contract import exit_codes
from bankflow_infra.host.manifest import bundle_release_id
from tests.host.fixtures import HostEnv, Load

# Tests that measure failed requests under load share one worker: two of them at once on two
# cores starve each other's nginx and stand-ins, and a timing failure would hide a real one.
pytestmark = pytest.mark.xdist_group("under-load")

TAIL_SECONDS = 0.5


def test_three_deploys_and_a_rollback_under_load_fail_no_request(host: HostEnv) -> None:
    host.drain = 1.0  # the old release stops only after the switch plus this drain
    bundles = [host.bundle(f"v{i}") for i in range(1, 5)]
    assert host.deploy(bundles[0])[0] == 0
    with Load(host.port, workers=6, max_seconds=60) as load:
        time.sleep(TAIL_SECONDS)
        for bundle in bundles[1:]:
            code, _, err = host.deploy(bundle)
            assert code == 0, err
        code, _, err = host.agent("rollback")
        assert code == 0, err
        time.sleep(TAIL_SECONDS)
    result = load.result
    assert result.failures == []
    assert result.total > 100
    # every release really served part of the traffic: the switches happened under load
    assert set(result.releases) == {bundle_release_id(b) for b in bundles}
    assert host.current() == bundle_release_id(bundles[2])


def test_unhealthy_release_never_receives_a_request_under_load(host: HostEnv) -> None:
    good, bad = host.bundle("v1"), host.bundle("v2", unhealthy=["api"])
    assert host.deploy(good)[0] == 0
    with Load(host.port, workers=6, max_seconds=30) as load:
        time.sleep(TAIL_SECONDS)
        code, _, err = host.deploy(bad)
        time.sleep(TAIL_SECONDS)
    assert code == exit_codes.FAILED
    assert "step 'wait-healthy' failed: service api unhealthy" in err
    assert load.result.failures == []
    assert load.result.total > 50
    assert set(load.result.releases) == {bundle_release_id(good)}
    assert host.runtime.proxied_requests(bundle_release_id(bad)) == 0
