"""Running the stack: ``bankflow:alerts``, ``bankflow:backups`` and ``bankflow:nginx``."""

from __future__ import annotations

import re
from typing import Any, Final

from bankflow_infra.contract import grammar
from bankflow_infra.settings.checks import Problems, check, int_range, merged, string_list, typed
from bankflow_infra.settings.defaults import default_replica_region, defaults
from bankflow_infra.settings.model import AlertSettings, BackupSettings, NginxSettings
from bankflow_infra.settings.slugs import SPACES_REGIONS

_EMAIL_RE: Final = re.compile(r"^[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}$")
_SLACK_URL_RE: Final = re.compile(r"^https://hooks\.slack\.com/services/[A-Za-z0-9/]+$")
_TIME_RE: Final = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
_SIZE_LIMIT_RE: Final = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")


def _emails(value: Any, problems: Problems) -> tuple[str, ...]:
    emails = string_list(problems, "alerts.emails", value)
    for index, email in enumerate(emails):
        check(
            problems,
            f"alerts.emails[{index}]",
            bool(_EMAIL_RE.fullmatch(email)),
            f"{email!r} is not an e-mail address (e.g. ops@conciliaextrato.com)",
        )
    return emails


def _check_slack(channel: Any, url: Any, problems: Problems) -> None:
    if (channel is None) != (url is None):
        problems.add(
            "alerts.slackUrl" if url is None else "alerts.slackChannel",
            "slackChannel and slackUrl go together: set both or neither",
        )
    if url is not None and not (isinstance(url, str) and _SLACK_URL_RE.fullmatch(url)):
        problems.add(
            "alerts.slackUrl", "must be a Slack incoming-webhook URL (https://hooks.slack.com/services/...)"
        )
    if channel is not None and not (isinstance(channel, str) and channel.startswith("#")):
        problems.add("alerts.slackChannel", f"must be a channel name starting with '#', got {channel!r}")


def parse_alerts(raw: Any, env: str, problems: Problems) -> AlertSettings:
    v = merged("alerts", raw, defaults(env)["alerts"], problems)
    emails = _emails(v["emails"], problems)
    channel, url = v["slackChannel"], v["slackUrl"]
    _check_slack(channel, url, problems)
    if not emails and url is None:
        problems.add("alerts.emails", "required: at least one e-mail address (or a Slack webhook) for alerts")
    return AlertSettings(
        emails=emails,
        slack_channel=channel if isinstance(channel, str) else None,
        slack_url=url if isinstance(url, str) else None,
        cpu_percent=int_range(problems, "alerts.cpuPercent", v["cpuPercent"], 10, 100),
        memory_percent=int_range(problems, "alerts.memoryPercent", v["memoryPercent"], 10, 100),
        disk_percent=int_range(problems, "alerts.diskPercent", v["diskPercent"], 10, 100),
    )


def _bucket_stack(value: Any, stack: str, problems: Problems) -> str:
    if value is None:
        return stack
    if not isinstance(value, str) or not grammar.is_stack_name(value):
        problems.add("backups.bucketStack", f"must be a stack name (letters, digits, _ . -), got {value!r}")
        return stack
    return value


def _replica_region(value: Any, primary: str, problems: Problems) -> str:
    fallback = default_replica_region(primary)
    if value is None:
        return fallback
    if not isinstance(value, str) or value not in SPACES_REGIONS:
        problems.add("backups.replicaRegion", f"{value!r} has no Spaces; valid: {', '.join(SPACES_REGIONS)}")
        return fallback
    if value == primary:
        problems.add(
            "backups.replicaRegion",
            f"must differ from backups.region ({primary!r}): the replica is the copy that survives "
            f"the loss of that region (e.g. {fallback!r})",
        )
        return fallback
    return value


def parse_backups(raw: Any, env: str, stack: str, problems: Problems) -> BackupSettings:
    default = defaults(env)["backups"]
    v = merged("backups", raw, default, problems)
    region = typed(problems, "backups.region", v["region"], str, default["region"])
    check(
        problems,
        "backups.region",
        region in SPACES_REGIONS,
        f"{region!r} has no Spaces; valid: {', '.join(SPACES_REGIONS)}",
    )
    time_utc = typed(problems, "backups.timeUtc", v["timeUtc"], str, default["timeUtc"])
    check(
        problems,
        "backups.timeUtc",
        bool(_TIME_RE.fullmatch(time_utc)),
        f"{time_utc!r} is not HH:MM (24 h, UTC)",
    )
    retention = int_range(problems, "backups.retentionDays", v["retentionDays"], 1, 3650)
    local = int_range(problems, "backups.localDays", v["localDays"], 1, 90)
    return BackupSettings(
        region=region,
        retention_days=retention,
        local_days=local,
        time_utc=time_utc,
        bucket_stack=_bucket_stack(v["bucketStack"], stack, problems),
        replica_region=_replica_region(v["replicaRegion"], region, problems),
    )


def parse_nginx(raw: Any, env: str, problems: Problems) -> NginxSettings:
    default = defaults(env)["nginx"]
    v = merged("nginx", raw, default, problems)
    body = v["clientMaxBodySize"]
    if not isinstance(body, str) or not _SIZE_LIMIT_RE.fullmatch(body):
        problems.add("nginx.clientMaxBodySize", f"must be an nginx size such as 25m or 512k, got {body!r}")
        body = default["clientMaxBodySize"]
    return NginxSettings(
        client_max_body_size=body,
        proxy_timeout_seconds=int_range(
            problems, "nginx.proxyTimeoutSeconds", v["proxyTimeoutSeconds"], 1, 3600
        ),
        hsts_max_age=int_range(problems, "nginx.hstsMaxAge", v["hstsMaxAge"], 0, 63072000),
    )
