"""The load balancer in front of a stack's app droplets (``server.count`` > 1, issue 13).

TCP pass-through on 443: nginx on each droplet keeps terminating TLS, so Cloudflare's client
certificate (Authenticated Origin Pulls), the SNI/Host checks and the Origin CA certificate work
exactly as with one droplet. PROXY protocol carries the Cloudflare peer's address to nginx. The
load balancer checks each droplet's plain-HTTP listener on ``contract.fleet.LB_HEALTH_PORT``; a
droplet drains by failing that check on purpose (the host agent's ``drain``).

Provider facts relied on (terraform-provider-digitalocean
digitalocean/loadbalancer/resource_loadbalancer.go, read at 401992a):
- ``forwarding_rule.entry_protocol``/``target_protocol`` ``tcp`` is plain pass-through; with it
  ``tls_passthrough`` (meant for an ``https`` entry) stays false and no certificate is named.
- ``healthcheck`` bounds: ``check_interval_seconds`` and ``response_timeout_seconds`` 3..300,
  ``unhealthy_threshold``/``healthy_threshold`` 2..10 (the contract's timings are the minimums);
  ``path`` is required with protocol ``http`` and refused with ``tcp`` (CustomizeDiff).
- ``droplet_tag`` conflicts with ``droplet_ids``: the tag selects every droplet of the stack,
  including a replacement, without an update of the load balancer.
- ``firewall.allow`` entries are strings ``cidr:<range>`` or ``ip:<address>``; one firewall only.
- ``network_stack`` ``DUALSTACK`` gives the load balancer an IPv6 address (computed ``ipv6``);
  it, ``vpc_uuid`` and ``region`` are ForceNew: chosen once, at creation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_digitalocean as do

from bankflow_infra.catalog import HTTPS_PORT
from bankflow_infra.contract.fleet import (
    LB_CHECK_INTERVAL_SECONDS,
    LB_HEALTH_PATH,
    LB_HEALTH_PORT,
    LB_HEALTHY_THRESHOLD,
    LB_RESPONSE_TIMEOUT_SECONDS,
    LB_UNHEALTHY_THRESHOLD,
)

COMPONENT_TYPE: Final = "bankflow:index:LoadBalancer"
# One size unit (the provider's `size_unit`, 1..200; the old `lb-small`): DigitalOcean's smallest
# regional load balancer. TCP pass-through leaves TLS work on the droplets.
SIZE_UNIT: Final = 1
NETWORK_STACK: Final = "DUALSTACK"  # IPv4 and IPv6, so the AAAA records keep a target


@dataclass(frozen=True)
class LoadBalancerArgs:
    name: str  # the cloud-side name, bankflow-<stack>-lb
    region: str


def firewall_allow(cloudflare_v4: Sequence[str], cloudflare_v6: Sequence[str]) -> list[str]:
    """The load balancer admits Cloudflare's ranges only ("cidr:<range>", the provider's format)."""
    return [f"cidr:{cidr}" for cidr in [*cloudflare_v4, *cloudflare_v6]]


def forwarding_rules() -> list[do.LoadBalancerForwardingRuleArgs]:
    """443 in, 443 out, TCP: TLS is nginx's. Nothing else is forwarded (no port 80: Cloudflare
    reaches an origin on 443 with SSL "Full (strict)", and redirects http at the edge)."""
    return [
        do.LoadBalancerForwardingRuleArgs(
            entry_protocol="tcp", entry_port=HTTPS_PORT, target_protocol="tcp", target_port=HTTPS_PORT
        )
    ]


def healthcheck() -> do.LoadBalancerHealthcheckArgs:
    return do.LoadBalancerHealthcheckArgs(
        protocol="http",
        port=LB_HEALTH_PORT,
        path=LB_HEALTH_PATH,
        check_interval_seconds=LB_CHECK_INTERVAL_SECONDS,
        response_timeout_seconds=LB_RESPONSE_TIMEOUT_SECONDS,
        unhealthy_threshold=LB_UNHEALTHY_THRESHOLD,
        healthy_threshold=LB_HEALTHY_THRESHOLD,
    )


class LoadBalancer(pulumi.ComponentResource):
    """DigitalOcean's regional load balancer in the stack's VPC, targeting the stack's tag."""

    balancer: do.LoadBalancer
    id: pulumi.Output[str]
    ipv4: pulumi.Output[str]
    ipv6: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: LoadBalancerArgs,
        vpc_id: pulumi.Input[str],
        droplet_tag: pulumi.Input[str],
        cloudflare_v4: pulumi.Input[Sequence[str]],
        cloudflare_v6: pulumi.Input[Sequence[str]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, None, opts)
        allow = pulumi.Output.all(cloudflare_v4, cloudflare_v6).apply(lambda r: firewall_allow(r[0], r[1]))
        self.balancer = do.LoadBalancer(
            name,
            name=args.name,
            region=args.region,
            vpc_uuid=vpc_id,
            size_unit=SIZE_UNIT,
            network_stack=NETWORK_STACK,
            droplet_tag=droplet_tag,
            forwarding_rules=forwarding_rules(),
            # nginx reads the client (Cloudflare's peer) address from the PROXY header and checks
            # it against Cloudflare's ranges before trusting CF-Connecting-IP (render/nginx.py).
            enable_proxy_protocol=True,
            healthcheck=healthcheck(),
            firewall=do.LoadBalancerFirewallArgs(allows=allow),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.id = self.balancer.id
        self.ipv4 = self.balancer.ip
        self.ipv6 = self.balancer.ipv6
        self.register_outputs({"ipv4": self.ipv4, "ipv6": self.ipv6})
