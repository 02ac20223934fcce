"""``rebuild STACK --droplet N``: replace one app droplet of a load-balanced stack, nothing else.

A stack with several droplets behind the load balancer (issue 13) does not need the emergency
rebuild's fresh stack to lose one droplet: its data lives in the managed database, the NFS share
and the bucket, and the other droplets keep serving. So this replaces exactly droplet N:

    pulumi up -s STACK --replace <droplet N's URN> --target <that URN> --target-dependents --yes

``--target`` keeps every other pending change of the stack out of this run (a config edit not
yet applied stays not applied), and ``--target-dependents`` lets what hangs off that droplet
follow it (its remote deploy steps, the firewall's droplet list). The load balancer picks its
targets by the stack tag, so the new droplet joins once it passes its health check. The
production droplets are ``protect``ed against an accidental replacement: their protection is
lifted right before, on that one URN, and the ``up`` puts it back (the program declares it).
Then ``health STACK --origin --wait`` checks every droplet and the load balancer.

Which droplets exist is read from the deployed outputs (``origin_ips``, roll order), not from
the config: a count raised but not yet applied has no droplet N to replace. A dry run calls
nothing, so it judges by the config's ``server.count``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from bankflow_infra.contract.outputs import OutputsError
from bankflow_infra.ops.outputs import load_outputs
from bankflow_infra.ops.rebuild import OPS_PROGRAM, RebuildError, Step, unprotect_step
from bankflow_infra.ops.rebuild_prepare import Prepared, Request, rerun_line
from bankflow_infra.ops.stack_access import PULUMI, StackAccess
from bankflow_infra.ops.stack_inventory import read_inventory

# The URN of droplet N, as the program declares it: the Server component's type token and the
# droplet resource names (droplet 1 keeps today's name; tests/program/urns/*.txt are checked
# against this in tests/ops/rebuild/test_droplet.py, so a rename cannot go unnoticed).
SERVER_COMPONENT_TYPE: Final = "bankflow:index:Server"
DROPLET_TYPE: Final = "digitalocean:index/droplet:Droplet"


def droplet_resource_name(number: int) -> str:
    return "server-droplet" if number == 1 else f"server-droplet-{number}"


def droplet_urn(project: str, stack: str, number: int) -> str:
    return (f"urn:pulumi:{stack}::{project}::{SERVER_COMPONENT_TYPE}${DROPLET_TYPE}::"
            f"{droplet_resource_name(number)}")


def replace_droplet_argv(stack: str, urn: str) -> tuple[str, ...]:
    return (PULUMI, "up", "-s", stack, "--replace", urn, "--target", urn, "--target-dependents", "--yes")


def plan_replace_droplet(stack: str, number: int, urn: str, protected: bool) -> list[Step]:
    """Lift droplet N's protection (production), replace it alone, verify the whole fleet."""
    steps = [unprotect_step(stack, urn)] if protected else []
    return [
        *steps,
        Step("pulumi up --replace", replace_droplet_argv(stack, urn), "pulumi",
             f"replace droplet {number} of {stack} (and only what depends on it); the others keep serving"),
        Step("health", (OPS_PROGRAM, "health", stack, "--origin", "--wait"), "ops",
             f"verify every droplet of {stack} and its load balancer through the origin", changes=False),
    ]


def _deployed_count(stack: str, access: StackAccess) -> int:
    try:
        outputs = load_outputs(stack, runner=access.runner, cwd=access.cwd)
    except OutputsError as error:
        raise RebuildError(str(error)) from None
    if outputs.origin_stack != stack or outputs.origin_ip is None:
        raise RebuildError(f"stack {stack!r} has no deployed droplet of its own (origin_ip "
                           f"{outputs.origin_ip}, served by {outputs.origin_stack!r}): nothing to replace")
    # Stacks deployed before issue 13 have no origin_ips: their one droplet is origin_ip.
    return max(len(outputs.origin_ips), 1)


def check_droplet_number(stack: str, number: int, count: int) -> None:
    """One droplet: point to the emergency rebuild. N outside 1..count: say what is valid."""
    if count == 1:
        raise RebuildError(
            f"stack {stack!r} has one droplet: replacing it would take the whole site down. Rebuild it "
            f"as a fresh stack, restore and cut over instead: {OPS_PROGRAM} rebuild {stack} "
            "(docs/RUNBOOK-emergency.md)")
    if not 1 <= number <= count:
        raise RebuildError(f"--droplet {number}: stack {stack!r} has droplets 1 to {count} (roll order, "
                           "as in the origin_ips output)")


def prepare_replace_droplet(request: Request, access: StackAccess) -> Prepared:
    stack, number = request.stack, request.droplet
    assert number is not None
    if request.name is not None or request.vpc_cidr is not None:
        raise RebuildError("--droplet replaces one droplet in place: --name and --vpc-cidr belong to the "
                           "fresh-stack rebuild; give one or the other")
    inventory = read_inventory(request.project_dir or Path.cwd(), None if request.dry_run else access)
    settings = inventory.settings(stack)
    if not settings.server.enabled:
        raise RebuildError(f"stack {stack!r} has no server (bankflow:server.enabled is false): no droplet "
                           "to replace")
    count = settings.server.count if request.dry_run else _deployed_count(stack, access)
    check_droplet_number(stack, number, count)
    urn = droplet_urn(inventory.project, stack, number)
    summary = [
        f"Replace droplet {number} of {count} of {stack}: a new droplet, the same config and release; the "
        f"other droplets and the managed data are not touched.",
        f"Droplet URN: {urn}",
    ]
    if request.dry_run:
        summary.append("Dry run: the droplet count comes from the stack file's server.count (pulumi is "
                       "not called); the real run counts the deployed origin_ips.")
    return Prepared(
        command="rebuild",
        summary=summary,
        steps=plan_replace_droplet(stack, number, urn, settings.is_production),
        traffic_note=lambda _index: (f"The other droplets of {stack} keep serving behind the load "
                                     f"balancer; droplet {number} is out of rotation until it passes "
                                     "its health check."),
        done_note=f"Droplet {number} of {stack} is replaced and every droplet is healthy through the origin.",
        rerun=rerun_line(request),
    )
