"""The restore drill and its failure cases, end to end on the host side.

Real: PostgreSQL 15 (a throw-away cluster), the S3 API (moto's server on loopback), rclone with
the rendered rclone.conf, nginx. Stand-in: Docker (no engine here) -- the postgres container's
clients run as local processes against the cluster, app services are local HTTP servers
(tests/host/backups/rig.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socket
import stat
import threading
import time
from pathlib import Path

import pytest

from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.host import state as st
from bankflow_infra.host.backups.archive import KEY_RE
from tests.host.backups.conftest import BackupHost
from tests.host.backups.rig import ACCESS_KEY, SECRET_KEY, STACK, run_agent

SEED = """
CREATE TABLE accounts (id serial PRIMARY KEY, bank text NOT NULL, agency text, number text);
CREATE TABLE statements (
    id bigserial PRIMARY KEY,
    account_id integer NOT NULL REFERENCES accounts(id),
    booked_on date NOT NULL,
    amount numeric(18, 2) NOT NULL,
    memo text
);
CREATE TABLE reconciliations (
    id bigserial PRIMARY KEY,
    statement_id bigint NOT NULL REFERENCES statements(id),
    matched_amount numeric(18, 2) NOT NULL,
    note text
);
CREATE INDEX statements_account ON statements (account_id, booked_on);
CREATE SEQUENCE invoice_number START 1000;
INSERT INTO accounts (bank, agency, number)
    SELECT 'banco-' || (i % 7), lpad(i::text, 4, '0'), 'CC-' || i FROM generate_series(1, 40) AS i;
INSERT INTO statements (account_id, booked_on, amount, memo)
    SELECT 1 + (i % 40), date '2024-01-01' + (i % 365),
           round(((i * 7919) % 1000003) / 100.0 - 5000.0, 2), 'PIX ' || md5(i::text)
    FROM generate_series(1, 5000) AS i;
INSERT INTO reconciliations (statement_id, matched_amount, note)
    SELECT i, round(((i * 7919) % 1000003) / 100.0 - 5000.0, 2), 'conciliado'
    FROM generate_series(1, 5000, 3) AS i;
SELECT setval('invoice_number', 4242);
"""
TABLES = ("accounts", "statements", "reconciliations")


def fingerprint(host: BackupHost) -> dict[str, str]:
    """Row count and md5 of every row in primary-key order, per table; the sequences' state."""
    result = {}
    for table in TABLES:
        rows = "string_agg(t::text, E'\\n' ORDER BY id)"
        query = f"SELECT count(*) || ':' || md5(coalesce({rows}, '')) FROM {table} t"  # noqa: S608 - constants
        result[table] = host.pg.psql(query).strip()
    result["sequences"] = host.pg.psql(
        "SELECT string_agg(sequencename || '=' || coalesce(last_value::text, 'null'), ',' "
        "ORDER BY sequencename) FROM pg_sequences"
    ).strip()
    result["money_total"] = host.pg.psql("SELECT sum(amount)::text FROM statements").strip()
    return result


def seed(host: BackupHost) -> dict[str, str]:
    host.pg.psql(SEED)
    return fingerprint(host)


def backup(host: BackupHost) -> str:
    code, out, err = run_agent(host.env, "backup")
    assert code == 0, out + err
    keys = [k for k in host.s3.keys(host.bucket) if KEY_RE.match(k)]
    return sorted(keys)[-1]


def app_health(host: BackupHost) -> dict[str, bool]:
    from bankflow_infra.contract.release import app_project_name
    from bankflow_infra.host.runtime import Project

    current = json.loads((host.env.home / "state" / "current.json").read_text())["app_release"]
    project = Project(app_project_name(current), host.env.home, (), None, current)
    return dict(host.runtime.health(project, ("site", "saas", "api")))


def calls(host: BackupHost, name: str) -> list[dict[str, object]]:
    return [e for e in host.runtime.journal() if e["call"] == name]


