"""Behind DigitalOcean's load balancer (issue 13, server.count > 1): who reaches the droplet and
what the port holder publishes. The load balancer connects from its address in the stack's VPC,
so the host firewall admits 443 and the health check port from the VPC range, nothing from
Cloudflare directly, and port 80 from nobody."""

from __future__ import annotations

import yaml

from bankflow_infra.contract.fleet import LB_HEALTH_PORT
from bankflow_infra.render import Bundle, BundleSecrets, render_bundle
from bankflow_infra.render.host_access import FIREWALL_ALLOW_PATH
from bankflow_infra.settings import Settings
from tests.render.helpers import CLOUDFLARE, SECRETS_NO_KEY, OriginCert
from tests.render.managed_helpers import managed_services, scaled_settings


def _render(cert: OriginCert, settings: Settings) -> Bundle:
    secrets = BundleSecrets(origin_private_key_pem=cert.key_pem, **SECRETS_NO_KEY)
    return render_bundle(settings, secrets, CLOUDFLARE, cert.cert_pem, managed=managed_services())


def _rules(bundle: Bundle) -> list[tuple[str, str]]:
    lines = bundle.file(FIREWALL_ALLOW_PATH).text.splitlines()
    return [(port, cidr) for port, cidr in (line.split() for line in lines if not line.startswith("#"))]


def _published(bundle: Bundle) -> list[dict]:
    base = yaml.safe_load(bundle.file("compose/base.yaml").text)
    return base["services"]["edge-ports"]["ports"]


def test_load_balanced_host_admits_443_and_the_health_port_from_the_vpc_only(origin_cert: OriginCert) -> None:
    settings = scaled_settings()
    assert settings.load_balanced
    vpc = settings.server.vpc_cidr
    rules = _rules(_render(origin_cert, settings))
    ssh = [("22/tcp", cidr) for cidr in settings.server.ssh_allowed_cidrs]
    assert rules == [*ssh, ("443/tcp", vpc), (f"{LB_HEALTH_PORT}/tcp", vpc)]
    # Cloudflare reaches the load balancer, never the droplet
    assert not [cidr for _, cidr in rules if cidr in (*CLOUDFLARE.ipv4, *CLOUDFLARE.ipv6)]


def test_the_port_holder_publishes_the_health_port_only_when_load_balanced(origin_cert: OriginCert) -> None:
    balanced = _published(_render(origin_cert, scaled_settings()))
    health = [p for p in balanced if p["published"] == str(LB_HEALTH_PORT)]
    assert health == [
        {"target": LB_HEALTH_PORT, "published": str(LB_HEALTH_PORT), "protocol": "tcp", "mode": "host"}
    ]
    one = _render(origin_cert, scaled_settings(count=1))
    assert not [p for p in _published(one) if p["published"] == str(LB_HEALTH_PORT)]
    # one droplet, even with every managed piece: Cloudflare's ranges on 80/443, as today
    rules = _rules(one)
    assert ("443/tcp", CLOUDFLARE.ipv4[0]) in rules
    assert ("80/tcp", CLOUDFLARE.ipv4[0]) in rules
    assert not [r for r in rules if r[0] == f"{LB_HEALTH_PORT}/tcp"]
