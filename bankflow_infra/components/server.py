"""The server layer's machines: VPC, SSH keys, droplets (each with its pinned host key), data
volume, firewall, and with ``server.count`` > 1 the load balancer in front of the droplets."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as do

from bankflow_infra.catalog import HTTP_PORT, HTTPS_PORT, SSH_PORT
from bankflow_infra.components.backups import DATA_VOLUME_LABEL
from bankflow_infra.components.credentials import Credentials, HostKey
from bankflow_infra.components.load_balancer import LoadBalancer, LoadBalancerArgs
from bankflow_infra.contract.fleet import LB_HEALTH_PORT
from bankflow_infra.render import CloudflareRanges
from bankflow_infra.render.cloud_init import render_host_key_user_data

ALL_IPV4 = "0.0.0.0/0"
ALL_IPV6 = "::/0"
# The provider's delete budget is 60 s and includes the graceful shutdown (schema.ResourceTimeout
# Delete in terraform-provider-digitalocean digitalocean/droplet/resource_droplet.go): a droplet
# running PostgreSQL can take longer, and a replace then fails halfway with the volume detached.
DROPLET_DELETE_TIMEOUT = "10m"
# Droplet arguments that can only be applied by a replacement (ForceNew in resource_droplet.go;
# ipv6 too when switched off). Production ignores them: its droplet is replaced only through
# `bankflow-infra rebuild`/`cutover`, never by an edit an `up` would act on.
REPLACE_ONLY_DROPLET_FIELDS = ("image", "region", "ssh_keys", "user_data", "vpc_uuid", "monitoring", "ipv6")


def inbound_rules(
    ssh_cidrs: Sequence[str], cloudflare_v4: Sequence[str], cloudflare_v6: Sequence[str]
) -> list[do.FirewallInboundRuleArgs]:
    """22 from the operators only, 80/443 from Cloudflare only, ICMP; nothing else comes in."""
    edge = [*cloudflare_v4, *cloudflare_v6]
    return [
        do.FirewallInboundRuleArgs(
            protocol="tcp", port_range=str(SSH_PORT), source_addresses=list(ssh_cidrs)
        ),
        do.FirewallInboundRuleArgs(protocol="tcp", port_range=str(HTTP_PORT), source_addresses=edge),
        do.FirewallInboundRuleArgs(protocol="tcp", port_range=str(HTTPS_PORT), source_addresses=edge),
        do.FirewallInboundRuleArgs(protocol="icmp", source_addresses=[ALL_IPV4, ALL_IPV6]),
    ]


def load_balanced_inbound_rules(
    ssh_cidrs: Sequence[str], load_balancer_id: str
) -> list[do.FirewallInboundRuleArgs]:
    """Behind a load balancer: 22 from the operators, 443 and the health listener from the load
    balancer only (`source_load_balancer_uids`: the cloud firewall matches the load balancer's own
    addresses, whatever they are), ICMP. No port 80, and no Cloudflare range reaches a droplet."""
    from_balancer = [load_balancer_id]
    return [
        do.FirewallInboundRuleArgs(
            protocol="tcp", port_range=str(SSH_PORT), source_addresses=list(ssh_cidrs)
        ),
        do.FirewallInboundRuleArgs(
            protocol="tcp", port_range=str(HTTPS_PORT), source_load_balancer_uids=from_balancer
        ),
        do.FirewallInboundRuleArgs(
            protocol="tcp", port_range=str(LB_HEALTH_PORT), source_load_balancer_uids=from_balancer
        ),
        do.FirewallInboundRuleArgs(protocol="icmp", source_addresses=[ALL_IPV4, ALL_IPV6]),
    ]


def _network_order(cidr: str) -> tuple[int, int, int]:
    network = ipaddress.ip_network(cidr, strict=False)
    return (network.version, int(network.network_address), network.prefixlen)


def sorted_ranges(ipv4: list[str], ipv6: list[str]) -> CloudflareRanges:
    """Cloudflare's ranges in address order: the API's order is not stable, and a re-ordered list
    would be a new host bundle (a new release) and a firewall update for nothing."""
    return CloudflareRanges(
        ipv4=tuple(sorted(ipv4, key=_network_order)), ipv6=tuple(sorted(ipv6, key=_network_order))
    )


def outbound_rules() -> list[do.FirewallOutboundRuleArgs]:
    # The host pulls images, apt packages and pushes backups: outbound stays open.
    everywhere = [ALL_IPV4, ALL_IPV6]
    return [
        do.FirewallOutboundRuleArgs(protocol="tcp", port_range="1-65535", destination_addresses=everywhere),
        do.FirewallOutboundRuleArgs(protocol="udp", port_range="1-65535", destination_addresses=everywhere),
        do.FirewallOutboundRuleArgs(protocol="icmp", destination_addresses=everywhere),
    ]


def canonical_ip(address: str) -> str:
    """An IP address in its canonical text form (IPv6: lower case, zeros compressed)."""
    return str(ipaddress.ip_address(address.strip()))


def stack_tag_name(stack: str) -> str:
    return f"stack-{stack}"


def droplet_tags(environment: str, stack: str) -> list[str]:
    return ["bankflow", f"env-{environment}", stack_tag_name(stack)]


@dataclass(frozen=True)
class ServerArgs:
    stack: str
    environment: str
    region: str
    size: str
    image: str
    vpc_cidr: str
    ssh_allowed_cidrs: tuple[str, ...]
    backups: bool  # DigitalOcean's weekly droplet backups
    resource_name: Callable[[str], str]  # kind -> the cloud-side name (bankflow-<stack>-<kind>)
    resize_disk: bool = False  # grow the disk with the size (permanent: no way back to a smaller size)
    production: bool = False  # protected, replace-only fields ignored
    count: int = 1  # app droplets (server.count)
    load_balancer: LoadBalancerArgs | None = None  # count > 1: the load balancer in front


def droplet_resource_name(component: str, index: int) -> str:
    """The droplet's Pulumi name: droplet 1 keeps the URN it always had."""
    return f"{component}-droplet" if index == 1 else f"{component}-droplet-{index}"


