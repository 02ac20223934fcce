"""One stack, built from its settings: the resource graph and the stack outputs (the contract
that the ops CLI and the workflows read -- see README "Stack outputs")."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_digitalocean as do

from bankflow_infra.catalog import SSH_PORT, SSH_USER, AppService, app_services
from bankflow_infra.components.backups import BackupAccess, BackupBucket, BackupReplica, backup_replica_args
from bankflow_infra.components.credentials import Credentials
from bankflow_infra.components.edge import Edge, zone_id_of
from bankflow_infra.components.edge_rules import ZoneSecurity
from bankflow_infra.components.fleet import (
    Fleet,
    deploy_fleet,
    fleet_outputs,
    managed_pieces,
    origin_addresses,
    render_with_managed,
)
from bankflow_infra.components.monitoring import Monitoring, MonitoringArgs
from bankflow_infra.components.origin_cert import OriginCertificate, OriginCertificateArgs
from bankflow_infra.components.origin_pull import OriginPullCa, OriginPullClient, OriginPulls
from bankflow_infra.components.server import DataVolume, Server, sorted_ranges
from bankflow_infra.components.stack_args import (
    backup_access_args,
    backup_bucket_args,
    data_volume_args,
    edge_args,
    origin_pull_ca_args,
    origin_pulls_args,
    server_args,
    zone_security_args,
)
from bankflow_infra.components.stack_refs import OriginStack, RepositoryKeys, repository_keys
from bankflow_infra.contract.outputs import OUTPUT_NAMES, SECRET_OUTPUTS
from bankflow_infra.render import Bundle, BundleSecrets, CloudflareRanges
from bankflow_infra.render.managed import ManagedServices
from bankflow_infra.settings import (
    NAMESPACE,
    SECRET_KEYS,
    TOP_LEVEL_KEYS,
    Settings,
    SettingsError,
    namespace_problems,
    parse_settings,
)
from bankflow_infra.stackfile import PROJECT_FILE, check_against_other_stacks


def _decoded(key: str, value: str) -> Any:
    if key == "environment":
        return value
    # The engine hands structured values as JSON; a value that is not JSON stays a string, and
    # validation reports the type with the key.
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def unknown_config_keys() -> list[str]:
    """``bankflow:`` keys the engine passed that the settings do not know (a typo must not pass
    silently). The engine hands a program its config as ``PULUMI_CONFIG``, which the SDK's public
    ``pulumi.runtime.get_config_env`` reads; ``pulumi.Config`` can only look keys up by name."""
    keys = []
    for full_key in pulumi.runtime.get_config_env():
        namespace, _, key = full_key.partition(":")
        if namespace == NAMESPACE and key not in TOP_LEVEL_KEYS and key not in SECRET_KEYS:
            keys.append(key)
    return keys


def stack_config_values() -> dict[str, Any]:
    """Every ``bankflow:`` config value of the running stack, structured values decoded.

    The known keys are read through the public ``pulumi.Config``; unknown keys are kept so that
    validation can name them.
    """
    config = pulumi.Config(NAMESPACE)
    values: dict[str, Any] = {}
    for key in TOP_LEVEL_KEYS:
        value = config.get(key)
        if value is not None:
            values[key] = _decoded(key, value)
    for key in unknown_config_keys():
        values[key] = None  # only its name matters (it is an error); never read a value, it may be secret
    return values


def load_settings(project_dir: Path | None = None) -> Settings:
    """Validated settings of the running stack; raises SettingsError before any resource.

    Checked in turn, each an error naming the key: config namespaces (a misspelt ``bankfow:``
    would leave every key unset), the values, then the project's other stack files (hostnames
    of another environment, overlapping VPC ranges). The engine runs the program in the project
    directory, so that is where the other ``Pulumi.*.yaml`` files are."""
    source = f"Pulumi.{pulumi.get_stack()}.yaml"
    foreign = namespace_problems(pulumi.runtime.get_config_env(), source)
    if foreign:
        raise SettingsError(source, foreign)
    settings = parse_settings(pulumi.get_project(), pulumi.get_stack(), stack_config_values(), source)
    directory = Path.cwd() if project_dir is None else project_dir
    if (directory / PROJECT_FILE).is_file():
        check_against_other_stacks(directory, settings, source)
    return settings


@dataclass
class Built:
    outputs: dict[str, Any]
    bundle: pulumi.Output[Bundle] | None


def _render(
    settings: Settings,
    credentials: Credentials,
    certificate: OriginCertificate,
    ranges: pulumi.Output[CloudflareRanges],
    backup_access: BackupAccess,
    repository: RepositoryKeys,
    origin_pull: _OriginPullInputs,
    managed: pulumi.Output[ManagedServices] | None,
) -> pulumi.Output[Bundle]:
    registry_password = pulumi.Config(NAMESPACE).get_secret("registryPassword")
    alerts_webhook_url = pulumi.Config(NAMESPACE).get_secret("alertsWebhookUrl")
    inputs = pulumi.Output.all(
        postgres_password=credentials.postgres_password,
        redis_password=credentials.redis_password,
        jwt_secret=credentials.jwt_secret,
        database_app_password=credentials.database_app_password,
        backup_cipher_pass=repository.cipher_pass,
        uploads_repo_password=repository.uploads_password,
        origin_private_key_pem=certificate.private_key_pem,
        origin_certificate_pem=certificate.certificate_pem,
        cloudflare=ranges,
        registry_password=registry_password,
        alerts_webhook_url=alerts_webhook_url,
        spaces_access_key=backup_access.access_key,
        spaces_secret_key=backup_access.secret_key,
        origin_pull_ca_pem=origin_pull.ca_pem,
        # Not used by the renderer: the bundle (and so the deploy that ships an nginx requiring
        # Cloudflare's client certificate) waits until AOP is on for every hostname.
        origin_pulls_ready=origin_pull.ready,
        managed=managed,
    )

    def render(v: dict[str, Any]) -> Bundle:
        secrets = BundleSecrets(
            postgres_password=v["postgres_password"],
            redis_password=v["redis_password"],
            jwt_secret=v["jwt_secret"],
            origin_private_key_pem=v["origin_private_key_pem"],
            registry_password=v["registry_password"],
            alerts_webhook_url=v["alerts_webhook_url"],
            spaces_access_key=v["spaces_access_key"],
            spaces_secret_key=v["spaces_secret_key"],
            database_app_password=v["database_app_password"],
            backup_cipher_pass=v["backup_cipher_pass"],
            uploads_repo_password=v["uploads_repo_password"],
        )
        return render_with_managed(
            settings,
            secrets,
            v["managed"],
            cloudflare=v["cloudflare"],
            origin_certificate_pem=v["origin_certificate_pem"],
            origin_pull_ca_pem=v["origin_pull_ca_pem"],
        )

    return inputs.apply(render)


def _contract_outputs(settings: Settings, services: tuple[AppService, ...]) -> dict[str, Any]:
    """The outputs every stack has; the server and edge layers fill in the rest."""
    return {
        "environment": settings.environment,
        "urls": {s.name: s.public_url for s in services},
        "health": [
            {
                "service": s.name,
                "url": f"{s.public_url}{s.health_path}",
                "host": s.hostnames[0],
                "path": s.health_path,
            }
            for s in services
        ],
        "origin_stack": settings.edge.origin_stack or settings.stack,
        "origin_ip": None,
        "origin_ipv6": None,
        "ssh": None,
        "deploy_private_key": None,
        "release": None,
        "origin_certificate": None,
        "origin_cert_expires_on": None,
        "backup_bucket": None,
        "backup_replica": None,
        "backup_replica_key": None,
        "backup_drill_key": None,
        "backup_repository": None,
        "origin_pull_client": None,
        **dict.fromkeys(("origin_ips", "load_balancer_ip", "load_balancer_ipv6", "database")),  # issue 13
    }


@dataclass(frozen=True)
class _OriginPullInputs:
    """What the bundle takes from Authenticated Origin Pulls: the CA nginx trusts, and what it
    must wait for (the hostname associations, when this stack's edge serves this droplet)."""

    ca_pem: pulumi.Output[str]
    ready: list[pulumi.Output[str]]
    client: OriginPullClient  # exported (secret) for an edge on another stack to upload


@dataclass
class _ServerLayer:
    server: Server
    bundle: pulumi.Output[Bundle]
    outputs: dict[str, Any]
    fleet: Fleet
    project_urns: list[pulumi.Output[str]]


def _server_layer(
    settings: Settings,
    ranges: pulumi.Output[CloudflareRanges],
    volume: do.Volume | None,
    backups: BackupBucket | None,
    origin_pull: _OriginPullInputs,
) -> _ServerLayer:
    """Credentials, droplets (and their load balancer), the managed data pieces, certificate,
    monitoring, the Spaces key and the remote deploys (with the roll across droplets)."""
    credentials = Credentials("credentials", host_count=server_args(settings).count)
    server = Server(
        "server",
        server_args(settings),
        credentials,
        ranges.apply(lambda r: list(r.ipv4)),
        ranges.apply(lambda r: list(r.ipv6)),
        volume,
    )
    certificate = OriginCertificate(
        "origin-cert",
        OriginCertificateArgs(
            hostnames=settings.all_hostnames, validity_days=settings.origin_cert_validity_days
        ),
    )
    Monitoring("monitoring", MonitoringArgs(stack=settings.stack, alerts=settings.alerts), server.stack_tag)
    own_bucket = backups.bucket if backups else None
    backup_access = BackupAccess("backup-access", backup_access_args(settings), own_bucket)
    repository = repository_keys(settings, backups)
    pieces = managed_pieces(settings, server)
    managed = pieces.services() if pieces.any else None
    bundle = _render(
        settings, credentials, certificate, ranges, backup_access, repository, origin_pull, managed
    )
    fleet = deploy_fleet(settings, server, credentials, bundle, pieces)
    outputs = {
        "origin_ip": server.ipv4,
        "origin_ipv6": server.ipv6,
        "ssh": {
            "host": server.ipv4,
            "port": SSH_PORT,
            "user": SSH_USER,
            "host_public_key": credentials.host_public_key,
        },
        "deploy_private_key": credentials.deploy_private_key,
        "release": fleet.release,
        "origin_certificate": certificate.certificate_pem,
        "origin_cert_expires_on": certificate.expires_on,
        "origin_pull_client": {
            "certificate": origin_pull.client.certificate_pem,
            "private_key": origin_pull.client.private_key_pem,
        },
        **fleet_outputs(server, pieces),
    }
    return _ServerLayer(server, bundle, outputs, fleet, [*server.resource_urns, *pieces.project_urns()])


def _project(settings: Settings, urns: list[pulumi.Output[str]]) -> None:
    do.Project(
        "project",
        name=f"BankFlow {settings.stack}",
        description=f"BankFlow {settings.environment} (stack {settings.stack}), managed by Pulumi",
        purpose="Web Application",
        environment="Production" if settings.is_production else "Staging",
        resources=urns,
    )


def _replica_outputs(replica: BackupReplica) -> dict[str, Any]:
    """The replica's name and endpoint (plain) and its two keys (secret: `export` wraps them)."""
    return {
        "backup_replica": {"name": replica.name, "region": replica.region, "endpoint": replica.endpoint},
        "backup_replica_key": replica.replication_key,
        "backup_drill_key": replica.drill_key,
    }


def build(settings: Settings) -> Built:
    services = app_services(settings)
    project_urns: list[pulumi.Output[str]] = []
    outputs = _contract_outputs(settings, services)
    ip_ranges = cloudflare.get_ip_ranges_output()
    ranges = pulumi.Output.all(ip_ranges.ipv4_cidrs, ip_ranges.ipv6_cidrs).apply(
        lambda r: sorted_ranges(r[0], r[1])
    )
    volume = (
        DataVolume("data", data_volume_args(settings)).volume if settings.server.volume_size_gb > 0 else None
    )
    if volume is not None:
        project_urns.append(volume.volume_urn)
    # The bucket first: this stack's own Spaces key is granted on it and must wait for it.
    backups = BackupBucket("backups", backup_bucket_args(settings)) if settings.edge.enabled else None
    origin = OriginStack(settings.edge.origin_stack) if backups and settings.edge.origin_stack else None
    pull_ca = OriginPullCa("origin-pull", origin_pull_ca_args(settings)) if settings.server.enabled else None
    pulls = _origin_pulls(settings, pull_ca, origin) if backups is not None else None
    layer: _ServerLayer | None = None
    if pull_ca is not None:
        own_bucket = backups if backups and settings.backups.bucket_stack == settings.stack else None
        ready = pulls.ready if pulls is not None and origin is None else []
        pull_inputs = _OriginPullInputs(pull_ca.ca_certificate_pem, ready, pull_ca.client)
        layer = _server_layer(settings, ranges, volume, own_bucket, pull_inputs)
        project_urns += layer.project_urns
        outputs |= layer.outputs

    if backups is not None:
        _edge(settings, services, origin, layer)
        project_urns.append(backups.bucket.bucket_urn)
        outputs["backup_bucket"] = {
            "name": backups.name,
            "region": settings.backups.region,
            "endpoint": backups.endpoint,
        }
        replica = BackupReplica("backup-replica", backup_replica_args(settings), backups.bucket)
        project_urns.append(replica.bucket.bucket_urn)
        outputs |= _replica_outputs(replica)
        outputs["backup_repository"] = {
            "cipher_pass": backups.cipher_pass,
            "uploads_password": backups.uploads_password,
        }

    if project_urns:
        _project(settings, project_urns)
    return Built(outputs=outputs, bundle=layer.bundle if layer else None)


def _edge(
    settings: Settings,
    services: tuple[AppService, ...],
    origin: OriginStack | None,
    layer: _ServerLayer | None,
) -> None:
    """DNS (and the rest of Edge) pointing at edge.originStack's droplet or this stack's own, and
    the zone-wide rules where this stack owns the zone."""
    if origin is not None:
        origin_ipv4, origin_ipv6 = origin.addresses()
    else:
        # Settings validation guarantees an origin: this stack's server or edge.originStack.
        assert layer is not None
        origin_ipv4, origin_ipv6 = origin_addresses(layer.server)
    # Own droplet: the records move to a (replacement) droplet only once it was bootstrapped
    # and serves the release; before, Cloudflare would send customers to an empty host. Behind
    # a load balancer: once the roll switched every droplet.
    after = [layer.fleet.serving] if layer and origin is None else []
    edge = Edge("edge", edge_args(settings, services), origin_ipv4, origin_ipv6, after)
    if settings.edge.zone_settings:
        ZoneSecurity("zone-security", zone_security_args(settings), edge.zone_id)


def _origin_pulls(settings: Settings, own: OriginPullCa | None, origin: OriginStack | None) -> OriginPulls:
    """AOP on this stack's hostnames with the client certificate of the droplet that serves them:
    edge.originStack's (read from its outputs) or this stack's own."""
    client: OriginPullClient | None = origin.origin_pull_client() if origin else (own.client if own else None)
    assert client is not None  # settings validation: a server of its own or edge.originStack
    zone_id = zone_id_of(settings.edge.zone)
    return OriginPulls("origin-pulls", origin_pulls_args(settings), zone_id, client)


def export(built: Built) -> None:
    """Export exactly the contract's outputs; a secret one stays secret whatever its source."""
    if set(built.outputs) != set(OUTPUT_NAMES):
        raise ValueError(f"program outputs {sorted(built.outputs)} differ from the contract's {OUTPUT_NAMES}")
    for name in OUTPUT_NAMES:
        value = built.outputs[name]
        pulumi.export(name, pulumi.Output.secret(value) if name in SECRET_OUTPUTS else value)
