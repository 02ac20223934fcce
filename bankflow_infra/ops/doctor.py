"""The pre-flight of ``bankflow-infra doctor STACK``: pure checks over what the APIs answered.

Each check is one :class:`Check` (``ok`` / ``warn`` / ``fail``; a failure carries its fix and,
where one exists, the exact command). Nothing here talks to a network: ``doctor_run`` gathers the
facts (``doctor_apis``, ``doctor_ssh``) and hands them to these functions, so every rule is
tested on plain data.

``--json`` prints ``doctor_report.report_document``, valid against ``doctor_report.JSON_SCHEMA``::

    {"stack": str, "ok": bool, "counts": {"ok": int, "warn": int, "fail": int},
     "checks": [{"name": str, "status": "ok"|"warn"|"fail", "detail": str,
                 "fix": str|null, "commands": [str]}],
     "manual": [str], "notes": [str]}
"""

from __future__ import annotations

import ipaddress
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Status = Literal["ok", "warn", "fail"]
STATUSES: Final[tuple[Status, ...]] = ("ok", "warn", "fail")

# The program's identity of a DNS record (tests/program/urns/*.txt; components/edge.py names each
# record f"{edge}-{hostname}-{type}" under the Edge component "edge"). A test compares these with
# the committed URN list, so a rename there fails here too.
RECORD_TYPE: Final = "cloudflare:index/dnsRecord:DnsRecord"
EDGE_TYPE: Final = "bankflow:index:Edge"
EDGE_NAME: Final = "edge"
RECORD_TYPES: Final = ("A", "AAAA")
# A CNAME on a name refuses an A/AAAA beside it (Cloudflare error 81053).
COLLIDING_TYPES: Final = ("A", "AAAA", "CNAME")
MANAGED_PREFIX: Final = "managed by pulumi: project "


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str | None = None
    commands: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    stack: str
    checks: tuple[Check, ...]
    manual: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return all(check.status != "fail" for check in self.checks)


# --------------------------------------------------------------------------- DNS records


def record_comment(project: str, stack: str) -> str:
    """The comment the program writes on its records (components/edge.py ``record_comment``)."""
    return f"{MANAGED_PREFIX}{project}, stack {stack}"


def record_resource_name(hostname: str, record_type: str) -> str:
    return f"{EDGE_NAME}-{hostname}-{record_type.lower()}"


def edge_urn(project: str, stack: str) -> str:
    return f"urn:pulumi:{stack}::{project}::pulumi:pulumi:Stack${EDGE_TYPE}::{EDGE_NAME}"


def import_command(
    project: str, stack: str, hostname: str, record_type: str, zone_id: str, record_id: str
) -> str:
    """``pulumi import`` adopting one existing record as the program's own resource.

    The id is ``<zone_id>/<dns_record_id>`` (terraform-provider-cloudflare v5
    examples/resources/cloudflare_dns_record/import.sh; the same in pulumi_cloudflare's
    dns_record.py). ``--protect=false`` and ``--generate-code=false``: the program already
    declares the record, unprotected, so the next ``up`` shows no option change.
    """
    return shlex.join(
        [
            "pulumi",
            "import",
            "--stack",
            stack,
            RECORD_TYPE,
            record_resource_name(hostname, record_type),
            f"{zone_id}/{record_id}",
            "--parent",
            f"{EDGE_NAME}={edge_urn(project, stack)}",
            "--protect=false",
            "--generate-code=false",
        ]
    )


def dns_record_checks(
    project: str, stack: str, hostnames: Sequence[str], zone_id: str, records: Iterable[Mapping[str, Any]]
) -> list[Check]:
    """One failing check per existing record that the stack's records would collide with."""
    ours = record_comment(project, stack)
    wanted = {h.lower() for h in hostnames}
    colliding = sorted(
        (r for r in records if str(r.get("name", "")).lower() in wanted and r.get("type") in COLLIDING_TYPES),
        key=lambda r: (str(r.get("name")), str(r.get("type")), str(r.get("id"))),
    )
    # A resource name taken by this stack's own record, or by a record already offered for import.
    taken = {(str(r["name"]).lower(), r["type"]) for r in colliding if r.get("comment") == ours}
    checks: list[Check] = []
    for record in colliding:
        if record.get("comment") == ours:
            continue
        checks.append(_collision(project, stack, zone_id, record, taken))
    if not checks:
        managed = sum(1 for r in colliding if r.get("comment") == ours)
        detail = f"no other A/AAAA/CNAME record on {len(wanted)} hostname(s)"
        checks.append(
            Check(
                "cloudflare.dns-records",
                "ok",
                detail + (f"; {managed} managed by this stack" if managed else ""),
            )
        )
    return checks