def assert_no_credentials(host: BackupHost, *texts: str) -> None:
    """Neither key in any argv the agent started (rclone, the container's clients), nor in output."""
    argvs = [argv for argv, _ in host.rclone.calls] + host.runtime.exec_argvs()
    assert argvs
    for secret in (ACCESS_KEY, SECRET_KEY):
        assert not any(secret in word for argv in argvs for word in argv)
        assert not any(secret in text for text in texts)
        # rclone's environment is clean: the key is read from the 0600 file by rclone only
        assert not any(secret in value for _, env in host.rclone.calls for value in env.values())
    assert all(sorted(env) == ["HOME", "LANG", "PATH"] for _, env in host.rclone.calls)


def test_restore_drill(host: BackupHost) -> None:
    before = seed(host)
    assert before["statements"].startswith("5000:")

    # --- backup: dump + globals + checksums, 0600, uploaded and verified
    code, out, err = run_agent(host.env, "backup")
    assert code == 0, out + err
    dumps = sorted(p.name for p in host.backups.glob("*.dump"))
    assert len(dumps) == 1
    assert KEY_RE.match(dumps[0])
    assert dumps[0].startswith("bankflow-test-")
    key = dumps[0]
    base = key.removesuffix(".dump")
    assert host.s3.keys(host.bucket) == sorted([key, f"{base}.globals.sql", f"{base}.sha256"])
    for path in host.backups.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE(host.backups.stat().st_mode) == 0o700
    recorded = (host.backups / f"{base}.sha256").read_text()
    import hashlib

    assert f"{hashlib.sha256((host.backups / key).read_bytes()).hexdigest()}  {key}" in recorded
    assert "backup: done" in out
    assert "uploaded and verified" in out
    dump_argv = next(a for a in host.runtime.exec_argvs() if a[0] == "pg_dump")
    assert dump_argv == ["pg_dump", "--format=custom", "--no-password", "-U", "bankflow", "-d", "bankflow"]

    # --- listing, newest first
    code, listing, err = run_agent(host.env, "backups", "--json")
    assert code == 0, err
    rows = json.loads(listing)
    assert [r["key"] for r in rows] == [key]
    assert rows[0]["size"] == (host.backups / key).stat().st_size
    assert rows[0]["stack"] == "test"
    assert rows[0]["age_seconds"] >= 0

    # --- changes after the backup are undone by a restore over the live database
    host.pg.psql(
        "DELETE FROM reconciliations WHERE id % 2 = 0; UPDATE statements SET amount = 0 WHERE id < 100;"
        "SELECT nextval('invoice_number'); CREATE TABLE added_later (id int)"
    )
    assert fingerprint(host) != before
    code, out, err = run_agent(host.env, "restore", "--from", "latest", "--yes")
    assert code == 0, out + err
    assert fingerprint(host) == before
    assert "added_later" not in host.pg.psql("SELECT string_agg(tablename, ',') FROM pg_tables")
    previous = re.search(r"kept as (bankflow_before_restore_\w+)", out)
    assert previous, out
    assert previous.group(1) in host.pg.databases()
    assert app_health(host) == {"site": True, "saas": True, "api": True}
    # the sequence continues where it was when the dump was taken
    assert host.pg.psql("SELECT nextval('invoice_number')").strip() == "4243"
    host.pg.psql("SELECT setval('invoice_number', 4242)")

    # --- disaster: the database is gone; restore it by key
    host.pg.psql("DROP DATABASE bankflow WITH (FORCE)", "postgres")
    code, out, err = run_agent(host.env, "restore", "--from", key, "--yes")
    assert code == 0, out + err
    assert fingerprint(host) == before
    assert "bankflow_restoring" not in host.pg.databases()
    assert app_health(host) == {"site": True, "saas": True, "api": True}
    journal = [e["call"] for e in host.runtime.journal() if e["call"] in ("stop", "start")]
    assert journal[-4:] == ["stop", "start", "stop", "start"]

    assert_no_credentials(host, out, err, listing)