def droplet_cloud_kind(index: int) -> str:
    """The droplet's DigitalOcean name kind: bankflow-<stack>-server, then -server-2 ..."""
    return "server" if index == 1 else f"server-{index}"


@dataclass(frozen=True)
class Machine:
    """One app droplet and what a remote command needs to reach it (roll order: index 1 first)."""

    index: int
    name: str  # its DigitalOcean name
    droplet: do.Droplet
    ipv4: pulumi.Output[str]
    ipv6: pulumi.Output[str]
    host_public_key: pulumi.Output[str]


@dataclass(frozen=True)
class DataVolumeArgs:
    stack: str
    environment: str
    region: str
    size_gb: int
    resource_name: Callable[[str], str]


class Server(pulumi.ComponentResource):
    droplet: do.Droplet  # droplet 1
    machines: tuple[Machine, ...]
    load_balancer: LoadBalancer | None
    volume: do.Volume | None
    ipv4: pulumi.Output[str]
    ipv6: pulumi.Output[str]
    resource_urns: list[pulumi.Output[str]]

    def __init__(
        self,
        name: str,
        args: ServerArgs,
        credentials: Credentials,
        cloudflare_v4: pulumi.Input[Sequence[str]],
        cloudflare_v6: pulumi.Input[Sequence[str]],
        volume: do.Volume | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("bankflow:index:Server", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        self.vpc = vpc = do.Vpc(
            f"{name}-vpc",
            name=args.resource_name("vpc"),
            region=args.region,
            ip_range=args.vpc_cidr,
            description=f"BankFlow {args.stack}",
            opts=child,
        )
        deploy_key = do.SshKey(
            f"{name}-deploy-key",
            name=args.resource_name("deploy"),
            public_key=credentials.deploy_public_key,
            opts=child,
        )
        # Operators' keys (server.operators) are NOT DigitalOcean SSH keys: the droplet's
        # `ssh_keys` list replaces the droplet when it changes, and DigitalOcean refuses the same
        # public key twice per account (staging, production and a rebuild share operators). The
        # host bootstrap creates their named accounts on every run instead.

        self.volume = volume
        # The stack's tag exists before the droplet and the firewall that selects it.
        stack_tag = do.Tag(f"{name}-tag", name=stack_tag_name(args.stack), opts=child)
        self.stack_tag: pulumi.Output[str] = stack_tag.name
        # The load balancer (count > 1) before the firewall, which admits 443 from it only. A
        # top-level component: the server's existing children keep their URNs.
        self.load_balancer = (
            LoadBalancer(
                "load-balancer", args.load_balancer, vpc.id, stack_tag.name, cloudflare_v4, cloudflare_v6
            )
            if args.load_balancer is not None
            else None
        )
        self.firewall = self._firewall(name, args, stack_tag, cloudflare_v4, cloudflare_v6)
        self.machines = tuple(
            self._machine(name, args, index, credentials.host_keys[index - 1], vpc, deploy_key, stack_tag)
            for index in range(1, args.count + 1)
        )
        self.droplet = self.machines[0].droplet
        self.volume_attachment = self._attach_volume(name) if self.volume is not None else None

        self.ipv4 = self.machines[0].ipv4
        self.ipv6 = self.machines[0].ipv6
        self.resource_urns = [machine.droplet.droplet_urn for machine in self.machines]
        if self.load_balancer is not None:
            self.resource_urns.append(self.load_balancer.balancer.load_balancer_urn)
        self.register_outputs({"ipv4": self.ipv4, "ipv6": self.ipv6})

    def _attach_volume(self, name: str) -> do.VolumeAttachment:
        """The data volume on droplet 1 (a load balanced stack has none)."""
        assert self.volume is not None
        return do.VolumeAttachment(
            f"{name}-data-attachment",
            droplet_id=self.droplet.id.apply(int),
            volume_id=self.volume.id,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _firewall(
        self,
        name: str,
        args: ServerArgs,
        stack_tag: do.Tag,
        cloudflare_v4: pulumi.Input[Sequence[str]],
        cloudflare_v6: pulumi.Input[Sequence[str]],
    ) -> do.Firewall:
        return do.Firewall(
            f"{name}-firewall",
            name=args.resource_name("firewall"),
            # Selected by the stack's tag, created before the droplet: a new droplet is inside
            # the perimeter from its first boot, never briefly open to the whole internet.
            tags=[stack_tag.name],
            inbound_rules=(
                pulumi.Output.all(cloudflare_v4, cloudflare_v6).apply(
                    lambda ranges: inbound_rules(args.ssh_allowed_cidrs, ranges[0], ranges[1])
                )
                if self.load_balancer is None
                else self.load_balancer.id.apply(
                    lambda uid: load_balanced_inbound_rules(args.ssh_allowed_cidrs, uid)
                )
            ),
            outbound_rules=outbound_rules(),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[stack_tag]),
        )

    def _machine(
        self,
        name: str,
        args: ServerArgs,
        index: int,
        host_key: HostKey,
        vpc: do.Vpc,
        deploy_key: do.SshKey,
        stack_tag: do.Tag,
    ) -> Machine:
        droplet = self._droplet(
            droplet_resource_name(name, index), args, index, host_key, vpc, deploy_key, stack_tag
        )
        return Machine(
            index=index,
            name=args.resource_name(droplet_cloud_kind(index)),
            droplet=droplet,
            ipv4=droplet.ipv4_address,
            # One spelling of the address everywhere (DNS record, outputs), as the StackReference
            # path writes it (program.origin_address): the API may return it in another form.
            ipv6=droplet.ipv6_address.apply(canonical_ip),
            host_public_key=host_key.public_key,
        )

    def _droplet(
        self,
        resource_name: str,
        args: ServerArgs,
        index: int,
        host_key: HostKey,
        vpc: do.Vpc,
        deploy_key: do.SshKey,
        stack_tag: do.Tag,
    ) -> do.Droplet:
        user_data: pulumi.Output[str] = pulumi.Output.all(host_key.private_key, host_key.public_key).apply(
            lambda keys: render_host_key_user_data(keys[0], keys[1])
        )
        secret_user_data: pulumi.Output[str] = pulumi.Output.secret(user_data)
        # The data volume is droplet 1's (a load balanced stack has none: settings refuse it).
        holds_volume = self.volume is not None and index == 1
        return do.Droplet(
            resource_name,
            name=args.resource_name(droplet_cloud_kind(index)),
            image=args.image,
            region=args.region,
            size=args.size,
            vpc_uuid=vpc.id,
            ssh_keys=[deploy_key.fingerprint],
            monitoring=True,
            ipv6=True,
            backups=args.backups,
            graceful_shutdown=True,
            # The provider's default is true, which makes a size change's disk growth permanent:
            # the droplet could never be resized down again (resource_droplet.go, resize_disk).
            resize_disk=args.resize_disk,
            tags=[*droplet_tags(args.environment, args.stack)[:-1], stack_tag.name],
            # Only the generated host key, so every SSH connection can pin it from the first one.
            user_data=secret_user_data,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.firewall],
                # A droplet with an attached volume cannot be replaced while it holds the volume.
                delete_before_replace=holds_volume,
                additional_secret_outputs=["user_data"],
                custom_timeouts=pulumi.CustomTimeouts(delete=DROPLET_DELETE_TIMEOUT),
                # Production's droplet: `protect` makes the engine refuse the delete half of any
                # replacement; planned rebuilds go through `bankflow-infra rebuild`/`cutover`.
                # Behind a load balancer the droplets hold no data (managed database, shared
                # uploads) and `rebuild --droplet N` replaces one (`up --replace`, which `protect`
                # would refuse); the replace-only fields stay ignored, so no edit replaces them.
                protect=args.production and args.load_balancer is None,
                ignore_changes=list(REPLACE_ONLY_DROPLET_FIELDS) if args.production else None,
            ),
        )


class DataVolume(pulumi.ComponentResource):
    """PostgreSQL's block volume (production). Declared whenever the stack configures one, even
    with the server layer off: it is `protect`ed, and a retired server must not make `pulumi up`
    try (and refuse) to delete the last copy of the data."""

    volume: do.Volume

    def __init__(self, name: str, args: DataVolumeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("bankflow:index:DataVolume", name, None, opts)
        self.volume = do.Volume(
            f"{name}-volume",
            name=args.resource_name("data"),
            region=args.region,
            size=args.size_gb,
            initial_filesystem_type="ext4",
            initial_filesystem_label=DATA_VOLUME_LABEL,
            description=f"PostgreSQL data of BankFlow {args.stack}",
            tags=droplet_tags(args.environment, args.stack),
            # Money data: `pulumi destroy` must refuse until someone removes this on purpose.
            # `description` forces a replacement of a volume in the provider (ForceNew in
            # digitalocean/volume/resource_volume.go): a reworded description must never try to
            # replace the data. A larger `size` is an in-place resize; the filesystem is grown by
            # the remote `grow-data-filesystem` step (components/remote_deploy.py).
            opts=pulumi.ResourceOptions(parent=self, protect=True, ignore_changes=["description"]),
        )
        self.register_outputs({})
