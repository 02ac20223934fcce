"""Both stacks' plans register exactly the committed URNs (see tests/program/urns.py)."""

from __future__ import annotations

import pytest

from tests.program.urns import STACKS, committed_urns, planned_urns, urn_file


@pytest.mark.parametrize("stack", STACKS)
def test_plan_urns_match_the_committed_list(stack: str) -> None:
    planned, committed = set(planned_urns(stack)), set(committed_urns(stack))
    added, removed = sorted(planned - committed), sorted(committed - planned)
    assert (added, removed) == ([], []), (
        f"{stack}: the plan's URNs differ from {urn_file(stack)} (a URN change deletes and recreates "
        f"the resource on `pulumi up`; add `aliases` or regenerate on purpose).\n"
        f"added: {added}\nremoved: {removed}"
    )


@pytest.mark.parametrize("stack", STACKS)
def test_committed_urn_list_is_sorted_and_unique(stack: str) -> None:
    committed = committed_urns(stack)
    assert committed == sorted(set(committed))
