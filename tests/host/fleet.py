"""Three droplets behind a load balancer, on loopback (issue 13): the rig of the rolling deploy
tests and ``bench/rolling_under_load.py``.

Each "droplet" is one stand-in host (tests/host/fixtures.py: BANKFLOW_HOME, LocalProcessRuntime
standing in for Docker, a REAL nginx) running the RENDERED nginx config of a load-balanced stack
(staging's settings with ``server.count`` 3): its public 443 listener, the verify listener and the
load balancer health listener, each on this droplet's own loopback ports. In front, a REAL
haproxy configured like DigitalOcean's load balancer (contract/fleet.py): TCP pass-through to
each droplet's public listener, PROXY protocol v1 on the traffic (``send-proxy``) and on the
health checks (``check-send-proxy``, as DigitalOcean's checks do once PROXY protocol is on), an
HTTP check of ``LB_HEALTH_PATH`` on the health port, ``fall``/``rise`` = the contract's
thresholds; only the interval and timeout are shorter here (parameters; the contract's are the
defaults of the roll's waits).

What stands in for what: the droplets are one machine, so each renders its bundle with its own
ports and paths and the same tag gives each droplet a different release id. The roll request
names ONE release (the first droplet's); :class:`LocalTransport` translates it to each droplet's
own id on the way in and back on the way out. Everything else is the real agent, in-process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bankflow_infra import render
from bankflow_infra.contract.fleet import LB_HEALTH_PATH, LB_HEALTHY_THRESHOLD, LB_UNHEALTHY_THRESHOLD
from bankflow_infra.contract.release import digest_files, release_id
from bankflow_infra.contract.roll import RollTarget
from bankflow_infra.host import agent
from bankflow_infra.ops.roll import AgentAnswer, RollTimings, TargetUnreachable
from bankflow_infra.render import nginx_lb
from tests.host.fixtures import HostEnv, Load, make_host
from tests.host.rendered_nginx import loopback_nginx_params
from tests.render import helpers
from tests.support.ports import free_port

CHECK_INTERVAL_MS = 300  # DigitalOcean's minimum is 3 s (contract/fleet.py): shorter on loopback
CHECK_TIMEOUT_MS = 300
INTERVAL, TIMEOUT = CHECK_INTERVAL_MS / 1000, CHECK_TIMEOUT_MS / 1000
# the contract's formulas (contract/fleet.py) with this load balancer's shorter timings
TIMINGS = RollTimings(
    drain_wait=LB_UNHEALTHY_THRESHOLD * (INTERVAL + TIMEOUT) + 0.5,
    rejoin_wait=LB_HEALTHY_THRESHOLD * INTERVAL + 0.5,
)


@dataclass
class Droplet:
    name: str
    host: HostEnv
    params: Any  # render.NginxParams
    lb_port: int
    releases: dict[str, str] = field(default_factory=dict)  # tag -> this droplet's release id
    dead: bool = False

    @property
    def lb_url(self) -> str:
        return f"http://127.0.0.1:{self.lb_port}{LB_HEALTH_PATH}"

    @property
    def target(self) -> RollTarget:
        return RollTarget(self.name, f"127.0.0.1:{self.params.https_port}", 22, "root", "ssh-ed25519 AAAA")


def fleet_settings(count: int = 3) -> Any:
    """staging with ``count`` droplets; its VPC is loopback here: haproxy connects from 127.0.0.1,
    as DigitalOcean's load balancer connects from the stack's VPC (nginx believes PROXY headers
    only from there)."""
    settings = helpers.load_settings("staging")
    return replace(settings, server=replace(settings.server, count=count, vpc_cidr="127.0.0.0/8"))


def make_droplet(root: Path, index: int, nginx: str) -> Droplet:
    host = make_host(root / f"droplet-{index}", nginx)
    host.candidate_url = f"https://127.0.0.1:{host.verify_port}"
    lb_port = free_port()
    # the maintenance listener takes health_port + 1 (render/nginx.py)
    params = loopback_nginx_params(host, verify_port=host.verify_port)
    host.verify_url = f"https://127.0.0.1:{params.https_port}"
    host.drain = 2.0
    free_port()  # the maintenance listener's port (health + 1) is never handed out
    return Droplet(f"bankflow-staging-server-{index}", host, params, lb_port)


def render_payload(
    droplet: Droplet, tag: str, cert: helpers.OriginCert, markers: Sequence[str] = ()
) -> bytes:
    """The droplet's bundle for ``tag`` as the receive payload (what Pulumi's stage step sends)."""
    settings = fleet_settings()
    settings = replace(settings, release=replace(settings.release, tag=tag))
    saved = render.nginx.verify_port, nginx_lb.lb_health_port
    render.nginx.verify_port = lambda _params: droplet.params.verify_port  # type: ignore[assignment]
    nginx_lb.lb_health_port = lambda _params: droplet.lb_port  # type: ignore[assignment]
    try:
        bundle = render.render_bundle(
            settings, helpers.make_secrets(cert), helpers.CLOUDFLARE, cert.cert_pem, droplet.params
        )
    finally:
        render.nginx.verify_port, nginx_lb.lb_health_port = saved  # type: ignore[assignment]
    version = helpers.nginx_version(droplet.host.runtime.nginx)
    files = [(f.path, f.mode, _local(f.path, f.text, version)) for f in (*bundle.files, *bundle.secret_files)]
    files += [(marker, 0o644, "site\n" if marker == "standin-unhealthy" else "1\n") for marker in markers]
    digest = digest_files((path, mode, text.encode()) for path, mode, text in files)
    droplet.releases[tag] = release_id(digest)
    payload = {"digest": digest, "files": [{"path": p, "mode": m, "text": t} for p, m, t in files]}
    return json.dumps(payload).encode()


def _local(path: str, text: str, version: tuple[int, int, int]) -> str:
    return helpers.adapt_for_local_nginx(text, version) if path.startswith("nginx/") else text


def receive(droplet: Droplet, payload: bytes, deploy: bool = False) -> tuple[int, str, str]:
    """``receive --stdin [--deploy]`` on the droplet, the payload on stdin."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["--home", str(droplet.host.home), "--actor", "test", "receive", "--stdin"]
    if deploy:
        argv += ["--deploy", *droplet.host.switch_options()]
    code = agent.main(argv, runtime=droplet.host.runtime, out=out, err=err, stdin=io.BytesIO(payload))
    return code, out.getvalue(), err.getvalue()


