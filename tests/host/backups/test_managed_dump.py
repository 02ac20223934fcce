"""The nightly dump of a managed database: real PostgreSQL over TLS verify-full, real S3 and rclone.

The host rig (conftest.py) with its PostgreSQL replaced by a TLS-only one (tls_pg.py: the managed
cluster's direct port stand-in) and the deployed release's backup.json given a ``managed``
section, the CA file and the password file, as the bundle carries them (H3 renders them). The
agent's real ``backup`` command runs the host's pg_dump (PostgreSQL 15's here).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
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


@dataclass
class DumpRecorder:
    real: Any  # the agent's own process runner
    calls: list[tuple[list[str], dict[str, str]]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], *, env: Mapping[str, str], timeout: float) -> Completed:
        self.calls.append((list(argv), dict(env)))
        result: Completed = self.real(argv, env=env, timeout=timeout)
        return result


@pytest.fixture
def managed(host: BackupHost, tls_files: TlsFiles, monkeypatch: pytest.MonkeyPatch) -> DumpRecorder:
    """The deployed release switched to a managed database: backup.json, CA file, password file."""
    monkeypatch.setattr(managed_dump, "PG_DUMP", host.pg.client("pg_dump"))
    recorder = DumpRecorder(managed_dump.run_process)
    monkeypatch.setattr(managed_dump, "run_process", recorder)
    set_managed(host, tls_files.ca)
    seed = ("CREATE TABLE ledger (id integer PRIMARY KEY, memo text NOT NULL);"  # noqa: S608 - a number
            "INSERT INTO ledger SELECT g, md5(g::text) || md5((g * 7)::text) "
            f"FROM generate_series(1, {ROWS:d}) g")
    host.pg.psql(seed)
    return recorder


def set_managed(host: BackupHost, ca: Path, server: str = HOST) -> Path:
    paths = HostPaths(host.env.home)
    current = st.read_current(paths)
    assert current is not None
    release = paths.release_dir(current.release)
    (release / "managed").mkdir(exist_ok=True)
    (release / "managed" / "ca.pem").write_bytes(ca.read_bytes())
    secret = release / "secrets" / "backup.database_password"
    secret.write_text(PASSWORD + "\n")
    os.chmod(secret, 0o600)
    config = backup_config(host.s3.endpoint, host.bucket) | {
        "schema": 2, "pitr": None, "service": None,
        "managed": {"host": server, "port": host.pg.port, "ca_file": "managed/ca.pem",
                    "password_file": "secrets/backup.database_password"}}  # fmt: skip
    (release / "backup" / "backup.json").write_text(json.dumps(config))
    return release


def leftovers(host: BackupHost) -> list[str]:
    return sorted(p.name for p in host.backups.iterdir()) if host.backups.exists() else []


def pgpass_dirs() -> list[str]:
    return [name for name in os.listdir(tempfile.gettempdir()) if name.startswith("bankflow-pgpass-")]


def test_the_dump_goes_over_tls_verify_full_and_restores(host: BackupHost, managed: DumpRecorder) -> None:
    code, out, err = run_agent(host.env, "backup")
    assert code == 0, out + err
    [(argv, env)] = managed.calls
    assert argv[1:8] == ["--format=custom", "--no-password", "--host", HOST, "--port", str(host.pg.port),
                         "--username"]
    assert (env["PGSSLMODE"], Path(env["PGSSLROOTCERT"]).name) == ("verify-full", "ca.pem")
    assert PASSWORD not in json.dumps([argv, env]) + out + err  # the password only in the pgpass file
    assert pgpass_dirs() == []  # removed right after pg_dump
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
    host: BackupHost, managed: DumpRecorder, tls_files: TlsFiles, wrong: str
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


def test_a_dump_killed_halfway_leaves_nothing_in_the_bucket(host: BackupHost, managed: DumpRecorder) -> None:
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
    assert pgpass_dirs() == []


@pytest.mark.parametrize(
    ("managed_section", "problem"),
    [
        ({"host": "Bad_Host", "port": 25060, "ca_file": "managed/ca.pem", "password_file": "secrets/p"},
         "managed.host"),
        ({"host": "db.example", "port": 0, "ca_file": "managed/ca.pem", "password_file": "secrets/p"},
         "managed.port"),
        ({"host": "db.example", "port": 25060, "ca_file": "../../etc/ca.pem", "password_file": "secrets/p"},
         "managed.ca_file"),
        ({"host": "db.example", "port": 25060, "ca_file": "managed/ca.pem", "password_file": "/root/p"},
         "managed.password_file"),
        ("yes", "managed: expected an object"),
    ],
)
def test_the_managed_section_is_checked(managed_section: Any, problem: str) -> None:
    document = backup_config("https://nyc3.digitaloceanspaces.com", "bankflow-test-backups") | {
        "schema": 2, "pitr": None, "managed": managed_section}
    with pytest.raises(BackupUsageError, match=problem):
        parse_config(document, "backup.json")


def test_a_managed_database_never_has_pgbackrest() -> None:
    document = backup_config("https://nyc3.digitaloceanspaces.com", "bankflow-test-backups") | {
        "schema": 2, "pitr": {"stanza": "bankflow"},
        "managed": {"host": "db.example", "port": 25060, "ca_file": "m/ca.pem", "password_file": "s/p"}}
    with pytest.raises(BackupUsageError, match="pitr: must be null with a managed database"):
        parse_config(document, "backup.json")


def test_pgpass_escapes_separators() -> None:
    config = parse_config(backup_config("https://x.example", "bankflow-test-backups") | {
        "schema": 2, "pitr": None,
        "managed": {"host": "db.example", "port": 25060, "ca_file": "m/ca.pem", "password_file": "s/p"}},
        "backup.json")  # fmt: skip
    assert config.managed is not None
    line = managed_dump.pgpass_line(config.managed, "bankflow", "bankflow", "a:b\\c")
    assert line == "db.example:25060:bankflow:bankflow:a\\:b\\\\c\n"


def test_the_agent_refuses_a_dump_restore_in_place_on_a_managed_database(
    host: BackupHost, managed: DumpRecorder
) -> None:
    code, _out, err = run_agent(host.env, "restore", "--from", "latest", "--yes")
    assert code == 2
    assert "the database is managed by DigitalOcean" in err
