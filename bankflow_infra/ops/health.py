"""``bankflow-infra health``: probe every public service's health path, concurrently.

Two ways in:

- through Cloudflare (default): ``GET`` each ``health[].url`` of the stack outputs, verified
  against the public CA roots (certifi, or ``SSL_CERT_FILE``);
- ``--origin``: straight to the droplet, ``origin_ip:443``, with ``Host`` and TLS SNI set to the
  service's hostname and the certificate *pinned*: the TLS context trusts exactly the
  ``origin_certificate`` output (Cloudflare Origin CA certificates are not publicly trusted, and
  trusting their issuer would accept any other Origin CA certificate). Verification is never off.

Each probe has a per-request timeout and retries with exponential backoff, but only for what a
retry can fix (connection errors, timeouts, 5xx); everything stops at one overall deadline.
``--wait`` polls until every service is healthy or the deadline passes (CI after ``pulumi up``).

The connect address of a hostname can be overridden (``resolve``), in both modes: that is how
tests aim the probes at servers on 127.0.0.1, and the CLI exposes it only through the
test/ops-only ``BANKFLOW_HEALTH_RESOLVE`` variable (see :func:`parse_resolve`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeVar

import httpx

from bankflow_infra.catalog import HTTPS_PORT
from bankflow_infra.ops.outputs import OutputsError, StackOutputs

_T = TypeVar("_T")
Mode = Literal["edge", "origin"]
Address = tuple[str, int]
# The seam for the backups piece: returns when the newest database dump was taken, or None
# when the bucket holds none. Not wired into the CLI yet (it needs the bucket listing).
NewestBackup = Callable[[], datetime | None]

# Backups run daily (bankflow:backups.timeUtc); 2 h of slack covers a slow dump and upload.
BACKUP_STALE_AFTER: Final = timedelta(hours=26)
USER_AGENT: Final = "bankflow-infra-health"


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


@dataclass(frozen=True)
class BackupAge:
    newest: datetime | None
    age: timedelta | None
    stale: bool
    error: str | None = None


@dataclass(frozen=True)
class HealthReport:
    stack: str
    mode: Mode
    results: tuple[ProbeResult, ...]
    rounds: int
    backup: BackupAge | None = None
    certificate_warning: str | None = None  # the origin certificate expires soon (or is unreadable)

    @property
    def healthy(self) -> bool:
        return all(r.healthy for r in self.results)


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
        assert outputs.origin_ip is not None
        origin = (outputs.origin_ip, HTTPS_PORT)
    return tuple(
        Probe(t.service, t.url, t.host, t.path, resolve.get(t.host.lower(), origin))
        for t in outputs.health
    )


def _require_origin(outputs: StackOutputs) -> None:
    for name, value in (("origin_ip", outputs.origin_ip), ("origin_certificate", outputs.origin_certificate)):
        if value is None:
            elsewhere = (
                f"; its edge is served by stack {outputs.origin_stack!r}: probe that one with --origin"
                if outputs.origin_stack != outputs.stack else ""
            )
            raise OutputsError(f"stack output {name!r} of stack {outputs.stack!r} is null: the stack has no "
                               f"server (bankflow:server.enabled is false), so there is no origin to probe"
                               f"{elsewhere}")


def pinned_context(certificate_pem: str) -> ssl.SSLContext:
    """A client context that trusts exactly ``certificate_pem`` (and checks the hostname)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=certificate_pem)
    # The Origin CA certificate is a leaf, not a self-signed root: without PARTIAL_CHAIN OpenSSL
    # would only accept it as a trust anchor if it could build a chain to a root we do not trust.
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def edge_context() -> ssl.SSLContext:
    """Public CA roots, as httpx would use them (certifi, or SSL_CERT_FILE / SSL_CERT_DIR)."""
    return httpx.create_ssl_context(verify=True, trust_env=True)


