"""Notifications: deploys, rebuilds, restores and drift, to the stack's Slack webhook and the job
summary.

The webhook URL is a secret (whoever holds it can post to the channel): it is read from the
environment variable :data:`WEBHOOK_ENV` only, never from argv, and never written anywhere --
not in a message, not in an error (httpx puts the URL in some exception texts, so failures are
described by type and status code only). Every message text is passed through :func:`scrub`
with the values of the secret-looking variables of the environment, so even a diff or a log
line that carried one shows ``[secret]``.

Posting is bounded: :data:`TIMEOUT_SECONDS` per request, one retry for what a retry can fix
(connection errors, timeouts, 429 and 5xx). A notification that cannot be delivered never fails
what it reports on; the caller shows the :class:`Delivery` (a warning annotation in a workflow).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import httpx

WEBHOOK_ENV: Final = "BANKFLOW_SLACK_WEBHOOK"
TIMEOUT_SECONDS: Final = 5.0
ATTEMPTS: Final = 2  # one retry
RETRY_PAUSE_SECONDS: Final = 1.0
REDACTED: Final = "[secret]"
# Variable names whose values are secrets (the workflows' secret env names all match).
SECRET_NAME: Final = re.compile(r"TOKEN|SECRET|PASSWORD|PASSPHRASE|WEBHOOK|PRIVATE|_KEY", re.IGNORECASE)
MIN_SECRET_LENGTH: Final = 6  # shorter values ("1", "true") would blank ordinary words
LOOPBACK: Final = frozenset({"127.0.0.1", "::1", "localhost"})
MAX_DETAIL_CHARS: Final = 2500  # Slack truncates long texts; the summary keeps the whole diff

Severity = Literal["good", "warning", "danger", "info"]
COLOURS: Final[Mapping[str, str]] = {"good": "#2eb67d", "warning": "#ecb22e", "danger": "#e01e5a",
                                     "info": "#439fe0"}
ICONS: Final[Mapping[str, str]] = {"good": "✅", "warning": "⚠️", "danger": "🚨", "info": "📣"}


@dataclass(frozen=True)
class Notice:
    event: str  # e.g. "deploy succeeded", "drift"
    stack: str
    severity: Severity
    lines: tuple[str, ...]  # facts, one per line (outcomes, release, who, where)
    detail: str = ""  # a longer text (a diff), shown as a code block
    link: str | None = None  # the workflow run


@dataclass(frozen=True)
class Delivery:
    posted: bool
    detail: str  # what happened, with no URL in it


# --------------------------------------------------------------------------- secrets


def secret_values(env: Mapping[str, str]) -> list[str]:
    """The values of the secret-looking variables (the webhook included), longest first."""
    values = {v for name, v in env.items() if SECRET_NAME.search(name) and len(v) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def scrub_notice(notice: Notice, secrets: Iterable[str]) -> Notice:
    known = list(secrets)
    return Notice(
        notice.event, notice.stack, notice.severity, tuple(scrub(line, known) for line in notice.lines),
        scrub(notice.detail, known), notice.link,
    )


# --------------------------------------------------------------------------- rendering (pure)


def title(notice: Notice) -> str:
    return f"{ICONS[notice.severity]} {notice.stack}: {notice.event}"


def slack_payload(notice: Notice) -> dict[str, Any]:
    """An incoming-webhook payload: a fallback ``text`` and one coloured attachment."""
    body = "\n".join(notice.lines)
    if notice.detail:
        detail = notice.detail
        if len(detail) > MAX_DETAIL_CHARS:
            detail = detail[:MAX_DETAIL_CHARS] + "\n… (cut: the whole text is in the run's summary)"
        body += f"\n```{detail}```"
    if notice.link:
        body += f"\n<{notice.link}|the workflow run>"
    return {
        "text": title(notice),
        "attachments": [{"color": COLOURS[notice.severity], "text": body, "mrkdwn_in": ["text"]}],
    }


def summary_markdown(notice: Notice, delivery: Delivery) -> str:
    lines = [f"### {title(notice)}", ""]
    lines += [f"- {line}" for line in notice.lines]
    if notice.link:
        lines.append(f"- run: {notice.link}")
    lines.append(f"- Slack: {delivery.detail}")
    if notice.detail:
        lines += ["", "<details><summary>details</summary>", "", "```", notice.detail, "```", "",
                  "</details>"]
    return "\n".join(lines) + "\n\n"


# --------------------------------------------------------------------------- delivery


def webhook_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook (https, or http to loopback for tests), or None. The
    message never repeats the URL."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname in LOOPBACK:
        return None
    return f"{WEBHOOK_ENV} is not an https:// URL"


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def post(
    url: str,
    payload: Mapping[str, Any],
    *,
    transport: httpx.BaseTransport | None = None,
    timeout: float = TIMEOUT_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
) -> Delivery:
    """POST ``payload`` as JSON; at most ATTEMPTS tries. Never raises."""
    problem = webhook_problem(url)
    if problem is not None:
        return Delivery(False, f"not posted: {problem}")
    outcome = "not posted"
    with httpx.Client(timeout=timeout, transport=transport, follow_redirects=False) as client:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                response = client.post(url, json=payload)
            except httpx.HTTPError as error:
                outcome = f"not posted: {type(error).__name__} (attempt {attempt} of {ATTEMPTS})"
            else:
                if response.is_success:
                    return Delivery(True, f"posted (HTTP {response.status_code})")
                outcome = f"not posted: HTTP {response.status_code} (attempt {attempt} of {ATTEMPTS})"
                if not _retryable(response.status_code):
                    return Delivery(False, outcome)
            if attempt < ATTEMPTS:
                sleep(RETRY_PAUSE_SECONDS)
    return Delivery(False, outcome)


def deliver(notice: Notice, env: Mapping[str, str] | None = None,
            transport: httpx.BaseTransport | None = None) -> tuple[Notice, Delivery]:
    """Scrub ``notice`` and post it to the webhook in ``env`` (default: os.environ); without a
    webhook nothing is posted and the delivery says so."""
    env = os.environ if env is None else env
    clean = scrub_notice(notice, secret_values(env))
    url = env.get(WEBHOOK_ENV, "").strip()
    if not url:
        return clean, Delivery(False, f"not posted: no webhook ({WEBHOOK_ENV} is not set)")
    return clean, post(url, slack_payload(clean), transport=transport)
