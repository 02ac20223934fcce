"""No public request reaches an unverified release; reverts and switches drain (issue 15, 1 and 7).

Real nginx with the fixture config (public servers and the loopback verify listener, both
including the agent's live upstream includes), the stand-in runtime, requests under load.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from bankflow_infra.contract import exit_codes
from bankflow_infra.host.manifest import bundle_release_id
from tests.host.fixtures import HostEnv, Load, hostname

# Tests that measure failed requests under load share one worker: two of them at once on two
# cores starve each other's nginx and stand-ins, and a timing failure would hide a real one.
pytestmark = pytest.mark.xdist_group("under-load")

TAIL = 0.3


def test_a_release_failing_through_nginx_never_gets_a_public_request(host: HostEnv) -> None:
    good, bad = host.bundle("v1"), host.bundle("v2", markers=["standin-fail-through-nginx"])
    assert host.deploy(good)[0] == 0
    with Load(host.port, workers=4, max_seconds=30) as load:
        time.sleep(TAIL)
        code, _, err = host.deploy(bad)
        time.sleep(TAIL)
    assert code == exit_codes.FAILED
    # its own health check passed; through nginx (the verify listener) it answers 502
    assert "step 'verify' failed: service site: GET /health for site.bankflow.test through nginx's " in err
    assert "verify listener" in err
    assert "answered 502" in err
    assert load.result.failures == []
    assert set(load.result.releases) == {bundle_release_id(good)}
    assert host.current() == bundle_release_id(good)


def test_a_release_dying_after_the_public_switch_is_bypassed_and_reverted(host: HostEnv) -> None:
    host.watch = 3.0
    good, dying = host.bundle("v1"), host.bundle("v2", die_after_public=0.3)
    assert host.deploy(good)[0] == 0
    with Load(host.port, workers=4, max_seconds=30) as load:
        time.sleep(TAIL)
        code, out, err = host.deploy(dying)
        time.sleep(TAIL)
    assert code == exit_codes.FAILED, out + err
    assert "step 'watch' failed: service" in err
    # while it was watched, the previous release was nginx's backup server: no request failed
    assert load.result.failures == []
    assert bundle_release_id(dying) in load.result.releases  # it did get public traffic
    assert host.current() == bundle_release_id(good)
    assert host.get("api") == (200, f"{bundle_release_id(good)} api\n")


@contextmanager
def long_requests(
    host: HostEnv, millis: int, seconds: float, stagger: float | None = None
) -> Iterator[list[str]]:
    """Requests of ``millis`` each through the public listener, back to back, until the block
    ends or ``seconds`` have passed (whichever comes first); yields the list of failures (filled
    when the block ends). Tests that need requests in flight at a switch give ``seconds`` as a
    cap, never as the expected length of a deploy: under CPU load a deploy reaches its switch
    late, and a load that had already stopped would let the test pass without testing."""
    failures: list[str] = []
    done = threading.Event()

    def run() -> None:
        deadline = time.monotonic() + seconds
        while not done.is_set() and time.monotonic() < deadline:
            conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=30)
            try:
                conn.request(
                    "GET", f"/sleep/{millis}", headers={"Host": hostname("site"), "Connection": "close"}
                )
                response = conn.getresponse()
                response.read()
                if response.status != 200:
                    failures.append(f"HTTP {response.status}")
            except (OSError, http.client.HTTPException) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
        time.sleep(millis / 3000 if stagger is None else stagger)  # some request always in flight
    try:
        yield failures
    finally:
        done.set()
        for thread in threads:
            thread.join(60)


def test_requests_longer_than_any_fixed_drain_survive_a_switch(host: HostEnv) -> None:
    host.drain = None  # the manifest's drain_seconds (default 30 s) bound the wait
    one, two = host.bundle("v1"), host.bundle("v2")
    assert host.deploy(one)[0] == 0
    with long_requests(host, 2500, seconds=60) as failures:
        time.sleep(0.5)
        code, out, err = host.deploy(two)
    assert code == 0, err
    assert "drain: in-flight requests done after" in out
    assert failures == []


def test_a_revert_drains_the_new_release_before_stopping_it(host: HostEnv) -> None:
    host.watch = 2.0
    good, sick = host.bundle("v1"), host.bundle("v2", markers=["standin-unhealthy-after-public"])
    assert host.deploy(good)[0] == 0
    with long_requests(host, 1500, seconds=60) as failures:
        time.sleep(0.2)
        code, out, err = host.deploy(sick)
    assert code == exit_codes.FAILED, out + err
    assert "step 'watch' failed" in err
    assert "revert: in-flight requests done after" in out
    assert failures == []  # the requests the new release had in flight were answered
    assert host.current() == bundle_release_id(good)


def test_the_drain_is_bounded_by_the_manifest_drain_seconds(host: HostEnv) -> None:
    host.drain = None
    one, two = host.bundle("v1", drain_seconds=0.5), host.bundle("v2")
    assert host.deploy(one)[0] == 0
    with long_requests(host, 6000, seconds=0.1, stagger=0.05):  # one request each, 6 s long
        code, out, err = host.deploy(two)
    assert code == 0, err
    assert "still busy after the 0.5s drain: stopping anyway" in out, out


def test_a_bundle_without_verify_listener_is_verified_after_the_switch(host: HostEnv) -> None:
    one, legacy = host.bundle("v1"), host.bundle("v2", legacy_nginx=True)
    assert host.deploy(one)[0] == 0
    code, out, err = host.deploy(legacy)
    assert code == 0, err
    assert "(no verify listener)" in out
    assert host.get("saas") == (200, f"{bundle_release_id(legacy)} saas\n")