def request_url(probe: Probe) -> str:
    if probe.connect is None:
        return probe.url
    ip, port = probe.connect
    host = f"[{ip}]" if ":" in ip else ip
    return f"https://{host}:{port}{probe.path}"


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
    try:
        # asyncio.timeout bounds the whole request; httpx's own timeouts are per read/write.
        async with asyncio.timeout(timeout):
            async with client.stream(
                "GET",
                request_url(probe),
                headers={"Host": probe.host, "User-Agent": USER_AGENT, "Cache-Control": "no-cache"},
                extensions={"sni_hostname": probe.host},
                timeout=timeout,
            ) as response:
                status = response.status_code  # the body is not needed: headers are the answer
    except Exception as error:  # every failure is a result in the table, never a crash
        message, retryable = classify_error(error, pinned)
        if message == "timeout":
            message = "no answer before the deadline" if cut else f"timeout after {timeout:.1f} s"
        return _Attempt(None, (time.monotonic() - started) * 1000, message, retryable)
    latency = (time.monotonic() - started) * 1000
    if 200 <= status < 300:
        return _Attempt(status, latency, None, False)
    return _Attempt(status, latency, f"HTTP {status}", status >= 500)


def _client(context: ssl.SSLContext) -> httpx.AsyncClient:
    # One client per probe and no keep-alive: every attempt makes a fresh TLS handshake with
    # this probe's SNI (a pooled connection keyed by IP could carry another hostname's SNI).
    # trust_env off: proxies from the environment would not reach the origin directly.
    return httpx.AsyncClient(verify=context, trust_env=False, follow_redirects=False,
                             limits=httpx.Limits(max_keepalive_connections=0))


async def probe_with_retries(probe: Probe, context: ssl.SSLContext, policy: Policy, deadline_at: float,
                             pinned: bool) -> ProbeResult:
    attempt: _Attempt | None = None
    count = 0
    async with _client(context) as client:
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
        return ProbeResult(probe.service, probe.url, connect, False, None, None, 0, "deadline reached")
    return ProbeResult(probe.service, probe.url, connect, attempt.healthy, attempt.status,
                       round(attempt.latency_ms, 1), count, attempt.error)


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


# Origin CA certificates are not renewed automatically: warn a month ahead, time to `pulumi up`
# with a replaced certificate and deploy it.
CERT_WARN_BEFORE: Final = timedelta(days=30)


def certificate_warning(expires_on: str | None, now: datetime | None = None) -> str | None:
    """A warning when the origin certificate (output origin_cert_expires_on) expires within 30 days."""
    if expires_on is None:
        return None
    now = now or datetime.now(UTC)
    try:
        expiry = datetime.fromisoformat(expires_on.replace("Z", "+00:00"))
    except ValueError:
        return f"WARNING: origin_cert_expires_on {expires_on!r} is not a date; check the certificate by hand"
    if expiry.tzinfo is None:
        expiry = expiry.replace(tzinfo=UTC)
    left = expiry - now
    if left <= timedelta(0):
        return (
            f"WARNING: the origin certificate EXPIRED on {expiry.date()}: "
            "Cloudflare (SSL strict) refuses the origin"
        )
    if left <= CERT_WARN_BEFORE:
        return (
            f"WARNING: the origin certificate expires on {expiry.date()} ({left.days} days): replace it "
            "(pulumi up -s STACK --replace <OriginCaCertificate URN>) and deploy"
        )
    return None


def backup_age(newest_backup: NewestBackup, now: datetime | None = None) -> BackupAge:
    now = now or datetime.now(UTC)
    try:
        newest = newest_backup()
    except Exception as error:  # a bucket problem is reported, it does not hide the probes
        return BackupAge(None, None, True, f"{type(error).__name__}: {error}")
    if newest is None:
        return BackupAge(None, None, True, "no backup found")
    age = now - newest
    return BackupAge(newest, age, age > BACKUP_STALE_AFTER)


