"""Shared set-up for the host agent tests and ``bench/switch_under_load.py``.

Builds small bundle dirs by hand (a ``release.json`` fixture, not the renderer's output) and a
minimal nginx http config that ``include``s the agent's LIVE upstreams.conf and routes by Host
to the three upstreams -- the renderer's config needs container paths and TLS, so the
switch tests use this stand-alone one. Also a bounded load generator.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bankflow_infra.host import agent
from bankflow_infra.host.verify import SNIConnection
from tests.host.standin import LocalProcessRuntime
from tests.support.ports import free_port
from tests.support.tools import REPO

APPS = (("site", 3000), ("saas", 3001), ("api", 8080))
NGINX_IMAGE = "nginx:1.28-alpine"
POSTGRES_IMAGE = "ghcr.io/bankflow/postgres:15"
REDIS_IMAGE = "redis:7-alpine"
DOMAIN = "bankflow.test"


def hostname(service: str) -> str:
    return f"{service}.{DOMAIN}"


def nginx_conf(live: Path, run: Path, port: int, version: str, verify_port: int | None = None) -> str:
    """Minimal http config: Host-routed proxying to the upstreams of the live include, and (with
    ``verify_port``) the loopback verify listener proxying to the candidate upstreams, as the
    rendered config has them (render/nginx.py)."""
    tmp = run / "nginx-tmp"
    servers = []
    listeners = [(port, "public", "")] + ([(verify_port, "verify", "_candidate")] if verify_port else [])
    for listen, kind, suffix in listeners:
        for index, (service, _) in enumerate(APPS):
            # reuseport (once per address): a second nginx master can bind beside this one, as a
            # new nginx container does beside the old one in the port holder's namespace
            options = " reuseport" if index == 0 else ""
            servers.append(f"""
    server {{
        listen 127.0.0.1:{listen}{options};
        server_name {hostname(service)};
        location / {{
            proxy_pass http://bankflow_{service}{suffix};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Bankflow-Proxy nginx;
            proxy_set_header X-Bankflow-Listener {kind};
            proxy_next_upstream error timeout;
        }}
    }}""")
    candidate = f"    include {live}/upstreams-candidate.conf;\n" if verify_port else ""
    return f"""# test nginx config, version {version}