def test_a_dump_restore_brings_its_roles_and_discard_previous_drops_what_it_kept(host: BackupHost) -> None:
    before = seed(host)
    host.pg.psql("CREATE ROLE reporting NOLOGIN; GRANT SELECT ON statements TO reporting")
    code, out, err = run_agent(host.env, "backup")
    assert code == 0, out + err
    # the role is gone (a rebuilt cluster has only the image's superuser): the dump's grant needs it
    host.pg.psql("DROP DATABASE bankflow WITH (FORCE)", "postgres")
    host.pg.psql("DROP ROLE reporting", "postgres")
    host.pg.psql("CREATE DATABASE bankflow", "postgres")
    code, out, err = run_agent(host.env, "restore", "--from", "latest", "--yes")
    assert code == 0, out + err
    assert "roles from the dump's globals" in out
    assert fingerprint(host) == before
    assert host.pg.psql("SELECT has_table_privilege('reporting', 'statements', 'SELECT')").strip() == "t"
    assert not list(host.backups.glob(".*.restore"))
    kept = [d for d in host.pg.databases() if d.startswith("bankflow_before_restore_")]
    assert len(kept) == 1
    host.pg.psql("CREATE DATABASE bankflow_before_restore_20261101t000000z", "postgres")  # an older one
    host.pg.psql("CREATE DATABASE bankflowxbefore_restore_y", "postgres")  # LIKE's _ is escaped: not ours
    code, out, err = run_agent(host.env, "restore", "--discard-previous")
    assert code == 0, out + err
    left = host.pg.databases()
    assert not [d for d in left if d.startswith("bankflow_before_restore_")]
    assert "bankflowxbefore_restore_y" in left
    assert "bankflow" in left
    assert fingerprint(host) == before


def test_restore_needs_yes_and_changes_nothing_without(host: BackupHost) -> None:
    before = seed(host)
    key = backup(host)
    code, _out, err = run_agent(host.env, "restore", "--from", key)
    assert code == 2
    assert "confirm with --yes" in err
    assert fingerprint(host) == before
    assert calls(host, "stop") == []


def test_expired_dump_fails_loudly_and_touches_nothing(host: BackupHost) -> None:
    before = seed(host)
    key = backup(host)
    base = key.removesuffix(".dump")
    for name in (key, f"{base}.globals.sql", f"{base}.sha256"):
        host.s3.client.delete_object(Bucket=host.bucket, Key=name)  # the lifecycle rule expired it
    databases = host.pg.databases()

    code, _out, err = run_agent(host.env, "restore", "--from", key, "--yes")

    assert code == 2
    assert err.count("\n") == 1, err  # one message
    assert f"backup {key} is not in bucket {host.bucket}: it expired" in err
    assert "nothing changed" in err
    assert fingerprint(host) == before
    assert host.pg.databases() == databases
    assert calls(host, "stop") == []  # the apps were never stopped
    assert app_health(host) == {"site": True, "saas": True, "api": True}


@pytest.mark.parametrize(
    ("case", "keep_checksums", "keep_bytes", "message"),
    [
        # the checksum file recorded at backup time catches it before anything is touched
        ("checksum", True, 0.6, "is corrupt: sha256"),
        # no checksum file, the archive's table of contents is gone: pg_restore --list refuses it
        ("toc", False, 40, "is not a valid custom-format dump"),
        # no checksum file, the table of contents intact, the data cut: only the restore itself
        # finds out -- in the scratch database, in one transaction: the live one is untouched
        ("data", False, 0.6, "restoring bankflow-test-"),
    ],
)
def test_corrupt_dump_fails_loudly_and_leaves_the_database_as_it_was(
    host: BackupHost, case: str, keep_checksums: bool, keep_bytes: float, message: str
) -> None:
    before = seed(host)
    key = backup(host)
    data = (host.backups / key).read_bytes()
    cut = data[: int(len(data) * keep_bytes)] if keep_bytes < 1 else data[: int(keep_bytes)]
    host.s3.client.put_object(Bucket=host.bucket, Key=key, Body=cut)
    if not keep_checksums:
        host.s3.client.delete_object(Bucket=host.bucket, Key=key.replace(".dump", ".sha256"))
    databases = host.pg.databases()

    code, out, err = run_agent(host.env, "restore", "--from", key, "--yes")

    assert code == 1, out + err
    assert err.count("\n") == 1, err
    assert message in err
    assert "the database is unchanged" in err
    assert fingerprint(host) == before
    assert host.pg.databases() == databases  # no scratch database left behind
    assert app_health(host) == {"site": True, "saas": True, "api": True}
    stops, starts = calls(host, "stop"), calls(host, "start")
    if case == "data":
        assert len(stops) == 1
        assert starts[-1]["project"] == stops[0]["project"]
    else:
        assert stops == []  # refused before the apps were touched
    assert not list(host.backups.glob("restore-*"))
    assert not list(host.backups.glob(".*partial"))


