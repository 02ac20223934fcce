"""The nightly dump of a managed database: real PostgreSQL over TLS verify-full, real S3 and rclone.

The host rig (conftest.py) with its PostgreSQL replaced by a TLS-only one (tls_pg.py: the managed
cluster's direct port stand-in) and the deployed release's backup.json in the managed schema (3,
as render/backup.py renders it), with the CA file and the pgpass file at host paths. The agent's
real ``backup`` command runs. Docker stand-in (no engine here): its ``docker run <client image>
pg_dump ...`` runs PostgreSQL 15's pg_dump locally with the same arguments and the variables the
``--env`` names pass (:class:`DockerRunStandin`); the docker part of the argv is asserted as is.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.host import state as st
from bankflow_infra.host.backups import managed_dump
from bankflow_infra.host.backups.config import BackupUsageError, parse_config
from bankflow_infra.host.runtime import Completed
from tests.host.backups.conftest import BackupHost
from tests.host.backups.rig import backup_config, run_agent
from tests.host.backups.tls_pg import HOST, PASSWORD, TlsFiles, make_tls_files, start_tls_cluster
from tests.support.postgres import PgCluster

ROWS = 400_000  # ~25 MB of dump: long enough to kill pg_dump while it writes


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def pg(tls_files: TlsFiles) -> Iterator[PgCluster]:  # replaces conftest's: the TLS-only cluster
    cluster = start_tls_cluster(tls_files)
    try:
        yield cluster
    finally:
        cluster.stop()


IMAGE = "registry.example/postgres:15-alpine"


@dataclass
class DockerRunStandin:
    """The agent's ``docker run --rm ... IMAGE pg_dump ARGS``: pg_dump ARGS run here, with the
    variables named by ``--env`` taken from the runner's environment, as docker does."""

    pg_dump: str
    calls: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], *, env: Mapping[str, str], timeout: float) -> Completed:
        argv = list(argv)
        self.calls.append((argv, dict(env)))
        assert argv[:3] == ["docker", "run", "--rm"], argv
        image = argv.index(IMAGE)
        names = [argv[i + 1] for i, arg in enumerate(argv[:image]) if arg == "--env"]
        inner = {"PATH": "/usr/bin:/bin", **{name: env[name] for name in names}}
        inner_argv = [self.pg_dump, *argv[image + 2 :]]
        real: Completed = managed_dump_run_process(inner_argv, env=inner, timeout=timeout)
        return real


managed_dump_run_process = managed_dump.run_process


