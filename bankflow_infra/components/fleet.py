"""The scale-out half of the program (issue 13; program.py builds the rest): the managed
building blocks, one remote deploy per app droplet with the roll across them, the fleet outputs.

A single-droplet stack (``server.count`` 1, nothing managed) goes through here unchanged: no
managed piece, one ``RemoteDeploy`` named ``host`` that deploys, no roll, ``origin_ips`` with its
one droplet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_command.local as local

from bankflow_infra.components.credentials import Credentials
from bankflow_infra.components.managed_data import ManagedPostgres, ManagedValkey
from bankflow_infra.components.remote_deploy import RESOURCE_NAME as REMOTE_DEPLOY_NAME
from bankflow_infra.components.remote_deploy import RemoteDeploy
from bankflow_infra.components.rolling import roll_command
from bankflow_infra.components.server import Machine, Server, canonical_ip
from bankflow_infra.components.shared_uploads import SharedUploadsShare
from bankflow_infra.components.stack_args import (
    cache_args,
    database_args,
    remote_deploy_args,
    shared_uploads_args,
)
from bankflow_infra.render import Bundle, BundleSecrets, render_bundle
from bankflow_infra.render.managed import ManagedServices
from bankflow_infra.settings import Settings


@dataclass
class ManagedPieces:
    database: ManagedPostgres | None = None
    cache: ManagedValkey | None = None
    uploads: SharedUploadsShare | None = None

    @property
    def any(self) -> bool:
        return any(piece is not None for piece in (self.database, self.cache, self.uploads))

    def ready(self) -> list[pulumi.Resource]:
        """What a droplet's bootstrap waits for: the clusters admit the droplets' tag, and the
        share is attached to the VPC (the bootstrap mounts it)."""
        found: list[pulumi.Resource] = []
        found += [self.database.firewall] if self.database else []
        found += [self.cache.firewall] if self.cache else []
        found += [self.uploads.attachment] if self.uploads else []
        return found

    def project_urns(self) -> list[pulumi.Output[str]]:
        # The DigitalOcean project takes droplets, volumes, buckets, load balancers and database
        # clusters; an NFS share is not a project resource type.
        return [piece.cluster.cluster_urn for piece in (self.database, self.cache) if piece is not None]

    def services(self) -> pulumi.Output[ManagedServices]:
        """What the bundle takes from them (secret: passwords); all None for a single droplet."""
        return pulumi.Output.secret(
            pulumi.Output.all(
                self.database.endpoint if self.database else None,
                self.cache.endpoint if self.cache else None,
                self.uploads.uploads if self.uploads else None,
            ).apply(lambda v: ManagedServices(database=v[0], cache=v[1], uploads=v[2]))
        )


def managed_pieces(settings: Settings, server: Server) -> ManagedPieces:
    """The managed PostgreSQL and Valkey clusters and the uploads share the settings ask for, in
    the server's VPC, admitting the server's tag."""
    database, cache, uploads = database_args(settings), cache_args(settings), shared_uploads_args(settings)
    vpc_id = server.vpc.id
    return ManagedPieces(
        database=ManagedPostgres("database", database, vpc_id, server.stack_tag) if database else None,
        cache=ManagedValkey("cache", cache, vpc_id, server.stack_tag) if cache else None,
        uploads=SharedUploadsShare("uploads", uploads, vpc_id) if uploads else None,
    )


def render_with_managed(
    settings: Settings, secrets: BundleSecrets, managed: ManagedServices | None, **options: Any
) -> Bundle:
    """``render_bundle``, with ``managed=`` when the stack has managed pieces (the single-droplet
    call is exactly today's, so its bundle does not change)."""
    if managed is None:
        return render_bundle(settings, secrets, **options)
    return render_bundle(settings, secrets, managed=managed, **options)


@dataclass
class Fleet:
    deploys: list[RemoteDeploy]
    roll: local.Command | None
    release: pulumi.Output[str]

    @property
    def serving(self) -> pulumi.Resource:
        """What the DNS records wait for: the release serves (the deploy, or the whole roll)."""
        return self.roll if self.roll is not None else self.deploys[0].deploy_command


def deploy_fleet(
    settings: Settings,
    server: Server,
    credentials: Credentials,
    bundle: pulumi.Output[Bundle],
    pieces: ManagedPieces,
) -> Fleet:
    """One RemoteDeploy per droplet (droplet 1 is ``host``, then ``host-2`` ...); with a load
    balancer each stages the release and one roll switches them in order."""
    args = remote_deploy_args(settings)
    nfs_source = pieces.uploads.uploads.apply(lambda u: u.nfs_source) if pieces.uploads else None
    deploys = [
        RemoteDeploy(
            REMOTE_DEPLOY_NAME if machine.index == 1 else f"{REMOTE_DEPLOY_NAME}-{machine.index}",
            args,
            server,
            credentials,
            bundle,
            machine=machine,
            uploads_nfs_source=nfs_source,
            after=pieces.ready(),
            database=pieces.database if machine.index == 1 else None,
        )
        for machine in server.machines
    ]
    release = deploys[0].release
    roll = (
        roll_command(
            settings.stack,
            release,
            server.machines,
            credentials.deploy_private_key,
            [deploy.deploy_command for deploy in deploys],
        )
        if settings.load_balanced
        else None
    )
    return Fleet(deploys, roll, release)


def _origin_droplet(machine: Machine) -> dict[str, Any]:
    return {
        "name": machine.name,
        "ipv4": machine.ipv4,
        "ipv6": machine.ipv6,
        "host_public_key": machine.host_public_key,
    }


def fleet_outputs(server: Server, pieces: ManagedPieces) -> dict[str, Any]:
    """``origin_ips`` (every droplet, roll order), ``load_balancer_ip``, ``database`` (no secret)."""
    database = pieces.database
    return {
        "origin_ips": [_origin_droplet(machine) for machine in server.machines],
        "load_balancer_ip": server.load_balancer.ipv4 if server.load_balancer else None,
        "load_balancer_ipv6": server.load_balancer.ipv6 if server.load_balancer else None,
        "database": (
            {
                "cluster": database.cluster.name,
                "host": database.cluster.private_host,
                "port": database.cluster.port,
                "pool_port": database.pool.port,
                "database": database.pool.db_name,
            }
            if database
            else None
        ),
    }


def origin_addresses(server: Server) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
    """Where this stack's DNS records point: the load balancer when there is one, else droplet 1."""
    if server.load_balancer is not None:
        return server.load_balancer.ipv4, server.load_balancer.ipv6.apply(canonical_ip)
    return server.ipv4, server.ipv6


__all__ = [
    "Fleet",
    "ManagedPieces",
    "deploy_fleet",
    "fleet_outputs",
    "managed_pieces",
    "origin_addresses",
    "render_with_managed",
]
