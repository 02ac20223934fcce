"""nginx replaced under load: the agent's replacement beside the old one vs stop-then-start.

    venv/bin/python bench/nginx_replace.py [--workers 6] [--replacements 5]

Prints one line per scenario, ``scenario NAME: N requests, F failed, p99 X ms, ...``:

- ``beside``: deploys whose only change is a new nginx image; the agent starts a second nginx
  master beside the serving one (both ``reuseport``), checks it, then SIGQUITs the old one
  (``host/switch.py`` replace-nginx; the stand-in's ``replace_nginx``). Goal: F = 0. Also the
  median time of one such deploy.
- ``stop-start``: what ``docker compose up -d nginx`` does (stop the old container, then start
  the new one), for comparison: the old nginx SIGQUIT and waited for, then a new master started.
  Also the gap: from the first to the last failed request of each replacement (median).

Set-up as in tests/host: app "containers" are local processes (LocalProcessRuntime stands in for
Docker, which has no engine here), nginx and the agent are real. Loopback only; every load has a
time cap; cleans up after itself. This machine's net.ipv4.tcp_migrate_req is printed too: the
port holder sets it to 1 in production (render/edge_ports.py); here it is whatever the host has.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.host.fixtures import HostEnv, Load, LoadResult, make_host
from tests.support.tools import find_tool


def summary(name: str, result: LoadResult, extra: str) -> str:
    p99 = result.percentile(0.99) * 1000
    failed = len(result.failures)
    return f"scenario {name}: {result.total} requests, {failed} failed, p99 {p99:.0f} ms, {extra}"


def beside(host: HostEnv, args: argparse.Namespace) -> str:
    durations = []
    with Load(host.port, workers=args.workers, max_seconds=180) as load:
        time.sleep(0.5)
        for index in range(args.replacements):
            started = time.monotonic()
            bundle = host.bundle("v1", nginx_image=f"nginx:1.28.{index + 1}")  # only nginx's image changes
            code, out, err = host.agent("deploy", str(bundle))
            durations.append(time.monotonic() - started)
            if code != 0 or "replace-nginx:" not in out:
                print(f"  deploy {index}: exit {code}: {err.strip()[-300:]}", file=sys.stderr)
        time.sleep(0.5)
    for failure in sorted(set(load.result.failures))[:5]:  # what failed, if anything
        print(f"  beside: {failure}", file=sys.stderr)
    return summary("beside", load.result, f"median deploy {statistics.median(durations):.2f} s")


def stop_start(host: HostEnv, args: argparse.Namespace) -> str:
    gaps = []
    runtime = host.runtime
    with Load(host.port, workers=args.workers, max_seconds=180) as load:
        time.sleep(0.5)
        for _ in range(args.replacements):
            before = len(load.result.failure_times)
            old = runtime._nginx_pid()
            assert old is not None
            os.kill(old, signal.SIGQUIT)  # docker stop: SIGQUIT, wait for the exit
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and Path(f"/proc/{old}").exists():
                if runtime.nginx_proc is not None:
                    runtime.nginx_proc.poll()
                time.sleep(0.01)
            runtime.nginx_proc = None
            runtime._start_nginx()  # docker start of the new container
            time.sleep(1.0)
            times = load.result.failure_times[before:]
            gaps.append(times[-1] - times[0] if len(times) > 1 else 0.0)
        time.sleep(0.5)
    return summary("stop-start", load.result, f"median gap {statistics.median(gaps) * 1000:.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--replacements", type=int, default=5)
    args = parser.parse_args()
    nginx = find_tool("nginx")
    if nginx is None:
        print("nginx not found", file=sys.stderr)
        return 2
    migrate = Path("/proc/sys/net/ipv4/tcp_migrate_req")
    print(f"net.ipv4.tcp_migrate_req here: {migrate.read_text().strip() if migrate.exists() else 'absent'}")
    for scenario in (beside, stop_start):
        root = Path(tempfile.mkdtemp(prefix="bankflow-bench-nginx-"))
        host = make_host(root, nginx)
        try:
            code, _, err = host.agent("deploy", str(host.bundle("v1")))
            if code != 0:
                print(f"first deploy failed: {err.strip()[-300:]}", file=sys.stderr)
                return 1
            print(scenario(host, args), flush=True)
        finally:
            host.runtime.shutdown()
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