def test_unknown_key_and_bad_names_are_refused(host: BackupHost) -> None:
    seed(host)
    code, _, err = run_agent(host.env, "restore", "--from", "../../etc/passwd", "--yes")
    assert code == 2
    assert "is not a backup key" in err
    code, _, err = run_agent(host.env, "restore", "--from", "latest", "--yes")
    assert code == 2
    assert "no backups of stack" in err
    assert calls(host, "stop") == []


def test_local_retention_deletes_only_old_local_backup_files(host: BackupHost) -> None:
    seed(host)
    host.backups.mkdir(mode=0o700, exist_ok=True)
    old = [
        "bankflow-test-20200101T000000Z.dump",
        "bankflow-test-20200101T000000Z.globals.sql",
        "bankflow-test-20200101T000000Z.sha256",
        ".bankflow-test-20200102T000000Z.dump.partial",
    ]
    from datetime import UTC, datetime, timedelta

    recent_time = (datetime.now(UTC) - timedelta(days=6)).strftime("%Y%m%dT%H%M%SZ")
    keep = [f"bankflow-test-{recent_time}.dump", "operator-notes.txt", "bankflow-test-manual.dump"]
    for name in old + keep:
        (host.backups / name).write_text("x")
    # an old dump in the bucket: the bucket's lifecycle rule expires it, never the agent
    host.s3.client.put_object(Bucket=host.bucket, Key=old[0], Body=b"PGDMP old")

    key = backup(host)

    names = {p.name for p in host.backups.iterdir()}
    assert not names & set(old)
    assert set(keep) <= names
    assert key in names
    assert old[0] in host.s3.keys(host.bucket)


def test_upload_verification_catches_a_mismatch(host: BackupHost, tmp_path: Path) -> None:
    seed(host)
    host.backups.mkdir(mode=0o700, exist_ok=True)
    stale = host.backups / "bankflow-test-20200101T000000Z.dump"
    stale.write_text("x")

    def short_upload(argv: list[str]) -> list[str]:
        # what reaches the bucket is not the dump: a truncated copy goes up instead
        if "copyto" in argv and argv[-2].endswith(".dump") and argv[-2].startswith("/"):
            source = Path(argv[-2])
            short = tmp_path / source.name
            short.write_bytes(source.read_bytes()[:-10])
            argv = [*argv[:-2], str(short), argv[-1]]
        return argv

    host.rclone.tamper = short_upload
    code, _out, err = run_agent(host.env, "backup")

    assert code == 1
    assert err.count("\n") == 1, err
    assert "backup: failed: upload verification:" in err
    assert "bytes in bucket" in err
    assert stale.exists()  # nothing pruned while the upload is not verified
    assert list(host.backups.glob("bankflow-test-2*.dump"))  # the local dump is kept


def test_backup_fails_loudly_without_a_spaces_key(host: BackupHost) -> None:
    seed(host)
    (host.env.home / "secrets" / "rclone.conf").unlink()
    code, _out, err = run_agent(host.env, "backup")
    assert code == 2
    assert "no Spaces key on this host" in err
    assert list(host.backups.glob("*.dump"))  # the dump was still taken locally


