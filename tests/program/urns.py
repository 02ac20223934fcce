"""The committed URN list of each stack's offline plan: a URN is a resource's identity in the
cloud state, so a renamed component type or resource name (a delete and recreate on `pulumi up`)
must be a visible, reviewed change of these files.

Regenerate after an intended change (then add `aliases` so the old URN maps to the new one):
``venv/bin/python -m tests.program.urns``
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from bankflow_infra.ops.plan import PlanResult
from tests.program.stacks import run_stack, scaled_out

URN_DIR = Path(__file__).parent / "urns"
# Each committed list and the plan it comes from; `production-scaled` is production in the scaled
# shape of issue 13 (3 droplets, load balancer, managed database/cache, NFS uploads).
PLANS: dict[str, Callable[[], PlanResult]] = {
    "staging": lambda: run_stack("staging"),
    "production": lambda: run_stack("production"),
    "production-scaled": lambda: run_stack("production", adjust=scaled_out),
}
STACKS = tuple(PLANS)


def urn_file(stack: str) -> Path:
    return URN_DIR / f"{stack}.txt"


def planned_urns(stack: str) -> list[str]:
    """Every URN the stack's offline plan registers or reads, sorted."""
    return sorted(r.urn for r in PLANS[stack]().recorder.resources)


def committed_urns(stack: str) -> list[str]:
    return urn_file(stack).read_text().splitlines()


def write_urns(stack: str) -> None:
    urn_file(stack).write_text("".join(f"{urn}\n" for urn in planned_urns(stack)))


if __name__ == "__main__":
    for name in STACKS:
        write_urns(name)
        print(f"wrote {urn_file(name)}")
