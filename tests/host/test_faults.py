"""The switch under faults: the agent SIGKILLed at every named step and at random points under
load, then ONE more command; after it the host has converged (``invariants.py``): the state
names what nginx serves, no orphan app project, no temp dir, an audit line for the killed
attempt.

The agent runs in a child process (``agent_child.py``: the stand-in runtime, local processes
for containers, the real nginx). One host per test, shared by all its kills, to keep the time
reasonable.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time

import pytest

from bankflow_infra.contract import exit_codes
from bankflow_infra.host.manifest import bundle_release_id
from tests.host.fixtures import HostEnv, Load
from tests.host.invariants import assert_converged, killed_attempt_closed

# Tests that measure failed requests under load share one worker: two of them at once on two
# cores starve each other's nginx and stand-ins, and a timing failure would hide a real one.
pytestmark = pytest.mark.xdist_group("under-load")

# Every step a deploy journals, in order (switch.py, switch_finish.py). A kill at a step lands
# after its journal write, before the step acts.
DEPLOY_STEPS = (
    "install",
    "validate",
    "pull",
    "migrate",
    "start",
    "wait-healthy",
    "stage",
    "nginx-test",
    "reload",
    "verify",
    "public-switch",
    "watch",
    "record",
    "drain",
    "stop-old",
)


def _killed_deploy(host: HostEnv, tag: str, step: str) -> int:
    child = host.spawn("deploy", str(host.bundle(tag)), env={"FAULT_KILL_AT": step})
    out, err = child.communicate(timeout=60)
    assert child.returncode == -signal.SIGKILL, (step, out.decode(), err.decode())
    return child.pid


def test_killed_at_every_named_step_the_next_command_converges(host: HostEnv) -> None:
    host.watch = 0.2
    first = host.bundle("v0")
    assert host.deploy(first)[0] == 0
    for index, step in enumerate(DEPLOY_STEPS):
        pid = _killed_deploy(host, f"v{index + 1}", step)
        code, _, err = host.agent("status")
        assert code == 0, err
        assert_converged(host)
        end = killed_attempt_closed(host, pid)
        assert end["result"] == "interrupted"
        assert f"interrupted at step '{step}'" in str(end["message"]), end
    # and the host still deploys
    last = host.bundle("final")
    code, _, err = host.deploy(last)
    assert code == 0, err
    assert assert_converged(host) == bundle_release_id(last)


def test_killed_at_random_points_under_load_fails_no_request(host: HostEnv) -> None:
    host.watch = 0.3
    rng = random.Random(15)  # noqa: S311 - reproducible kill points, not a secret
    assert host.deploy(host.bundle("v0"))[0] == 0
    kills = 0
    with Load(host.port, workers=4, max_seconds=90) as load:
        for index in range(6):
            child = host.spawn("deploy", str(host.bundle(f"r{index}")))
            # The random point is measured from the agent's start: a kill while the interpreter
            # is still loading (slow under load) tests nothing and leaves no attempt to check.
            _wait_until_started(host, child)
            time.sleep(rng.uniform(0.1, 2.3))
            if child.poll() is None:
                child.kill()
                kills += 1
            child.communicate(timeout=30)
            code, _, err = host.agent("status")
            assert code == 0, err
            assert_converged(host)
            if child.returncode == -signal.SIGKILL:
                assert killed_attempt_closed(host, child.pid)["result"] in ("interrupted", "ok", "failed")
    assert kills >= 3  # most of the random points landed inside a switch
    assert load.result.failures == []
    assert load.result.total > 100


def _wait_until_started(host: HostEnv, child: subprocess.Popen[bytes], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while child.poll() is None and time.monotonic() < deadline:
        if any(line.get("pid") == child.pid and line["result"] == "started" for line in host.audit()):
            return
        time.sleep(0.02)


@pytest.mark.parametrize("step", ["public-switch", "record"])
def test_a_rollback_after_a_kill_is_never_already_current(host: HostEnv, step: str) -> None:
    """The agent blind after a crash (issue 15, 2): nginx served the new release, the state named
    the old one, and `rollback <old>` said "already current"."""
    host.watch = 0.2
    old = host.bundle("v1")
    assert host.deploy(old)[0] == 0
    _killed_deploy(host, "v2", step)
    code, out, err = host.agent("rollback", bundle_release_id(old))
    assert code == exit_codes.OK, out + err
    assert "already current" not in out or assert_converged(host) == bundle_release_id(old)
    assert assert_converged(host) == bundle_release_id(old)
