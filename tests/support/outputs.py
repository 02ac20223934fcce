"""Stack-outputs documents as ``pulumi stack output --json`` prints them, built from a committed
stack file through the same settings and catalog the program uses.

One builder for every test that needs outputs (health, day-2 commands, rebuild stand-ins); each
passes only what its case changes. Secrets are hidden as pulumi shows them without
``--show-secrets``; the contract's :func:`parse_outputs` accepts every document built here.
"""

from __future__ import annotations

from typing import Any

import yaml

from bankflow_infra.catalog import SSH_PORT, SSH_USER, app_services
from bankflow_infra.contract.outputs import OUTPUT_NAMES, REDACTED
from bankflow_infra.stackfile import settings_from_stack_file
from tests.support.tools import REPO

HOST_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest"
FAKE_PEM = "-----BEGIN CERTIFICATE-----\nMIIBstandin\n-----END CERTIFICATE-----\n"


def health_targets(stack: str = "staging") -> list[dict[str, str]]:
    """The ``health`` output as the program builds it for ``Pulumi.<stack>.yaml``."""
    name = f"Pulumi.{stack}.yaml"
    settings = settings_from_stack_file("bankflow", stack, yaml.safe_load((REPO / name).read_text()), name)
    return [
        {"service": s.name, "url": f"{s.public_url}{s.health_path}", "host": s.hostnames[0],
         "path": s.health_path}
        for s in app_services(settings)
    ]


def outputs_document(
    stack: str = "staging",
    *,
    origin_ip: str | None = "203.0.113.10",
    origin_certificate: str | None = FAKE_PEM,
    origin_stack: str | None = None,
    environment: str | None = None,
    backup_bucket: dict[str, str] | None = None,
    health_from: str | None = None,
) -> dict[str, Any]:
    """A complete outputs document of ``stack`` (its server on unless ``origin_ip`` is None).

    ``health_from`` names the committed stack file whose hostnames the document carries (default:
    ``stack`` itself, or ``environment`` for a stack without a committed file, e.g. a rebuild).
    """
    health = health_targets(health_from or (stack if (REPO / f"Pulumi.{stack}.yaml").exists()
                                            else environment or "staging"))
    server = origin_ip is not None
    document = {
        "environment": environment or stack,
        "origin_ip": origin_ip,
        "origin_ipv6": "2001:db8::10" if server else None,
        "ssh": {"host": origin_ip, "port": SSH_PORT, "user": SSH_USER,
                "host_public_key": HOST_PUBLIC_KEY} if server else None,
        "deploy_private_key": REDACTED if server else None,
        "urls": {h["service"]: f"https://{h['host']}" for h in health},
        "health": health,
        "release": "ab" * 32 if server else None,
        "origin_stack": origin_stack or stack,
        "backup_bucket": backup_bucket if backup_bucket is not None else {
            "name": f"bankflow-{stack}-backups", "region": "nyc3",
            "endpoint": "https://nyc3.digitaloceanspaces.com"},
        "origin_certificate": origin_certificate if server else None,
        "origin_cert_expires_on": "2027-01-01T00:00:00Z" if server else None,
        "backup_replica": {"name": f"bankflow-{stack}-backups-replica", "region": "sfo3",
                           "endpoint": "https://sfo3.digitaloceanspaces.com"},
        "backup_replica_key": REDACTED,
        "backup_drill_key": REDACTED,
        "backup_repository": REDACTED,
        "origin_pull_client": REDACTED if server else None,
        "origin_ips": [{"name": f"bankflow-{stack}-server", "ipv4": origin_ip, "ipv6": "2001:db8::10",
                        "host_public_key": HOST_PUBLIC_KEY}] if server else None,
        "load_balancer_ip": None,
        "load_balancer_ipv6": None,
        "database": None,
    }
    assert tuple(document) == OUTPUT_NAMES or set(document) == set(OUTPUT_NAMES)
    return document
