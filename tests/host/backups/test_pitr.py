"""Point-in-time recovery end to end: a REAL PostgreSQL 15 archiving WAL with archive_timeout=60
through the REAL pgBackRest 2.45 into S3 (moto behind nginx's TLS), restored by the agent's
``restore`` (Docker stand-in: tests/host/backups/pitr_rig.py)."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.contract.release import MAINTENANCE_LISTEN, MAINTENANCE_RETRY_AFTER
from bankflow_infra.host import maintenance
from bankflow_infra.host.runtime import RuntimeFailure
from bankflow_infra.render.backup import render_pgbackrest_config
from bankflow_infra.render.nginx import maintenance_server
from tests.host.backups.pitr_rig import CIPHER_PASS, PitrStandinRuntime, add_pitr_files
from tests.host.backups.rig import ACCESS_KEY, SECRET_KEY, run_agent
from tests.host.fixtures import HostEnv, hostname
from tests.support.ports import free_port
from tests.support.postgres import DATABASE, SUPERUSER, PgCluster, start_cluster
from tests.support.s3 import S3, TlsFront, tls_front
from tests.support.tools import require_tool

# pgBackRest's default lock path (/tmp/pgbackrest) is shared by every cluster archiving to a
# stanza named bankflow: under pytest-xdist these modules run on one worker, one after another.
pytestmark = pytest.mark.xdist_group("pgbackrest-default-lock-path")

ARCHIVE_TIMEOUT = 60  # the production value (catalog.ARCHIVE_TIMEOUT_SECONDS): never lowered here


@dataclass
class PitrHost:
    env: HostEnv
    runtime: PitrStandinRuntime
    pg: PgCluster
    front: TlsFront

    def agent(self, *args: str) -> tuple[int, str, str]:
        return run_agent(self.env, *args)

    @property
    def secrets(self) -> Path:
        return HostPaths(self.env.home).secrets


@pytest.fixture
def pitr_host(tmp_path: Path, s3: S3, monkeypatch: pytest.MonkeyPatch) -> Iterator[PitrHost]:
    require_tool("pgbackrest")
    nginx = require_tool("nginx")
    front = tls_front(s3.endpoint, tmp_path / "s3-tls")
    shared = Path(tempfile.mkdtemp(prefix="bankflow-pgbr-"))
    os.chmod(shared, 0o755)  # noqa: S103 - the cluster's owner reads the test config here
    conf = shared / "pgbackrest-test.conf"
    ca_file = shared / "s3-ca.pem"  # where the cluster's owner can read it (tmp_path is root-only)
    shutil.copyfile(front.ca_file, ca_file)
    os.chmod(ca_file, 0o644)
    archive = f"-c archive_mode=on -c archive_timeout={ARCHIVE_TIMEOUT} -c wal_level=replica " + (
        f'-c "archive_command=pgbackrest --config={conf} --stanza=bankflow archive-push %p"'
    )
    pg = start_cluster([archive])
    home, run, bundles = tmp_path / "home", tmp_path / "run", tmp_path / "bundles"
    for path in (home, run / "nginx-tmp", bundles):
        path.mkdir(parents=True)
    runtime = PitrStandinRuntime(
        run, nginx, home / "nginx" / "nginx.conf", pg, HostPaths(home).secrets, str(ca_file), conf
    )
    env = HostEnv(home, run, bundles, free_port(), runtime, verify_port=free_port())
    bucket = f"bankflow-pitr-{uuid.uuid4().hex[:12]}"
    s3.client.create_bucket(Bucket=bucket)
    try:
        bundle = env.bundle("v1")
        add_pitr_files(bundle, front.endpoint, bucket, pg, CIPHER_PASS)
        code, out, err = env.deploy(bundle)
        assert code == 0, out + err
        runtime.write_conf()
        add_maintenance_listener(runtime, monkeypatch)
        code, out, err = run_agent(env, "pitr-backup", "--type", "full")
        assert code == 0, out + err
        yield PitrHost(env, runtime, pg, front)
    finally:
        runtime.shutdown()
        pg.stop()
        front.stop()
        shutil.rmtree(shared, ignore_errors=True)


@dataclass
class Writer:
    """Inserts rows one at a time through one psql session (autocommit): a row's line read back
    means its commit returned. Records (id, clock_timestamp at insert, time the commit returned)."""

    pg: PgCluster
    acked: list[tuple[int, float, float]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        psql = subprocess.Popen(
            [self.pg.client("psql"), "-X", "-q", "-At", "-U", SUPERUSER, "-d", DATABASE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=self.pg.env(),
            text=True,
            bufsize=1,
        )
        assert psql.stdin is not None
        assert psql.stdout is not None
        try:
            while not self.stop.is_set():
                psql.stdin.write(
                    "INSERT INTO ledger(at) VALUES (clock_timestamp()) "
                    "RETURNING id || '|' || extract(epoch FROM at);\n"
                )
                psql.stdin.flush()
                line = psql.stdout.readline()
                if not line:
                    return  # the server is gone
                row_id, at = line.strip().split("|")
                self.acked.append((int(row_id), float(at), time.time()))
                time.sleep(0.05)
        except (OSError, ValueError):
            return
        finally:
            psql.kill()
            psql.wait(timeout=10)


def through_nginx(host: PitrHost) -> tuple[int, str, str | None]:
    """GET / for the site's hostname through the real nginx: status, body, Retry-After."""
    connection = http.client.HTTPConnection("127.0.0.1", host.env.port, timeout=5)
    try:
        connection.request("GET", "/", headers={"Host": hostname("site")})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", "replace"), response.getheader("Retry-After")
    finally:
        connection.close()


