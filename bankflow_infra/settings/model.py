"""The typed settings of one stack: frozen dataclasses, and the one error that lists every problem."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bankflow_infra.contract.services import APP_SERVICES, Environment


class SettingsError(ValueError):
    """Every problem found in one stack's config, one line each, key first."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid stack config ({source}): {len(self.problems)} problem(s)\n{lines}")


# --------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class OperatorAccount:
    """A person's own login on the droplet (server.operators): sudo, every command audited."""

    name: str  # the Linux account name
    public_key: str  # one OpenSSH public key line


@dataclass(frozen=True)
class ServerSettings:
    enabled: bool
    region: str
    size: str
    image: str
    vpc_cidr: str
    ssh_allowed_cidrs: tuple[str, ...]
    admin_ssh_keys: tuple[str, ...]
    # DigitalOcean droplet backups: root-disk images only (no volume), deleted with the droplet.
    # Not a backup of the database or the uploads (those are on the data volume).
    backups: bool
    volume_size_gb: int  # 0: no data volume (PostgreSQL and uploads stay on the droplet disk)
    swap_gb: int
    resize_disk: bool  # grow the disk on a size change (permanent: no way back to a smaller size)
    # Named accounts with sudo (issue 12): root logs in only with the deploy key's forced command.
    operators: tuple[OperatorAccount, ...] = ()
    # App droplets behind a DigitalOcean load balancer (issue 13). 1 (the default): one droplet,
    # no load balancer, exactly as before. More needs the managed database, cache and shared uploads.
    count: int = 1


@dataclass(frozen=True)
class EdgeSettings:
    enabled: bool
    zone: str
    origin_stack: str | None  # None: this stack's own droplet is the origin
    zone_settings: bool
    uptime_checks: bool
    advanced_certificates: bool  # the zone has Advanced Certificate Manager (hostnames below *.zone)
    # Zone-wide security (issue 12): created only by the stack that owns the zone (zone_settings).
    plan: str  # the zone's Cloudflare plan (free, pro, business, enterprise): what its WAF allows
    caa_iodef: str | None  # where CAs report refused requests (mailto:/https:); None: the alert e-mail
    rate_limit_paths: tuple[str, ...]  # path prefixes (login, auth) rate-limited per client IP
    rate_limit_requests: int  # requests per 10 s per IP and Cloudflare data centre before a block


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
    # app service -> "sha256:<64 hex>" of its image at `tag` (issue 12): pulled by digest when set
    digests: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BackupSettings:
    region: str
    retention_days: int  # bucket lifecycle expiry
    local_days: int  # kept on the droplet
    time_utc: str  # nightly pg_dump, HH:MM
    # The stack whose edge layer owns the bucket this server uploads to: the stack itself, or
    # (an emergency rebuild, edge off) the environment's original stack.
    bucket_stack: str
    # The replica bucket's region (another region: a second copy the droplet cannot reach).
    replica_region: str


@dataclass(frozen=True)
class NginxSettings:
    client_max_body_size: str
    proxy_timeout_seconds: int
    hsts_max_age: int


@dataclass(frozen=True)
class MaintenanceWindow:
    """When DigitalOcean may patch a managed cluster (UTC): a weekday and an hour."""

    day: str  # monday .. sunday (the provider's spelling)
    hour: str  # "HH:MM:SS", UTC


@dataclass(frozen=True)
class ManagedDatabaseSettings:
    """A DigitalOcean managed PostgreSQL 15 cluster (``database.managed``), instead of the
    PostgreSQL container on the droplet."""

    size: str  # a DigitalOcean database size slug, e.g. db-s-2vcpu-4gb
    nodes: int  # 1 = primary only; 2 or 3 = primary + standby(s) (production: at least 2)
    maintenance: MaintenanceWindow


@dataclass(frozen=True)
class ManagedCacheSettings:
    """A DigitalOcean managed Valkey cluster (``cache.managed``), instead of the redis container."""

    size: str
    nodes: int
    maintenance: MaintenanceWindow


@dataclass(frozen=True)
class SharedUploadsSettings:
    """Uploads on a DigitalOcean Network File Storage share (``uploads.shared``), mounted on every
    app droplet, instead of the droplet's data volume."""

    size_gb: int


@dataclass(frozen=True)
class ScaleSettings:
    """The managed building blocks of a stack that outgrew one droplet (issue 13); each None is
    today's single-droplet piece (the container on the droplet, the droplet's own disk/volume)."""

    database: ManagedDatabaseSettings | None = None
    cache: ManagedCacheSettings | None = None
    uploads: SharedUploadsSettings | None = None


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
    scale: ScaleSettings = field(default_factory=ScaleSettings)

    @property
    def load_balanced(self) -> bool:
        """More than one app droplet: a load balancer in front, rolling deploys."""
        return self.server.enabled and self.server.count > 1

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

    @property
    def backup_replica_bucket_name(self) -> str:
        """The replica of this stack's own backups bucket (another region; only its edge owns one)."""
        return f"bankflow-{self.stack}-backups-replica"

    def resource_name(self, kind: str) -> str:
        """Cloud-side name of a resource: prefixed with the stack so two stacks never collide."""
        return f"bankflow-{self.stack}-{kind}"
