"""The bundle's files for the host itself (``host/``, installed by the bootstrap): Docker's
daemon.json, logrotate, the backup timer units.

The systemd and logrotate texts live under ``files/`` (reviewable as the files they become)
with ``@NAME@`` placeholders for the values that come from the catalog and settings.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from bankflow_infra import catalog
from bankflow_infra.contract.layout import AGENT_BIN, LOGS_DIR, STATE_DIR
from bankflow_infra.settings import Settings

FILES_DIR: Final = Path(__file__).resolve().parents[2] / "files"  # shipped as they are, or filled

DAEMON_JSON: Final = "host/daemon.json"
LOGROTATE: Final = "host/logrotate-bankflow"
BACKUP_SERVICE: Final = "host/bankflow-backup.service"
BACKUP_TIMER: Final = "host/bankflow-backup.timer"
WATCH_SERVICE: Final = "host/bankflow-backup-watch.service"  # issue 11: backup alerts
WATCH_TIMER: Final = "host/bankflow-backup-watch.timer"

_PLACEHOLDER_RE: Final = re.compile(r"@([A-Z_]+)@")


def fill_template(relative: str, values: Mapping[str, str]) -> str:
    """``files/<relative>`` with every ``@NAME@`` replaced; an unknown or unused name is an error,
    so a template and its caller cannot drift apart silently."""
    text = (FILES_DIR / relative).read_text(encoding="utf-8")
    used = set(_PLACEHOLDER_RE.findall(text))
    if used != set(values):
        raise ValueError(f"{relative}: placeholders {sorted(used)} but values for {sorted(values)}")
    return _PLACEHOLDER_RE.sub(lambda m: values[m.group(1)], text)


def render_daemon_json() -> str:
    config = {
        # Rotate every container's log by default (compose sets the same per service).
        "log-driver": catalog.LOG_DRIVER,
        "log-opts": {"max-size": catalog.LOG_MAX_SIZE, "max-file": str(catalog.LOG_MAX_FILE)},
        # Containers keep running while dockerd restarts (package upgrades): no outage for that.
        "live-restore": True,
        # No setuid escalation inside any container.
        "no-new-privileges": True,
    }
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def render_host_files(settings: Settings) -> dict[str, str]:
    """Bundle path -> text."""
    return {
        DAEMON_JSON: render_daemon_json(),
        LOGROTATE: fill_template("logrotate/bankflow", {"LOGS_DIR": LOGS_DIR, "STATE_DIR": STATE_DIR}),
        BACKUP_SERVICE: fill_template("systemd/bankflow-backup.service", {"AGENT_BIN": AGENT_BIN}),
        BACKUP_TIMER: fill_template("systemd/bankflow-backup.timer", {"TIME_UTC": settings.backups.time_utc}),
        WATCH_SERVICE: fill_template("systemd/bankflow-backup-watch.service", {"AGENT_BIN": AGENT_BIN}),
        WATCH_TIMER: fill_template("systemd/bankflow-backup-watch.timer", {}),
    }
