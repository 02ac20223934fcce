"""Several app droplets behind one load balancer (issue 13): the facts the renderer, the program,
the host agent and the ops CLI must agree on.

Stdlib only: shipped to the droplet beside the agent.

- The load balancer checks each droplet at ``http://<droplet>:LB_HEALTH_PORT LB_HEALTH_PATH``: a
  plain-HTTP nginx listener reachable from the VPC only (the public 443 listener requires
  Cloudflare's client certificate, which the load balancer does not have).
- A droplet leaves the load balancer on purpose by failing that check: the agent rewrites the
  nginx include :data:`LB_HEALTH_INCLUDE` with :func:`render_lb_health` (``draining=True``) and
  reloads nginx; the first line records the state, :func:`parse_lb_health` reads it back.
- The timings: how often the load balancer checks, and how many answers in a row move a droplet
  out of or back into rotation. A roll waits :func:`drain_wait_seconds` after draining a droplet
  and :func:`rejoin_wait_seconds` after it serves again.
"""

from __future__ import annotations

import re
from typing import Final

# nginx's listener for the load balancer's health check (VPC only; the cloud firewall admits
# the load balancer, the host firewall the VPC range).
LB_HEALTH_PORT: Final = 8404
LB_HEALTH_PATH: Final = "/lb-health"
# The nginx include (in the bundle's nginx conf.d) that answers LB_HEALTH_PATH.
LB_HEALTH_INCLUDE: Final = "lb-health.conf"

# DigitalOcean's load balancer health check (digitalocean_loadbalancer healthcheck block; the
# provider's minimums: interval 3 s, timeout 3 s, thresholds 2).
LB_CHECK_INTERVAL_SECONDS: Final = 3
LB_RESPONSE_TIMEOUT_SECONDS: Final = 3
LB_UNHEALTHY_THRESHOLD: Final = 2
LB_HEALTHY_THRESHOLD: Final = 2
# Added to each wait: the load balancer's own propagation, and one check that was in flight.
LB_WAIT_MARGIN_SECONDS: Final = 2

_STATE_RE: Final = re.compile(r"^# bankflow lb-health (serving|draining) -- ")


def drain_wait_seconds(
    interval: int = LB_CHECK_INTERVAL_SECONDS,
    timeout: int = LB_RESPONSE_TIMEOUT_SECONDS,
    unhealthy: int = LB_UNHEALTHY_THRESHOLD,
) -> int:
    """How long after a droplet starts failing its check until the load balancer has taken it
    out: ``unhealthy`` failed checks, each up to ``interval + timeout`` apart, and a margin."""
    return unhealthy * (interval + timeout) + LB_WAIT_MARGIN_SECONDS


def rejoin_wait_seconds(
    interval: int = LB_CHECK_INTERVAL_SECONDS, healthy: int = LB_HEALTHY_THRESHOLD
) -> int:
    """How long after a droplet passes its check again until the load balancer sends it traffic."""
    return healthy * interval + LB_WAIT_MARGIN_SECONDS


def render_lb_health(draining: bool) -> str:
    """The include inside the health listener's ``location = LB_HEALTH_PATH``: 503 while the
    droplet drains (the load balancer takes it out), 200 while it serves."""
    state = "draining" if draining else "serving"
    status = 503 if draining else 200
    return (
        f"# bankflow lb-health {state} -- written by the host agent; do not edit by hand\n"
        f'return {status} "{state}\\n";\n'
    )


def parse_lb_health(text: str) -> bool | None:
    """True when the include says draining, False when serving, None for anything else."""
    match = _STATE_RE.match(text.split("\n", 1)[0])
    if match is None:
        return None
    return match.group(1) == "draining"


# The maintenance window (host/patching.py) behind a load balancer: every droplet's timer fires
# at the same time, so each waits its turn -- droplet N starts (N-1) slots later -- and drains
# before it reboots: never two droplets out of rotation at once.
PATCH_SLOT_MINUTES: Final = 20
_POSITION_RE: Final = re.compile(r"^bankflow-[A-Za-z0-9_.-]+?-server(?:-([0-9]{1,2}))?$")


def fleet_position(hostname: str) -> int:
    """A droplet's place in roll order from its name (= hostname): ``bankflow-<stack>-server`` is
    1, ``bankflow-<stack>-server-N`` is N; any other name is 1 (a droplet never waits for nothing)."""
    match = _POSITION_RE.match(hostname)
    return int(match.group(1)) if match and match.group(1) else 1


def patch_wait_seconds(hostname: str, slot_minutes: int = PATCH_SLOT_MINUTES) -> int:
    return (fleet_position(hostname) - 1) * slot_minutes * 60
