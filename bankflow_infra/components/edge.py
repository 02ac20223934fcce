"""The edge layer: proxied DNS for the environment's hostnames, zone settings (owner stack
only), uptime checks on every public URL, and the environment's backups bucket."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_digitalocean as do

from bankflow_infra.settings import AlertSettings

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
# The advanced certificate pack (Advanced Certificate Manager) for hostnames Universal SSL does
# not cover. Values from the provider schema (pulumi_cloudflare/certificate_pack.py, from
# terraform-provider-cloudflare v5 `cloudflare_certificate_pack`): type "advanced"; validity 14,
# 30, 90 or 365 days; Let's Encrypt issues 90-day certificates only. TXT validation completes by
# itself on a zone whose DNS Cloudflare serves; Cloudflare renews the pack before it expires.
PACK_TYPE: Final = "advanced"
PACK_CERTIFICATE_AUTHORITY: Final = "lets_encrypt"
PACK_VALIDATION_METHOD: Final = "txt"
PACK_VALIDITY_DAYS: Final = 90


@dataclass(frozen=True)
class UptimeTarget:
    hostname: str
    url: str  # https://<hostname><health path>


@dataclass(frozen=True)
class EdgeArgs:
    project: str
    stack: str
    zone: str
    hostnames: tuple[str, ...]  # every public hostname: one A and one AAAA record each
    zone_settings: bool  # this stack owns the zone-wide TLS settings (production only)
    uptime_targets: tuple[UptimeTarget, ...]  # empty: no uptime checks
    alerts: AlertSettings
    resource_name: Callable[[str], str]  # kind -> the cloud-side name (bankflow-<stack>-<kind>)
    # Hosts of the advanced certificate pack (apex, parent, *.parent); empty: Universal SSL covers all.
    certificate_pack_hosts: tuple[str, ...] = ()


def record_comment(project: str, stack: str) -> str:
    return f"managed by pulumi: project {project}, stack {stack}"


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


def zone_id_of(zone: str, parent: pulumi.Resource | None = None) -> pulumi.Output[str]:
    """The zone's id (one lookup per caller; the zone must exist on the token's account)."""
    found = cloudflare.get_zone_output(
        filter=cloudflare.GetZoneFilterArgs(name=zone, match="all"),
        opts=pulumi.InvokeOutputOptions(parent=parent),
    )
    return found.id


class Edge(pulumi.ComponentResource):
    zone_id: pulumi.Output[str]


    def __init__(
        self,
        name: str,
        args: EdgeArgs,
        origin_ipv4: pulumi.Input[str],
        origin_ipv6: pulumi.Input[str],
        records_after: Sequence[pulumi.Resource] = (),
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``records_after``: what must be done before the records point at the origin (the
        deploy on this stack's own droplet)."""
        super().__init__("bankflow:index:Edge", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        record_options = pulumi.ResourceOptions(parent=self, depends_on=list(records_after))
        zone_id = self.zone_id = zone_id_of(args.zone, self)
        comment = record_comment(args.project, args.stack)
        for hostname in args.hostnames:
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
                    opts=record_options,
                )

        if args.certificate_pack_hosts:
            self._certificate_pack(name, zone_id, args.certificate_pack_hosts)

        if args.zone_settings:
            for setting_id, value in ZONE_SETTINGS.items():
                cloudflare.ZoneSetting(
                    f"{name}-zone-{setting_id}",
                    zone_id=zone_id,
                    setting_id=setting_id,
                    value=value,
                    opts=child,
                )

        if args.uptime_targets:
            notifications = uptime_notifications(args.alerts)
            for target in args.uptime_targets:
                self._uptime(name, args.resource_name, target, notifications)
        self.register_outputs({})

    def _certificate_pack(self, name: str, zone_id: pulumi.Input[str], hosts: tuple[str, ...]) -> None:
        cloudflare.CertificatePack(
            f"{name}-certificate-pack",
            zone_id=zone_id,
            hosts=list(hosts),
            cloudflare_branding=False,
            type=PACK_TYPE,
            certificate_authority=PACK_CERTIFICATE_AUTHORITY,
            validation_method=PACK_VALIDATION_METHOD,
            validity_days=PACK_VALIDITY_DAYS,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _uptime(
        self,
        name: str,
        resource_name: Callable[[str], str],
        target: UptimeTarget,
        notifications: list[do.UptimeAlertNotificationArgs],
    ) -> None:
        child = pulumi.ResourceOptions(parent=self)
        hostname = target.hostname
        label = hostname.replace(".", "-")
        check = do.UptimeCheck(
            f"{name}-{hostname}-uptime",
            name=resource_name(f"{label}-uptime"),
            target=target.url,
            type="https",
            regions=UPTIME_REGIONS,
            enabled=True,
            opts=child,
        )
        do.UptimeAlert(
            f"{name}-{hostname}-down",
            check_id=check.id,
            name=resource_name(f"{label}-down"),
            type="down",
            period="2m",
            notifications=notifications,
            opts=child,
        )
        do.UptimeAlert(
            f"{name}-{hostname}-cert-expiry",
            check_id=check.id,
            name=resource_name(f"{label}-cert-expiry"),
            type="ssl_expiry",
            threshold=CERT_EXPIRY_WARNING_DAYS,
            period="2m",
            notifications=notifications,
            opts=child,
        )
