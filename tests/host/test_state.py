"""The agent's release state: what "previous" means."""

from __future__ import annotations

from bankflow_infra.host.state import previous_release


def test_previous_release_is_the_latest_other_than_current() -> None:
    history = [{"release": "a"}, {"release": "b"}, {"release": "a"}]
    assert previous_release(history, "a") == "b"
    assert previous_release([{"release": "a"}], "a") is None
