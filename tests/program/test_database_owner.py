"""The managed database's ownership step (components/database_owner.py): its SQL against a real
PostgreSQL 15 shaped like DigitalOcean's (an admin with CREATEROLE/CREATEDB that owns the database,
an app role with no privilege in it), and the remote command the scaled plan registers."""

from __future__ import annotations

import base64
import io
import subprocess
import tarfile
from collections.abc import Iterator

import pytest
from pulumi.runtime import rpc

from bankflow_infra.components.database_owner import database_owner_command
from bankflow_infra.components.managed_data import APP_ROLE, app_role_ownership_sql
from bankflow_infra.ops.plan import PlanResult
from tests.program.stacks import COMMAND, inputs, named, production, scaled
from tests.support.postgres import PgCluster, start_cluster

ADMIN = "doadmin"
APP_DATABASE = "appdb"


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    pg = start_cluster()
    try:
        # What DigitalOcean leaves: its admin (not a superuser) owns the database it created; the
        # DatabaseUser is a plain login role.
        pg.psql(f"CREATE ROLE {ADMIN} LOGIN CREATEROLE CREATEDB", "postgres")
        pg.psql(f"CREATE ROLE {APP_ROLE} LOGIN", "postgres")
        pg.psql(f"CREATE DATABASE {APP_DATABASE} OWNER {ADMIN}", "postgres")
        yield pg
    finally:
        pg.stop()


def run_as(pg: PgCluster, user: str, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [pg.client("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", APP_DATABASE, "-c", sql],
        env=pg.env(), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_the_app_role_can_run_migrations_only_after_the_ownership_step(cluster: PgCluster) -> None:
    before = run_as(cluster, APP_ROLE, "CREATE TABLE before_step (id int)")
    assert before.returncode != 0
    assert "permission denied for schema public" in before.stderr
    for attempt in (1, 2):  # idempotent: a second `up` after a replaced role runs it again
        done = run_as(cluster, ADMIN, app_role_ownership_sql(APP_DATABASE, APP_ROLE))
        assert done.returncode == 0, (attempt, done.stderr)
    after = run_as(cluster, APP_ROLE, "CREATE TABLE after_step (id int)")
    assert after.returncode == 0, after.stderr
    owner = cluster.psql("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = 'appdb'")
    assert owner.strip() == APP_ROLE


def _payload_files(text: str) -> dict[str, str]:
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(text)), mode="r:gz") as archive:
        return {
            member.name: archive.extractfile(member).read().decode()  # type: ignore[union-attr]
            for member in archive.getmembers()
        }


def test_scaled_plan_runs_the_step_once_on_droplet_one_before_its_stage() -> None:
    result: PlanResult = scaled()
    owners = [r for r in result.recorder.of_type(COMMAND) if r.name.endswith("-database-owner")]
    assert [r.name for r in owners] == ["host-database-owner"]
    step = owners[0]
    assert inputs(step)["create"] == database_owner_command()
    assert rpc.is_rpc_secret(step.inputs["stdin"])
    assert inputs(step)["connection"]["host"] == inputs(named(result, "host-deploy"))["connection"]["host"]
    assert step.urn in named(result, "host-deploy").dependencies
    assert named(result, "database-firewall").urn in step.dependencies
    files = _payload_files(inputs(step)["stdin"])
    cluster = named(result, "database-cluster").state
    env = dict(line.split("=", 1) for line in files["env"].splitlines())
    assert env["PGHOST"] == cluster["privateHost"]
    assert (env["PGUSER"], env["PGPASSWORD"]) == (cluster["user"], cluster["password"])
    assert env["PGSSLMODE"] == "verify-full"
    assert "BEGIN CERTIFICATE" in files["ca.pem"]
    assert files["owner.sql"] == app_role_ownership_sql()
    assert cluster["password"] not in inputs(step)["create"]


def test_no_ownership_step_without_a_managed_database() -> None:
    assert not [r for r in production().recorder.of_type(COMMAND) if r.name.endswith("-database-owner")]
