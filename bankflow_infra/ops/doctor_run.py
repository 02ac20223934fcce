"""Gather what the APIs and the network say about one stack, and turn it into doctor's report.

Order matters only where a later check needs an earlier answer: a rejected token stops that
API's other checks (they would all fail for the same reason). Everything is a GET or a TCP
connect; nothing is created or changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from bankflow_infra.contract.outputs import StackOutputs
from bankflow_infra.ops.doctor import (
    Check,
    Report,
    account_status_check,
    alert_email_checks,
    dns_record_checks,
    import_file,
    vpc_checks,
)
from bankflow_infra.ops.doctor_apis import ApiError, CloudflareApi, DigitalOceanApi
from bankflow_infra.ops.doctor_ssh import CHECK_NAME as SSH_CHECK
from bankflow_infra.ops.doctor_ssh import ssh_check
from bankflow_infra.settings import Settings

# Read scopes doctor can prove with a one-item GET. droplet:create needs the first four too
# (DigitalOcean "Scopes for API Tokens", associated scopes); vpc:read lists the ranges in use.
PROBED_SCOPES: Final = ("actions:read", "image:read", "regions:read", "sizes:read")
TOKEN_EXPIRY_WARNING: Final = timedelta(days=30)
# Cloudflare's zone object lists the caller's permissions on it (cloudflare/api-schemas,
# zones_zone.permissions, deprecated but still returned), in the legacy "#name:action" form.
DNS_EDIT: Final = "#dns_records:edit"
ZONE_SETTINGS_EDIT: Final = "#zone_settings:edit"

MANUAL_CHECKS: Final = (
    "DigitalOcean write scopes: the API cannot list a token's scopes, and doctor never writes. Compare the "
    'token\'s create/update/delete scopes with README "Credentials" (droplet, vpc, firewall, block_storage, '
    "block_storage_action:create, ssh_key, tag:create, monitoring, uptime, project, spaces_key).",
    "Alert e-mails other than the account's own: DigitalOcean sends alerts only to addresses verified on the "
    "account or team, and no API lists them. Confirm each address in the control panel before the "
    "first `up`.",
    'Cloudflare "SSL and Certificates: Edit" (Origin CA certificates) and, for hostnames two labels deep, '
    "Advanced Certificate Manager on the zone: check under My Profile > API Tokens and "
    "SSL/TLS > Edge Certificates.",
    "Spaces keys (SPACES_ACCESS_KEY_ID/SPACES_SECRET_ACCESS_KEY) and the state backend (`pulumi login`, "
    "PULUMI_CONFIG_PASSPHRASE) are not checked here: `pulumi preview` proves them.",
)


@dataclass(frozen=True)
class Facts:
    """What doctor knows before asking anyone: the settings and, if deployed, the outputs."""

    settings: Settings
    outputs: StackOutputs | None
    no_outputs_reason: str  # why ``outputs`` is None ("" when it is not)
    ssh_timeout: float
    now: datetime


@dataclass(frozen=True)
class Outcome:
    report: Report
    import_document: Mapping[str, Any] | None  # `pulumi import --file` for the colliding records


def run_doctor(
    facts: Facts,
    digitalocean: DigitalOceanApi | None,
    cloudflare: CloudflareApi | None,
    notes: Sequence[str] = (),
) -> Outcome:
    checks: list[Check] = []
    if digitalocean is not None:
        try:
            checks += digitalocean_checks(facts, digitalocean)
        except ApiError as error:  # a 5xx or no answer after the token was accepted
            checks.append(_unanswered("digitalocean.api", error))
    document = None
    if cloudflare is not None:
        try:
            cloudflare_result, document = cloudflare_checks(facts, cloudflare)
            checks += cloudflare_result
        except ApiError as error:
            checks.append(_unanswered("cloudflare.api", error))
    if facts.settings.server.enabled:
        checks.append(ssh_reachability(facts))
    report = Report(facts.settings.stack, tuple(checks), MANUAL_CHECKS, tuple(notes))
    return Outcome(report, document)


# --------------------------------------------------------------------------- DigitalOcean


def digitalocean_checks(facts: Facts, api: DigitalOceanApi) -> list[Check]:
    settings = facts.settings
    checks: list[Check] = []
    missing: list[str] = []
    account: Mapping[str, Any] | None = None
    try:
        account = api.account()
        checks.append(account_status_check(account))
    except ApiError as error:
        if error.status != 403:
            return [_token_rejected("digitalocean.account", error, "DIGITALOCEAN_TOKEN")]
        missing.append("account:read")
    for scope in PROBED_SCOPES:
        if _lacks(api, scope):
            missing.append(scope)
    if settings.server.enabled:
        try:
            vpcs = api.vpcs()
            checks += vpc_checks(
                settings.resource_name("vpc"),
                settings.server.region,
                settings.server.vpc_cidr,
                vpcs,
                deployed=facts.outputs is not None,
            )
        except ApiError as error:
            if error.status != 403:
                raise
            missing.append("vpc:read")
    probed = ["account:read", *PROBED_SCOPES] + (["vpc:read"] if settings.server.enabled else [])
    checks.append(_scopes_check(probed, missing))
    checks += alert_email_checks(settings.alerts.emails, account)
    return checks


def _lacks(api: DigitalOceanApi, scope: str) -> bool:
    try:
        api.probe(scope)
    except ApiError as error:
        if error.status == 403:
            return True
        raise
    return False


def _scopes_check(probed: Sequence[str], missing: Sequence[str]) -> Check:
    if not missing:
        return Check("digitalocean.scopes", "ok", f"read scopes present: {', '.join(probed)}")
    return Check(
        "digitalocean.scopes",
        "fail",
        f"the token lacks {', '.join(missing)} (HTTP 403)",
        f'create a token with {", ".join(missing)} added to the scopes in README "Credentials"',
    )


def _unanswered(name: str, error: ApiError) -> Check:
    return Check(name, "fail", str(error), f"retry; if it persists, check {error.api}'s status page")


def _token_rejected(name: str, error: ApiError, variable: str) -> Check:
    if error.status == 401:
        return Check(
            name,
            "fail",
            f"{error.api} rejected the token (HTTP 401: {error.message})",
            f"{variable} is wrong, expired or revoked: create a new token and export it",
        )
    return _unanswered(name, error)


# --------------------------------------------------------------------------- Cloudflare


def cloudflare_checks(facts: Facts, api: CloudflareApi) -> tuple[list[Check], Mapping[str, Any] | None]:
    try:
        token = api.verify_token()
    except ApiError as error:
        rejected = _token_rejected("cloudflare.token", error, "CLOUDFLARE_API_TOKEN")
        if error.status == 401:
            # /user/tokens/verify knows user API tokens only; an account-owned token is verified
            # under /accounts/{id}/tokens/verify, which doctor does not know the account id for.
            hint = "; an account-owned token is not verifiable here: use a user API token (README)"
            rejected = replace(rejected, fix=f"{rejected.fix}{hint}")
        return [rejected], None
    checks = [_token_check(token, facts.now)]
    if checks[0].status == "fail" or not facts.settings.edge.enabled:
        return checks, None
    zone_name = facts.settings.edge.zone
    try:
        zone = api.zone(zone_name)
    except ApiError as error:
        return [
            *checks,
            Check("cloudflare.zone", "fail", str(error), "give the token Zone:Read on the zone"),
        ], None
    if zone is None:
        return [
            *checks,
            Check(
                "cloudflare.zone",
                "fail",
                f"zone {zone_name} not found for this token",
                "check bankflow:edge.zone, and that the token's zone resources include it (Zone:Read)",
            ),
        ], None
    zone_id = str(zone.get("id"))
    checks.append(_zone_check(zone_name, zone))
    checks.append(_permissions_check(zone, facts.settings.edge.zone_settings))
    try:
        records = api.dns_records(zone_id)
    except ApiError as error:
        return [
            *checks,
            Check(
                "cloudflare.dns-records",
                "fail",
                str(error),
                "give the token DNS:Read and DNS:Edit on the zone",
            ),
        ], None
    settings = facts.settings
    record_checks = dns_record_checks(
        settings.project, settings.stack, settings.all_hostnames, zone_id, records
    )
    importable = [c for c in record_checks if c.commands]
    document = (
        import_file(
            settings.project, settings.stack, zone_id, importable, edge_exists=facts.outputs is not None
        )
        if importable
        else None
    )
    return checks + record_checks, document


def _token_check(token: Mapping[str, Any], now: datetime) -> Check:
    # /user/tokens/verify result: {id, status: active|disabled|expired, expires_on?, not_before?}
    status = token.get("status")
    if status != "active":
        return Check(
            "cloudflare.token",
            "fail",
            f"the token is {status}",
            "CLOUDFLARE_API_TOKEN: create an active token and export it",
        )
    expires = _timestamp(token.get("expires_on"))
    if expires is not None and expires - now < TOKEN_EXPIRY_WARNING:
        return Check(
            "cloudflare.token",
            "warn",
            f"active, but expires on {expires:%Y-%m-%d}",
            "roll or replace the token before then",
        )
    return Check("cloudflare.token", "ok", "token active")


def _zone_check(name: str, zone: Mapping[str, Any]) -> Check:
    status = zone.get("status")
    if status == "active":
        return Check("cloudflare.zone", "ok", f"{name} found (active)")
    return Check(
        "cloudflare.zone",
        "warn",
        f"{name} found, status {status!r}: proxied records serve only on an active zone",
        "finish the zone's setup (name servers) in Cloudflare",
    )


def _permissions_check(zone: Mapping[str, Any], zone_settings: bool) -> Check:
    listed = set(zone.get("permissions") or [])
    needed = [DNS_EDIT] + ([ZONE_SETTINGS_EDIT] if zone_settings else [])
    if not listed:
        return Check(
            "cloudflare.permissions",
            "warn",
            "Cloudflare lists no permissions for this token on the zone",
            "check by hand: DNS:Edit" + (" and Zone Settings:Edit" if zone_settings else ""),
        )
    absent = [p for p in needed if p not in listed]
    if absent:
        return Check(
            "cloudflare.permissions",
            "fail",
            f"the token lacks {', '.join(absent)} on the zone",
            "edit the token (My Profile > API Tokens) to add them for this zone",
        )
    return Check("cloudflare.permissions", "ok", f"{', '.join(needed)} on the zone")


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# --------------------------------------------------------------------------- SSH


def ssh_reachability(facts: Facts) -> Check:
    outputs = facts.outputs
    if outputs is None:
        return Check(
            SSH_CHECK,
            "warn",
            f"not tested: no stack outputs ({facts.no_outputs_reason}); a first `up` has none",
            "make sure this runner's egress address is inside bankflow:server.sshAllowedCidrs",
        )
    if outputs.ssh is None:
        return Check(
            SSH_CHECK, "warn", "not tested: the outputs have no ssh endpoint (no droplet of this stack yet)"
        )
    return ssh_check(outputs.ssh.host, outputs.ssh.port, facts.ssh_timeout)