def test_restore_from_another_stacks_bucket(host: BackupHost) -> None:
    """Emergency rebuild: the fresh stack restores from the original stack's bucket, named on
    the command line with its endpoint (here the same server under another name)."""
    before = seed(host)
    key = backup(host)
    other = host.bucket + "-prod"
    host.s3.client.create_bucket(Bucket=other)
    for name in host.s3.keys(host.bucket):
        host.s3.client.copy_object(Bucket=other, Key=name, CopySource={"Bucket": host.bucket, "Key": name})
        host.s3.client.delete_object(Bucket=host.bucket, Key=name)
    host.pg.psql("DROP DATABASE bankflow WITH (FORCE)", "postgres")
    endpoint = host.s3.endpoint.replace("127.0.0.1", "localhost")

    code, listing, err = run_agent(host.env, "backups", "--json", "--bucket", other, "--endpoint", endpoint)
    assert code == 0, err
    assert [r["key"] for r in json.loads(listing)] == [key]
    code, out, err = run_agent(host.env, "restore", "--from", "latest", "--yes", "--bucket", other,
                               "--endpoint", endpoint)  # fmt: skip
    assert code == 0, out + err
    assert fingerprint(host) == before
    assert any(argv[argv.index("--s3-endpoint") + 1] == endpoint for argv, _ in host.rclone.calls)


def test_a_dump_of_another_stack_is_refused_without_the_explicit_flag(host: BackupHost) -> None:
    """Issue 15, 8: production could be overwritten with staging data by a mistyped key."""
    before = seed(host)
    key = backup(host)
    other = key.replace(f"bankflow-{STACK}-", "bankflow-staging-")
    host.s3.client.copy_object(Bucket=host.bucket, Key=other, CopySource={"Bucket": host.bucket, "Key": key})
    host.pg.psql("DELETE FROM reconciliations", "bankflow")
    code, _, err = run_agent(host.env, "restore", "--from", other, "--yes")
    assert code == 2
    assert f"{other} is a dump of stack staging, and this host is stack {STACK}" in err
    assert "--allow-other-stack" in err
    assert calls(host, "stop") == []  # refused before anything stopped
    code, out, err = run_agent(host.env, "restore", "--from", other, "--yes", "--allow-other-stack")
    assert code == 0, out + err
    assert fingerprint(host) == before


class BlackHole:
    """A TCP listener that accepts connections and never answers: a stalled S3 endpoint."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.held.append(self.sock.accept()[0])

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_a_stalled_s3_never_holds_a_restore_or_the_deploy_lock_past_its_deadline(host: BackupHost) -> None:
    seed(host)
    hole = BlackHole()
    result: list[tuple[int, str, str]] = []
    endpoint = f"http://127.0.0.1:{hole.port}"
    args = ("restore", "--from", "latest", "--yes", "--bucket", host.bucket, "--endpoint", endpoint)
    worker = threading.Thread(target=lambda: result.append(run_agent(host.env, *args, "--deadline", "4")))
    started = time.monotonic()
    try:
        worker.start()
        time.sleep(1.0)
        # mid-download: a rollback (the deploy lock) is not blocked by the stalled restore
        with st.exclusive_lock(HostPaths(host.env.home).lock, "rollback", "test"):
            pass
        worker.join(30)
    finally:
        hole.close()
    elapsed = time.monotonic() - started
    assert not worker.is_alive()
    code, _, err = result[0]
    assert code == 1
    assert "timed out" in err or "deadline" in err
    assert elapsed < 10  # the deadline (4 s) and rclone's kill, not rclone's own minutes of retries
    assert calls(host, "stop") == []


def test_a_restore_can_be_cancelled_and_starts_nothing_it_did_not_stop(host: BackupHost) -> None:
    seed(host)
    hole = BlackHole()
    endpoint = f"http://127.0.0.1:{hole.port}"
    main = threading.main_thread().ident
    assert main is not None
    # to the main thread, as the kernel delivers it to the single-threaded agent
    timer = threading.Timer(1.0, lambda: signal.pthread_kill(main, signal.SIGTERM))
    started = time.monotonic()
    try:
        timer.start()  # the operator's Ctrl-C / systemd stop, while the download hangs
        code, _, err = run_agent(host.env, "restore", "--from", "latest", "--yes", "--bucket", host.bucket,
                                 "--endpoint", endpoint, "--deadline", "600")  # fmt: skip
    finally:
        timer.cancel()
        hole.close()
    assert code == 1
    assert "cancelled (SIGTERM): the restore stopped" in err
    assert time.monotonic() - started < 8
    assert calls(host, "stop") == []