def _collision(
    project: str, stack: str, zone_id: str, record: Mapping[str, Any], taken: set[tuple[str, Any]]
) -> Check:
    name, record_type, record_id = str(record["name"]), str(record["type"]), str(record.get("id"))
    comment = str(record.get("comment") or "")
    check_name = f"cloudflare.dns-record {name} {record_type}"
    detail = (
        f"{record_type} {name} -> {record.get('content')} exists (id {record_id}); "
        "creating it fails (81057/81053)"
    )
    if comment.startswith(MANAGED_PREFIX):
        fix = (
            f"it belongs to another stack ({comment!r}): one hostname has one owner; "
            "remove the hostname from this stack's bankflow:hostnames or from the other stack"
        )
        return Check(check_name, "fail", detail, fix)
    if record_type == "CNAME":
        fix = (
            "delete this CNAME in the Cloudflare dashboard: an A/AAAA record cannot sit beside it "
            "and it cannot be adopted as one"
        )
        return Check(check_name, "fail", detail, fix)
    if (name.lower(), record_type) in taken:
        fix = (
            "delete it in the Cloudflare dashboard: another record already takes this stack's resource "
            "name (a second one would serve as a round-robin origin)"
        )
        return Check(check_name, "fail", detail, fix)
    taken.add((name.lower(), record_type))
    fix = (
        "adopt it into the stack with the command below (`up` then points it at this stack's droplet), "
        "or delete it in the Cloudflare dashboard"
    )
    command = import_command(project, stack, name, record_type, zone_id, record_id)
    return Check(check_name, "fail", detail, fix, (command,))


def import_file(
    project: str, stack: str, zone_id: str, checks: Iterable[Check], edge_exists: bool
) -> dict[str, Any]:
    """``pulumi import --file`` document adopting every importable record; on a first ``up`` the
    Edge parent is not in the state yet, so the file creates it as an empty component
    (``"component": true``; pulumi import, engine 3.94+)."""
    resources: list[dict[str, Any]] = []
    name_table: dict[str, str] = {}
    if edge_exists:
        name_table[EDGE_NAME] = edge_urn(project, stack)
    else:
        resources.append({"type": EDGE_TYPE, "name": EDGE_NAME, "component": True})
    for check in checks:
        for command in check.commands:
            words = shlex.split(command)
            token_at = words.index(RECORD_TYPE)
            resources.append(
                {
                    "type": RECORD_TYPE,
                    "name": words[token_at + 1],
                    "id": words[token_at + 2],
                    "parent": EDGE_NAME,
                }
            )
    document: dict[str, Any] = {"resources": resources}
    if name_table:
        document["nameTable"] = name_table
    return document


# --------------------------------------------------------------------------- VPC


def vpc_checks(
    stack_vpc_name: str, region: str, vpc_cidr: str, vpcs: Sequence[Mapping[str, Any]], deployed: bool
) -> list[Check]:
    """Range overlap, name uniqueness and the region's default VPC (DigitalOcean's rules:
    digitalocean/openapi specification/resources/vpcs/models/vpc.yml)."""
    wanted = ipaddress.ip_network(vpc_cidr, strict=False)
    own = [v for v in vpcs if v.get("name") == stack_vpc_name]
    others = [v for v in vpcs if v.get("name") != stack_vpc_name]
    return [
        _vpc_range(wanted, others),
        _vpc_name(stack_vpc_name, own, deployed),
        _region_default(region, vpcs, stack_vpc_name),
    ]


