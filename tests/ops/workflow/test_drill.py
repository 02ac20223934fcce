"""``bankflow-infra workflow restore-drill`` end to end, as the weekly workflow runs it.

Real: a PostgreSQL 15 source cluster archiving through pgBackRest 2.45 into an encrypted posix
repository (S3 is the PITR work's; the drill only changes repo1-type), a full backup, the drill
restoring it into a second throwaway PostgreSQL 15, pg_amcheck, and a local HTTP server as the
Slack webhook. As root (here) PostgreSQL and pgBackRest run as the cluster's owner (--as-user).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.contract import exit_codes
from bankflow_infra.ops import cli
from bankflow_infra.ops.notify import WEBHOOK_ENV
from bankflow_infra.ops.workflow import drill_checks as checks
from tests.host.watch.pgbackrest_rig import (
    CIPHER_PASS,
    Archiving,
    Webhook,
    local_webhook,
    start_archiving_cluster,
)
from tests.support.outputs import outputs_document
from tests.support.tools import REPO, require_tool

SEED = """
CREATE TABLE accounts (id serial PRIMARY KEY, bank text NOT NULL);
CREATE TABLE statements (id bigserial PRIMARY KEY, account_id int NOT NULL REFERENCES accounts(id),
                         booked_on date NOT NULL, amount numeric(18, 2) NOT NULL, memo text);
CREATE INDEX statements_booked ON statements (booked_on);
CREATE TABLE "Audit|Trail" (bank text, seq int, note text, PRIMARY KEY (bank, seq));
CREATE TABLE events (payload jsonb);  -- no primary key: counted, never checksummed
INSERT INTO accounts (bank) SELECT 'bank ' || g FROM generate_series(1, 40) g;
INSERT INTO statements (account_id, booked_on, amount, memo)
  SELECT 1 + g % 40, date '2026-01-01' + g % 300, (g * 7.31)::numeric(18, 2), md5(g::text)
  FROM generate_series(1, 3000) g;
