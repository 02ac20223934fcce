"""Run the real program under the mock engine with a stack file's config, optionally edited."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from bankflow_infra.ops.plan import PlanResult, read_stack, run_program
from tests.support.tools import REPO

Config = dict[str, Any]


def stack_config(stack: str) -> Config:
    _, config, _ = read_stack(REPO, stack)
    return copy.deepcopy(config)


def run_stack(
    stack: str,
    edit: Callable[[Config], None] | None = None,
    *,
    base: str | None = None,
    referenced_outputs: dict[str, Any] | None = None,
) -> PlanResult:
    """Plan ``stack`` using ``Pulumi.<base or stack>.yaml``'s config after ``edit``."""
    config = stack_config(base or stack)
    if edit is not None:
        edit(config)
    return run_program("bankflow", stack, config, [], referenced_outputs)


def rebuild_shaped(config: Config) -> None:
    """What `rebuild` creates: the same config, server only, a fresh VPC range, edge off."""
    config["bankflow:server"]["vpcCidr"] = "10.130.16.0/20"
    config["bankflow:edge"] = {"enabled": False, "zoneSettings": False}


def edge_on_other_stack(config: Config) -> None:
    """What `cutover` makes of production: edge served by production-r1, own server retired."""
    config["bankflow:edge"]["originStack"] = "production-r1"
    config["bankflow:server"] = {"enabled": False}
