"""The managed database's one-time ownership step (issue 13): from droplet 1, inside the VPC and
carrying the stack's tag (the only source the cluster's firewall admits), the cluster's admin
makes the app role the owner of the ``bankflow`` database (see
``managed_data.app_role_ownership_sql`` for why).

A remote command rather than anything local: the cluster has no public access (its firewall
admits the droplets' tag only), so the machine running ``pulumi up`` cannot reach it. ``psql``
comes from the pinned ``postgres:15-alpine`` image (Docker is on every droplet). The admin's
password and DigitalOcean's CA travel on stdin as a base64 tar (a secret input); the command text
is fixed; TLS is ``verify-full`` against the cluster's CA.
"""

from __future__ import annotations

import shlex
from typing import Final

import pulumi
import pulumi_command.remote as remote

from bankflow_infra.catalog import POSTGRES_BASE_IMAGE
from bankflow_infra.components.managed_data import DATABASE_NAME, ManagedPostgres, app_role_ownership_sql
from bankflow_infra.components.server import Machine
from bankflow_infra.render.payloads import tar_payload

CONTAINER_DIR: Final = "/work"


def database_owner_command(image: str = POSTGRES_BASE_IMAGE) -> str:
    """Unpack the stdin payload into a private temp dir and run its SQL with psql in a container
    (as root in the container: the files are the temp dir's, mode 0600)."""
    return (
        "set -eu; umask 077; work=$(mktemp -d); trap 'rm -rf \"$work\"' EXIT; "
        'base64 -d | tar -xz --no-same-owner -C "$work"; '
        f'docker run --rm --network host --user 0:0 --env-file "$work/env" -v "$work:{CONTAINER_DIR}:ro" '
        f"{shlex.quote(image)} psql -X -q -v ON_ERROR_STOP=1 -f {CONTAINER_DIR}/owner.sql"
    )


def database_owner_payload(host: str, port: int, admin_user: str, admin_password: str, ca_pem: str) -> str:
    """env (libpq's variables, for ``docker run --env-file``), the CA and the SQL, as base64 tar."""
    env = "".join(
        f"{key}={value}\n"
        for key, value in (
            ("PGHOST", host),
            ("PGPORT", str(port)),
            ("PGUSER", admin_user),
            ("PGPASSWORD", admin_password),
            ("PGDATABASE", DATABASE_NAME),
            ("PGSSLMODE", "verify-full"),
            ("PGSSLROOTCERT", f"{CONTAINER_DIR}/ca.pem"),
        )
    )
    return tar_payload(
        [
            ("env", env.encode(), 0o600),
            ("ca.pem", ca_pem.encode(), 0o600),
            ("owner.sql", app_role_ownership_sql().encode(), 0o600),
        ]
    )


def database_owner_step(
    name: str,
    parent: pulumi.Resource,
    machine: Machine,
    connection: remote.ConnectionArgs,
    database: ManagedPostgres,
    after: list[pulumi.Resource],
) -> remote.Command:
    """Runs on create and again when the cluster, the database or the role is replaced (a new
    id), never on a no-op ``up``; before the roll (which runs the migrations)."""
    cluster = database.cluster
    payload: pulumi.Output[str] = pulumi.Output.all(
        cluster.private_host, cluster.port, cluster.user, cluster.password, database.ca_pem
    ).apply(lambda v: database_owner_payload(v[0], int(v[1]), v[2], v[3], v[4]))
    secret_payload: pulumi.Output[str] = pulumi.Output.secret(payload)
    return remote.Command(
        name,
        connection=connection,
        create=database_owner_command(),
        stdin=secret_payload,
        triggers=[cluster.id, database.database.id, database.user.id],
        logging=remote.Logging.NONE,
        add_previous_output_in_env=False,
        opts=pulumi.ResourceOptions(
            parent=parent,
            depends_on=[*after, database.firewall, database.user, database.database],
            deleted_with=machine.droplet,
            additional_secret_outputs=["stdout", "stderr"],
        ),
    )