@pytest.fixture
def managed(host: BackupHost, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> DockerRunStandin:
    """The deployed release switched to a managed database: backup.json schema 3, CA, pgpass."""
    standin = DockerRunStandin(host.pg.client("pg_dump"))
    monkeypatch.setattr(managed_dump, "run_process", standin)
    set_managed(host, tls_files.ca)
    seed = ("CREATE TABLE ledger (id integer PRIMARY KEY, memo text NOT NULL);"  # noqa: S608 - a number
            "INSERT INTO ledger SELECT g, md5(g::text) || md5((g * 7)::text) "
            f"FROM generate_series(1, {ROWS:d}) g")
    host.pg.psql(seed)
    return standin


def _pgpass_field(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def set_managed(host: BackupHost, ca: Path, server: str = HOST, backup_droplet: str | None = None) -> None:
    """backup.json as render_managed_backup_config writes it; the CA and pgpass where the agent
    installs them (tls/ and secrets/ of the host layout)."""
    paths = HostPaths(host.env.home)
    current = st.read_current(paths)
    assert current is not None
    paths.tls.mkdir(parents=True, exist_ok=True)
    paths.secrets.mkdir(parents=True, exist_ok=True)
    (paths.tls / "managed-database-ca.pem").write_bytes(ca.read_bytes())
    passfile = paths.secrets / "managed-database.pgpass"
    fields = (server, str(host.pg.port), "*", "bankflow", PASSWORD)
    passfile.write_text(":".join(_pgpass_field(f) for f in fields) + "\n")
    os.chmod(passfile, 0o600)
    config = backup_config(host.s3.endpoint, host.bucket) | {
        "schema": 3, "pitr": None, "service": None, "backup_droplet": backup_droplet,
        "managed_database": {"host": server, "port": host.pg.port, "sslmode": "verify-full",
                             "ca_file": str(paths.tls / "managed-database-ca.pem"), "passfile": str(passfile),
                             "client_image": IMAGE}}  # fmt: skip
    (paths.release_dir(current.release) / "backup" / "backup.json").write_text(json.dumps(config))


def leftovers(host: BackupHost) -> list[str]:
    return sorted(p.name for p in host.backups.iterdir()) if host.backups.exists() else []


def test_the_dump_goes_over_tls_verify_full_and_restores(host: BackupHost, managed: DockerRunStandin) -> None:
    code, out, err = run_agent(host.env, "backup")
    assert code == 0, out + err
    [(argv, env)] = managed.calls
    paths = HostPaths(host.env.home)
    ca, passfile = str(paths.tls / "managed-database-ca.pem"), str(paths.secrets / "managed-database.pgpass")
    image = argv.index(IMAGE)
    assert argv[:image] == [
        "docker", "run", "--rm", "--network", "host", "--user", "0:0", "--read-only", "--cap-drop", "ALL",
        "--volume", f"{ca}:{ca}:ro", "--volume", f"{passfile}:{passfile}:ro",
        "--volume", f"{host.backups}:{host.backups}",
        "--env", "PGSSLMODE", "--env", "PGSSLROOTCERT", "--env", "PGPASSFILE", "--env", "PGCONNECT_TIMEOUT",
        "--env", "PGAPPNAME"]  # fmt: skip
    assert argv[image + 1 : image + 9] == ["pg_dump", "--format=custom", "--no-password", "--host", HOST,
                                           "--port", str(host.pg.port), "--username"]
    assert (env["PGSSLMODE"], env["PGSSLROOTCERT"], env["PGPASSFILE"]) == ("verify-full", ca, passfile)
    assert PASSWORD not in json.dumps([argv, env]) + out + err  # the password only in the pgpass file
    [dump] = [name for name in leftovers(host) if name.endswith(".dump")]
    base = dump.removesuffix(".dump")
    assert host.s3.keys(host.bucket) == sorted([dump, f"{base}.globals.sql", f"{base}.sha256"])
    assert "Roles belong to the cluster" in (host.backups / f"{base}.globals.sql").read_text()
    # the dump is a real one: it restores, every row
    host.pg.psql("CREATE DATABASE scratch", "postgres")
    subprocess.run([host.pg.client("pg_restore"), "--exit-on-error", "-U", "bankflow", "-d", "scratch",
                    str(host.backups / dump)], env=host.pg.env(), check=True, capture_output=True,
                   timeout=300)
    assert host.pg.psql("SELECT count(*) FROM ledger", "scratch").strip() == str(ROWS)


@pytest.mark.parametrize("wrong", ["ca", "hostname"])
def test_a_wrong_ca_or_name_is_refused_before_any_data(
    host: BackupHost, managed: DockerRunStandin, tls_files: TlsFiles, wrong: str
) -> None:
    if wrong == "ca":
        set_managed(host, tls_files.other_ca)
    else:
        set_managed(host, tls_files.ca, server="127.0.0.1")  # the certificate names localhost only
    code, out, err = run_agent(host.env, "backup")
    assert code == 1
    assert "(TLS verify-full) exited" in err
    expected = "certificate verify failed" if wrong == "ca" else "does not match host name"
    assert expected in err, err
    assert host.s3.keys(host.bucket) == []
    assert leftovers(host) == []
    assert PASSWORD not in out + err


def test_only_the_backup_droplet_dumps(
    host: BackupHost, managed: DockerRunStandin, tls_files: TlsFiles
) -> None:
    set_managed(host, tls_files.ca, backup_droplet="bankflow-production-server")
    code, out, err = run_agent(host.env, "backup")
    assert code == 0, out + err
    assert "is not bankflow-production-server, which takes the stack's backups" in out
    assert managed.calls == []
    assert host.s3.keys(host.bucket) == []


def _pg_dump_pid(partial: Path) -> int | None:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if str(partial).encode() in command:
                return int(entry.name)
    return None


def test_a_dump_killed_halfway_leaves_nothing_in_the_bucket(
    host: BackupHost, managed: DockerRunStandin
) -> None:
    killed: dict[str, Any] = {}

    def kill_when_writing() -> None:
        stop = time.monotonic() + 120
        while time.monotonic() < stop and "pid" not in killed:
            for partial in host.backups.glob(".*.dump.partial") if host.backups.exists() else []:
                size = partial.stat().st_size if partial.exists() else 0
                pid = _pg_dump_pid(partial) if size > 256 * 1024 else None
                if pid is not None:
                    os.kill(pid, signal.SIGKILL)
                    killed.update(pid=pid, size=size)
            time.sleep(0.005)

    watcher = threading.Thread(target=kill_when_writing, daemon=True)
    watcher.start()
    code, _out, err = run_agent(host.env, "backup")
    watcher.join(timeout=130)
    assert killed.get("size", 0) > 256 * 1024, "pg_dump finished before it could be killed"
    assert code == 1
    assert "exited -9" in err
    assert host.s3.keys(host.bucket) == []  # no half object, no sidecar
    assert leftovers(host) == []  # the partial is gone too


MANAGED_SECTION = {"host": "db.example", "port": 25060, "sslmode": "verify-full",
                   "ca_file": "/srv/tls/ca.pem", "passfile": "/srv/secrets/pgpass", "client_image": IMAGE}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"host": "Bad_Host"}, "managed_database.host"),
        ({"port": 0}, "managed_database.port"),
        ({"sslmode": "require"}, "managed_database.sslmode: expected 'verify-full'"),
        ({"ca_file": "/srv/../etc/ca.pem"}, "managed_database.ca_file"),
        ({"passfile": "secrets/pgpass"}, "managed_database.passfile"),
        ({"client_image": "Not An Image"}, "managed_database.client_image"),
    ],
)
def test_the_managed_section_is_checked(change: dict[str, Any], problem: str) -> None:
    document = backup_config("https://nyc3.digitaloceanspaces.com", "bankflow-test-backups") | {
        "schema": 3, "pitr": None, "service": None, "managed_database": MANAGED_SECTION | change}
    with pytest.raises(BackupUsageError, match=problem):
        parse_config(document, "backup.json")


def test_a_managed_database_never_has_pgbackrest() -> None:
    document = backup_config("https://nyc3.digitaloceanspaces.com", "bankflow-test-backups") | {
        "schema": 3, "pitr": {"stanza": "bankflow"}, "managed_database": MANAGED_SECTION}
    with pytest.raises(BackupUsageError, match="pitr: must be null with a managed database"):
        parse_config(document, "backup.json")


def test_the_agent_refuses_a_dump_restore_in_place_on_a_managed_database(
    host: BackupHost, managed: DockerRunStandin
) -> None:
    code, _out, err = run_agent(host.env, "restore", "--from", "latest", "--yes")
    assert code == 2
    assert "the database is managed by DigitalOcean" in err