worker_processes 2;
worker_shutdown_timeout 30s;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {live}/upstreams.conf;
{candidate}{"".join(servers)}
}}
"""


@dataclass
class HostEnv:
    """One test host: BANKFLOW_HOME, the stand-in runtime, the nginx port."""

    home: Path
    run: Path
    bundles: Path
    port: int
    runtime: LocalProcessRuntime
    verify_port: int = 0
    verify_url: str = ""
    candidate_url: str = ""
    # Upper bounds, not waits: a healthy stand-in answers at once. 10 s, not 3: with the suite on
    # two workers (PostgreSQL restores beside it) a first probe can take seconds on 2 cores.
    health_timeout: float = 10.0
    drain: float | None = 10.0  # an upper bound: the drain ends when nginx's old workers are done
    watch: float = 0.2
    counter: Iterator[int] = field(default_factory=lambda: iter(range(1, 10_000)))

    @property
    def live(self) -> Path:
        return self.home / "nginx"

    def bundle(
        self,
        tag: str,
        *,
        nginx_version: str = "1",
        nginx_image: str = NGINX_IMAGE,
        postgres: str = "pg-1",
        redis: str = "redis-1",
        unhealthy: Sequence[str] = (),
        markers: Sequence[str] = (),
        registry_username: str | None = None,
        legacy_nginx: bool = False,
        die_after_public: float | None = None,
        drain_seconds: float | None = None,
    ) -> Path:
        """A bundle dir; ``tag`` changes the app images (so the apps' fingerprint)."""
        path = self.bundles / f"bundle-{next(self.counter)}"
        (path / "compose").mkdir(parents=True)
        (path / "nginx").mkdir()
        (path / "tls").mkdir()
        (path / "secrets").mkdir(mode=0o700)
        manifest = {
            "schema": 1,
            "stack": "test",
            "environment": "staging",
            "project": "bankflow",
            "app_services": [
                {
                    "name": s,
                    "port": p,
                    "health_path": "/health",
                    "upstream": f"bankflow_{s}",
                    "image": f"ghcr.io/bankflow/bankflow-{s}:{tag}",
                    "hostnames": [hostname(s)],
                    **({"drain_seconds": drain_seconds} if drain_seconds is not None else {}),
                }
                for s, p in APPS
            ],
            "base_services": ["postgres", "redis", "nginx"],
            "migrate": {"service": "api", "command": ["/app/migrate"]},
            "registry": "ghcr.io/bankflow",
            "registry_username": registry_username,
            "service_digests": {
                **{s: f"{s}-{tag}" for s, _ in APPS},
                "postgres": postgres,
                "redis": redis,
                "nginx": f"nginx-{nginx_version}",
            },
            "compose": {"base": "compose/base.yaml", "app": "compose/app.yaml"},
            "nginx_dir": "nginx",
            "upstreams_file": "upstreams.conf",
        }
        (path / "release.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        (path / "compose" / "base.yaml").write_text(base_compose(postgres, redis, nginx_image))
        (path / "compose" / "app.yaml").write_text(f"# app services, tag {tag}\n")
        (path / "nginx" / "nginx.conf").write_text(
            nginx_conf(
                self.live, self.run, self.port, nginx_version, None if legacy_nginx else self.verify_port
            )
        )
        (path / "nginx" / "upstreams.conf").write_text(placeholder_upstreams(""))
        if not legacy_nginx:
            (path / "nginx" / "upstreams-candidate.conf").write_text(placeholder_upstreams("_candidate"))
        (path / "tls" / "origin.pem").write_text("-----BEGIN CERTIFICATE-----\ntest\n")
        for name, text in (
            ("app.env", "JWT_SECRET=test-secret-value\n"),
            ("postgres.env", "POSTGRES_PASSWORD=pw\n"),
        ):
            fd = os.open(path / "secrets" / name, os.O_WRONLY | os.O_CREAT, 0o600)
            os.write(fd, text.encode())
            os.close(fd)
        if registry_username:
            (path / "secrets" / "registry-password").write_text("registry-token\n")
        if unhealthy:
            (path / "standin-unhealthy").write_text("\n".join(unhealthy))
        for marker in markers:
            (path / marker).write_text("1")
        if die_after_public is not None:
            (path / "standin-die-after-public").write_text(str(die_after_public))
        return path

    def switch_options(self) -> list[str]:
        return [
            "--verify-url",
            self.verify_url or f"http://127.0.0.1:{self.port}",
            "--health-timeout",
            str(self.health_timeout),
            *(["--drain", str(self.drain)] if self.drain is not None else []),
            "--settle",
            "0.2",
            "--verify-timeout",
            "10",
            "--candidate-url",
            self.candidate_url or f"http://127.0.0.1:{self.verify_port}",
            "--watch",
            str(self.watch),
        ]

    def agent(self, *args: str) -> tuple[int, str, str]:
        """Run the agent in-process against this host; (exit code, stdout, stderr)."""
        out, err = io.StringIO(), io.StringIO()
        argv = ["--home", str(self.home), "--actor", "test", *args]
        if args and args[0] in ("deploy", "rollback", "receive", "switch-staged"):
            argv += self.switch_options()
        code = agent.main(argv, runtime=self.runtime, out=out, err=err)
        return code, out.getvalue(), err.getvalue()

    def deploy(self, bundle: Path) -> tuple[int, str, str]:
        return self.agent("deploy", str(bundle))

    def spawn(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """The agent in a child process (``tests/host/agent_child.py``), for the fault tests."""
        argv = [sys.executable, "-m", "tests.host.agent_child", str(self.run), self.runtime.nginx]
        argv += [str(self.runtime.nginx_conf), "--", "--home", str(self.home), "--actor", "test", *args]
        if args and args[0] in ("deploy", "rollback", "receive", "switch-staged"):
            argv += self.switch_options()
        return subprocess.Popen(
            argv,
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def audit(self) -> list[dict[str, object]]:
        path = self.home / "state" / "audit.log"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def current(self) -> str | None:
        path = self.home / "state" / "current.json"
        return str(json.loads(path.read_text())["release"]) if path.exists() else None

    def get(self, service: str, path: str = "/") -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", path, headers={"Host": hostname(service), "Connection": "close"})
            response = conn.getresponse()
            return response.status, response.read().decode()
        finally:
            conn.close()


def base_compose(postgres: str, redis: str, nginx_image: str) -> str:
    """The base compose file as far as the stand-in reads it: each service's definition and image
    (JSON is YAML). ``postgres``/``redis`` also change the definition, as a real change would."""
    services = {
        "postgres": {"image": POSTGRES_IMAGE, "environment": {"FIXTURE_VERSION": postgres}},
        "redis": {"image": REDIS_IMAGE, "environment": {"FIXTURE_VERSION": redis}},
        "nginx": {"image": nginx_image, "labels": {"com.bankflow.service-digest": "files change this"}},
    }
    return json.dumps({"name": "bankflow", "services": services}, indent=2) + "\n"


def placeholder_upstreams(suffix: str) -> str:
    """What a bundle ships before the agent's first switch: nothing listens there (502)."""
    blocks = [f"upstream bankflow_{s}{suffix} {{ server 127.0.0.1:9 max_fails=0; }}" for s, _ in APPS]
    return "# placeholder until the first switch\n" + "\n".join(blocks) + "\n"


def make_host(root: Path, nginx: str) -> HostEnv:
    home, run, bundles = root / "home", root / "run", root / "bundles"
    for path in (home, run / "nginx-tmp", bundles):
        path.mkdir(parents=True)
    runtime = LocalProcessRuntime(run, nginx, home / "nginx" / "nginx.conf")
    return HostEnv(home, run, bundles, free_port(), runtime, verify_port=free_port())


# --------------------------------------------------------------------------- load


@dataclass
class LoadResult:
    total: int = 0
    failures: list[str] = field(default_factory=list)
    failure_times: list[float] = field(default_factory=list)  # wall clock (time.time) of each
    failure_started: list[float] = field(default_factory=list)  # when each failed request began
    latencies: list[float] = field(default_factory=list)
    releases: Counter[str] = field(default_factory=Counter)

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * p))] if ordered else 0.0


class Load:
    """Continuous GETs through nginx from a thread pool; bounded by time and request count.

    One connection per request (``Connection: close``): a client reusing a keepalive connection
    that an old nginx worker closes on graceful shutdown sees a reset that real clients retry;
    counting that would measure the client, not the switch.
    """

    def __init__(
        self,
        port: int,
        workers: int = 6,
        max_seconds: float = 90.0,
        max_requests: int = 300_000,
        hosts: Sequence[str] = (),
        tls: bool = False,
    ):
        self.port = port
        self.hosts = tuple(hosts) or tuple(hostname(s) for s, _ in APPS)
        self.tls = tls
        self.workers = workers
        self.max_seconds = max_seconds
        self.max_requests = max_requests
        self.stop_event = threading.Event()
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _connect(self, host: str) -> http.client.HTTPConnection:
        if not self.tls:
            return http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        # loopback with the public name as SNI, as the agent's verify step does
        return SNIConnection("127.0.0.1", self.port, host, 10)

    def _one(self, service: str) -> None:
        started, began = time.monotonic(), time.time()
        conn = self._connect(service)
        try:
            conn.request("GET", "/", headers={"Host": service, "Connection": "close"})
            response = conn.getresponse()
            body = response.read().decode()
            failure = None if response.status == 200 else f"{service}: HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            body, failure = "", f"{service}: {type(exc).__name__}: {exc}"
        finally:
            conn.close()
        with self._lock:
            self.result.total += 1
            self.result.latencies.append(time.monotonic() - started)
            if failure:
                self.result.failures.append(failure)
                self.result.failure_times.append(time.time())
                self.result.failure_started.append(began)
            else:
                self.result.releases[body.split()[0]] += 1

    def _worker(self, index: int) -> None:
        deadline = time.monotonic() + self.max_seconds
        services = self.hosts
        n = index
        while not self.stop_event.is_set() and time.monotonic() < deadline:
            with self._lock:
                if self.result.total >= self.max_requests:
                    return
            self._one(services[n % len(services)])
            n += 1

    def __enter__(self) -> Load:
        self._pool = ThreadPoolExecutor(self.workers)
        for index in range(self.workers):
            self._pool.submit(self._worker, index)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop_event.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
