"""One stack, built from its settings: the resource graph and the stack outputs (the contract
that the ops CLI and the workflows read -- see README "Stack outputs")."""

from __future__ import annotations

import contextlib
import ipaddress
import json
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_digitalocean as do

from bankflow_infra.catalog import SSH_PORT, SSH_USER, app_services
from bankflow_infra.components.backups import BackupAccess, BackupBucket
from bankflow_infra.components.credentials import Credentials
from bankflow_infra.components.edge import Edge
from bankflow_infra.components.host import Host
from bankflow_infra.components.monitoring import Monitoring
from bankflow_infra.components.origin_cert import OriginCertificate
from bankflow_infra.components.server import DataVolume, Server
from bankflow_infra.contract.outputs import OUTPUT_NAMES, SECRET_OUTPUTS
from bankflow_infra.render import Bundle, BundleSecrets, CloudflareRanges, render_bundle
from bankflow_infra.settings import NAMESPACE, SECRET_KEYS, TOP_LEVEL_KEYS, Settings, parse_settings


def stack_config_values() -> dict[str, Any]:
    """Every ``bankflow:`` config value of the running stack, structured values decoded.

    Unknown keys are kept so that validation can name them (a typo must not pass silently).
    """
    from pulumi.runtime.config import CONFIG, get_config_env

    raw = {**get_config_env(), **CONFIG.get()}
    values: dict[str, Any] = {}
    for full_key, value in raw.items():
        namespace, _, key = full_key.partition(":")
        if namespace != NAMESPACE or key in SECRET_KEYS:
            continue
        if isinstance(value, str) and key in TOP_LEVEL_KEYS and key != "environment":
            # A value that is not JSON stays a string: validation reports the type with the key.
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        values[key] = value
    return values


def load_settings() -> Settings:
    """Validated settings of the running stack; raises SettingsError before any resource."""
    return parse_settings(
        pulumi.get_project(), pulumi.get_stack(), stack_config_values(), f"Pulumi.{pulumi.get_stack()}.yaml"
    )


@dataclass
class Built:
    outputs: dict[str, Any]
    bundle: pulumi.Output[Bundle] | None


def _origin_ca_provider() -> cloudflare.Provider | None:
    key = pulumi.Config(NAMESPACE).get_secret("originCaKey")
    if key is None:
        return None
    return cloudflare.Provider("origin-ca", api_user_service_key=key)


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


def _render(
    settings: Settings,
    credentials: Credentials,
    certificate: OriginCertificate,
    ranges: CloudflareRanges | pulumi.Output[CloudflareRanges],
    backup_access: BackupAccess,
) -> pulumi.Output[Bundle]:
    registry_password = pulumi.Config(NAMESPACE).get_secret("registryPassword")
    return pulumi.Output.all(
        credentials.postgres_password,
        credentials.redis_password,
        credentials.jwt_secret,
        certificate.private_key_pem,
        certificate.certificate_pem,
        ranges,
        registry_password,
        backup_access.access_key,
        backup_access.secret_key,
    ).apply(
        lambda v: render_bundle(
            settings,
            BundleSecrets(
                postgres_password=v[0],
                redis_password=v[1],
                jwt_secret=v[2],
                origin_private_key_pem=v[3],
                registry_password=v[6],
                spaces_access_key=v[7],
                spaces_secret_key=v[8],
            ),
            v[5],
            v[4],
        )
    )


def build(settings: Settings) -> Built:
    services = app_services(settings)
    project_urns: list[pulumi.Output[str]] = []
    outputs: dict[str, Any] = {
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
    }
    bundle: pulumi.Output[Bundle] | None = None
    ip_ranges = cloudflare.get_ip_ranges_output()
    ranges = pulumi.Output.all(ip_ranges.ipv4_cidrs, ip_ranges.ipv6_cidrs).apply(
        lambda r: CloudflareRanges(ipv4=tuple(r[0]), ipv6=tuple(r[1]))
    )

    origin_ipv4: pulumi.Input[str] | None = None
    origin_ipv6: pulumi.Input[str] | None = None
    volume = DataVolume("data", settings).volume if settings.server.volume_size_gb > 0 else None
    if volume is not None:
        project_urns.append(volume.volume_urn)
    if settings.server.enabled:
        credentials = Credentials("credentials")
        server = Server("server", settings, credentials, ip_ranges.ipv4_cidrs, ip_ranges.ipv6_cidrs, volume)
        certificate = OriginCertificate("origin-cert", settings, _origin_ca_provider())
        Monitoring("monitoring", settings, server.droplet)
        backup_access = BackupAccess("backup-access", settings)
        bundle = _render(settings, credentials, certificate, ranges, backup_access)
        host = Host("host", settings, server, credentials, bundle)
        project_urns += server.resource_urns
        origin_ipv4, origin_ipv6 = server.ipv4, server.ipv6
        outputs |= {
            "origin_ip": server.ipv4,
            "origin_ipv6": server.ipv6,
            "ssh": {
                "host": server.ipv4,
                "port": SSH_PORT,
                "user": SSH_USER,
                "host_public_key": credentials.host_public_key,
            },
            "deploy_private_key": credentials.deploy_private_key,
            "release": host.release,
            "origin_certificate": certificate.certificate_pem,
            "origin_cert_expires_on": certificate.expires_on,
        }

    if settings.edge.enabled:
        if settings.edge.origin_stack is not None:
            reference = pulumi.StackReference(_stack_reference_name(settings.edge.origin_stack))
            origin = settings.edge.origin_stack
            origin_ipv4 = reference.get_output("origin_ip").apply(lambda v: origin_address(v, 4, origin))
            origin_ipv6 = reference.get_output("origin_ipv6").apply(
                lambda v: origin_address(v, 6, origin)
            )
        # Settings validation guarantees an origin: this stack's server or edge.originStack.
        assert origin_ipv4 is not None
        assert origin_ipv6 is not None
        Edge("edge", settings, services, origin_ipv4, origin_ipv6)
        backups = BackupBucket("backups", settings)
        project_urns.append(backups.bucket.bucket_urn)
        outputs["backup_bucket"] = {
            "name": backups.name,
            "region": settings.backups.region,
            "endpoint": backups.endpoint,
        }

    if project_urns:
        do.Project(
            "project",
            name=f"BankFlow {settings.stack}",
            description=f"BankFlow {settings.environment} (stack {settings.stack}), managed by Pulumi",
            purpose="Web Application",
            environment="Production" if settings.is_production else "Staging",
            resources=project_urns,
        )
    return Built(outputs=outputs, bundle=bundle)


def export(built: Built) -> None:
    """Export exactly the contract's outputs; a secret one stays secret whatever its source."""
    if set(built.outputs) != set(OUTPUT_NAMES):
        raise ValueError(f"program outputs {sorted(built.outputs)} differ from the contract's {OUTPUT_NAMES}")
    for name in OUTPUT_NAMES:
        value = built.outputs[name]
        pulumi.export(name, pulumi.Output.secret(value) if name in SECRET_OUTPUTS else value)
