"""The typed settings of one stack, with every default and every validation rule.

Stack config (``Pulumi.<stack>.yaml``, namespace ``bankflow``) arrives here as plain Python
values (``pulumi.Config.get_object`` / YAML). :func:`parse_settings` turns it into frozen
dataclasses or raises one :class:`SettingsError` listing *every* problem with its full key
(``bankflow:server.size: ...``) and what would be valid -- before any resource exists.

This module imports nothing from pulumi so the renderers, the ops CLI and the tests can use it.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

from bankflow_infra.contract import grammar
from bankflow_infra.contract.services import APP_SERVICES, ENVIRONMENTS, Environment

_T = TypeVar("_T")

__all__ = ["APP_SERVICES", "ENVIRONMENTS", "NAMESPACE", "Environment", "Settings", "SettingsError"]

NAMESPACE: Final = "bankflow"
# Keys whose value the program reads as a Pulumi secret, never part of Settings.
SECRET_KEYS: Final = ("originCaKey", "registryPassword")

# Cloudflare Origin CA accepts only these validity periods (days).
ORIGIN_CERT_VALIDITIES: Final = (7, 30, 90, 365, 730, 1095, 5475)
# DigitalOcean reserves these ranges (DOKS, internal services): a VPC may not overlap them.
DO_RESERVED_RANGES: Final = ("10.244.0.0/16", "10.245.0.0/16", "10.246.0.0/24", "10.229.0.0/16")
DROPLET_IMAGE: Final = "ubuntu-24-04-x64"  # Ubuntu 24.04 LTS, pinned: a new slug replaces the droplet

_REGION_RE: Final = re.compile(r"^[a-z]{3}[1-9]$")
_SIZE_RE: Final = re.compile(r"^(?:[a-z][a-z0-9]*(?:_\d+)?-\d+vcpu-\d+gb(?:-[a-z0-9]+)*|c2?-\d+)$")
_HOSTNAME_RE: Final = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_EMAIL_RE: Final = re.compile(r"^[A-Za-z0-9._%+-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}$")
_REGISTRY_RE: Final = re.compile(r"^[a-z0-9.-]+(?::\d+)?(?:/[a-z0-9._-]+)*$")
_REPOSITORY_RE: Final = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")
_SIZE_LIMIT_RE: Final = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")
_SSH_KEY_RE: Final = re.compile(
    # The hardened sshd (files/ssh) accepts exactly these client key types; ECDSA would lock out.
    r"^(ssh-ed25519|sk-ssh-ed25519@openssh\.com|ssh-rsa)"
    r" [A-Za-z0-9+/=]{60,}( .*)?$"
)
_SLACK_URL_RE: Final = re.compile(r"^https://hooks\.slack\.com/services/[A-Za-z0-9/]+$")
_TIME_RE: Final = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
SPACES_REGIONS: Final = (
    "nyc3",
    "sfo2",
    "sfo3",
    "ams3",
    "sgp1",
    "fra1",
    "syd1",
    "blr1",
    "lon1",
    "tor1",
    "atl1",
)


class SettingsError(ValueError):
    """Every problem found in one stack's config, one line each, key first."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid stack config ({source}): {len(self.problems)} problem(s)\n{lines}")


# --------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class ServerSettings:
    enabled: bool
    region: str
    size: str
    image: str
    vpc_cidr: str
    ssh_allowed_cidrs: tuple[str, ...]
    admin_ssh_keys: tuple[str, ...]
    backups: bool
    volume_size_gb: int  # 0: no data volume (PostgreSQL stays on the droplet disk)
    swap_gb: int


@dataclass(frozen=True)
class EdgeSettings:
    enabled: bool
    zone: str
    origin_stack: str | None  # None: this stack's own droplet is the origin
    zone_settings: bool
    uptime_checks: bool


@dataclass(frozen=True)
class AlertSettings:
    emails: tuple[str, ...]
    slack_channel: str | None
    slack_url: str | None
    cpu_percent: int
    memory_percent: int
    disk_percent: int


@dataclass(frozen=True)
class ReleaseSettings:
    registry: str
    tag: str
    images: Mapping[str, str]  # app service -> repository under the registry
    registry_username: str | None
    migrate_command: tuple[str, ...]  # run once in the new api image before traffic moves
    health_commands: Mapping[str, tuple[str, ...]]  # app service -> compose healthcheck "test"


