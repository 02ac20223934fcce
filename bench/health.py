"""How concurrent are the health probes? Run: ``venv/bin/python -m bench.health`` (repo root).

Starts local HTTPS servers on 127.0.0.1 that answer after different delays, probes them the
way ``bankflow-infra health --origin`` does (pinned certificate, Host/SNI = hostname), and
prints the sum of the individual latencies over the wall time (about sum/slowest when concurrent,
about 1 when sequential) and the wall time over the slowest probe (about 1 when concurrent). Needs the
``openssl`` CLI. A measurement, not a test: the test suite checks overlap by behaviour instead.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

from bankflow_infra.contract.outputs import parse_outputs
from bankflow_infra.ops.probes import (
    Policy,
    Probe,
    ProbeResult,
    pinned_context,
    plan_probes,
    run_async,
    run_rounds,
)
from tests.support.https import Behaviour, LocalHttps, hostnames, make_certs
from tests.support.outputs import outputs_document

DELAYS = (0.2, 0.4, 0.8)  # seconds, one per service: sum 1.4 s, slowest 0.8 s
EXTRA_PROBES = 12  # a second run: many probes of the same services, to see it scale


def _measure(probes: tuple[Probe, ...], pem: str) -> tuple[tuple[ProbeResult, ...], float]:
    policy = Policy(timeout=5.0, deadline=20.0, attempts=1)
    started = time.monotonic()
    results, _rounds = run_async(run_rounds(probes, pinned_context(pem), policy, pinned=True))
    return results, time.monotonic() - started


def _report(title: str, results: tuple[ProbeResult, ...], wall: float) -> None:
    latencies = [r.latency_ms or 0.0 for r in results]
    total, slowest = sum(latencies) / 1000, max(latencies) / 1000
    healthy = sum(r.healthy for r in results)
    print(f"{title}: {len(results)} probes ({healthy} healthy)")
    print(f"  sum of latencies {total:.3f} s, slowest {slowest:.3f} s, wall {wall:.3f} s")
    # Concurrent: wall ~ slowest, so sum/wall ~ sum/slowest. Sequential: wall ~ sum.
    print(f"  sum/wall = {total / wall:.2f} (concurrent: ~{total / slowest:.2f}; sequential: ~1)")
    print(f"  wall/slowest = {wall / slowest:.2f} (concurrent: ~1; sequential: ~{total / slowest:.2f})")


def main() -> int:
    openssl = shutil.which("openssl")
    if openssl is None:
        print("bench/health: the openssl CLI is needed to make the test certificates", file=sys.stderr)
        return 2
    names = hostnames()
    with tempfile.TemporaryDirectory() as directory:
        certs = make_certs(openssl, Path(directory), names)
        outputs = parse_outputs("staging", outputs_document(origin_certificate=certs.origin.pem))
        behaviours = {host: Behaviour(delay=delay) for host, delay in zip(names, DELAYS, strict=True)}
        with LocalHttps(certs.origin, behaviours) as server:
            resolve = {host: ("127.0.0.1", server.port) for host in names}
            probes = plan_probes(outputs, "origin", resolve)
            _report("one probe per service", *_measure(probes, certs.origin.pem))
            many = tuple(probes[i % len(probes)] for i in range(EXTRA_PROBES))
            _report("many probes", *_measure(many, certs.origin.pem))
            print(f"  most requests in flight at once on the server: {server.max_in_flight}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
