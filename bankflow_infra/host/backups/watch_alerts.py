"""The backup watch's alerts: when to say something (de-duplicated), and saying it to the
stack's Slack webhook. Stdlib only.

De-duplication, per check, from the state file (``state/backup-watch.json``):
- a check that starts failing is sent at once ("FAILING");
- while it keeps failing, a reminder at most every ``REMINDER_SECONDS``;
- when it passes again after an alert, one "recovered";
- a post that fails is not recorded as sent, so the next run (a minute later) tries again.

The webhook URL is a secret (anyone holding it posts to the channel): it is read from
``secrets/alerts.json`` (0600) and never printed; a failed post is described by the error's type
and HTTP status only (urllib's errors can carry the URL).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from ...contract.alerts import ALERTS_FILE, ALERTS_SCHEMA, REMINDER_SECONDS
from ..files import write_atomic
from .watch_checks import Check, iso

POST_TIMEOUT_SECONDS: Final = 5.0
LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})


class AlertsConfigError(ValueError):
    """secrets/alerts.json is unreadable or wrong (named, never quoted: it holds the URL)."""


@dataclass(frozen=True)
class AlertsConfig:
    stack: str
    slack_url: str
    slack_channel: str | None


@dataclass(frozen=True)
class Message:
    key: str
    kind: str  # failing, reminder, recovered
    text: str


def load_alerts_config(secrets_dir: Path) -> AlertsConfig | None:
    """The webhook, or None when the stack configured none (no file rendered)."""
    path = secrets_dir / ALERTS_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise AlertsConfigError(f"{path}: unreadable ({type(exc).__name__})") from None
    if not isinstance(document, dict) or document.get("schema") != ALERTS_SCHEMA:
        raise AlertsConfigError(f"{path}: expected a JSON object with schema {ALERTS_SCHEMA}")
    url, stack, channel = document.get("slack_url"), document.get("stack"), document.get("slack_channel")
    if not isinstance(url, str) or webhook_problem(url) is not None:
        raise AlertsConfigError(f"{path}: slack_url is not an https:// URL (or http:// to loopback)")
    if not isinstance(stack, str) or not stack:
        raise AlertsConfigError(f"{path}: stack is missing")
    return AlertsConfig(stack, url, channel if isinstance(channel, str) else None)


def webhook_problem(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return None  # tests' local webhook
    return "not an https:// URL"


def load_state(path: Path) -> dict[str, dict[str, Any]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # no state (first run) or a garbled one: at worst one alert is repeated
    return {k: v for k, v in document.items() if isinstance(v, dict)} if isinstance(document, dict) else {}


def save_state(path: Path, state: dict[str, dict[str, Any]]) -> None:
    write_atomic(path, (json.dumps(state, indent=2, sort_keys=True) + "\n").encode(), 0o600)


def plan_messages(state: dict[str, dict[str, Any]], checks: Sequence[Check], now: datetime) -> list[Message]:
    """What to send now, given what was delivered before (pure)."""
    messages = []
    for check in checks:
        before = state.get(check.key, {})
        failing_before, alerted = bool(before.get("failing")), bool(before.get("alerted"))
        last_sent = _time(before.get("last_sent"))
        if check.failing and not (failing_before and alerted):
            messages.append(Message(check.key, "failing", f"FAILING: {check.summary}"))
        elif check.failing and (last_sent is None or now - last_sent >= timedelta(seconds=REMINDER_SECONDS)):
            since = before.get("since") or "?"
            messages.append(Message(check.key, "reminder", f"STILL FAILING since {since}: {check.summary}"))
        elif not check.failing and failing_before and alerted:
            messages.append(Message(check.key, "recovered", f"RECOVERED: {check.summary}"))
    return messages


def next_state(
    state: dict[str, dict[str, Any]], checks: Sequence[Check], delivered: Sequence[Message], now: datetime
) -> dict[str, dict[str, Any]]:
    """The state after this run. Only what was delivered counts as said: an undelivered first
    alert or recovery is planned again at the next run."""
    sent = {m.key for m in delivered}
    new: dict[str, dict[str, Any]] = {}
    for check in checks:
        before = state.get(check.key, {})
        failing_before = bool(before.get("failing"))
        if check.failing:
            continuing = failing_before
            new[check.key] = {
                "failing": True,
                "since": before.get("since") if continuing else iso(now),
                "alerted": (continuing and bool(before.get("alerted"))) or check.key in sent,
                "last_sent": iso(now)
                if check.key in sent
                else (before.get("last_sent") if continuing else None),
                "summary": check.summary,
            }
        elif failing_before and before.get("alerted") and check.key not in sent:
            new[check.key] = dict(before)  # the recovery was not delivered: planned again next run
        else:
            new[check.key] = {"failing": False, "since": iso(now) if failing_before else before.get("since"),
                              "summary": check.summary}  # fmt: skip
    return new


def _time(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def slack_payload(config: AlertsConfig, host: str, message: Message) -> dict[str, Any]:
    icon = {"failing": ":rotating_light:", "reminder": ":warning:", "recovered": ":white_check_mark:"}
    text = f"{icon[message.kind]} {config.stack} backups ({host}): {message.text}"
    payload: dict[str, Any] = {"text": text}
    if config.slack_channel:
        payload["channel"] = config.slack_channel
    return payload


def post(url: str, payload: dict[str, Any], timeout: float = POST_TIMEOUT_SECONDS) -> str | None:
    """POST JSON; None when delivered, else what went wrong (never the URL)."""
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked: https, or http to loopback
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    if webhook_problem(url) is not None:
        return "not posted: the webhook is not an https:// URL"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - checked above
            status = response.status
    except urllib.error.HTTPError as exc:
        return f"not posted: HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        return f"not posted: {type(exc).__name__}"
    return None if 200 <= status < 300 else f"not posted: HTTP {status}"