INSERT INTO "Audit|Trail" SELECT 'b' || g % 3, g, repeat('x', g % 50) FROM generate_series(1, 500) g;
INSERT INTO events SELECT jsonb_build_object('n', g) FROM generate_series(1, 77) g;
"""


Source = tuple[Archiving, dict[str, Any]]


@pytest.fixture(scope="module")
def source() -> Iterator[tuple[Archiving, dict[str, Any]]]:
    """The source cluster after a full backup, and what the drill must find: every table's row
    count and the checksums of the three largest keyed tables, computed on the source."""
    rig = start_archiving_cluster()
    try:
        rig.pg.psql(SEED)
        rig.pg.psql("CREATE DATABASE ledger", "postgres")
        rig.pg.psql("CREATE TABLE entries (id int PRIMARY KEY); INSERT INTO entries SELECT generate_series(1, 9)",  # noqa: E501
                    "ledger")  # fmt: skip
        rig.run_pgbackrest("backup", "--type=full")
        expected: dict[str, Any] = {"databases": {}, "checksums": {}}
        for database in ("bankflow", "ledger"):
            tables = checks.parse_tables(_psql(rig, checks.TABLES_SQL, database))
            expected["databases"][database] = {t.name: t.rows for t in tables}
            for table in checks.tables_to_checksum(tables, 3):
                expected["checksums"][f"{database}:{table.name}"] = _psql(
                    rig, checks.checksum_sql(table), database
                ).strip()
        yield rig, expected
    finally:
        rig.pg.stop()


def _psql(rig: Archiving, sql: str, database: str) -> str:
    import subprocess

    argv = [
        rig.pg.client("psql"),
        "-X",
        "-q",
        "-At",
        "-F",
        checks.SEPARATOR,
        "-U",
        "bankflow",
        "-d",
        database,
        "-c",
        sql,
    ]
    return subprocess.run(
        argv, env=rig.pg.env(), capture_output=True, text=True, check=True, timeout=60
    ).stdout


@pytest.fixture
def scratch() -> Iterator[Path]:
    # Not tmp_path: as root it is a 0700 tree the cluster's owner cannot enter.
    root = Path(tempfile.mkdtemp(prefix="bankflow-drill-"))
    os.chmod(root, 0o755)  # noqa: S103 - the drill's user must reach its work dir
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with local_webhook() as hook:
        yield hook


def drill(rig: Archiving, scratch: Path, monkeypatch: pytest.MonkeyPatch, hook: Webhook, *extra: str,
          cipher: str = CIPHER_PASS) -> tuple[int, dict[str, Any]]:  # fmt: skip
    require_tool("pg_amcheck")
    if cipher:
        monkeypatch.setenv("PGBACKREST_REPO1_CIPHER_PASS", cipher)
    monkeypatch.setenv(WEBHOOK_ENV, hook.url)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    result = scratch / "result.json"
    argv = ["workflow", "restore-drill", "production", "--repo-type", "posix", "--repo-path", str(rig.repo),
            "--pg-bin", str(Path(require_tool("pg_amcheck")).parent),
            "--work-dir", str(scratch / "work"), "--result", str(result), *extra]  # fmt: skip
    if rig.pg.owner:
        argv += ["--as-user", rig.pg.owner]
    code = cli.main(argv)
    return code, json.loads(result.read_text()) if result.exists() else {}


def test_the_drill_restores_the_newest_backup_and_finds_every_row(
    source: Source, scratch: Path, monkeypatch: pytest.MonkeyPatch, webhook: Webhook,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    rig, expected = source
    (scratch / "expect.json").write_text(json.dumps(expected))
    code, result = drill(rig, scratch, monkeypatch, webhook, "--expect", str(scratch / "expect.json"))
    out = capsys.readouterr().out
    assert code == exit_codes.OK, out
    assert result["ok"]
    assert result["problems"] == []
    assert result["backup"]["type"] == "full"
    assert result["databases"]["bankflow"]["public.statements"] == 3000
    assert result["databases"]["bankflow"]['public."Audit|Trail"'] == 500
    assert result["databases"]["bankflow"]["public.events"] == 77  # counted
    assert not any("events" in key for key in result["checksums"])  # no key: no stable order
    assert result["databases"]["ledger"] == {"public.entries": 9}
    assert result["checksums"] == expected["checksums"]
    assert "PASSED" in out
    assert "public.statements: 3000 rows" in out
    assert webhook.posts == []  # a passing drill is not an alert
    assert not (scratch / "work" / "data").exists()  # the copy of production data is gone
    assert CIPHER_PASS not in out + json.dumps(result)


def test_a_restore_that_differs_from_what_is_expected_fails_and_alerts(
    source: Source, scratch: Path, monkeypatch: pytest.MonkeyPatch, webhook: Webhook,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    rig, expected = source
    wrong = json.loads(json.dumps(expected))
    wrong["databases"]["bankflow"]["public.statements"] = 3001
    (scratch / "expect.json").write_text(json.dumps(wrong))
    code, result = drill(rig, scratch, monkeypatch, webhook, "--expect", str(scratch / "expect.json"))
    assert code == exit_codes.FAILED
    assert result["failed_step"] == "compare"
    assert "bankflow:public.statements: 3000 rows restored, 3001 expected" in result["message"]
    assert len(webhook.posts) == 1
    assert "restore drill FAILED" in webhook.posts[0]["text"]
    assert "::error title=Restore drill failed::" in capsys.readouterr().out


def test_a_wrong_cipher_pass_fails_loudly_and_alerts(
    source: Source, scratch: Path, monkeypatch: pytest.MonkeyPatch, webhook: Webhook,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    rig, _ = source
    code, result = drill(rig, scratch, monkeypatch, webhook, cipher="not-the-cipher-pass")
    out = capsys.readouterr().out
    assert code == exit_codes.FAILED
    assert result["failed_step"] == "info"
    assert (
        "pgBackRest cannot read the repository (a wrong cipher pass, or a damaged repository)"
        in result["message"]
    )
    assert "not-the-cipher-pass" not in out + json.dumps(result) + json.dumps(webhook.posts)
    assert len(webhook.posts) == 1
    assert "step: info" in webhook.posts[0]["attachments"][0]["text"]


def test_a_corrupted_backup_file_fails_the_restore_and_alerts(
    source: Source, scratch: Path, monkeypatch: pytest.MonkeyPatch, webhook: Webhook,
) -> None:  # fmt: skip
    rig, _ = source
    backup_dir = next(p for p in (rig.repo / "backup" / "bankflow").iterdir() if p.name.endswith("F"))
    victim = max(
        (p for p in (backup_dir / "pg_data" / "base").rglob("*") if p.is_file()),
        key=lambda p: p.stat().st_size,
    )
    original = victim.read_bytes()
    flipped = bytearray(original)
    for offset in range(len(flipped) // 2, len(flipped) // 2 + 16):
        flipped[offset] ^= 0xFF
    victim.write_bytes(bytes(flipped))
    try:
        code, result = drill(rig, scratch, monkeypatch, webhook, "--job-retry", "0")  # no 15 s retry
    finally:
        victim.write_bytes(original)
    assert code == exit_codes.FAILED
    assert result["failed_step"] == "restore", result
    assert result["message"].startswith("pgbackrest exited 29: ERROR: [029]"), result["message"]
    assert len(webhook.posts) == 1
    assert not (scratch / "work" / "data").exists()


def test_the_cipher_pass_is_scrubbed_though_its_name_looks_harmless() -> None:
    from bankflow_infra.ops.workflow.drill import drill_secrets

    env = {"PGBACKREST_REPO1_CIPHER_PASS": CIPHER_PASS, "PATH": "/usr/bin", "LC_ALL": "C.UTF-8"}
    assert drill_secrets(env) == [CIPHER_PASS]


def test_missing_secrets_are_refused_before_anything_runs(
    scratch: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PGBACKREST_REPO1_CIPHER_PASS", raising=False)
    monkeypatch.delenv("PGBACKREST_REPO1_S3_KEY", raising=False)
    code = cli.main(["workflow", "restore-drill", "production", "--project-dir", str(REPO), "--work-dir",
                     str(scratch / "work"), "--result", str(scratch / "r.json")])  # fmt: skip
    out = capsys.readouterr().out
    assert code == exit_codes.USAGE
    assert "PGBACKREST_REPO1_CIPHER_PASS is not set" in out
    assert "PGBACKREST_REPO1_S3_KEY is not set" in out
    assert "--s3-bucket" not in out  # the bucket and endpoint came from Pulumi.production.yaml
    assert not (scratch / "work").exists()
    assert not (scratch / "r.json").exists()


def saved_outputs(scratch: Path, cipher: str | None) -> Path:
    """The stack outputs the workflow saves with --show-secrets (None: saved without it)."""
    document = outputs_document("production")
    if cipher is not None:
        uploads = "uploads-pass-0123456789"
        document["backup_repository"] = {"cipher_pass": cipher, "uploads_password": uploads}
        drill_key = {"access_key": "DODRILLKEY0001", "secret_key": "drill-secret-0123456789"}
        document["backup_drill_key"] = drill_key
    path = scratch / "outputs.json"
    path.write_text(json.dumps(document))
    return path


def test_the_cipher_pass_and_key_come_from_the_saved_outputs_and_are_scrubbed(
    source: Source, scratch: Path, monkeypatch: pytest.MonkeyPatch, webhook: Webhook,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    rig, _ = source
    wrong = "outputs-cipher-pass-that-is-wrong"
    monkeypatch.delenv("PGBACKREST_REPO1_CIPHER_PASS", raising=False)
    code, result = drill(rig, scratch, monkeypatch, webhook, "--outputs", str(saved_outputs(scratch, wrong)),
                         cipher="")  # fmt: skip
    out = capsys.readouterr().out
    assert code == exit_codes.FAILED
    assert result["failed_step"] == "info"  # the pass from the outputs reached pgBackRest
    assert wrong not in out + json.dumps(result) + json.dumps(webhook.posts)
    assert "drill-secret" not in out + json.dumps(result) + json.dumps(webhook.posts)
    assert len(webhook.posts) == 1


def test_outputs_saved_without_secrets_are_refused_before_anything_runs(
    source: Source, scratch: Path, monkeypatch: pytest.MonkeyPatch, webhook: Webhook,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    rig, _ = source
    code, result = drill(rig, scratch, monkeypatch, webhook, "--outputs", str(saved_outputs(scratch, None)))
    printed = capsys.readouterr()
    assert code == exit_codes.USAGE
    assert "no backup_repository or backup_drill_key" in printed.out + printed.err
    assert result == {}
    assert not (scratch / "work" / "data").exists()
