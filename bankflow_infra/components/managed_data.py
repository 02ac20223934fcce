"""DigitalOcean's managed PostgreSQL 15 and Valkey clusters (``database.managed``,
``cache.managed``; issue 13), reachable from the stack's droplets only.

Provider facts relied on (terraform-provider-digitalocean digitalocean/database/, read at 401992a):
- ``resource_database_cluster.go``: ``private_network_uuid`` (the VPC), ``engine``, ``region`` are
  ForceNew; ``version`` is required in practice; ``maintenance_window.hour`` "HH:MM" (a trailing
  ":SS" is diff-suppressed, so the settings' "HH:MM:SS" is stable); engine ``valkey`` is a caching
  engine (a lower configured version than the cluster's is diff-suppressed after DigitalOcean's
  forced upgrades). The SDK marks ``password``/``uri``/``private_uri`` secret outputs.
- ``resource_database_firewall.go``: rule ``type`` one of ip_addr, droplet, k8s, tag, app; the
  resource owns ALL of the cluster's trusted sources (a rule added elsewhere is removed). With a
  firewall no public address reaches the cluster, its private one only from the tagged droplets.
- ``resource_database_connection_pool.go``: ``mode`` session/transaction/statement, ``name``
  3..63 characters; every argument is ForceNew (a new pool size is a new pool).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_digitalocean as do

from bankflow_infra.render.managed import ManagedCache, ManagedDatabase
from bankflow_infra.settings.model import MaintenanceWindow

POSTGRES_VERSION: Final = "15"  # the version the single-droplet stacks run (catalog: postgres:15)
VALKEY_VERSION: Final = "8"
DATABASE_NAME: Final = "bankflow"
APP_ROLE: Final = "bankflow_app"  # the apps' role, as on a single droplet (host/database_roles.py)
POOL_NAME: Final = "bankflow-app"
# Transaction pooling: a server connection is held only for one transaction, so N droplets x
# their app workers share few PostgreSQL backends. DigitalOcean gives a cluster 25 backend
# connections per GiB of RAM, 3 of them reserved ("How to Manage Connection Pools for PostgreSQL
# Database Clusters", docs.digitalocean.com): 22 on the smallest size. 20 fits every size and
# leaves room for the direct connections of migrations and the nightly dump. A constant, not
# derived from the size: every pool argument is ForceNew and the name is unique per cluster, so a
# size-derived pool would make a cluster resize replace the pool (create under the same name fails).
POOL_MODE: Final = "transaction"
POOL_SIZE: Final = 20


def app_role_ownership_sql(database: str = DATABASE_NAME, role: str = APP_ROLE) -> str:
    """Run once as the cluster's admin (``doadmin``): the app role becomes the database's owner.

    DigitalOcean creates the database owned by ``doadmin`` and the role (DatabaseUser) with no
    privilege in it, and PostgreSQL 15 grants CREATE on schema ``public`` to the database owner
    only (``pg_database_owner``): without this the migrations (run as the app role) cannot create
    a table. Changing an owner needs membership in the new owner role; the admin has CREATEROLE,
    which in PostgreSQL 15 may grant any non-superuser role. Idempotent: granting a membership
    held already is a notice, and so is an unchanged owner."""
    return f"GRANT {role} TO CURRENT_USER;\nALTER DATABASE {database} OWNER TO {role};\n"


@dataclass(frozen=True)
class ManagedClusterArgs:
    name: str  # the cloud-side name, bankflow-<stack>-db / -cache
    region: str
    size: str
    nodes: int
    maintenance: MaintenanceWindow
    tags: tuple[str, ...]
    protect: bool  # production: the database holds the money data


def _cluster(
    name: str,
    args: ManagedClusterArgs,
    engine: str,
    version: str,
    vpc_id: pulumi.Input[str],
    parent: pulumi.Resource,
) -> do.DatabaseCluster:
    return do.DatabaseCluster(
        f"{name}-cluster",
        name=args.name,
        engine=engine,
        version=version,
        size=args.size,
        region=args.region,
        node_count=args.nodes,
        private_network_uuid=vpc_id,
        maintenance_windows=[
            do.DatabaseClusterMaintenanceWindowArgs(day=args.maintenance.day, hour=args.maintenance.hour)
        ],
        tags=list(args.tags),
        opts=pulumi.ResourceOptions(parent=parent, protect=args.protect),
    )


def _firewall(
    name: str, cluster: do.DatabaseCluster, droplet_tag: pulumi.Input[str], parent: pulumi.Resource
) -> do.DatabaseFirewall:
    """Trusted sources: the stack's droplet tag, nothing else (no address, no other tag)."""
    return do.DatabaseFirewall(
        f"{name}-firewall",
        cluster_id=cluster.id,
        rules=[do.DatabaseFirewallRuleArgs(type="tag", value=droplet_tag)],
        opts=pulumi.ResourceOptions(parent=parent),
    )


