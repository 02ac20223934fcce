"""One stack, built from its settings: the resource graph and the stack outputs (the contract
that the ops CLI and the workflows read -- see README "Stack outputs")."""

from __future__ import annotations

import ipaddress
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
from bankflow_infra.components.edge import Edge
from bankflow_infra.components.monitoring import Monitoring, MonitoringArgs
from bankflow_infra.components.origin_cert import OriginCertificate, OriginCertificateArgs
from bankflow_infra.components.remote_deploy import RESOURCE_NAME as REMOTE_DEPLOY_NAME
from bankflow_infra.components.remote_deploy import RemoteDeploy
from bankflow_infra.components.server import DataVolume, Server
from bankflow_infra.components.stack_args import (
    backup_access_args,
    backup_bucket_args,
    data_volume_args,
    edge_args,
    remote_deploy_args,
    server_args,
)
from bankflow_infra.contract.outputs import OUTPUT_NAMES, SECRET_OUTPUTS
from bankflow_infra.render import Bundle, BundleSecrets, CloudflareRanges, render_bundle
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


class OriginStackError(ValueError):
    """The stack named by bankflow:edge.originStack has no usable server address."""


def origin_address(value: object, version: int, stack: str) -> str:
    """The referenced stack's droplet address, or one clear error: DNS must never get "None"."""
    key = "origin_ip" if version == 4 else "origin_ipv6"
    try:
        address = ipaddress.ip_address(str(value))
    except ValueError:
        address = None
    if value is None or address is None or address.version != version:
        raise OriginStackError(
            f"bankflow:edge.originStack: stack {stack!r} has no usable {key} output (got {value!r}); "
            f"is its server layer on and deployed (pulumi up -s {stack})?"
        )
    return str(address)


def _stack_reference_name(stack: str) -> str:
    # Fully qualified so it works on Pulumi Cloud and on a self-managed (s3://) backend alike.
    return stack if "/" in stack else f"{pulumi.get_organization()}/{pulumi.get_project()}/{stack}"


@dataclass(frozen=True)
class _RepositoryKeys:
    """The keys of the backup repositories in this server's bucket (None: no bucket to use)."""

    cipher_pass: pulumi.Input[str | None] = None
    uploads_password: pulumi.Input[str | None] = None


def _repository_keys(settings: Settings, own: BackupBucket | None) -> _RepositoryKeys:
    """This stack's own bucket's keys, or -- a rebuild stack writing to its environment's original
    bucket -- that stack's, through a StackReference: a new random key could not open backups
    made with the old one (pgBackRest and restic repositories have one key each)."""
    if own is not None:
        return _RepositoryKeys(own.cipher_pass, own.uploads_password)
    if settings.backups.bucket_stack == settings.stack:
        return _RepositoryKeys()
    reference = pulumi.StackReference(_stack_reference_name(settings.backups.bucket_stack))
    source = settings.backups.bucket_stack
    repository = reference.get_output("backup_repository")
    return _RepositoryKeys(
        repository.apply(lambda v: repository_key(v, "cipher_pass", source)),
        repository.apply(lambda v: repository_key(v, "uploads_password", source)),
    )


def repository_key(value: Any, key: str, source: str) -> str:
    """One key of another stack's `backup_repository` output; an error names the stack, never a value."""
    if not isinstance(value, dict) or not isinstance(value.get(key), str) or not value[key]:
        raise ValueError(
            f"stack {source!r} has no output backup_repository.{key}: has it been `pulumi up`-ed with "
            "the current program (its bucket generates the backup repositories' keys)?"
        )
    return str(value[key])


def _render(
    settings: Settings,
    credentials: Credentials,
    certificate: OriginCertificate,
    ranges: pulumi.Output[CloudflareRanges],
    backup_access: BackupAccess,
    repository: _RepositoryKeys,
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
        return render_bundle(
            settings, secrets, cloudflare=v["cloudflare"], origin_certificate_pem=v["origin_certificate_pem"]
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
    }


@dataclass
class _ServerLayer:
    server: Server
    bundle: pulumi.Output[Bundle]
    outputs: dict[str, Any]
    deploy: RemoteDeploy


def _network_order(cidr: str) -> tuple[int, int, int]:
    network = ipaddress.ip_network(cidr, strict=False)
    return (network.version, int(network.network_address), network.prefixlen)


def sorted_ranges(ipv4: list[str], ipv6: list[str]) -> CloudflareRanges:
    """Cloudflare's ranges in address order: the API's order is not stable, and a re-ordered list
    would be a new host bundle (a new release) and a firewall update for nothing."""
    return CloudflareRanges(
        ipv4=tuple(sorted(ipv4, key=_network_order)), ipv6=tuple(sorted(ipv6, key=_network_order))
    )


def _server_layer(
    settings: Settings,
    ranges: pulumi.Output[CloudflareRanges],
    volume: do.Volume | None,
    backups: BackupBucket | None,
) -> _ServerLayer:
    """Credentials, droplet, certificate, monitoring, the Spaces key and the remote deploy."""
    credentials = Credentials("credentials")
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
    repository = _repository_keys(settings, backups)
    bundle = _render(settings, credentials, certificate, ranges, backup_access, repository)
    deploy = RemoteDeploy(REMOTE_DEPLOY_NAME, remote_deploy_args(settings), server, credentials, bundle)
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
        "release": deploy.release,
        "origin_certificate": certificate.certificate_pem,
        "origin_cert_expires_on": certificate.expires_on,
    }
    return _ServerLayer(server, bundle, outputs, deploy)


def _edge_origin(settings: Settings, own: Server | None) -> tuple[pulumi.Input[str], pulumi.Input[str]]:
    """The addresses the DNS records point at: another stack's droplet or this stack's own."""
    if settings.edge.origin_stack is not None:
        reference = pulumi.StackReference(_stack_reference_name(settings.edge.origin_stack))
        origin = settings.edge.origin_stack
        return (
            reference.get_output("origin_ip").apply(lambda v: origin_address(v, 4, origin)),
            reference.get_output("origin_ipv6").apply(lambda v: origin_address(v, 6, origin)),
        )
    # Settings validation guarantees an origin: this stack's server or edge.originStack.
    assert own is not None
    return own.ipv4, own.ipv6


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
    layer: _ServerLayer | None = None
    if settings.server.enabled:
        own_bucket = backups if backups and settings.backups.bucket_stack == settings.stack else None
        layer = _server_layer(settings, ranges, volume, own_bucket)
        project_urns += layer.server.resource_urns
        outputs |= layer.outputs

    if backups is not None:
        origin_ipv4, origin_ipv6 = _edge_origin(settings, layer.server if layer else None)
        # Own droplet: the records move to a (replacement) droplet only once it was bootstrapped
        # and serves the release; before, Cloudflare would send customers to an empty host.
        after = [layer.deploy.deploy_command] if layer and settings.edge.origin_stack is None else []
        Edge("edge", edge_args(settings, services), origin_ipv4, origin_ipv6, after)
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


def export(built: Built) -> None:
    """Export exactly the contract's outputs; a secret one stays secret whatever its source."""
    if set(built.outputs) != set(OUTPUT_NAMES):
        raise ValueError(f"program outputs {sorted(built.outputs)} differ from the contract's {OUTPUT_NAMES}")
    for name in OUTPUT_NAMES:
        value = built.outputs[name]
        pulumi.export(name, pulumi.Output.secret(value) if name in SECRET_OUTPUTS else value)
