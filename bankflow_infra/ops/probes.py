"""The health probes: one HTTPS request per public service, concurrent, retried, bounded.

Two ways in:

- through Cloudflare (``edge``): ``GET`` each ``health[].url`` of the stack outputs, verified
  against the public CA roots (certifi, or ``SSL_CERT_FILE``);
- straight to the droplet (``origin``), ``origin_ip:443``, with ``Host`` and TLS SNI set to the
  service's hostname and the certificate *pinned*: the TLS context trusts exactly the
  ``origin_certificate`` output (Cloudflare Origin CA certificates are not publicly trusted, and
  trusting their issuer would accept any other Origin CA certificate). Verification is never off.
  The origin requires Cloudflare's client certificate (Authenticated Origin Pulls): the probe
  presents the ``origin_pull_client`` output's, as Cloudflare does (outputs read with secrets).

Each probe has a per-request timeout and retries with exponential backoff, but only for what a
retry can fix (connection errors, timeouts, 5xx); everything stops at one overall deadline.
With ``Policy.wait`` the probes poll until every service is healthy or the deadline passes.
A load-balanced stack's ``--origin`` probes every droplet and the load balancer (ops/health_fleet.py).

The connect address of a hostname can be overridden (``resolve``), in both modes: that is how
tests aim the probes at servers on 127.0.0.1, and the CLI exposes it only through the
test/ops-only ``BANKFLOW_HEALTH_RESOLVE`` variable (see :func:`parse_resolve`).

DNS is inside the deadline: without an override, the probe resolves the hostname itself
(:func:`resolve_bounded`, a daemon thread the probe stops waiting for at its timeout) and then
connects to the address with the hostname as Host and SNI, so a hanging resolver can never hold
the command past ``--deadline`` (httpx resolves in a worker thread the event loop waits for at
exit: a hung ``getaddrinfo`` kept ``health`` 13 s past a 6 s deadline).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Final, Literal, TypeVar
from urllib.parse import urlsplit

import httpx

from bankflow_infra.catalog import HTTPS_PORT
from bankflow_infra.contract.outputs import OriginPullClient, OutputsError, StackOutputs
from bankflow_infra.ops.health_fleet import fleet_targets, is_fleet
from bankflow_infra.ops.health_proxy import proxy_protocol_client

_T = TypeVar("_T")
Mode = Literal["edge", "origin"]
Address = tuple[str, int]

USER_AGENT: Final = "bankflow-infra-health"
# getaddrinfo, replaceable by tests (a resolver that hangs)
Resolver = Callable[..., list[tuple[Any, ...]]]
RESOLVER: Resolver = socket.getaddrinfo

@dataclass(frozen=True)
class Policy:
    timeout: float = 5.0  # seconds per request, connect to response headers
    deadline: float = 30.0  # seconds for the whole command, retries and --wait included
    attempts: int = 3  # per probe, per round
    backoff: float = 0.5  # seconds before retry n (0-based): backoff * 2**n
    wait: bool = False  # poll until all healthy or the deadline
    poll_interval: float = 1.0  # seconds between --wait rounds


@dataclass(frozen=True)
class Probe:
    service: str
    url: str  # the public URL, as shown
    host: str  # Host header and TLS SNI (and the name the certificate must cover)
    path: str
    connect: Address | None  # where to connect; None: the URL's host through DNS (Cloudflare)
    target: str | None = None  # a load-balanced stack: the droplet's name or "load-balancer"
    proxy_protocol: bool = False  # send a PROXY v1 line first (ops/health_proxy.py)


@dataclass(frozen=True)
class ProbeResult:
    service: str
    url: str
    connect: str | None  # "ip:port" when the probe did not go where DNS points
    healthy: bool
    status: int | None
    latency_ms: float | None  # of the last attempt: until response headers, or until it failed
    attempts: int
    error: str | None
    target: str | None = None  # a load-balanced stack: which droplet, or "load-balancer"


# --------------------------------------------------------------------------- planning (pure)


def parse_resolve(text: str) -> dict[str, Address]:
    """``host=ip:port,host2=[::1]:port`` -> {host: (ip, port)}; raises ValueError naming the entry."""
    mapping: dict[str, Address] = {}
    for entry in filter(None, (part.strip() for part in text.split(","))):
        host, sep, address = entry.partition("=")
        ip, colon, port = address.rpartition(":")
        ip = ip.removeprefix("[").removesuffix("]")
        try:
            ipaddress.ip_address(ip)
            number = int(port)
        except ValueError:
            number = 0
        if not sep or not host or not colon or not 0 < number < 65536:
            raise ValueError(f"{entry!r} is not host=IP:PORT (IPv6 as [::1]:PORT)")
        mapping[host.strip().lower()] = (ip, number)
    return mapping


def plan_probes(
    outputs: StackOutputs, mode: Mode, resolve: Mapping[str, Address] | None = None
) -> tuple[Probe, ...]:
    """One probe per ``health`` entry; raises OutputsError when ``--origin`` has no origin to reach."""
    resolve = resolve or {}
    origin: Address | None = None
    if mode == "origin":
        _require_origin(outputs)
        if is_fleet(outputs):  # every droplet and the load balancer (ops/health_fleet.py)
            return tuple(
                Probe(t.service, t.url, t.host, t.path, f.address, f.name, f.proxy_protocol)
                for f in fleet_targets(outputs, resolve) for t in outputs.health
            )
        assert outputs.origin_ip is not None
        origin = (outputs.origin_ip, HTTPS_PORT)
    return tuple(
        Probe(t.service, t.url, t.host, t.path, resolve.get(t.host.lower(), origin))
        for t in outputs.health
    )


def _require_origin(outputs: StackOutputs) -> None:
    for name, value in (("origin_ip", outputs.origin_ip), ("origin_certificate", outputs.origin_certificate)):
        if value is None:
            elsewhere = (f"; its edge is served by stack {outputs.origin_stack!r}: probe that one with "
                         "--origin") if outputs.origin_stack != outputs.stack else ""
            raise OutputsError(f"stack output {name!r} of stack {outputs.stack!r} is null: the stack has no "
                               f"server (bankflow:server.enabled is false), so there is no origin to probe"
                               f"{elsewhere}")


def pinned_context(certificate_pem: str, client: OriginPullClient | None = None) -> ssl.SSLContext:
    """A client context that trusts exactly ``certificate_pem`` (and checks the hostname) and,
    with ``client``, presents the origin-pull client certificate, as Cloudflare does: the origin
    answers 400 to anyone without it (Authenticated Origin Pulls)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=certificate_pem)
    # The Origin CA certificate is a leaf, not a self-signed root: without PARTIAL_CHAIN OpenSSL
    # would only accept it as a trust anchor if it could build a chain to a root we do not trust.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client is not None:
        _load_client_certificate(context, client)
    return context


