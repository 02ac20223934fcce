"""The pack's policies: names, descriptions and enforcement of the rules in ``rules``."""

from __future__ import annotations

from typing import Final

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    ResourceValidationPolicy,
    StackValidationPolicy,
)

from bankflow_policy import rules, scale
from bankflow_policy.cloudflare import CLOUDFLARE_RANGES

PACK_NAME: Final = "bankflow"

CLOUDFLARE_CONFIG: Final = PolicyConfigSchema(
    properties={
        "cloudflareRanges": {
            "type": "array",
            "items": {"type": "string"},
            "default": list(CLOUDFLARE_RANGES),
            "description": "Cloudflare's published edge ranges (cloudflare.com/ips)",
        }
    }
)


def policies() -> list[Policy]:
    """Every rule, mandatory: a violation stops the preview and the up."""
    mandatory = EnforcementLevel.MANDATORY
    return [
        ResourceValidationPolicy(
            name="production-data-protected",
            description="Production's data volume and backup bucket are protected.",
            validate=rules.check_production_data_protected,
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="no-internet-ssh",
            description="No firewall opens port 22 to the internet.",
            validate=rules.check_no_internet_ssh,
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="web-only-from-cloudflare",
            description="Ports 80 and 443 admit exactly Cloudflare's published ranges.",
            validate=rules.check_web_only_from_cloudflare,
            enforcement_level=mandatory,
            config_schema=CLOUDFLARE_CONFIG,
        ),
        ResourceValidationPolicy(
            name="dns-proxied",
            description="Every A, AAAA and CNAME record is proxied by Cloudflare.",
            validate=rules.check_dns_proxied,
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="no-plain-secret-inputs",
            description="No resource input holds a secret outside a Pulumi secret.",
            validate=rules.check_no_plain_secret_inputs,
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="secret-values-stay-secret",
            description="A value secret in one resource is plain in none.",
            validate=rules.check_secret_values_stay_secret,
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="backup-buckets-versioned",
            description="Every Spaces bucket keeps the previous version of what is overwritten or deleted.",
            validate=rules.check_backup_buckets_versioned,
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="spaces-keys-cannot-reach-the-replica",
            description="No fullaccess key; no key that writes a backups bucket reaches its replica.",
            validate=rules.check_spaces_keys_cannot_reach_the_replica,
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="droplet-replaced-only-by-rebuild",
            description="Production's droplet is protected: only `rebuild`/`cutover` replace it "
            "(droplets behind the stack's load balancer: `rebuild --droplet N`).",
            validate=rules.check_production_droplet_replaced_only_by_rebuild,
            enforcement_level=mandatory,
        ),
        *_scale_policies(mandatory),
    ]


def _scale_policies(mandatory: EnforcementLevel) -> list[Policy]:
    """Issue 13: the load balancer and the managed clusters."""
    return [
        ResourceValidationPolicy(
            name="load-balancer-cloudflare-only",
            description="The load balancer's firewall allows exactly Cloudflare's published ranges.",
            validate=scale.check_load_balancer_admits_cloudflare_only,
            enforcement_level=mandatory,
            config_schema=CLOUDFLARE_CONFIG,
        ),
        ResourceValidationPolicy(
            name="load-balancer-tcp-443-only",
            description="The load balancer forwards TCP 443 to 443 only (TLS passes through to nginx).",
            validate=scale.check_load_balancer_forwards_443_tcp_only,
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="database-firewall-stack-tag-only",
            description="A managed database trusts the stack's droplet tag and nothing else.",
            validate=scale.check_database_firewall_admits_only_the_stack_tag,
            enforcement_level=mandatory,
        ),
        StackValidationPolicy(
            name="database-clusters-firewalled",
            description="Every managed database cluster has a DatabaseFirewall.",
            validate=scale.check_every_database_cluster_has_a_firewall,
            enforcement_level=mandatory,
        ),
        ResourceValidationPolicy(
            name="no-database-port-published",
            description="No firewall rule opens 5432, 6379, 25060 or 25061.",
            validate=scale.check_no_database_port_published,
            enforcement_level=mandatory,
        ),
    ]