def wait_status(host: PitrHost, wanted: int, limit: float = 5.0) -> int:
    deadline = time.monotonic() + limit
    status = through_nginx(host)[0]
    while status != wanted and time.monotonic() < deadline:
        time.sleep(0.1)
        status = through_nginx(host)[0]
    return status


def add_maintenance_listener(runtime: PitrStandinRuntime, monkeypatch: pytest.MonkeyPatch) -> None:
    """The rendered maintenance server (render/nginx.py), on a free port, in the test's nginx."""
    address = f"127.0.0.1:{free_port()}"
    monkeypatch.setattr(maintenance, "ADDRESS", address)
    server = "\n".join(maintenance_server()).replace(MAINTENANCE_LISTEN, address)
    text = runtime.nginx_conf.read_text().rstrip()
    assert text.endswith("}")
    runtime.nginx_conf.write_text(text[:-1] + server + "\n}\n")
    runtime.nginx_test()
    runtime.nginx_reload()


def ledger(pg: PgCluster) -> set[int]:
    return {int(x) for x in pg.psql("SELECT id FROM ledger").split()}


def wait_archived(pg: PgCluster, segment: str, limit: float) -> float:
    """Seconds until PostgreSQL's archiver has pushed ``segment`` (archive_timeout does it)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        last = pg.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver").strip()
        if last and last[:24] >= segment:
            return time.monotonic() - started
        time.sleep(0.5)
    raise AssertionError(f"WAL segment {segment} not archived within {limit}s")


def utc_text(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(epoch))


def test_restore_to_a_time_after_a_hard_kill_keeps_everything_committed_before_it(
    pitr_host: PitrHost,
) -> None:
    pg = pitr_host.pg
    pg.psql("CREATE TABLE ledger (id bigserial PRIMARY KEY, at timestamptz NOT NULL)")
    writer = Writer(pg)
    thread = threading.Thread(target=writer.run, daemon=True)
    thread.start()
    time.sleep(3)
    target = float(int(time.time()) + 1)  # T: a whole second (the restore's granularity)
    time.sleep(target - time.time() + 0.5)
    segment = pg.psql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())").strip()
    waited = wait_archived(pg, segment, ARCHIVE_TIMEOUT + 30)  # the production archive_timeout, no shortcut
    time.sleep(2)
    killed_at = time.time()
    pid = pg.postmaster_pid()
    assert pid is not None
    os.kill(pid, signal.SIGKILL)  # hard: no shutdown checkpoint, no last archive
    writer.stop.set()
    thread.join(timeout=15)
    pg.started = False
    acked = list(writer.acked)
    assert acked, "the writer committed nothing"

    # 1) --latest: everything the archive holds; what is missing is the loss window of a lost volume
    code, out, err = pitr_host.agent("restore", "--latest", "--yes", "--promote-timeout", "120")
    assert code == 0, out + err
    present = ledger(pg)
    missing = [a for a in acked if a[0] not in present]
    assert all(a[0] in present for a in acked if a[2] < killed_at - ARCHIVE_TIMEOUT)
    window = (acked[-1][2] - missing[0][2]) if missing else 0.0
    print(
        f"\nPITR loss window after a hard kill: {len(missing)} committed rows missing, "
        f"{window:.1f}s of commits (archive_timeout={ARCHIVE_TIMEOUT}s; "
        f"segment of T archived after {waited:.1f}s)"
    )

    # 2) --to-time T: every row committed before T, nothing after
    code, out, err = pitr_host.agent(
        "restore", "--to-time", utc_text(target), "--yes", "--promote-timeout", "120"
    )
    assert code == 0, out + err
    assert "backup set" in out
    assert "swapped" in out
    restored = ledger(pg)
    before = {a[0] for a in acked if a[2] < target}
    after = {a[0] for a in acked if a[1] > target}
    assert before
    assert after
    assert before <= restored, f"rows committed before T missing: {sorted(before - restored)[:5]}"
    assert not (after & restored), f"rows written after T present: {sorted(after & restored)[:5]}"
    assert pg.psql("SELECT pg_is_in_recovery()").strip() == "f"

    # 3) --discard-previous removes the kept clusters and nothing else
    data = pg.data
    keep = data.with_name("data.keep-me")
    keep.mkdir()
    kept = sorted(p.name for p in data.parent.iterdir() if p.name.startswith("data.previous-"))
    assert len(kept) == 2, kept
    code, out, err = pitr_host.agent("restore", "--discard-previous")
    assert code == 0, out + err
    assert not [p for p in data.parent.iterdir() if p.name.startswith("data.previous-")]
    assert keep.is_dir()
    assert (data / "PG_VERSION").is_file()
    assert ledger(pg) == restored


def test_a_wrong_or_missing_cipher_pass_is_refused_before_anything_stops(pitr_host: PitrHost) -> None:
    pg = pitr_host.pg
    pg.psql("CREATE TABLE ledger (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())")
    pg.psql("INSERT INTO ledger(at) SELECT now() FROM generate_series(1, 50)")
    pid, rows = pg.postmaster_pid(), ledger(pg)
    # pitr-status (health/alerts read it) and pitr-backups show the fixture's full backup
    code, out, err = pitr_host.agent("pitr-status", "--json")
    assert code == 0, out + err
    status = json.loads(out)
    assert status["newest_backup"]["type"] == "full"
    assert status["archive"]["failed_count"] == 0
    assert set(status["archive"]) == {"last_archived_time", "last_failed_time", "failed_count", "lag_seconds"}
    code, out, err = pitr_host.agent("pitr-backups", "--json")
    assert code == 0, out + err
    assert [b["label"] for b in json.loads(out)["backups"]] == [status["newest_backup"]["label"]]
    # a second backup finds the stanza (idempotent) and is an incremental one
    code, out, err = pitr_host.agent("pitr-backup", "--type", "incr")
    assert code == 0, out + err
    assert "stanza-create" not in out
    assert "(incr)" in out
    installed = pitr_host.secrets / "pgbackrest.conf"
    good = installed.read_text()
    endpoint = good.split("repo1-s3-endpoint=")[1].split("\n")[0]
    port = good.split("repo1-storage-port=")[1].split("\n")[0]
    bucket = good.split("repo1-s3-bucket=")[1].split("\n")[0]
    wrong = render_pgbackrest_config(
        f"https://{endpoint}:{port}",
        bucket,
        ACCESS_KEY,
        SECRET_KEY,
        "bm90LXRoZS1yaWdodC1wYXNzLTAwMDAwMDAwMDAw",
    )
    installed.write_text(wrong)
    code, out, err = pitr_host.agent("restore", "--latest", "--yes")
    assert code == 2, out + err
    assert "cannot be read" in err
    assert "cipher pass" in err
    assert "nothing was stopped" in err
    assert CIPHER_PASS not in out + err
    installed.unlink()
    code, out, err = pitr_host.agent("restore", "--latest", "--yes")
    assert code == 2, out + err
    assert "pgbackrest.conf is missing" in err
    assert pg.postmaster_pid() == pid
    assert ledger(pg) == rows
    assert not [p for p in pg.data.parent.iterdir() if p.name.startswith("data.")]
    assert not [e for e in pitr_host.runtime.journal() if e["call"] in ("stop", "stop_services")]


def test_a_failed_restore_leaves_the_database_as_it_was(pitr_host: PitrHost) -> None:
    pg = pitr_host.pg
    pg.psql("CREATE TABLE ledger (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())")
    pg.psql("INSERT INTO ledger(at) SELECT now() FROM generate_series(1, 200)")
    rows = ledger(pg)

    # 1) pgbackrest dies halfway through the restore (before the swap); while it runs, every app
    # hostname answers 503 + the maintenance page + Retry-After through the real nginx
    seen: list[tuple[int, str, str | None]] = []

    def die(argv: list[str]) -> None:
        if argv[-1] == "restore":
            seen.append(through_nginx(pitr_host))
            raise RuntimeFailure("pgbackrest exited 137: killed (test)")

    pitr_host.runtime.hook = die
    code, out, err = pitr_host.agent("restore", "--latest", "--yes")
    assert code == 1, out + err
    assert "killed (test)" in err
    assert "rolled back" in err
    assert ledger(pg) == rows
    assert pg.psql("SELECT pg_is_in_recovery()").strip() == "f"
    assert not [p for p in pg.data.parent.iterdir() if p.name.startswith("data.")]
    pitr_host.runtime.hook = None
    status, body, retry_after = seen[0]
    assert status == 503  # not a 502
    assert "Em manutenção" in body
    assert retry_after == str(MAINTENANCE_RETRY_AFTER)
    # maintenance ends with the apps' return (nginx applies a reload asynchronously: a bounded wait)
    assert wait_status(pitr_host, 200) == 200

    # 2) after the swap: a target no commit in the archive passes. PostgreSQL refuses to promote
    # ("recovery ended before configured recovery target was reached") and the old cluster returns.
    time.sleep(1.1)
    target = utc_text(time.time())  # after the last commit: the archive has no commit after it
    code, out, err = pitr_host.agent("restore", "--to-time", target, "--yes", "--promote-timeout", "20")
    assert code == 1, out + err
    assert "swapped" in out
    assert "rolled back" in err
    assert ledger(pg) == rows
    assert pg.psql("SELECT pg_is_in_recovery()").strip() == "f"
    assert not [p for p in pg.data.parent.iterdir() if p.name.startswith("data.")]
