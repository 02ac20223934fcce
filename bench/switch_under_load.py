"""Release switches under load: requests through the real nginx while the host agent switches.

    venv/bin/python bench/switch_under_load.py [--only NAME ...] [--workers 6] [--switches 4]

Prints exactly one line per scenario, ``scenario NAME: N requests, F failed, p99 X ms``:

- ``good``: deploys and rollbacks of healthy releases (one request per connection);
- ``bad-through-nginx``: deploys of a release healthy to its own check but 502 through nginx
  (verify listener must refuse it before any public request);
- ``dies-after-health``: a release that passes every check, then dies 0.3 s after its first
  public request; a second line gives when the last failure came, relative to the death
  (goal: F = 0, or failures stop within 3 s);
- ``keepalive``: clients that reuse their connections (checking for a server close before each
  reuse, as urllib3 and browsers do), through deploys; a second line splits the failures;
- ``long-requests``: 8 s and 12 s requests in flight through deploys.

Set-up as in tests/host: app "containers" are local processes (LocalProcessRuntime stands in for
Docker, which has no engine here), nginx and the agent are real, the nginx config is the tests'
Host-routed one with the verify listener. Bounded: every load has a time cap; cleans up after itself.
"""

from __future__ import annotations

import argparse
import http.client
import select
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.host.fixtures import APPS, HostEnv, Load, LoadResult, hostname, make_host
from tests.support.tools import find_tool

SCENARIOS = ("good", "bad-through-nginx", "dies-after-health", "keepalive", "long-requests")


def line(name: str, result: LoadResult) -> str:
    p99 = result.percentile(0.99) * 1000
    return f"scenario {name}: {result.total} requests, {len(result.failures)} failed, p99 {p99:.0f} ms"


def deploy(host: HostEnv, tag: str, **bundle: object) -> int:
    code, _, err = host.agent("deploy", str(host.bundle(tag, **bundle)))  # type: ignore[arg-type]
    if code not in (0, 1):
        print(f"  deploy {tag}: exit {code}: {err.strip()[-300:]}", file=sys.stderr)
    return code


def good(host: HostEnv, args: argparse.Namespace) -> list[str]:
    with Load(host.port, workers=args.workers, max_seconds=120) as load:
        time.sleep(0.5)
        for index in range(args.switches):
            deploy(host, f"good{index}")
            host.agent("rollback")
            host.agent("rollback")  # back to the newest: a rollback is the same switch
        time.sleep(0.5)
    return [line("good", load.result)]


def bad_through_nginx(host: HostEnv, args: argparse.Namespace) -> list[str]:
    with Load(host.port, workers=args.workers, max_seconds=120) as load:
        time.sleep(0.5)
        refused = sum(
            deploy(host, f"bad{index}", markers=["standin-fail-through-nginx"]) == 1
            for index in range(args.switches)
        )
        time.sleep(0.5)
    return [
        line("bad-through-nginx", load.result),
        f"  bad-through-nginx: {refused} of {args.switches} refused",
    ]


def dies_after_health(host: HostEnv, args: argparse.Namespace) -> list[str]:
    host.watch = 3.0
    with Load(host.port, workers=args.workers, max_seconds=120) as load:
        time.sleep(0.5)
        deploy(host, "dies", die_after_public=0.3)
        time.sleep(1.0)
    deaths = [float(p.read_text()) for p in host.run.glob("*.died")]
    died = min(deaths) if deaths else None
    after = [t - died for t in load.result.failure_times] if died is not None else []
    last = f"the last failure {max(after):.2f} s after the death" if after else "no request failed after it"
    when = "no death recorded (it did not die?)" if died is None else f"the release died; {last}"
    return [line("dies-after-health", load.result), f"  dies-after-health: {when} (goal: within 3 s)"]