def _ca_certificate(cluster: do.DatabaseCluster) -> pulumi.Output[str]:
    """DigitalOcean's CA for the cluster (the clients verify the server with it: verify-full)."""
    return do.get_database_ca_output(cluster_id=cluster.id).certificate


class ManagedPostgres(pulumi.ComponentResource):
    """The cluster, its firewall, the ``bankflow`` database, the app role and its pool."""

    cluster: do.DatabaseCluster
    firewall: do.DatabaseFirewall
    pool: do.DatabaseConnectionPool
    database: do.DatabaseDb
    user: do.DatabaseUser
    endpoint: pulumi.Output[ManagedDatabase]  # secret: it holds the app role's password
    ca_pem: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: ManagedClusterArgs,
        vpc_id: pulumi.Input[str],
        droplet_tag: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("bankflow:index:ManagedDatabase", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.cluster = _cluster(name, args, "pg", POSTGRES_VERSION, vpc_id, self)
        self.firewall = _firewall(name, self.cluster, droplet_tag, self)
        self.database = database = do.DatabaseDb(
            f"{name}-db", cluster_id=self.cluster.id, name=DATABASE_NAME, opts=child
        )
        # DigitalOcean generates the role's password (the provider's `password` output, secret):
        # it is the apps' password, nobody types one.
        self.user = user = do.DatabaseUser(
            f"{name}-user", cluster_id=self.cluster.id, name=APP_ROLE, opts=child
        )
        self.pool = do.DatabaseConnectionPool(
            f"{name}-pool",
            cluster_id=self.cluster.id,
            name=POOL_NAME,
            mode=POOL_MODE,
            size=POOL_SIZE,
            db_name=database.name,
            user=user.name,
            opts=child,
        )
        self.ca_pem = _ca_certificate(self.cluster)
        self.endpoint = pulumi.Output.secret(
            pulumi.Output.all(
                self.cluster.private_host,
                self.cluster.port,
                self.pool.port,
                self.pool.name,
                database.name,
                user.name,
                user.password,
                self.ca_pem,
            ).apply(lambda v: ManagedDatabase(v[0], int(v[1]), int(v[2]), v[3], v[4], v[5], v[6], v[7]))
        )
        self.register_outputs({})


class ManagedValkey(pulumi.ComponentResource):
    """The Valkey cluster (the apps' cache and sessions) and its firewall."""

    cluster: do.DatabaseCluster
    firewall: do.DatabaseFirewall
    endpoint: pulumi.Output[ManagedCache]  # secret: it holds the password

    def __init__(
        self,
        name: str,
        args: ManagedClusterArgs,
        vpc_id: pulumi.Input[str],
        droplet_tag: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("bankflow:index:ManagedCache", name, None, opts)
        self.cluster = _cluster(name, args, "valkey", VALKEY_VERSION, vpc_id, self)
        self.firewall = _firewall(name, self.cluster, droplet_tag, self)
        self.endpoint = pulumi.Output.secret(
            pulumi.Output.all(
                self.cluster.private_host,
                self.cluster.port,
                self.cluster.user,
                self.cluster.password,
                _ca_certificate(self.cluster),
            ).apply(lambda v: ManagedCache(v[0], int(v[1]), v[2], v[3], v[4]))
        )
        self.register_outputs({})
