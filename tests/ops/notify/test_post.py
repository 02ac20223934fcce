"""ops/notify.post: bounded (a timeout per request, one retry), and silent about the URL."""

from __future__ import annotations

from bankflow_infra.ops.notify import Delivery, post, scrub, secret_values
from tests.ops.notify.receiver import SECRET_PATH, receiver


def test_a_slow_webhook_times_out_twice_then_gives_up() -> None:
    pauses: list[float] = []
    with receiver(200, delay=1.5) as slack:
        delivery = post(slack.url, {"text": "x"}, timeout=0.3, sleep=pauses.append)
    assert delivery == Delivery(False, "not posted: ReadTimeout (attempt 2 of 2)")
    assert len(slack.posts) == 2
    assert pauses == [1.0]
    assert SECRET_PATH not in delivery.detail


def test_secret_values_are_those_of_secret_looking_names() -> None:
    env = {"PULUMI_ACCESS_TOKEN": "tok-123456", "BANKFLOW_SLACK_WEBHOOK": "https://hooks/x/y",
           "STACK": "production", "GITHUB_ACTOR": "octo", "SHORT_TOKEN": "1"}
    assert sorted(secret_values(env)) == ["https://hooks/x/y", "tok-123456"]
    assert scrub("a tok-123456 b", secret_values(env)) == "a [secret] b"
