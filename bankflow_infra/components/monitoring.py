"""Droplet monitor alerts (CPU, memory, disk) to the stack's e-mails and Slack."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_digitalocean as do

from bankflow_infra.settings import AlertSettings

# DigitalOcean monitoring metric types, by what the alert watches.
METRICS: Final = {
    "cpu": "v1/insights/droplet/cpu",
    "memory": "v1/insights/droplet/memory_utilization_percent",
    "disk": "v1/insights/droplet/disk_utilization_percent",
}


def thresholds(alerts: AlertSettings) -> dict[str, int]:
    return {"cpu": alerts.cpu_percent, "memory": alerts.memory_percent, "disk": alerts.disk_percent}


def monitor_recipients(alerts: AlertSettings) -> do.MonitorAlertAlertsArgs:
    slacks = (
        # Whoever holds the webhook URL can post into the ops channel: keep it out of plain state.
        [
            do.MonitorAlertAlertsSlackArgs(
                channel=alerts.slack_channel, url=pulumi.Output.secret(alerts.slack_url)
            )
        ]
        if alerts.slack_channel and alerts.slack_url
        else None
    )
    return do.MonitorAlertAlertsArgs(emails=list(alerts.emails) or None, slacks=slacks)


@dataclass(frozen=True)
class MonitoringArgs:
    stack: str  # named in every alert's description
    alerts: AlertSettings


class Monitoring(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        args: MonitoringArgs,
        droplet_tag: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("bankflow:index:Monitoring", name, None, opts)
        for kind, percent in thresholds(args.alerts).items():
            do.MonitorAlert(
                f"{name}-{kind}",
                description=f"BankFlow {args.stack}: {kind} above {percent}% for 5 minutes",
                type=METRICS[kind],
                compare="GreaterThan",
                value=percent,
                window="5m",
                # Selected by the stack's tag, not the droplet id: a replacement droplet (new id)
                # is watched from its first boot, without an update of every alert.
                tags=[droplet_tag],
                alerts=monitor_recipients(args.alerts),
                enabled=True,
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.register_outputs({})