@dataclass(frozen=True)
class BackupSettings:
    region: str
    retention_days: int  # bucket lifecycle expiry
    local_days: int  # kept on the droplet
    time_utc: str  # nightly pg_dump, HH:MM
    # The stack whose edge layer owns the bucket this server uploads to: the stack itself, or
    # (an emergency rebuild, edge off) the environment's original stack.
    bucket_stack: str


@dataclass(frozen=True)
class NginxSettings:
    client_max_body_size: str
    proxy_timeout_seconds: int
    hsts_max_age: int


@dataclass(frozen=True)
class Settings:
    project: str
    stack: str
    environment: Environment
    hostnames: Mapping[str, tuple[str, ...]]  # app service -> hostnames; the first is canonical
    server: ServerSettings
    edge: EdgeSettings
    alerts: AlertSettings
    release: ReleaseSettings
    backups: BackupSettings
    nginx: NginxSettings
    origin_cert_validity_days: int

    @property
    def is_production(self) -> bool:
        return self.environment == "production"

    @property
    def all_hostnames(self) -> tuple[str, ...]:
        return tuple(h for service in APP_SERVICES for h in self.hostnames[service])

    @property
    def backup_bucket_name(self) -> str:
        """The Spaces bucket this stack's server uploads dumps to (see BackupSettings.bucket_stack)."""
        return f"bankflow-{self.backups.bucket_stack}-backups"

    def resource_name(self, kind: str) -> str:
        """Cloud-side name of a resource: prefixed with the stack so two stacks never collide."""
        return f"bankflow-{self.stack}-{kind}"


# --------------------------------------------------------------------------- defaults
# Every default lives here. A default may depend on the environment (production keeps more).


def defaults(environment: str) -> dict[str, Any]:
    production = environment == "production"
    return {
        "server": {
            "enabled": True,
            "region": "nyc3",
            "size": "s-2vcpu-4gb" if not production else "s-4vcpu-8gb",
            "image": DROPLET_IMAGE,
            "vpcCidr": None,  # required: unique per stack, no default can be right
            "sshAllowedCidrs": [],
            "adminSshKeys": [],
            "backups": production,
            "volumeSizeGb": 50 if production else 0,
            "swapGb": 2,
        },
        "edge": {
            "enabled": True,
            "zone": "conciliaextrato.com",
            "originStack": None,
            "zoneSettings": production,
            "uptimeChecks": True,
        },
        "alerts": {
            "emails": [],
            "slackChannel": None,
            "slackUrl": None,
            "cpuPercent": 85,
            "memoryPercent": 90,
            "diskPercent": 85,
        },
        "release": {
            "registry": "ghcr.io/bankflow",
            "tag": None,  # required: the image tag the application CI published
            "images": {s: f"bankflow-{s}" for s in APP_SERVICES},
            "registryUsername": None,
            "migrateCommand": ["/app/migrate"],
            "healthCommands": {},
        },
        "backups": {
            "region": "nyc3",
            "retentionDays": 30,
            "localDays": 7,
            "timeUtc": "03:15",
            "bucketStack": None,  # None: this stack's own bucket
        },
        "nginx": {"clientMaxBodySize": "25m", "proxyTimeoutSeconds": 60, "hstsMaxAge": 63072000},
        "originCert": {"validityDays": 365},
    }


TOP_LEVEL_KEYS: Final = (
    "environment",
    "hostnames",
    "server",
    "edge",
    "alerts",
    "release",
    "backups",
    "nginx",
    "originCert",
)


# --------------------------------------------------------------------------- parsing


class _Problems:
    """Collects problems instead of stopping at the first, so one run shows them all."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{NAMESPACE}:{key}: {message}")


def _merged(key: str, raw: Any, default: Mapping[str, Any], problems: _Problems) -> dict[str, Any]:
    """Defaults overlaid with the stack's values; unknown keys are reported (typos must not pass)."""
    if raw is None:
        return dict(default)
    if not isinstance(raw, Mapping):
        problems.add(key, f"must be a mapping with keys {', '.join(default)}, got {type(raw).__name__}")
        return dict(default)
    for name in raw:
        if name not in default:
            problems.add(f"{key}.{name}", f"unknown key; valid keys: {', '.join(default)}")
    return {**default, **{k: v for k, v in raw.items() if k in default}}


