"""The bundle's files for the host itself (``host/``, installed by the bootstrap): Docker's
daemon.json, logrotate, the backup timer units, the access-log shipping units.

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
from bankflow_infra.contract.layout import AGENT_BIN, STATE_DIR
from bankflow_infra.settings import Settings
from bankflow_infra.settings.defaults import MAINTENANCE_WINDOW_UTC

FILES_DIR: Final = Path(__file__).resolve().parents[2] / "files"  # shipped as they are, or filled

DAEMON_JSON: Final = "host/daemon.json"
LOGROTATE: Final = "host/logrotate-bankflow"
BACKUP_SERVICE: Final = "host/bankflow-backup.service"
BACKUP_TIMER: Final = "host/bankflow-backup.timer"
WATCH_SERVICE: Final = "host/bankflow-backup-watch.service"  # issue 11: backup alerts
WATCH_TIMER: Final = "host/bankflow-backup-watch.timer"
# issue 12: nginx's access log, rotated hourly and shipped to the backups bucket
ACCESS_LOGROTATE: Final = "host/logrotate-access-logs"
ACCESS_SERVICE: Final = "host/bankflow-access-logs.service"
ACCESS_TIMER: Final = "host/bankflow-access-logs.timer"
MAINTENANCE_SERVICE: Final = "host/bankflow-maintenance.service"  # issue 12: the weekly window
MAINTENANCE_TIMER: Final = "host/bankflow-maintenance.timer"
MAINTENANCE_RESUME: Final = "host/bankflow-maintenance-resume.service"
# "<service> <uid> <directory>" per line: host-setup.sh makes each directory, owned by the uid
SERVICE_LOG_DIRS: Final = "host/service-log-dirs"
# Where host-setup.sh installs the access log's logrotate config: outside /etc/logrotate.d, so
# only bankflow-access-logs.service (with its own state file) rotates that file.
ACCESS_LOGROTATE_INSTALLED: Final = "/etc/bankflow/logrotate-access-logs"

# Access logs in the backups bucket: ``access-logs/<droplet name>/<rotated file>.<sha256>.gz``.
ACCESS_LOGS_PREFIX: Final = "access-logs"
# Marco Civil da Internet (Lei 12.965/2014) art. 15 obliges an application provider to keep access
# logs for 6 months; an authority may ask, within that time, for specific logs to be kept longer
# (art. 15 par. 2, with a court order requested within 60 days). LGPD art. 6 III (necessity) and
# art. 16 forbid keeping personal data beyond its purpose. 13 months (395 days): the legal 6
# months, plus room to answer a preservation request that arrives late in that window, plus a
# year-on-year comparison for fraud investigations; then the bucket's lifecycle deletes them
# (an expired object's version is kept backups.retentionDays more, like every deleted version).
ACCESS_LOG_RETENTION_DAYS: Final = 395
# nginx reopens its log files on USR1 (sent to each nginx container's main process).
NGINX_REOPEN_COMMAND: Final = (
    "/usr/bin/docker ps --quiet --filter label=com.docker.compose.service=nginx"
    " | /usr/bin/xargs --no-run-if-empty /usr/bin/docker kill --signal USR1 >/dev/null"
)
# Services whose log directory holds only files rotated elsewhere: nginx writes its access log
# there, which bankflow-access-logs.service rotates and ships (never the daily run).
_ROTATED_ELSEWHERE: Final = frozenset({"nginx"})

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


def logrotate_service_rule(log_dir: str, uid: int, gid: int) -> str:
    """One service's files: its own directory only, worked in as that directory's owner."""
    return (
        f"{log_dir}/*.log {{\n"
        "    daily\n    rotate 14\n    maxsize 100M\n    missingok\n    notifempty\n"
        "    compress\n    delaycompress\n"
        "    # The services keep their files open and cannot be told to reopen them.\n"
        "    copytruncate\n"
        f"    su {uid} {gid}\n"
        "}\n"
    )


def render_logrotate(
    service_dirs: Mapping[str, str] | None = None, state_dir: str = STATE_DIR
) -> str:
    """``/etc/logrotate.d/bankflow``. ``service_dirs`` (service -> log directory) defaults to the
    catalog's; tests pass directories under a temporary root. Each service's group id is its uid
    (host-setup.sh creates both)."""
    dirs = service_dirs or {name: catalog.service_log_dir(name) for name in catalog.SERVICE_UIDS}
    rules = "\n".join(
        f"# {name}: uid {catalog.SERVICE_UIDS[name]}, the owner of its log directory\n"
        + logrotate_service_rule(directory, catalog.SERVICE_UIDS[name], catalog.SERVICE_UIDS[name])
        for name, directory in dirs.items()
        if name not in _ROTATED_ELSEWHERE
    )
    return fill_template("logrotate/bankflow", {"SERVICE_RULES": rules, "STATE_DIR": state_dir})


def render_access_logrotate(
    log_path: str | None = None, uid: int | None = None, reopen: str = NGINX_REOPEN_COMMAND
) -> str:
    """The access log's logrotate config; tests pass a loopback nginx's file and reopen command."""
    owner = catalog.SERVICE_UIDS["nginx"] if uid is None else uid
    return fill_template(
        "logrotate/bankflow-access-logs",
        {
            "ACCESS_LOG": log_path or f"{catalog.service_log_dir('nginx')}/{catalog.ACCESS_LOG_NAME}",
            "UID": str(owner),
            "GID": str(owner),
            "REOPEN": reopen,
        },
    )


def render_service_log_dirs() -> str:
    """The per-service log directories host-setup.sh creates (uid and gid: the service's uid)."""
    lines = [f"{name} {uid} {catalog.service_log_dir(name)}\n" for name, uid in catalog.SERVICE_UIDS.items()]
    return "# <service> <uid> <directory>: from bankflow_infra/catalog.py (SERVICE_UIDS)\n" + "".join(lines)


def access_log_prefix(settings: Settings) -> str:
    """The droplet's folder in the bucket: a replaced or second droplet never writes another's."""
    return f"{ACCESS_LOGS_PREFIX}/{settings.resource_name('server')}"


def render_access_log_units(settings: Settings) -> dict[str, str]:
    service = fill_template(
        "systemd/bankflow-access-logs.service",
        {
            "STATE_DIR": STATE_DIR,
            "LOGROTATE_CONFIG": ACCESS_LOGROTATE_INSTALLED,
            "AGENT_BIN": AGENT_BIN,
            "LOG_DIR": catalog.service_log_dir("nginx"),
            "LOG_NAME": catalog.ACCESS_LOG_NAME,
            "PREFIX": access_log_prefix(settings),
        },
    )
    return {
        ACCESS_LOGROTATE: render_access_logrotate(),
        ACCESS_SERVICE: service,
        ACCESS_TIMER: fill_template("systemd/bankflow-access-logs.timer", {}),
    }


def render_host_files(settings: Settings) -> dict[str, str]:
    """Bundle path -> text."""
    return {
        DAEMON_JSON: render_daemon_json(),
        LOGROTATE: render_logrotate(),
        SERVICE_LOG_DIRS: render_service_log_dirs(),
        **render_access_log_units(settings),
        BACKUP_SERVICE: fill_template("systemd/bankflow-backup.service", {"AGENT_BIN": AGENT_BIN}),
        BACKUP_TIMER: fill_template("systemd/bankflow-backup.timer", {"TIME_UTC": settings.backups.time_utc}),
        WATCH_SERVICE: fill_template("systemd/bankflow-backup-watch.service", {"AGENT_BIN": AGENT_BIN}),
        WATCH_TIMER: fill_template("systemd/bankflow-backup-watch.timer", {}),
        **render_maintenance_units(),
    }


def render_maintenance_units() -> dict[str, str]:
    """The weekly maintenance window and its after-reboot health gate (host/patching.py)."""
    return {
        MAINTENANCE_SERVICE: fill_template("systemd/bankflow-maintenance.service", {"AGENT_BIN": AGENT_BIN}),
        MAINTENANCE_TIMER: fill_template(
            "systemd/bankflow-maintenance.timer", {"TIME_UTC": MAINTENANCE_WINDOW_UTC}
        ),
        MAINTENANCE_RESUME: fill_template(
            "systemd/bankflow-maintenance-resume.service", {"AGENT_BIN": AGENT_BIN, "STATE_DIR": STATE_DIR}
        ),
    }