def kill_droplet(droplet: Droplet) -> None:
    """The droplet dies: its nginx master and workers get SIGKILL (no graceful anything), then
    its app processes stop."""
    droplet.dead = True
    pid_file = droplet.host.run / "nginx.pid"
    master = int(pid_file.read_text().strip())
    children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True, text=True, timeout=10)
    for pid in [master, *(int(p) for p in children.stdout.split())]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    droplet.host.runtime.shutdown()


@dataclass
class LocalTransport:
    """The roll's transport over the rig: the real agent in-process per droplet; a dead droplet
    is unreachable. ``logical`` (tag -> the first droplet's release id) translates the roll's one
    release id to each droplet's own (see the module docstring)."""

    droplets: dict[str, Droplet]
    calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)

    def _aliases(self, droplet: Droplet) -> dict[str, str]:
        first = next(iter(self.droplets.values()))
        return {first.releases[tag]: own for tag, own in droplet.releases.items() if tag in first.releases}

    def agent(self, target: RollTarget, args: Sequence[str]) -> AgentAnswer:
        droplet = self.droplets[target.name]
        self.calls.append((target.name, tuple(args)))
        if droplet.dead:
            raise TargetUnreachable(f"ssh to {target.host}: Connection refused")
        aliases = self._aliases(droplet)
        argv = [aliases.get(arg, arg) for arg in args]
        if argv and argv[0] in ("drain", "undrain", "lb-health"):
            argv += ["--url", droplet.lb_url]
        code, out, err = droplet.host.agent(*argv)
        for logical, own in aliases.items():
            out, err = out.replace(own, logical), err.replace(own, logical)
        return AgentAnswer(code, out, err)