def check_health(
    outputs: StackOutputs,
    mode: Mode = "edge",
    policy: Policy | None = None,
    resolve: Mapping[str, Address] | None = None,
    trust: ssl.SSLContext | None = None,
    newest_backup: NewestBackup | None = None,
) -> HealthReport:
    """Probe the stack's services; ``trust`` replaces the edge trust roots (tests only).

    Raises OutputsError before probing anything when ``--origin`` has no origin to reach.
    """
    policy = policy or Policy()
    probes = plan_probes(outputs, mode, resolve)
    pinned = mode == "origin"
    if pinned:
        assert outputs.origin_certificate is not None  # plan_probes checked it
        try:
            context = pinned_context(outputs.origin_certificate)
        except ssl.SSLError as error:
            raise OutputsError(f"stack output 'origin_certificate' of stack {outputs.stack!r}: "
                               f"not a usable certificate ({error})") from None
    else:
        context = trust or edge_context()
    results, rounds = run_async(run_rounds(probes, context, policy, pinned))
    backup = backup_age(newest_backup) if newest_backup is not None else None
    return HealthReport(
        outputs.stack, mode, results, rounds, backup, certificate_warning(outputs.origin_cert_expires_on)
    )


# --------------------------------------------------------------------------- reporting (pure)


def report_document(report: HealthReport) -> dict[str, Any]:
    backup: dict[str, Any] | None = None
    if report.backup is not None:
        b = report.backup
        backup = {
            "newest": b.newest.isoformat() if b.newest else None,
            "age_hours": round(b.age.total_seconds() / 3600, 1) if b.age is not None else None,
            "stale": b.stale,
            "stale_after_hours": BACKUP_STALE_AFTER.total_seconds() / 3600,
            "error": b.error,
        }
    return {
        "stack": report.stack,
        "mode": report.mode,
        "healthy": report.healthy,
        "rounds": report.rounds,
        "probes": [
            {"service": r.service, "url": r.url, "connect": r.connect, "healthy": r.healthy,
             "status": r.status, "latency_ms": r.latency_ms, "attempts": r.attempts, "error": r.error}
            for r in report.results
        ],
        "backup": backup,
        "certificate_warning": report.certificate_warning,
    }


def format_table(report: HealthReport) -> str:
    via = "through Cloudflare" if report.mode == "edge" else "direct to the origin (pinned certificate)"
    header = ("SERVICE", "URL", "STATUS", "LATENCY_MS", "ERROR")
    rows = [
        (r.service, r.url + (f" via {r.connect}" if r.connect else ""),
         str(r.status) if r.status is not None else "-",
         f"{r.latency_ms:.0f}" if r.latency_ms is not None else "-",
         r.error or ("-" if r.healthy else "unhealthy"))
        for r in report.results
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header) - 1)]
    lines = [f"health of stack {report.stack!r} {via}"
             + (f", after {report.rounds} rounds" if report.rounds > 1 else "")]
    for row in (header, *rows):
        lines.append("  ".join([*(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)),
                                row[-1]]))
    failing = [r.service for r in report.results if not r.healthy]
    lines.append(f"UNHEALTHY: {', '.join(failing)}" if failing
                 else f"healthy: {len(report.results)}/{len(report.results)} services")
    if report.backup is not None:
        lines.append(format_backup(report.backup))
    if report.certificate_warning is not None:
        lines.append(report.certificate_warning)
    return "\n".join(lines) + "\n"


def format_backup(backup: BackupAge) -> str:
    if backup.newest is None or backup.age is None:
        return f"WARNING: newest backup unknown: {backup.error}"
    hours = backup.age.total_seconds() / 3600
    if backup.stale:
        return (f"WARNING: newest backup is {hours:.1f} h old (taken {backup.newest.isoformat()}), "
                f"past {BACKUP_STALE_AFTER.total_seconds() / 3600:.0f} h")
    return f"newest backup: {hours:.1f} h old (taken {backup.newest.isoformat()})"


def with_wait_default(policy: Policy, deadline: float | None) -> Policy:
    """--deadline when given; otherwise 30 s for one check, 300 s when waiting for a deploy."""
    if deadline is not None:
        return replace(policy, deadline=deadline)
    return replace(policy, deadline=300.0 if policy.wait else 30.0)
