"""Each component's narrow args, built from a stack's Settings (the program's one translation
from config to components)."""

from __future__ import annotations

from bankflow_infra.catalog import CLIENT_PORT_HEADER, AppService
from bankflow_infra.components.backups import BackupAccessArgs, BackupBucketArgs
from bankflow_infra.components.edge import EdgeArgs, UptimeTarget
from bankflow_infra.components.edge_rules import ZoneSecurityArgs
from bankflow_infra.components.load_balancer import LoadBalancerArgs
from bankflow_infra.components.managed_data import ManagedClusterArgs
from bankflow_infra.components.origin_pull import OriginPullCaArgs, OriginPullsArgs
from bankflow_infra.components.remote_deploy import RemoteDeployArgs
from bankflow_infra.components.server import DataVolumeArgs, ServerArgs, droplet_tags
from bankflow_infra.components.shared_uploads import SharedUploadsArgs
from bankflow_infra.settings import (
    ManagedCacheSettings,
    ManagedDatabaseSettings,
    Settings,
    advanced_certificate_hosts,
)


def server_args(settings: Settings) -> ServerArgs:
    server = settings.server
    return ServerArgs(
        stack=settings.stack,
        environment=settings.environment,
        region=server.region,
        size=server.size,
        image=server.image,
        vpc_cidr=server.vpc_cidr,
        ssh_allowed_cidrs=server.ssh_allowed_cidrs,
        backups=server.backups,
        resource_name=settings.resource_name,
        resize_disk=server.resize_disk,
        production=settings.is_production,
        count=server.count if settings.load_balanced else 1,
        load_balancer=(
            LoadBalancerArgs(name=settings.resource_name("lb"), region=server.region)
            if settings.load_balanced
            else None
        ),
    )


def _label_tags(settings: Settings) -> tuple[str, ...]:
    """The droplets' labels (project, environment) without the stack tag, which means "a droplet
    of this stack" to the load balancer and the firewalls: the managed pieces are not droplets."""
    return tuple(droplet_tags(settings.environment, settings.stack)[:-1])


def _cluster_args(
    settings: Settings, managed: ManagedDatabaseSettings | ManagedCacheSettings, role: str, protect: bool
) -> ManagedClusterArgs:
    return ManagedClusterArgs(
        name=settings.resource_name(role),
        region=settings.server.region,
        size=managed.size,
        nodes=managed.nodes,
        maintenance=managed.maintenance,
        tags=_label_tags(settings),
        protect=protect,
    )


def database_args(settings: Settings) -> ManagedClusterArgs | None:
    managed = settings.scale.database
    return None if managed is None else _cluster_args(settings, managed, "db", settings.is_production)


def cache_args(settings: Settings) -> ManagedClusterArgs | None:
    managed = settings.scale.cache
    # sessions and cache: rebuilt by use, no data to keep
    return None if managed is None else _cluster_args(settings, managed, "cache", protect=False)


def shared_uploads_args(settings: Settings) -> SharedUploadsArgs | None:
    shared = settings.scale.uploads
    if shared is None:
        return None
    return SharedUploadsArgs(
        name=settings.resource_name("uploads"),
        region=settings.server.region,
        size_gb=shared.size_gb,
        tags=_label_tags(settings),
        protect=settings.is_production,
    )


def data_volume_args(settings: Settings) -> DataVolumeArgs:
    return DataVolumeArgs(
        stack=settings.stack,
        environment=settings.environment,
        region=settings.server.region,
        size_gb=settings.server.volume_size_gb,
        resource_name=settings.resource_name,
    )


def remote_deploy_args(settings: Settings) -> RemoteDeployArgs:
    return RemoteDeployArgs(
        stack=settings.stack,
        swap_gb=settings.server.swap_gb,
        data_volume=settings.server.volume_size_gb > 0,
        admin_ssh_keys=settings.server.admin_ssh_keys,
        volume_size_gb=settings.server.volume_size_gb,
        backup_after_deploy=settings.backups.bucket_stack == settings.stack and not settings.load_balanced,
        stage_only=settings.load_balanced,
    )


def edge_args(settings: Settings, services: tuple[AppService, ...]) -> EdgeArgs:
    # Every public hostname (www included) is checked, so a broken alias cannot go unnoticed.
    targets = tuple(
        UptimeTarget(hostname, f"https://{hostname}{service.health_path}")
        for service in services
        for hostname in service.hostnames
    )
    return EdgeArgs(
        project=settings.project,
        stack=settings.stack,
        zone=settings.edge.zone,
        hostnames=settings.all_hostnames,
        zone_settings=settings.edge.zone_settings,
        uptime_targets=targets if settings.edge.uptime_checks else (),
        alerts=settings.alerts,
        resource_name=settings.resource_name,
        certificate_pack_hosts=(
            advanced_certificate_hosts(settings.all_hostnames, settings.edge.zone)
            if settings.edge.advanced_certificates
            else ()
        ),
    )


def backup_bucket_args(settings: Settings) -> BackupBucketArgs:
    return BackupBucketArgs(
        name=settings.backup_bucket_name,
        region=settings.backups.region,
        retention_days=settings.backups.retention_days,
        protect=settings.is_production,
    )


def backup_access_args(settings: Settings) -> BackupAccessArgs:
    return BackupAccessArgs(key_name=settings.resource_name("backup-key"), bucket=settings.backup_bucket_name)


def origin_pull_ca_args(settings: Settings) -> OriginPullCaArgs:
    return OriginPullCaArgs(stack=settings.stack)


def origin_pulls_args(settings: Settings) -> OriginPullsArgs:
    return OriginPullsArgs(hostnames=settings.all_hostnames, zone_toggle=settings.edge.zone_settings)


def zone_security_args(settings: Settings) -> ZoneSecurityArgs:
    edge = settings.edge
    # CAA violation reports go where the alerts go unless edge.caaIodef names another address.
    iodef = edge.caa_iodef or (f"mailto:{settings.alerts.emails[0]}" if settings.alerts.emails else None)
    return ZoneSecurityArgs(
        zone=edge.zone,
        plan=edge.plan,
        site_hostnames=tuple(settings.hostnames["site"]),
        rate_limit_paths=edge.rate_limit_paths,
        rate_limit_requests=edge.rate_limit_requests,
        caa_iodef=iodef,
        client_port_header=CLIENT_PORT_HEADER,
    )
