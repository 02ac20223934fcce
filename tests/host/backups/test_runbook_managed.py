"""docs/RUNBOOK-managed-database.md, its *tested* blocks run exactly as written, on loopback.

Two real PostgreSQL 15 servers: the "droplet's" (tests/support/postgres.py, unix socket) holding
BankFlow-like data, and the "managed cluster" (tls_pg.py: TLS only, scram password, a test CA
standing in for DigitalOcean's) where the new stack's migrations already made an empty schema.
The runbook's freeze → dump → restore → verify → unfreeze path is run block by block: SQL blocks
through psql, the shell block through bash with the variables the runbook names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.host.backups.test_restore_drill import SEED
from tests.host.backups.tls_pg import HOST, PASSWORD, TlsFiles, make_tls_files, start_tls_cluster
from tests.support.postgres import PgCluster, start_cluster
from tests.support.tools import REPO, require_tool

RUNBOOK = REPO / "docs" / "RUNBOOK-managed-database.md"
BLOCK_RE = re.compile(
    r"<!-- tested: (?P<name>[a-z-]+) -->\s*\n\s*```(?P<lang>\w+)\n(?P<body>.*?)\n\s*```", re.S)
# What the new stack's migrations leave in the cluster before the restore: the same tables, empty.
MIGRATED_SCHEMA = SEED.split("INSERT INTO", 1)[0]


def blocks() -> dict[str, str]:
    found = {}
    for match in BLOCK_RE.finditer(RUNBOOK.read_text()):
        indent = re.match(r"[ ]*", match.group("body")).group(0)  # type: ignore[union-attr]
        lines = match.group("body").splitlines()
        found[match.group("name")] = "\n".join(line.removeprefix(indent) for line in lines)
    return found


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def droplet_db() -> Iterator[PgCluster]:
    cluster = start_cluster()
    try:
        cluster.psql(SEED)
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def managed_db(tls_files: TlsFiles) -> Iterator[PgCluster]:
    cluster = start_tls_cluster(tls_files)
    try:
        cluster.psql(MIGRATED_SCHEMA)
        yield cluster
    finally:
        cluster.stop()


def psql_file(
    cluster: PgCluster, sql: str, tmp_path: Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "block.sql"
    script.write_text(sql + "\n")
    argv = [cluster.client("psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-U", "bankflow", "-d", "bankflow",
            "-f", str(script)]  # fmt: skip
    return subprocess.run(argv, env=cluster.env(), capture_output=True, text=True, timeout=300, check=check)


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def host_files(tmp_path: Path, ca: Path) -> dict[str, str]:
    """What the deployed release installed on the droplet: the CA under tls/, the pgpass (as
    render/managed.py writes it: host:port:*:user:password, escaped) under secrets/."""
    tls, secrets = tmp_path / "tls", tmp_path / "secrets"
    tls.mkdir(exist_ok=True)
    secrets.mkdir(exist_ok=True)
    shutil.copy(ca, tls / "managed-database-ca.pem")
    fields = ("private-bankflow-db.example", "25060", "*", "bankflow", PASSWORD)
    (secrets / "managed-database.pgpass").write_text(":".join(_pgpass_field(f) for f in fields) + "\n")
    os.chmod(secrets / "managed-database.pgpass", 0o600)
    return {"TLS_DIR": str(tls), "SECRETS_DIR": str(secrets)}


def run_restore_block(
    managed: PgCluster, files: dict[str, str], dump: Path, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    pg_bin = str(Path(managed.client("pg_restore")).parent)
    work = tmp_path / "tmpdir"
    work.mkdir(exist_ok=True)
    env = {"PATH": f"{pg_bin}:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "TMPDIR": str(work), **files,
           "DB_HOST": HOST, "DB_PORT": str(managed.port), "DUMP": str(dump), "IMAGE": "unused-here"}
    done = subprocess.run([require_tool("bash"), "-c", blocks()["restore"]], env=env, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip
    assert list(work.iterdir()) == []  # the pgpass copy is removed, whatever happened
    return done


def dump_droplet(droplet: PgCluster, tmp_path: Path) -> Path:
    """What `bankflow-infra backup` runs in the postgres container (host/backups/dump.py)."""
    dump = tmp_path / "bankflow-production.dump"
    with dump.open("wb") as out:
        argv = [droplet.client("pg_dump"), "--format=custom", "--no-password", "-U", "bankflow",
                "-d", "bankflow"]
        subprocess.run(argv, env=droplet.env(), stdout=out, check=True, timeout=300)
    return dump


def verify(cluster: PgCluster, tmp_path: Path) -> list[str]:
    return psql_file(cluster, blocks()["verify"], tmp_path).stdout.splitlines()


def test_the_runbook_has_every_tested_block() -> None:
    assert set(blocks()) == {"freeze", "restore", "unfreeze", "verify"}


def test_freeze_dump_restore_verify_unfreeze(
    droplet_db: PgCluster, managed_db: PgCluster, tls_files: TlsFiles, tmp_path: Path
) -> None:
    before = verify(droplet_db, tmp_path)
    assert any(line.startswith("public.statements|5000|") for line in before)
    assert verify(managed_db, tmp_path) != before  # the migrated, empty schema

    psql_file(droplet_db, blocks()["freeze"], tmp_path)
    late_write = "INSERT INTO accounts (bank) VALUES ('late write')"
    refused = psql_file(droplet_db, late_write, tmp_path, check=False)
    assert refused.returncode != 0
    assert "read-only transaction" in refused.stderr

    dump = dump_droplet(droplet_db, tmp_path)
    done = run_restore_block(managed_db, host_files(tmp_path, tls_files.ca), dump, tmp_path)
    assert done.returncode == 0, done.stderr
    assert PASSWORD not in done.stdout + done.stderr

    assert verify(managed_db, tmp_path) == before  # every row, every sequence position
    # the new cluster is writable (the freeze is a database setting pg_restore does not carry)
    psql_file(managed_db, "INSERT INTO accounts (bank) VALUES ('after the move')", tmp_path)

    psql_file(droplet_db, blocks()["unfreeze"], tmp_path)
    psql_file(droplet_db, "INSERT INTO accounts (bank) VALUES ('writable again')", tmp_path)


def test_a_wrong_ca_is_refused_and_the_cluster_is_unchanged(
    droplet_db: PgCluster, managed_db: PgCluster, tls_files: TlsFiles, tmp_path: Path
) -> None:
    empty = verify(managed_db, tmp_path)
    dump = dump_droplet(droplet_db, tmp_path)
    done = run_restore_block(managed_db, host_files(tmp_path, tls_files.other_ca), dump, tmp_path)
    assert done.returncode != 0
    assert "certificate verify failed" in done.stderr
    assert verify(managed_db, tmp_path) == empty


def test_a_restore_that_fails_halfway_changes_nothing(
    droplet_db: PgCluster, managed_db: PgCluster, tls_files: TlsFiles, tmp_path: Path
) -> None:
    empty = verify(managed_db, tmp_path)
    dump = dump_droplet(droplet_db, tmp_path)
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(dump.read_bytes()[: dump.stat().st_size * 2 // 3])
    done = run_restore_block(managed_db, host_files(tmp_path, tls_files.ca), truncated, tmp_path)
    assert done.returncode != 0
    assert verify(managed_db, tmp_path) == empty  # one transaction: all or nothing
