"""Release switches under load: requests through the real nginx while the host agent switches.

    venv/bin/python bench/switch_under_load.py [--switches 5] [--workers 8] [--max-seconds 120]

Same set-up as tests/host/test_zero_downtime.py: the app "containers" are local processes
(LocalProcessRuntime stands in for Docker, which has no engine on this machine), nginx and the
agent are real. Prints total requests, failures, p50/p99 latency and switches done. Bounded:
it stops after the switches plus a short tail, or at --max-seconds, and cleans up after itself.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.host.fixtures import Load, make_host
from tests.support.tools import find_tool


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switches", type=int, default=5, help="deploys after the first (then one rollback)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    args = parser.parse_args()
    nginx = find_tool("nginx")
    if nginx is None:
        print("nginx is not installed: run scripts/install-test-tools", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="bankflow-bench-"))
    host = make_host(root, nginx)
    host.drain = 1.0
    switches = 0
    try:
        bundles = [host.bundle(f"v{i}") for i in range(args.switches + 1)]
        if host.deploy(bundles[0])[0] != 0:
            print("first deploy failed", file=sys.stderr)
            return 1
        started = time.monotonic()
        with Load(host.port, workers=args.workers, max_seconds=args.max_seconds) as load:
            time.sleep(0.5)
            for bundle in bundles[1:]:
                if time.monotonic() - started > args.max_seconds:
                    break
                code, _, err = host.deploy(bundle)
                if code != 0:
                    print(err.strip(), file=sys.stderr)
                    break
                switches += 1
            else:
                if host.agent("rollback")[0] == 0:
                    switches += 1
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        result = load.result
        print(f"switches done:   {switches} ({args.switches} deploys + 1 rollback planned)")
        print(
            f"total requests:  {result.total} in {elapsed:.1f}s ({result.total / elapsed:.0f}/s, "
            f"{args.workers} workers)"
        )
        print(f"failed requests: {len(result.failures)}")
        for failure in result.failures[:5]:
            print(f"  {failure}")
        print(f"latency p50:     {result.percentile(0.50) * 1000:.1f} ms")
        print(f"latency p99:     {result.percentile(0.99) * 1000:.1f} ms")
        print(f"releases served: {len(result.releases)}")
        return 0 if not result.failures else 1
    finally:
        host.runtime.shutdown()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