def _vpc_range(
    wanted: ipaddress.IPv4Network | ipaddress.IPv6Network, others: Sequence[Mapping[str, Any]]
) -> Check:
    overlapping = []
    for vpc in others:
        try:
            existing = ipaddress.ip_network(str(vpc.get("ip_range")), strict=False)
        except ValueError:
            continue
        if existing.version == wanted.version and existing.overlaps(wanted):
            overlapping.append(f"{vpc.get('name')} ({existing}, {vpc.get('region')})")
    if not overlapping:
        return Check(
            "digitalocean.vpc-range",
            "ok",
            f"{wanted} overlaps none of the account's {len(others)} other VPC(s)",
        )
    return Check(
        "digitalocean.vpc-range",
        "fail",
        f"{wanted} overlaps {', '.join(overlapping)}: "
        "DigitalOcean refuses overlapping VPC ranges in one account",
        "choose another bankflow:server.vpcCidr (RFC 1918, /16-/24) outside the ranges listed",
    )


def _vpc_name(name: str, own: Sequence[Mapping[str, Any]], deployed: bool) -> Check:
    if not own:
        return Check("digitalocean.vpc-name", "ok", f"no VPC named {name} yet")
    if deployed:
        return Check(
            "digitalocean.vpc-name", "ok", f"{name} exists: this stack's own (the stack has outputs)"
        )
    return Check(
        "digitalocean.vpc-name",
        "fail",
        f"a VPC named {name} already exists ({own[0].get('ip_range')}) and the stack has no outputs: "
        "VPC names are unique per account",
        "if it is a leftover of a lost stack, delete it (Networking > VPC) or adopt it with "
        "`pulumi import`; if the stack is deployed, run doctor where `pulumi stack output` works "
        "or pass --outputs",
    )


def _region_default(region: str, vpcs: Sequence[Mapping[str, Any]], own_name: str) -> Check:
    in_region = [v for v in vpcs if v.get("region") == region]
    default = [v for v in in_region if v.get("default")]
    if default:
        is_own = default[0].get("name") == own_name
        detail = f"region {region} has its default VPC ({default[0].get('name')})"
        return Check(
            "digitalocean.region-default-vpc",
            "warn" if is_own else "ok",
            detail + (": this stack's own, which can never be deleted" if is_own else ""),
        )
    return Check(
        "digitalocean.region-default-vpc",
        "warn",
        f"region {region} has no VPC yet: this stack's VPC would become the region's default, "
        "which can never be deleted",
        "create a default VPC for the region first (control panel Networking > VPC, or "
        f"`doctl vpcs create --name default-{region} --region {region}`), or accept that this one stays",
    )


# --------------------------------------------------------------------------- alert e-mails


def alert_email_checks(emails: Sequence[str], account: Mapping[str, Any] | None) -> list[Check]:
    """Alert e-mails must be verified on the DigitalOcean account (digitalocean/openapi
    monitoring/models/alerts.yml: "The Email has to be one that is verified on that DigitalOcean
    account"). The API tells only whether the account's own e-mail is verified
    (``GET /v2/account``: ``email``, ``email_verified``); any other address is a manual check."""
    if not emails:
        return [Check("digitalocean.alert-emails", "ok", "no alert e-mails configured (Slack only)")]
    own = str((account or {}).get("email", "")).lower()
    checks = []
    for email in emails:
        name = f"digitalocean.alert-email {email}"
        if account is None:
            checks.append(
                Check(
                    name,
                    "warn",
                    "not checked: the account could not be read",
                    "verify it by hand (see manual checks)",
                )
            )
        elif email.lower() == own and account.get("email_verified"):
            checks.append(Check(name, "ok", "the account's own e-mail, verified"))
        elif email.lower() == own:
            checks.append(
                Check(
                    name,
                    "fail",
                    "the account's own e-mail is not verified: alerts to it are refused",
                    "verify the account's e-mail (the link in DigitalOcean's verification mail)",
                )
            )
        else:
            checks.append(
                Check(
                    name,
                    "warn",
                    "not the account's own e-mail: no API tells whether DigitalOcean verified it",
                    "check by hand that it is a verified address of the team (see manual checks)",
                )
            )
    return checks


def account_status_check(account: Mapping[str, Any]) -> Check:
    status = str(account.get("status", ""))
    if status == "active":
        return Check("digitalocean.account", "ok", "token accepted; account active")
    level: Status = "fail" if status == "locked" else "warn"
    return Check(
        "digitalocean.account",
        level,
        f"account status {status!r}: {account.get('status_message', '')}".strip(),
        "resolve it in the DigitalOcean control panel (billing or support)",
    )
