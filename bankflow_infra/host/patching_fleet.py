"""The maintenance window behind a load balancer (issue 13). Stdlib only.

Every droplet's timer fires at the same time. ``patch-wait`` (the unit's ``ExecStartPre``, outside
the deploy lock) waits this droplet's turn (``contract.fleet.patch_wait_seconds``); the window
then verifies through the loopback verify listener (the public listener expects the load
balancer's PROXY header), drains before a reboot and undrains once the gate passes after it. A
single-droplet host (no ``lb-health.conf``) does exactly what it did before.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any, Final

from ..contract.exit_codes import OK
from ..contract.fleet import patch_wait_seconds
from . import lb_health
from .context import Context

ACTION: Final = "patch-wait"


def load_balanced(ctx: Context) -> bool:
    return lb_health.read_draining(ctx) is not None


def gate_url(ctx: Context) -> str:
    """Where the health gate asks nginx: the verify listener behind a load balancer (its candidate
    upstreams are the serving release after every completed switch), the public one otherwise."""
    return ctx.options.candidate_url if load_balanced(ctx) else ctx.options.verify_url


def set_draining(ctx: Context, draining: bool) -> int:
    return lb_health.cmd_set_draining(ctx, draining, lb_health.DEFAULT_LB_HEALTH_URL)


def cmd_patch_wait(
    ctx: Context, hostname: str | None = None, sleep: Callable[[float], None] = time.sleep
) -> int:
    name = hostname or socket.gethostname()
    if not load_balanced(ctx):
        ctx.say(f"{ACTION}: one droplet, no load balancer: the window starts now")
        return OK
    seconds = patch_wait_seconds(name)
    ctx.say(f"{ACTION}: {name} waits {seconds // 60} min for its turn (one droplet out of rotation at once)")
    sleep(seconds)
    return OK


def register(sub: Any) -> None:
    sub.add_parser(ACTION, help="behind a load balancer: wait this droplet's turn in the maintenance window")


# Not under the deploy lock: a deploy or a roll may run while this droplet waits its turn.
COMMANDS: Final[dict[str, tuple[Any, bool]]] = {ACTION: (lambda ctx, _a, _s: cmd_patch_wait(ctx), False)}
