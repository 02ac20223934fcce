"""Every default of a stack's settings, stated here and nowhere else.

A default may depend on the environment (production keeps more). The parsers overlay a stack's
values on these; when a value has the wrong type they fall back to the default too, so that
one run can go on and report every other problem.
"""

from __future__ import annotations

from typing import Any, Final

from bankflow_infra.contract.services import APP_SERVICES

NAMESPACE: Final = "bankflow"
# Keys whose value the program reads as a Pulumi secret, never part of Settings.
# alertsWebhookUrl: the Slack incoming webhook the droplet's backup watch posts to, as a `secure:`
# value (`pulumi config set --secret bankflow:alertsWebhookUrl URL`); a webhook URL is a credential,
# and alerts.slackUrl (plain) cannot be kept in a committed stack file.
SECRET_KEYS: Final = ("registryPassword", "alertsWebhookUrl")

# Every namespace a stack file may use: ours and the providers' own settings. Any other (a
# misspelt `bankfow:`) would be passed over silently by Pulumi, leaving our keys unset.
CONFIG_NAMESPACES: Final = (NAMESPACE, "digitalocean", "cloudflare", "command", "random", "tls", "pulumi")

DROPLET_IMAGE: Final = "ubuntu-24-04-x64"  # Ubuntu 24.04 LTS, pinned: a new slug replaces the droplet

TOP_LEVEL_KEYS: Final = (
    "environment",
    "hostnames",
    "server",
    "edge",
    "alerts",
    "release",
    "backups",
    "nginx",
    "originCert",
    # Issue 13: managed building blocks; absent or `managed: false` / `shared: false` is today's
    # piece on the droplet (settings/scale.py).
    "database",
    "cache",
    "uploads",
)


# DigitalOcean droplet backups (server.backups) are images of the ROOT DISK only (volumes
# excluded), weekly or daily, deleted with the droplet. PostgreSQL and the uploads live on the data
# volume, so they hold nothing the program cannot re-create (OS, images, bundle) and no recovery
# path restores a droplet from one: off unless a stack opts in.
DROPLET_BACKUPS: Final = False
# PostgreSQL and the uploads live on the data volume, so a droplet replacement keeps them.
# Staging's is small: its data is test data, but a replacement must not wipe it either.
STAGING_VOLUME_GB: Final = 10

# The replica's default region: the first of these that is not the primary bucket's region (a
# region outage or loss must never take both copies).
REPLICA_REGION_CHOICES: Final = ("sfo3", "nyc3")


def default_replica_region(primary_region: str) -> str:
    return next(region for region in REPLICA_REGION_CHOICES if region != primary_region)


# Zone-wide edge security (issue 12), applied by the zone's owner stack only (edge.zoneSettings):
# WAF custom rules, managed rules where the plan allows, a rate limit, DNSSEC, CAA. "free" allows
# no managed rules and one rate-limiting rule on the path only (docs/PROVIDERS.md "Edge rules").
EDGE_SECURITY_DEFAULTS: Final[dict[str, Any]] = {
    "plan": "free",
    "caaIodef": None,  # None: mailto: the first alerts e-mail
    # Login and token endpoints of the saas and api apps: a credential-stuffing target.
    "rateLimitPaths": ["/login", "/auth/", "/api/auth/", "/oauth/token"],
    "rateLimitRequests": 20,
}


# Cloudflare's maximum (15 years): an Origin CA certificate is never renewed by itself, and it is
# re-issued anyway whenever the hostname set changes (a new CSR).
ORIGIN_CERT_VALIDITY_DAYS: Final = 5475


