"""What the release switch does to nginx: the upstream includes, reloads, checks through nginx,
the post-switch watch and the drain.

Stdlib only. Two listeners carry the checks (``contract.upstreams``):

- the **verify listener** (``--candidate-url``, loopback only): the same servers, headers and
  proxy settings as the public ones, proxying to the ``*_candidate`` upstreams. A switch points
  those at the new release and checks every hostname there before the public include changes;
- the **public listener** (``--verify-url``), what Cloudflare reaches.

The drain waits for in-flight requests, not for a fixed time: after a graceful reload the old
nginx workers keep only the requests they had (idle keep-alive connections are closed at once)
and exit when those are answered, so "no old worker left" is "no request in flight towards the
previous upstreams". It is bounded by the services' drain seconds (nginx's
``worker_shutdown_timeout`` is the same bound on nginx's side).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from ..contract.upstreams import (
    CANDIDATE_SUFFIX,
    CANDIDATE_UPSTREAMS_FILE,
    render_upstreams,
)
from . import state as st
from .context import Context, StepFailed
from .manifest import Manifest
from .runtime import Runtime, RuntimeFailure
from .verify import NginxEndpoint, http_status, parse_nginx_endpoint, wait_for_ok

WATCH_INTERVAL = 0.2
DRAIN_POLL = 0.1


def upstream_addresses(runtime: Runtime, manifest: Manifest, app_release: str) -> dict[str, str]:
    return {s.upstream: runtime.upstream_address(app_release, s.name, s.port) for s in manifest.app_services}


def has_verify_listener(bundle: Path, manifest: Manifest) -> bool:
    """Whether the release's nginx config has the verify listener (older bundles do not)."""
    return (bundle / manifest.nginx_dir / CANDIDATE_UPSTREAMS_FILE).is_file()


def _write_if_changed(path: Path, text: str) -> bool:
    """Write ``text``; whether nginx must reload (anything but the first, comment line changed)."""
    try:
        old = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        old = ""
    if old == text:
        return False
    st.write_atomic(path, text.encode())
    return old.split("\n", 1)[-1] != text.split("\n", 1)[-1]


def write_public(
    ctx: Context,
    manifest: Manifest,
    release: str,
    app_release: str,
    backups: Mapping[str, str] | None = None,
) -> bool:
    """Point the public include at ``app_release`` (not loaded yet); whether a reload is needed."""
    addresses = upstream_addresses(ctx.runtime, manifest, app_release)
    text = render_upstreams(addresses, release, app_release=app_release, backups=backups)
    return _write_if_changed(ctx.paths.nginx / manifest.upstreams_file, text)


def write_candidate(ctx: Context, manifest: Manifest, release: str, app_release: str) -> bool:
    addresses = upstream_addresses(ctx.runtime, manifest, app_release)
    text = render_upstreams(addresses, release, app_release=app_release, suffix=CANDIDATE_SUFFIX)
    return _write_if_changed(ctx.paths.nginx / CANDIDATE_UPSTREAMS_FILE, text)


def reload_nginx(runtime: Runtime) -> None:
    """``nginx -t``, then a graceful reload: a config nginx refuses is never loaded."""
    runtime.nginx_test()
    runtime.nginx_reload()


def _status_check(endpoint: NginxEndpoint, hostname: str, path: str) -> Callable[[], int]:
    return lambda: http_status(endpoint, hostname, path)


def verify_through(ctx: Context, manifest: Manifest, url: str, listener: str) -> None:
    """Every hostname's health path answers 2xx through nginx at ``url`` (retried until the
    verify timeout); :class:`StepFailed` naming the service, hostname and answer otherwise."""
    endpoint = parse_nginx_endpoint(url)
    for service in manifest.app_services:
        for hostname in service.hostnames:
            check = _status_check(endpoint, hostname, service.health_path)
            status = wait_for_ok(check, ctx.options.verify_timeout, sleep=ctx.sleep)
            if not 200 <= status < 300:
                answer = f"answered {status}" if status else "did not answer"
                hint = ""
                if not status and listener == "verify listener":
                    hint = (
                        " (is nginx listening there? a nginx container started before the verify "
                        "listener existed must be recreated once)"
                    )
                raise StepFailed(
                    "verify",
                    f"service {service.name}: GET {service.health_path} for {hostname} through nginx's "
                    f"{listener} at {url} {answer}{hint}",
                )


def watch(ctx: Context, manifest: Manifest, url: str, seconds: float) -> None:
    """Check every hostname through ``url`` for ``seconds`` after the public switch; two failed
    checks in a row of one hostname is :class:`StepFailed` ("watch")."""
    endpoint = parse_nginx_endpoint(url)
    targets = [(s, h) for s in manifest.app_services for h in s.hostnames]
    misses: dict[str, int] = {}
    deadline = time.monotonic() + seconds
    while True:
        for service, hostname in targets:
            status = http_status(endpoint, hostname, service.health_path, timeout=2.0)
            misses[hostname] = 0 if 200 <= status < 300 else misses.get(hostname, 0) + 1
            if misses[hostname] >= 2:
                answer = f"answered {status}" if status else "did not answer"
                raise StepFailed(
                    "watch",
                    f"service {service.name} failed after the public switch: GET {service.health_path} "
                    f"for {hostname} {answer} twice in a row",
                )
        if time.monotonic() >= deadline:
            return
        ctx.sleep(WATCH_INTERVAL)


def drain(ctx: Context, limit: float) -> str:
    """Wait until nginx's old workers have answered their in-flight requests (at most ``limit``
    seconds); what happened, for the output."""
    started = time.monotonic()
    busy = 0
    while time.monotonic() - started < limit:
        try:
            busy = ctx.runtime.nginx_draining()
        except RuntimeFailure as exc:
            return f"could not see nginx's workers ({exc}); stopping after no wait"
        if busy == 0:
            return f"in-flight requests done after {time.monotonic() - started:.1f}s"
        ctx.sleep(DRAIN_POLL)
    return f"{busy} old nginx worker(s) still busy after the {limit:g}s drain: stopping anyway"
