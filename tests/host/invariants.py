"""What must hold on a host after ANY command, whatever happened to the one before it.

Shared by the fault tests: the state names what nginx serves (and nginx really serves it), no
app project runs that nginx does not point at, no temp file or dir is left, no journal is left,
and no attempt is without an end line in the audit log.
"""

from __future__ import annotations

import json
import time

from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.contract.release import APP_PROJECT_PREFIX
from bankflow_infra.contract.upstreams import parse_served
from bankflow_infra.host import journal
from tests.host.fixtures import HostEnv


def served(host: HostEnv) -> tuple[str, str | None] | None:
    return parse_served((host.live / "upstreams.conf").read_text())


def assert_converged(host: HostEnv) -> str:
    """All the invariants; returns the app release that serves."""
    current = json.loads((host.home / "state" / "current.json").read_text())
    assert served(host) == (current["release"], current["app_release"]), "state != the live include"
    # `nginx -s reload` returns before the new workers serve: give a reload a moment to land
    deadline = time.monotonic() + 3
    status, body = host.get("site")
    while (status, body.split()[0]) != (200, current["app_release"]) and time.monotonic() < deadline:
        time.sleep(0.05)
        status, body = host.get("site")
    assert (status, body.split()[0]) == (200, current["app_release"]), (
        "nginx does not serve the state's release"
    )
    apps = [p for p in host.runtime.projects() if p.startswith(APP_PROJECT_PREFIX)]
    assert apps == [f"{APP_PROJECT_PREFIX}{current['app_release']}"], f"orphan app projects: {apps}"
    temp = [str(p) for p in host.home.rglob("*") if ".tmp-" in p.name or ".incoming-" in p.name]
    assert temp == [], f"temp files left: {temp}"
    assert not (host.home / "state" / "intent.json").exists()
    assert journal.open_attempts(HostPaths(host.home)) == []
    return str(current["app_release"])


def killed_attempt_closed(host: HostEnv, pid: int) -> dict[str, object]:
    """The end line of the attempt a killed process (``pid``) started: it must exist."""
    lines = host.audit()
    started = [line for line in lines if line.get("pid") == pid and line["result"] == "started"]
    assert started, f"no 'started' audit line of pid {pid}"
    attempt = started[-1]["attempt"]
    ends = [line for line in lines if line.get("attempt") == attempt and line["result"] != "started"]
    assert ends, f"no end line for the killed attempt {attempt}"
    return ends[-1]