def defaults(environment: str) -> dict[str, Any]:
    production = environment == "production"
    return {
        "server": {
            "enabled": True,
            "region": "nyc3",
            "size": "s-2vcpu-4gb" if not production else "s-4vcpu-8gb",
            "image": DROPLET_IMAGE,
            "vpcCidr": None,  # required: unique per stack, no default can be right
            "sshAllowedCidrs": [],
            "adminSshKeys": [],  # refused when set: see server.operators (issue 12)
            "operators": [],  # [{name, publicKey}]: named accounts with sudo (settings/server.py)
            "backups": DROPLET_BACKUPS,
            "volumeSizeGb": 50 if production else STAGING_VOLUME_GB,
            "swapGb": 2,
            # DigitalOcean's default (true) grows the disk with a larger size, which makes the
            # resize permanent: no way back to a smaller size. Opt in per stack.
            "resizeDisk": False,
            # App droplets; more than one puts a load balancer in front (settings/server.py).
            "count": 1,
        },
        "edge": {
            "enabled": True,
            "zone": "conciliaextrato.com",
            "originStack": None,
            "zoneSettings": production,
            "uptimeChecks": True,
            # The zone has Advanced Certificate Manager: hostnames two or more labels below the
            # zone (app.qa.<zone>) get an advanced certificate pack; Universal SSL covers only
            # the apex and *.<zone>.
            "advancedCertificates": False,
            **EDGE_SECURITY_DEFAULTS,
        },
        "alerts": {
            "emails": [],
            "slackChannel": None,
            "slackUrl": None,
            "cpuPercent": 85,
            "memoryPercent": 90,
            "diskPercent": 85,
        },
        "release": {
            "registry": "ghcr.io/bankflow",
            "tag": None,  # required: the image tag the application CI published
            "images": {s: f"bankflow-{s}" for s in APP_SERVICES},
            "registryUsername": None,
            "migrateCommand": ["/app/migrate"],
            "healthCommands": {}, "digests": {}, "requireDigests": False,  # digests: issue 12, release.py
        },
        "backups": {
            "region": "nyc3",
            "retentionDays": 30,
            "localDays": 7,
            "timeUtc": "03:15",
            "bucketStack": None,  # None: this stack's own bucket
            "replicaRegion": None,  # None: default_replica_region(region); never the primary's
        },
        "nginx": {"clientMaxBodySize": "25m", "proxyTimeoutSeconds": 60, "hstsMaxAge": 63072000},
        "originCert": {"validityDays": ORIGIN_CERT_VALIDITY_DAYS},
    }

# The weekly maintenance window (issue 12, item 6: files/systemd/bankflow-maintenance.timer, Sundays,
# UTC): after the 03:15 backup and at 01:30 in Brazil, the quietest hour of the week.
MAINTENANCE_WINDOW_UTC: Final = "04:30"


# --------------------------------------------------------------------------- scale-out (issue 13)

# App droplets behind one load balancer: 1 (today's shape) to MAX_APP_DROPLETS. The bound refuses a
# typo (30 for 3) and keeps a deploy short: the roll takes one droplet at a time, each waiting
# drain_wait_seconds() + its switch behind the health gate + rejoin_wait_seconds() (about a minute
# and a half), and every droplet's apps hold connections in the one database pool. Raise it in a
# reviewed commit after sizing the pool (database.managed.size) and the deploy's timeout.
MAX_APP_DROPLETS: Final = 10


# What `database: {managed: true}` / `cache: {managed: true}` / `uploads: {shared: true}` mean; a
# mapping overlays these. The windows follow the project's Sunday maintenance (MAINTENANCE_WINDOW_UTC
# above): after the 03:15 backup, the quietest hours of the week in Brazil. Production's database
# gets a standby (2 nodes): DigitalOcean fails over to it (docs/PROVIDERS.md).
def scale_defaults(environment: str) -> dict[str, dict[str, Any]]:
    production = environment == "production"
    return {
        "database": {
            "size": "db-s-2vcpu-4gb",
            "nodes": 2 if production else 1,
            "maintenanceWindow": "sunday 04:00",
        },
        "cache": {"size": "db-s-1vcpu-2gb", "nodes": 1, "maintenanceWindow": "sunday 04:30"},
        "uploads": {"sizeGb": 100},
    }