def _typed(
    problems: _Problems, key: str, value: Any, kind: type[_T], fallback: _T, what: str | None = None
) -> _T:
    # bool is an int in Python: never accept True as a number or 1 as a flag.
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        problems.add(key, f"must be {what or kind.__name__}, got {value!r}")
        return fallback
    return cast(_T, value)


def _string_list(problems: _Problems, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(key, f"must be a list of strings, got {value!r}")
        return ()
    return tuple(value)


def _check(problems: _Problems, key: str, ok: bool, message: str) -> None:
    if not ok:
        problems.add(key, message)


def _int_range(problems: _Problems, key: str, value: Any, low: int, high: int) -> int:
    number = _typed(problems, key, value, int, low, f"an integer from {low} to {high}")
    if not low <= number <= high:
        problems.add(key, f"must be an integer from {low} to {high}, got {number}")
    return number


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        return None


def _parse_environment(raw: Any, problems: _Problems) -> Environment:
    if raw in ENVIRONMENTS:
        return raw  # type: ignore[no-any-return]
    problems.add("environment", f"must be one of {', '.join(ENVIRONMENTS)}, got {raw!r}")
    return "staging"


def _parse_hostnames(raw: Any, zone: str, problems: _Problems) -> dict[str, tuple[str, ...]]:
    result: dict[str, tuple[str, ...]] = {s: () for s in APP_SERVICES}
    if not isinstance(raw, Mapping):
        problems.add("hostnames", f"required: a mapping of {', '.join(APP_SERVICES)} to lists of hostnames")
        return result
    for name in raw:
        if name not in APP_SERVICES:
            problems.add(f"hostnames.{name}", f"unknown service; valid services: {', '.join(APP_SERVICES)}")
    seen: dict[str, str] = {}
    for service in APP_SERVICES:
        key = f"hostnames.{service}"
        if service not in raw:
            problems.add(key, "required: at least one hostname for this service")
            continue
        names = _string_list(problems, key, raw[service])
        if raw[service] is not None and isinstance(raw[service], list) and not names:
            problems.add(key, "must list at least one hostname")
        for index, name in enumerate(names):
            item = f"{key}[{index}]"
            if not _HOSTNAME_RE.match(name):
                problems.add(item, f"{name!r} is not a lower-case DNS hostname (e.g. app.{zone})")
            elif name != zone and not name.endswith("." + zone):
                problems.add(item, f"{name!r} is not in the zone {zone!r} (bankflow:edge.zone)")
            if name in seen:
                problems.add(item, f"{name!r} is already used by service {seen[name]!r}")
            seen.setdefault(name, service)
        result[service] = names
    return result


def _parse_server(raw: Any, env: str, stack: str, problems: _Problems) -> ServerSettings:
    v = _merged("server", raw, defaults(env)["server"], problems)
    region = _typed(problems, "server.region", v["region"], str, "nyc3")
    _check(
        problems,
        "server.region",
        bool(_REGION_RE.match(region)),
        f"{region!r} is not a DigitalOcean region slug (three letters and a digit, e.g. nyc3, fra1)",
    )
    size = _typed(problems, "server.size", v["size"], str, "s-1vcpu-1gb")
    _check(
        problems,
        "server.size",
        bool(_SIZE_RE.match(size)),
        f"{size!r} is not a DigitalOcean size slug (e.g. s-2vcpu-4gb, g-2vcpu-8gb, c-4)",
    )
    image = _typed(problems, "server.image", v["image"], str, DROPLET_IMAGE)
    _check(
        problems,
        "server.image",
        image.startswith("ubuntu-24-04-"),
        f"{image!r}: the host setup supports Ubuntu 24.04 LTS only (e.g. {DROPLET_IMAGE})",
    )
    enabled = _typed(problems, "server.enabled", v["enabled"], bool, True, "true or false")

    vpc_cidr = v.get("vpcCidr")
    if enabled or vpc_cidr is not None:
        _parse_vpc(vpc_cidr, problems)
    ssh_cidrs = _string_list(problems, "server.sshAllowedCidrs", v["sshAllowedCidrs"])
    for index, cidr in enumerate(ssh_cidrs):
        net = _network(cidr)
        key = f"server.sshAllowedCidrs[{index}]"
        if net is None:
            problems.add(key, f"{cidr!r} is not a CIDR with its host bits zero (e.g. 203.0.113.0/24)")
        elif net.prefixlen == 0:
            problems.add(key, f"{cidr!r} opens SSH to the whole internet; list the operators' ranges")
    if enabled and not ssh_cidrs:
        problems.add(
            "server.sshAllowedCidrs",
            "required when the server is enabled: the ranges allowed to reach port 22",
        )
    keys = _string_list(problems, "server.adminSshKeys", v["adminSshKeys"])
    for index, key_text in enumerate(keys):
        _check(
            problems,
            f"server.adminSshKeys[{index}]",
            bool(_SSH_KEY_RE.match(key_text)),
            "not an ed25519, sk-ed25519 or RSA OpenSSH public key line (ssh-ed25519 AAAA... comment); "
            "the hardened sshd refuses other types",
        )
    if len(set(keys)) != len(keys):
        problems.add("server.adminSshKeys", "lists the same key twice (DigitalOcean rejects duplicates)")
    backups = _typed(problems, "server.backups", v["backups"], bool, False, "true or false")
    volume = _int_range(problems, "server.volumeSizeGb", v["volumeSizeGb"], 0, 16384)
    if env == "production" and volume == 0 and enabled:
        problems.add("server.volumeSizeGb", "production keeps PostgreSQL on a data volume: set 1 to 16384")
    swap = _int_range(problems, "server.swapGb", v["swapGb"], 0, 16)
    return ServerSettings(
        enabled=enabled,
        region=region,
        size=size,
        image=image,
        vpc_cidr=str(vpc_cidr) if isinstance(vpc_cidr, str) else "",
        ssh_allowed_cidrs=ssh_cidrs,
        admin_ssh_keys=keys,
        backups=backups,
        volume_size_gb=volume,
        swap_gb=swap,
    )


def _parse_vpc(value: Any, problems: _Problems) -> None:
    key = "server.vpcCidr"
    if not isinstance(value, str):
        problems.add(
            key, "required: a private IPv4 range of /16 to /24 unique to this stack (e.g. 10.110.0.0/20)"
        )
        return
    net = _network(value)
    if not isinstance(net, ipaddress.IPv4Network):
        problems.add(key, f"{value!r} is not an IPv4 CIDR with its host bits zero (e.g. 10.110.0.0/20)")
        return
    if not net.is_private:
        problems.add(key, f"{value!r} is not a private (RFC 1918) range")
    if not 16 <= net.prefixlen <= 24:
        problems.add(key, f"{value!r}: DigitalOcean VPC ranges are /16 to /24")
    for reserved in DO_RESERVED_RANGES:
        if net.overlaps(ipaddress.ip_network(reserved)):
            problems.add(key, f"{value!r} overlaps {reserved}, which DigitalOcean reserves")


def _parse_edge(raw: Any, env: str, stack: str, problems: _Problems) -> EdgeSettings:
    v = _merged("edge", raw, defaults(env)["edge"], problems)
    zone = _typed(problems, "edge.zone", v["zone"], str, "conciliaextrato.com")
    _check(problems, "edge.zone", bool(_HOSTNAME_RE.match(zone)), f"{zone!r} is not a DNS zone name")
    origin = v["originStack"]
    if origin is not None:
        origin = _typed(problems, "edge.originStack", origin, str, "", "a stack name or null")
        if not grammar.is_stack_name(origin):
            problems.add("edge.originStack", f"{origin!r} is not a stack name (letters, digits, _ . -)")
        elif origin.rsplit("/", 1)[-1] == stack:
            problems.add(
                "edge.originStack",
                f"{origin!r} is this stack; leave it unset to serve from this stack's own droplet",
            )
    return EdgeSettings(
        enabled=_typed(problems, "edge.enabled", v["enabled"], bool, True, "true or false"),
        zone=zone,
        origin_stack=origin or None,
        zone_settings=_typed(problems, "edge.zoneSettings", v["zoneSettings"], bool, False, "true or false"),
        uptime_checks=_typed(problems, "edge.uptimeChecks", v["uptimeChecks"], bool, True, "true or false"),
    )


def _parse_alerts(raw: Any, env: str, problems: _Problems) -> AlertSettings:
    v = _merged("alerts", raw, defaults(env)["alerts"], problems)
    emails = _string_list(problems, "alerts.emails", v["emails"])
    for index, email in enumerate(emails):
        _check(
            problems,
            f"alerts.emails[{index}]",
            bool(_EMAIL_RE.match(email)),
            f"{email!r} is not an e-mail address (e.g. ops@conciliaextrato.com)",
        )
    channel, url = v["slackChannel"], v["slackUrl"]
    if (channel is None) != (url is None):
        problems.add(
            "alerts.slackUrl" if url is None else "alerts.slackChannel",
            "slackChannel and slackUrl go together: set both or neither",
        )
    if url is not None and not (isinstance(url, str) and _SLACK_URL_RE.match(url)):
        problems.add(
            "alerts.slackUrl", "must be a Slack incoming-webhook URL (https://hooks.slack.com/services/...)"
        )
    if channel is not None and not (isinstance(channel, str) and channel.startswith("#")):
        problems.add("alerts.slackChannel", f"must be a channel name starting with '#', got {channel!r}")
    if not emails and url is None:
        problems.add("alerts.emails", "required: at least one e-mail address (or a Slack webhook) for alerts")
    return AlertSettings(
        emails=emails,
        slack_channel=channel if isinstance(channel, str) else None,
        slack_url=url if isinstance(url, str) else None,
        cpu_percent=_int_range(problems, "alerts.cpuPercent", v["cpuPercent"], 10, 100),
        memory_percent=_int_range(problems, "alerts.memoryPercent", v["memoryPercent"], 10, 100),
        disk_percent=_int_range(problems, "alerts.diskPercent", v["diskPercent"], 10, 100),
    )


def _parse_command(problems: _Problems, key: str, value: Any) -> tuple[str, ...]:
    command = _string_list(problems, key, value)
    if isinstance(value, list) and not command:
        problems.add(key, "must not be empty")
    return command


def _parse_release(raw: Any, env: str, problems: _Problems) -> ReleaseSettings:
    v = _merged("release", raw, defaults(env)["release"], problems)
    registry = _typed(problems, "release.registry", v["registry"], str, "")
    _check(
        problems,
        "release.registry",
        bool(_REGISTRY_RE.match(registry)),
        f"{registry!r} is not a registry path (e.g. ghcr.io/bankflow)",
    )
    tag = v.get("tag")
    if not isinstance(tag, str) or not grammar.is_image_tag(tag):
        problems.add("release.tag", f"required: the image tag to deploy (e.g. 2026.11.26-1), got {tag!r}")
        tag = ""
    elif tag == "latest":
        problems.add("release.tag", "'latest' is not a release: pin the tag the application CI published")
    images_raw = _merged("release.images", v["images"], defaults(env)["release"]["images"], problems)
    images: dict[str, str] = {}
    for service in APP_SERVICES:
        repo = _typed(problems, f"release.images.{service}", images_raw[service], str, "")
        _check(
            problems,
            f"release.images.{service}",
            bool(_REPOSITORY_RE.match(repo)),
            f"{repo!r} is not an image repository name (e.g. bankflow-{service})",
        )
        images[service] = repo
    username = v["registryUsername"]
    if username is not None and not isinstance(username, str):
        problems.add("release.registryUsername", f"must be a string or null, got {username!r}")
        username = None
    health_raw = v["healthCommands"]
    health: dict[str, tuple[str, ...]] = {}
    if not isinstance(health_raw, Mapping):
        problems.add("release.healthCommands", "must be a mapping of service to an exec-form command list")
    else:
        for service, command in health_raw.items():
            if service not in APP_SERVICES:
                problems.add(
                    f"release.healthCommands.{service}",
                    f"unknown service; valid services: {', '.join(APP_SERVICES)}",
                )
                continue
            health[service] = _parse_command(problems, f"release.healthCommands.{service}", command)
    return ReleaseSettings(
        registry=registry,
        tag=tag,
        images=images,
        registry_username=username,
        migrate_command=_parse_command(problems, "release.migrateCommand", v["migrateCommand"]),
        health_commands=health,
    )


def _parse_backups(raw: Any, env: str, stack: str, problems: _Problems) -> BackupSettings:
    v = _merged("backups", raw, defaults(env)["backups"], problems)
    region = _typed(problems, "backups.region", v["region"], str, "nyc3")
    _check(
        problems,
        "backups.region",
        region in SPACES_REGIONS,
        f"{region!r} has no Spaces; valid: {', '.join(SPACES_REGIONS)}",
    )
    time_utc = _typed(problems, "backups.timeUtc", v["timeUtc"], str, "03:15")
    _check(
        problems, "backups.timeUtc", bool(_TIME_RE.match(time_utc)), f"{time_utc!r} is not HH:MM (24 h, UTC)"
    )
    retention = _int_range(problems, "backups.retentionDays", v["retentionDays"], 1, 3650)
    local = _int_range(problems, "backups.localDays", v["localDays"], 1, 90)
    bucket_stack = v["bucketStack"]
    if bucket_stack is None:
        bucket_stack = stack
    elif not isinstance(bucket_stack, str) or not grammar.is_stack_name(bucket_stack):
        problems.add(
            "backups.bucketStack", f"must be a stack name (letters, digits, _ . -), got {bucket_stack!r}"
        )
        bucket_stack = stack
    return BackupSettings(
        region=region,
        retention_days=retention,
        local_days=local,
        time_utc=time_utc,
        bucket_stack=bucket_stack,
    )


def _parse_nginx(raw: Any, env: str, problems: _Problems) -> NginxSettings:
    v = _merged("nginx", raw, defaults(env)["nginx"], problems)
    body = v["clientMaxBodySize"]
    if not isinstance(body, str) or not _SIZE_LIMIT_RE.match(body):
        problems.add("nginx.clientMaxBodySize", f"must be an nginx size such as 25m or 512k, got {body!r}")
        body = "1m"
    return NginxSettings(
        client_max_body_size=body,
        proxy_timeout_seconds=_int_range(
            problems, "nginx.proxyTimeoutSeconds", v["proxyTimeoutSeconds"], 1, 3600
        ),
        hsts_max_age=_int_range(problems, "nginx.hstsMaxAge", v["hstsMaxAge"], 0, 63072000),
    )


def _parse_origin_cert(raw: Any, env: str, problems: _Problems) -> int:
    v = _merged("originCert", raw, defaults(env)["originCert"], problems)
    days = v["validityDays"]
    if days not in ORIGIN_CERT_VALIDITIES or isinstance(days, bool):
        problems.add(
            "originCert.validityDays",
            f"must be one of {', '.join(map(str, ORIGIN_CERT_VALIDITIES))} (Cloudflare Origin CA), "
            f"got {days!r}",
        )
        return 365
    return int(days)


def _cross_checks(settings: Settings, problems: _Problems) -> None:
    server, edge = settings.server, settings.edge
    if edge.enabled and settings.backups.bucket_stack != settings.stack:
        problems.add(
            "backups.bucketStack",
            "a stack with bankflow:edge.enabled owns its backups bucket: leave bucketStack unset",
        )
    if edge.enabled and not server.enabled and edge.origin_stack is None:
        problems.add(
            "edge.originStack",
            "required when bankflow:server.enabled is false: the stack whose droplet serves this edge",
        )
    if edge.zone_settings and not edge.enabled:
        problems.add("edge.zoneSettings", "only a stack with bankflow:edge.enabled may own the zone settings")
    if edge.zone_settings and settings.environment != "production":
        problems.add(
            "edge.zoneSettings",
            "only production owns the zone-wide settings; staging shares the zone and must not fight",
        )


def parse_settings(
    project: str, stack: str, values: Mapping[str, Any], source: str = "stack config"
) -> Settings:
    """Validate ``values`` (top-level ``bankflow:`` keys without the namespace) into Settings."""
    problems = _Problems()
    if not grammar.is_stack_name(stack):
        problems.add("stack", f"{stack!r} is not a usable stack name (letters, digits, _ . -)")
    for name in values:
        if name not in TOP_LEVEL_KEYS:
            problems.add(name, f"unknown key; valid keys: {', '.join(TOP_LEVEL_KEYS)}")
    env = _parse_environment(values.get("environment"), problems)
    edge = _parse_edge(values.get("edge"), env, stack, problems)
    settings = Settings(
        project=project,
        stack=stack,
        environment=env,
        hostnames=_parse_hostnames(values.get("hostnames"), edge.zone, problems),
        server=_parse_server(values.get("server"), env, stack, problems),
        edge=edge,
        alerts=_parse_alerts(values.get("alerts"), env, problems),
        release=_parse_release(values.get("release"), env, problems),
        backups=_parse_backups(values.get("backups"), env, stack, problems),
        nginx=_parse_nginx(values.get("nginx"), env, problems),
        origin_cert_validity_days=_parse_origin_cert(values.get("originCert"), env, problems),
    )
    _cross_checks(settings, problems)
    if problems.items:
        raise SettingsError(source, problems.items)
    return settings
