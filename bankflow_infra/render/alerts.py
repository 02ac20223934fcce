"""``secrets/alerts.json``: where the droplet's backup watch posts its alerts (issue 11).

The Slack incoming-webhook URL (settings ``alerts.slackUrl``) is a secret -- whoever holds it
posts to the channel -- so the file is a secret file (0600 under ``layout.SECRETS_DIR``), read
only by ``bankflow-agent backup-watch`` (``host/backups/watch_alerts.py``), never printed. A stack
without a webhook gets no file: the watch still runs and fails its unit, and ``health --backups``
reports the checks, but nothing is posted (the droplet has no mail relay for ``alerts.emails``).
"""

from __future__ import annotations

import json
from typing import Final

from bankflow_infra.contract import release
from bankflow_infra.contract.alerts import ALERTS_FILE, ALERTS_SCHEMA
from bankflow_infra.settings import Settings

ALERTS_CONFIG_FILE: Final = release.secret_path(ALERTS_FILE)


def render_alerts_config(settings: Settings, secret_webhook: str | None = None) -> str | None:
    """The file's text, or None when the stack has no Slack webhook. ``secret_webhook``: the
    config secret bankflow:alertsWebhookUrl, preferred over the plain alerts.slackUrl."""
    alerts = settings.alerts
    url = secret_webhook or alerts.slack_url
    if url is None:
        return None
    document = {
        "schema": ALERTS_SCHEMA,
        "stack": settings.stack,
        "slack_url": url,
        "slack_channel": alerts.slack_channel,
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"
