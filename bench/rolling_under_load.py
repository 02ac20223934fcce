"""Rolling deploys across three droplets under load (issue 13), on loopback.

    venv/bin/python bench/rolling_under_load.py [--workers 4] [--only good|failed]

Prints one line per scenario:
``scenario NAME: N requests, F failed, p50 X ms, p99 Y ms, roll Z s (RESULT)``

- ``good``: a roll of a healthy release over the three droplets;
- ``failed``: a roll whose release fails the health gate on droplet 2: droplet 1 goes back to
  the old release, droplet 3 never switches.

The rig is tests/host/fleet.py's (what stands in for what is said there): three stand-in
droplets with the REAL agent and REAL nginx running the rendered load-balanced config, a REAL
haproxy in front configured like DigitalOcean's load balancer (TCP, PROXY protocol, HTTP check
of the LB health listener, the contract's thresholds) with a 0.3 s check interval and timeout
instead of DigitalOcean's minimum 3 s, so the roll's waits are ~5x shorter than in production
(contract/fleet.py: drain 14 s, rejoin 8 s per droplet there). Load: HTTPS GETs through haproxy,
one connection per request, a time cap; everything stops on exit.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bankflow_infra.ops.roll import roll, roll_step
from tests.host.fleet import TIMINGS, Fleet, running_fleet
from tests.support.tools import find_tool

SCENARIOS = ("good", "failed")


def scenario(fleet: Fleet, name: str, workers: int) -> str:
    markers = {fleet.droplets[1].name: ("standin-unhealthy",)} if name == "failed" else None
    release = fleet.stage(f"{name}-v2", markers)
    targets = [d.target for d in fleet.droplets]
    with fleet.load(workers) as load:
        time.sleep(0.5)
        started = time.monotonic()
        result = roll(targets, roll_step(release), fleet.transport, timings=TIMINGS)
        took = time.monotonic() - started
        time.sleep(0.5)
    outcome = "done" if result.ok else f"stopped, put back: {', '.join(result.reverted) or 'none'}"
    stats = load.result
    return (
        f"scenario {name}: {stats.total} requests, {len(stats.failures)} failed, "
        f"p50 {stats.percentile(0.5) * 1000:.0f} ms, p99 {stats.percentile(0.99) * 1000:.0f} ms, "
        f"roll {took:.1f} s ({outcome})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--only", choices=SCENARIOS, action="append")
    args = parser.parse_args()
    found = {name: find_tool(name) for name in ("nginx", "openssl", "haproxy")}
    missing = [name for name, path in found.items() if not path]
    if missing:
        print(f"missing {', '.join(missing)} (scripts/install-test-tools)", file=sys.stderr)
        return 2
    tools = [str(path) for path in found.values()]
    for name in args.only or SCENARIOS:
        with (
            tempfile.TemporaryDirectory(prefix="bankflow-roll-bench-") as root,
            running_fleet(Path(root), *tools) as fleet,
        ):
            print(scenario(fleet, name, args.workers), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