# --------------------------------------------------------------------------- the load balancer


def haproxy_config(port: int, droplets: Sequence[Droplet], run: Path, proxy_protocol: bool) -> str:
    send = " send-proxy check-send-proxy" if proxy_protocol else " check-send-proxy"
    fall, rise = LB_UNHEALTHY_THRESHOLD, LB_HEALTHY_THRESHOLD
    servers = "\n".join(
        f"    server {d.name} 127.0.0.1:{d.params.https_port} check port {d.lb_port}{send}" for d in droplets
    )
    return f"""global
    maxconn 4096
    pidfile {run}/haproxy.pid
    log stdout format iso local0
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout check {CHECK_TIMEOUT_MS}ms
frontend public
    bind 127.0.0.1:{port}
    default_backend droplets
backend droplets
    balance roundrobin
    option httpchk GET {LB_HEALTH_PATH}
    http-check expect status 200
    default-server inter {CHECK_INTERVAL_MS}ms fall {fall} rise {rise}
{servers}
"""


@dataclass
class LoadBalancer:
    port: int
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def start_haproxy(haproxy: str, droplets: Sequence[Droplet], run: Path, proxy_protocol: bool) -> LoadBalancer:
    port = free_port()
    config = run / "haproxy.cfg"
    config.write_text(haproxy_config(port, droplets, run, proxy_protocol))
    check = subprocess.run([haproxy, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    log = (run / "haproxy.log").open("wb")
    process = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return LoadBalancer(port, process)
        time.sleep(0.05)
    process.kill()
    raise AssertionError(f"haproxy did not listen on 127.0.0.1:{port}: {(run / 'haproxy.log').read_text()}")


# --------------------------------------------------------------------------- the whole rig


@dataclass
class Fleet:
    droplets: list[Droplet]
    lb: LoadBalancer
    cert: helpers.OriginCert
    transport: LocalTransport

    def stage(self, tag: str, markers: dict[str, tuple[str, ...]] | None = None) -> str:
        """Every droplet receives ``tag`` without switching; the roll's release id."""
        for droplet in self.droplets:
            payload = render_payload(droplet, tag, self.cert, (markers or {}).get(droplet.name, ()))
            code, out, err = receive(droplet, payload)
            assert code == 0, out + err
        return self.droplets[0].releases[tag]

    def currents(self) -> list[str | None]:
        return [d.host.current() for d in self.droplets]

    def load(self, workers: int = 4) -> Load:
        hosts = fleet_settings().all_hostnames
        return Load(self.lb.port, workers=workers, max_seconds=120, hosts=hosts, tls=True)


@contextlib.contextmanager
def running_fleet(root: Path, nginx: str, openssl: str, haproxy: str) -> Iterator[Fleet]:
    """Three droplets serving release ``v1`` behind haproxy; everything stopped on exit."""
    droplets = [make_droplet(root, index, nginx) for index in (1, 2, 3)]
    cert = helpers.make_cert(openssl, root / "cert", fleet_settings().all_hostnames)
    lb = None
    try:
        for droplet in droplets:
            code, out, err = receive(droplet, render_payload(droplet, "v1", cert), deploy=True)
            assert code == 0, out + err
        lb = start_haproxy(haproxy, droplets, root, proxy_protocol=True)
        time.sleep(TIMINGS.rejoin_wait)  # haproxy's first checks pass every droplet
        yield Fleet(droplets, lb, cert, LocalTransport({d.name: d for d in droplets}))
    finally:
        if lb is not None:
            lb.stop()
        for droplet in droplets:
            droplet.host.runtime.shutdown()
