"""``drain`` / ``undrain`` / ``lb-health``: a droplet behind the load balancer (issue 13).

Stdlib only. The load balancer checks each droplet at nginx's plain-HTTP health listener
(``contract.fleet.LB_HEALTH_PORT`` / ``LB_HEALTH_PATH``, rendered only in a load-balanced bundle),
whose answer is the live include ``nginx/lb-health.conf``. Draining rewrites that include to
answer 503 and reloads nginx: after ``fleet.drain_wait_seconds()`` the load balancer has taken the
droplet out, and the droplet's release can switch with no visitor on it. ``undrain`` puts the 200
back. Both are idempotent, and the state is the include's first line (``fleet.parse_lb_health``),
like the upstreams: nothing else to lose or to disagree with.

A release switch never copies this include from a bundle (``plan.nginx_files_kept``), so a
droplet drained for a roll stays drained while it switches.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import time
import urllib.parse
from typing import Any, Final

from ..contract.exit_codes import FAILED, OK
from ..contract.fleet import (
    LB_HEALTH_INCLUDE,
    LB_HEALTH_PATH,
    LB_HEALTH_PORT,
    parse_lb_health,
    render_lb_health,
)
from . import state as st
from . import traffic
from .context import Context, UsageError, describe
from .runtime import RuntimeFailure

LB_HEALTH_URL_ENV: Final = "BANKFLOW_LB_HEALTH_URL"
# nginx's health listener as seen from the droplet itself (the port is published on the host).
DEFAULT_LB_HEALTH_URL: Final = f"http://127.0.0.1:{LB_HEALTH_PORT}{LB_HEALTH_PATH}"
ANSWER_WAIT: Final = 5.0  # seconds for nginx's new workers to answer with the new include
ANSWERS_IN_A_ROW: Final = 3
_STATUS_RE: Final = re.compile(r"^HTTP/1\.[01] ([0-9]{3}) ")


def read_draining(ctx: Context) -> bool | None:
    """True draining, False serving, None: no include (a single-droplet bundle) or unreadable."""
    try:
        return parse_lb_health((ctx.paths.nginx / LB_HEALTH_INCLUDE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


def cmd_set_draining(ctx: Context, draining: bool, url: str) -> int:
    """Write the include for ``draining``, reload nginx, and wait until the listener at ``url``
    answers accordingly (a graceful reload hands over to new workers within a moment); nothing
    when the include already says so."""
    action = "drain" if draining else "undrain"
    path = ctx.paths.nginx / LB_HEALTH_INCLUDE
    if not path.is_file():
        raise UsageError(
            f"{path} does not exist: the serving release has no load balancer health listener "
            "(a single-droplet bundle, server.count 1); drain/undrain apply behind a load balancer only"
        )
    before = path.read_bytes()
    state = parse_lb_health(before.decode("utf-8", "replace"))
    if state is draining:
        message = f"{action}: already {'draining' if draining else 'serving'}; nothing to do"
        ctx.say(message)
        ctx.audit(action, None, "noop", message)
        return OK
    st.write_atomic(path, render_lb_health(draining).encode())
    try:
        traffic.reload_nginx(ctx.runtime)
    except RuntimeFailure as exc:
        # the old include back: nginx keeps answering what the load balancer saw before
        st.write_atomic(path, before)
        message = f"{action}: nginx refused the reload ({describe(exc)}); the health listener is unchanged"
        ctx.complain(message)
        ctx.audit(action, None, "failed", message)
        return FAILED
    expected = 503 if draining else 200
    steady, answers = _wait_for(ctx, url, expected)
    if not steady:
        seen = ", ".join(str(a) if a else "no answer" for a in answers)
        message = f"{action}: nginx reloaded, but {url} did not answer {expected} steadily (last: {seen})"
        ctx.complain(message)
        ctx.audit(action, None, "failed", message)
        return FAILED
    what = "503 (the load balancer takes this droplet out)" if draining else "200 (back in rotation)"
    message = f"{action}: the load balancer health check now answers {what}"
    ctx.say(message)
    ctx.audit(action, None, "ok", message)
    return OK


def _wait_for(ctx: Context, url: str, expected: int) -> tuple[bool, list[int]]:
    """Whether the listener answered ``expected`` ANSWERS_IN_A_ROW times before the deadline, and
    its last answers: right after a graceful reload an old worker still holding its listening
    socket (``reuseport``) may answer one more connection with the previous include."""
    deadline = time.monotonic() + ANSWER_WAIT
    answers: list[int] = []
    while True:
        answers = [*answers[-(ANSWERS_IN_A_ROW - 1) :], probe(url)]
        if answers == [expected] * ANSWERS_IN_A_ROW:
            return True, answers
        if time.monotonic() >= deadline:
            return False, answers
        ctx.sleep(0.1)


def probe(url: str, timeout: float = 3.0) -> int:
    """The health listener's HTTP status at ``url``, asked as the load balancer asks (a PROXY
    protocol v1 header first: the listener requires it, render/nginx.py); 0 for no answer."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise UsageError(f"--url: expected http://HOST:PORT/PATH, got {url!r}")
    host, port = parts.hostname, parts.port or 80
    family = "TCP6" if ":" in host else "TCP4"
    request = (
        f"PROXY {family} {host} {host} 40000 {port}\r\n"
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.sendall(request.encode("ascii"))
            head = conn.recv(64).decode("latin-1")
    except OSError:
        return 0
    match = _STATUS_RE.match(head)
    return int(match.group(1)) if match else 0


def cmd_lb_health(ctx: Context, url: str) -> int:
    """What the load balancer would see now: the include's state and the listener's answer.
    Exit 0 only when serving and answering 200 (the roll's "back in rotation" check)."""
    state = read_draining(ctx)
    status = probe(url)
    words = {None: "no include", True: "draining", False: "serving"}
    answer = f"HTTP {status}" if status else "no answer"
    ctx.say(f"lb-health: {words[state]}; {url} answered {answer}")
    return OK if state is False and status == 200 else FAILED


def register(sub: Any) -> None:
    drain = sub.add_parser(
        "drain", help="fail the load balancer's health check on purpose (503), reload nginx"
    )
    undrain = sub.add_parser(
        "undrain", help="pass the load balancer's health check again (200), reload nginx"
    )
    check = sub.add_parser("lb-health", help="the drain state and the health listener's answer")
    for parser in (drain, undrain, check):
        parser.add_argument(
            "--url",
            default=os.environ.get(LB_HEALTH_URL_ENV) or DEFAULT_LB_HEALTH_URL,
            help=f"the health listener (default: ${LB_HEALTH_URL_ENV} or {DEFAULT_LB_HEALTH_URL})",
        )


def _drain(ctx: Context, args: argparse.Namespace, _stdin: object) -> int:
    return cmd_set_draining(ctx, True, args.url)


def _undrain(ctx: Context, args: argparse.Namespace, _stdin: object) -> int:
    return cmd_set_draining(ctx, False, args.url)


# drain/undrain change nginx: under the deploy lock, never interleaved with a switch's reloads
COMMANDS: Final[dict[str, tuple[Any, bool]]] = {
    "drain": (_drain, True),
    "undrain": (_undrain, True),
    "lb-health": (lambda ctx, args, _stdin: cmd_lb_health(ctx, args.url), False),
}