class KeepAliveClient:
    """One persistent connection per worker, reused; before each reuse, a closed (readable)
    socket is replaced, as urllib3's is_connection_dropped does. No retries."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn: http.client.HTTPConnection | None = None

    def get(self, host: str) -> tuple[bool, str]:
        reused = self.conn is not None and not self._dropped()
        if not reused:
            self._close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        assert self.conn is not None
        try:
            self.conn.request("GET", "/", headers={"Host": host})
            response = self.conn.getresponse()
            response.read()
            return response.status == 200, f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            self._close()
            return False, f"{'reused' if reused else 'new'} connection: {type(exc).__name__}"

    def _dropped(self) -> bool:
        sock = self.conn.sock if self.conn is not None else None
        return sock is None or bool(select.select([sock], [], [], 0)[0])

    def _close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


def keepalive_load(
    port: int, workers: int, stop: threading.Event, result: LoadResult
) -> list[threading.Thread]:
    lock = threading.Lock()
    hosts = [hostname(s) for s, _ in APPS]

    def work(index: int) -> None:
        client, deadline = KeepAliveClient(port), time.monotonic() + 120
        while not stop.is_set() and time.monotonic() < deadline:
            started = time.monotonic()
            ok, what = client.get(hosts[index % len(hosts)])
            index += 1
            with lock:
                result.total += 1
                result.latencies.append(time.monotonic() - started)
                if not ok:
                    result.failures.append(what)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    return threads


def keepalive(host: HostEnv, args: argparse.Namespace) -> list[str]:
    result, stop = LoadResult(), threading.Event()
    threads = keepalive_load(host.port, args.workers, stop, result)
    time.sleep(0.5)
    for index in range(args.switches):
        deploy(host, f"ka{index}")
    time.sleep(0.5)
    stop.set()
    for thread in threads:
        thread.join(30)
    kinds = sorted({f: result.failures.count(f) for f in result.failures}.items())
    split = ", ".join(f"{n}x {kind}" for kind, n in kinds) or "none"
    return [line("keepalive", result), f"  keepalive failures: {split}"]


def long_requests(host: HostEnv, args: argparse.Namespace) -> list[str]:
    result, lock = LoadResult(), threading.Lock()

    def one(millis: int) -> None:
        started = time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=60)
        try:
            conn.request("GET", f"/sleep/{millis}", headers={"Host": hostname("api"), "Connection": "close"})
            response = conn.getresponse()
            response.read()
            failure = None if response.status == 200 else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            failure = type(exc).__name__
        finally:
            conn.close()
        with lock:
            result.total += 1
            result.latencies.append(time.monotonic() - started)
            if failure:
                result.failures.append(failure)

    threads = []
    for index in range(args.switches):
        batch = [threading.Thread(target=one, args=(ms,)) for ms in (8000, 12000) * 2]
        for thread in batch:
            thread.start()
        threads += batch
        time.sleep(0.5)
        deploy(host, f"long{index}")
    for thread in threads:
        thread.join(60)
    return [line("long-requests", result)]


RUNNERS: dict[str, Callable[[HostEnv, argparse.Namespace], list[str]]] = {
    "good": good,
    "bad-through-nginx": bad_through_nginx,
    "dies-after-health": dies_after_health,
    "keepalive": keepalive,
    "long-requests": long_requests,
}


def run_scenario(name: str, nginx: str, args: argparse.Namespace) -> list[str]:
    root = Path(tempfile.mkdtemp(prefix=f"bankflow-bench-{name}-"))
    host = make_host(root, nginx)
    host.drain = None  # the manifest's drain_seconds: the drain waits for in-flight requests
    host.watch = 1.0
    host.health_timeout = 10.0
    try:
        if deploy(host, "first") != 0:
            return [f"scenario {name}: first deploy failed"]
        return RUNNERS[name](host, args)
    finally:
        host.runtime.shutdown()
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--switches", type=int, default=4, help="deploys per scenario")
    args = parser.parse_args()
    nginx = find_tool("nginx")
    if nginx is None:
        print("nginx is not installed: run scripts/install-test-tools", file=sys.stderr)
        return 2
    failed = False
    for name in args.only:
        lines = run_scenario(name, nginx, args)
        print("\n".join(lines), flush=True)
        failed |= " 0 failed" not in lines[0] and name != "dies-after-health"
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