def _load_client_certificate(context: ssl.SSLContext, client: OriginPullClient) -> None:
    """ssl reads a certificate chain from files only: a private 0700 directory, the key written
    0600, removed as soon as OpenSSL has read both (before any connection)."""
    with tempfile.TemporaryDirectory(prefix="bankflow-origin-pull-") as directory:
        cert, key = Path(directory) / "client.pem", Path(directory) / "client.key"
        cert.write_text(client.certificate)
        descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(client.private_key)
        context.load_cert_chain(cert, key)


def edge_context() -> ssl.SSLContext:
    """Public CA roots, as httpx would use them (certifi, or SSL_CERT_FILE / SSL_CERT_DIR)."""
    return httpx.create_ssl_context(verify=True, trust_env=True)


def request_url(probe: Probe) -> str:
    if probe.connect is None:
        return probe.url
    ip, port = probe.connect
    host = f"[{ip}]" if ":" in ip else ip
    return f"https://{host}:{port}{probe.path}"


async def resolve_bounded(host: str, port: int) -> Address:
    """The first address of ``host`` from :data:`RESOLVER`, run in a daemon thread: the caller's
    timeout cancels the wait, and a lookup that never returns never holds the process."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[list[tuple[Any, ...]]] = loop.create_future()
    resolver = RESOLVER

    def deliver(result: list[tuple[Any, ...]] | None, error: BaseException | None) -> None:
        if answer.done():
            return
        if error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(result or [])

    def lookup() -> None:
        try:
            result, error = resolver(host, port, type=socket.SOCK_STREAM), None
        except Exception as exc:  # handed to the awaiting probe
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits for it any more
            loop.call_soon_threadsafe(deliver, result, error)

    threading.Thread(target=lookup, name=f"dns {host}", daemon=True).start()
    infos = await answer
    if not infos:
        raise socket.gaierror(socket.EAI_NONAME, f"no address for {host}")
    sockaddr = infos[0][4]
    return str(sockaddr[0]), int(sockaddr[1])


def backoff_delay(policy: Policy, retry: int) -> float:
    return policy.backoff * float(2**retry)


# --------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class _Attempt:
    status: int | None
    latency_ms: float
    error: str | None
    retryable: bool

    @property
    def healthy(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def _causes(error: BaseException) -> list[BaseException]:
    # httpx re-raises with `from`; httpcore wraps the ssl/socket error as its first argument.
    # __context__ is not followed: a cancelled TLS read carries an incidental SSLWantReadError.
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        wrapped = current.args[0] if current.args and isinstance(current.args[0], BaseException) else None
        current = current.__cause__ or wrapped
    return chain


def classify_error(error: BaseException, pinned: bool) -> tuple[str, bool]:
    """(message, retryable) for an exception from one request."""
    if isinstance(error, TimeoutError | httpx.TimeoutException):
        return "timeout", True
    chain = _causes(error)
    for cause in chain:
        if isinstance(cause, ssl.SSLCertVerificationError):
            reason = cause.verify_message or str(cause)
            what = "not the pinned origin certificate" if pinned else "certificate rejected"
            # A certificate does not fix itself in a second: no retry.
            return f"TLS: {what} ({reason})", False
        if isinstance(cause, ssl.SSLError):
            # e.g. the connection dropped mid-handshake while nginx reloads: worth another try.
            return f"TLS: {cause.reason or cause}", True
    for cause in chain:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused", True
        if isinstance(cause, TimeoutError | httpx.TimeoutException):
            return "timeout", True
    if isinstance(error, httpx.TransportError):
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__, True
    return f"{type(error).__name__}: {error}", False


async def _attempt(client: httpx.AsyncClient, probe: Probe, timeout: float, pinned: bool,
                   cut: bool = False) -> _Attempt:
    """One request; ``cut``: the deadline, not --timeout, limits it (said so in the error)."""
    started = time.monotonic()
    stage = "dns"
    try:
        # asyncio.timeout bounds the whole request, DNS included; httpx's own timeouts are per
        # read/write.
        async with asyncio.timeout(timeout):
            if probe.connect is None:
                port = urlsplit(probe.url).port or HTTPS_PORT
                probe = replace(probe, connect=await resolve_bounded(probe.host, port))
            stage = "http"
            async with client.stream(
                "GET",
                request_url(probe),
                headers={"Host": probe.host, "User-Agent": USER_AGENT, "Cache-Control": "no-cache"},
                extensions={"sni_hostname": probe.host},
                timeout=timeout,
            ) as response:
                status = response.status_code  # the body is not needed: headers are the answer
    except Exception as error:  # every failure is a result in the table, never a crash
        if stage == "dns":
            failed = _dns_error(error, probe, timeout, cut)
            return _Attempt(None, (time.monotonic() - started) * 1000, failed, True)
        message, retryable = classify_error(error, pinned)
        if message == "timeout":
            message = "no answer before the deadline" if cut else f"timeout after {timeout:.1f} s"
        return _Attempt(None, (time.monotonic() - started) * 1000, message, retryable)
    latency = (time.monotonic() - started) * 1000
    if 200 <= status < 300:
        return _Attempt(status, latency, None, False)
    return _Attempt(status, latency, f"HTTP {status}", status >= 500)


def _dns_error(error: BaseException, probe: Probe, timeout: float, cut: bool) -> str:
    if isinstance(error, TimeoutError):
        within = "before the deadline" if cut else f"within {timeout:.1f} s"
        return f"DNS: no answer for {probe.host} {within}"
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    return f"DNS: {probe.host}: {reason}"


def _client(context: ssl.SSLContext, proxy_protocol: bool = False) -> httpx.AsyncClient:
    if proxy_protocol:
        return proxy_protocol_client(context)
    # One client per probe and no keep-alive: every attempt makes a fresh TLS handshake with
    # this probe's SNI (a pooled connection keyed by IP could carry another hostname's SNI).
    # trust_env off: proxies from the environment would not reach the origin directly.
    return httpx.AsyncClient(verify=context, trust_env=False, follow_redirects=False,
                             limits=httpx.Limits(max_keepalive_connections=0))


async def probe_with_retries(probe: Probe, context: ssl.SSLContext, policy: Policy, deadline_at: float,
                             pinned: bool) -> ProbeResult:
    attempt: _Attempt | None = None
    count = 0
    async with _client(context, probe.proxy_protocol) as client:
        while count < policy.attempts:
            remaining = deadline_at - time.monotonic()
            if remaining <= 0:
                break
            attempt = await _attempt(client, probe, min(policy.timeout, remaining), pinned,
                                     cut=remaining < policy.timeout)
            count += 1
            if attempt.healthy or not attempt.retryable or count >= policy.attempts:
                break
            delay = backoff_delay(policy, count - 1)
            if time.monotonic() + delay >= deadline_at:
                break
            await asyncio.sleep(delay)
    connect = f"{probe.connect[0]}:{probe.connect[1]}" if probe.connect else None
    if attempt is None:
        return ProbeResult(probe.service, probe.url, connect, False, None, None, 0, "deadline reached",
                           probe.target)
    return ProbeResult(probe.service, probe.url, connect, attempt.healthy, attempt.status,
                       round(attempt.latency_ms, 1), count, attempt.error, probe.target)


async def probe_all(probes: Sequence[Probe], context: ssl.SSLContext, policy: Policy, deadline_at: float,
                    pinned: bool) -> tuple[ProbeResult, ...]:
    """All probes at once: the round takes about as long as the slowest probe, not the sum."""
    results = await asyncio.gather(
        *(probe_with_retries(p, context, policy, deadline_at, pinned) for p in probes)
    )
    return tuple(results)


async def run_rounds(probes: Sequence[Probe], context: ssl.SSLContext, policy: Policy,
                     pinned: bool) -> tuple[tuple[ProbeResult, ...], int]:
    """Probe once, or with ``policy.wait`` until all healthy or the deadline; (last results, rounds)."""
    deadline_at = time.monotonic() + policy.deadline
    rounds = 1
    results = await probe_all(probes, context, policy, deadline_at, pinned)
    while policy.wait and not all(r.healthy for r in results):
        remaining = deadline_at - time.monotonic()
        if remaining <= 0:
            break
        await asyncio.sleep(min(policy.poll_interval, remaining))
        if deadline_at - time.monotonic() < policy.timeout:
            # A round that cannot give its requests the full timeout would only report the
            # deadline, not the services: the last full round is the answer.
            break
        rounds += 1
        results = keep_informative(results, await probe_all(probes, context, policy, deadline_at, pinned))
    return results, rounds


def keep_informative(
    previous: Sequence[ProbeResult], latest: Sequence[ProbeResult]
) -> tuple[ProbeResult, ...]:
    """The latest round, except a probe the deadline cut before any attempt keeps its last answer.

    (An HTTP 503 from the previous round says more than "deadline reached".)
    """
    return tuple(new if new.attempts > 0 else old for old, new in zip(previous, latest, strict=True))


def run_async(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """asyncio.run, but leaving the thread's current event loop alone.

    asyncio.run unsets it on exit, and code that calls asyncio.get_event_loop() later in the same
    process -- Pulumi's mock engine under `plan` and the tests -- would then fail.
    """
    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
        return runner.run(coroutine)
