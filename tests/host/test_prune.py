"""Which release dirs a successful switch deletes."""

from __future__ import annotations

from bankflow_infra.host.prune import prune_plan
from bankflow_infra.host.state import Current


def test_prune_plan_keeps_newest_and_the_app_release_of_kept_ones() -> None:
    order = ["r7", "r6", "r5", "r4", "r3", "r2", "r1"]  # most recent first
    plan = prune_plan(order, sorted(order), {"r3": "r1"}, 5, Current("r7", "r7", "f"))
    assert plan == ["r2"]  # r1 runs the containers of kept r3


def test_prune_plan_never_removes_current_or_previous() -> None:
    assert prune_plan(["r2", "r1"], ["r1", "r2"], {}, 1, Current("r2", "r2", "f")) == []
