"""The edge layer: proxied DNS for the environment's hostnames, zone settings (owner stack
only), uptime checks on every public URL, and the environment's backups bucket."""

from __future__ import annotations

from typing import Final

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_digitalocean as do

from bankflow_infra.catalog import AppService
from bankflow_infra.settings import AlertSettings, Settings

# Zone-wide TLS posture. Exactly one stack (production) owns these: two owners would flip them.
ZONE_SETTINGS: Final = {
    "ssl": "strict",
    "always_use_https": "on",
    "min_tls_version": "1.2",
    "tls_1_3": "on",
}
UPTIME_REGIONS: Final = ["us_east", "eu_west"]
CERT_EXPIRY_WARNING_DAYS: Final = 14
PROXIED_TTL: Final = 1  # Cloudflare requires "automatic" TTL on proxied records


def record_comment(settings: Settings) -> str:
    return f"managed by pulumi: project {settings.project}, stack {settings.stack}"


def uptime_notifications(alerts: AlertSettings) -> list[do.UptimeAlertNotificationArgs]:
    slacks = (
        [
            do.UptimeAlertNotificationSlackArgs(
                channel=alerts.slack_channel, url=pulumi.Output.secret(alerts.slack_url)
            )
        ]
        if alerts.slack_channel and alerts.slack_url
        else None
    )
    return [do.UptimeAlertNotificationArgs(emails=list(alerts.emails) or None, slacks=slacks)]


class Edge(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        settings: Settings,
        services: tuple[AppService, ...],
        origin_ipv4: pulumi.Input[str],
        origin_ipv6: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("bankflow:index:Edge", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        zone = cloudflare.get_zone_output(
            filter=cloudflare.GetZoneFilterArgs(name=settings.edge.zone, match="all"),
            opts=pulumi.InvokeOutputOptions(parent=self),
        )
        zone_id = zone.id
        comment = record_comment(settings)
        for hostname in settings.all_hostnames:
            for record_type, content in (("A", origin_ipv4), ("AAAA", origin_ipv6)):
                cloudflare.DnsRecord(
                    f"{name}-{hostname}-{record_type.lower()}",
                    zone_id=zone_id,
                    name=hostname,
                    type=record_type,
                    content=content,
                    proxied=True,
                    ttl=PROXIED_TTL,
                    comment=comment,
                    opts=child,
                )

        if settings.edge.zone_settings:
            for setting_id, value in ZONE_SETTINGS.items():
                cloudflare.ZoneSetting(
                    f"{name}-zone-{setting_id}",
                    zone_id=zone_id,
                    setting_id=setting_id,
                    value=value,
                    opts=child,
                )

        if settings.edge.uptime_checks:
            notifications = uptime_notifications(settings.alerts)
            # Every public hostname (www included), so a broken alias cannot go unnoticed.
            for service in services:
                for hostname in service.hostnames:
                    self._uptime(
                        name, settings, hostname, f"https://{hostname}{service.health_path}", notifications
                    )
        self.register_outputs({})

    def _uptime(
        self,
        name: str,
        settings: Settings,
        hostname: str,
        target: str,
        notifications: list[do.UptimeAlertNotificationArgs],
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        label = hostname.replace(".", "-")
        check = do.UptimeCheck(
            f"{name}-{hostname}-uptime",
            name=settings.resource_name(f"{label}-uptime"),
            target=target,
            type="https",
            regions=UPTIME_REGIONS,
            enabled=True,
            opts=child,
        )
        do.UptimeAlert(
            f"{name}-{hostname}-down",
            check_id=check.id,
            name=settings.resource_name(f"{label}-down"),
            type="down",
            period="2m",
            notifications=notifications,
            opts=child,
        )
        do.UptimeAlert(
            f"{name}-{hostname}-cert-expiry",
            check_id=check.id,
            name=settings.resource_name(f"{label}-cert-expiry"),
            type="ssl_expiry",
            threshold=CERT_EXPIRY_WARNING_DAYS,
            period="2m",
            notifications=notifications,
            opts=child,
        )
