"""``bankflow-agent backup-watch``: real WAL-archive lag, real pgBackRest backups, a real webhook.

Real: PostgreSQL 15 archiving through pgBackRest 2.45 to a posix repository (then with
``archive_command='false'``: real failures, real ``.ready`` segments), an HTTP server on
127.0.0.1 as the Slack webhook. Stand-in: Docker (no engine here) -- what the agent would run in
the postgres container (psql, pgbackrest) runs as a local process with the same argv.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bankflow_infra.contract.alerts import WATCH_STATE_FILE
from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.host import state as st
from bankflow_infra.host.backups import watch
from bankflow_infra.host.backups.watch_alerts import AlertsConfig, AlertsConfigError, load_alerts_config
from bankflow_infra.host.context import Context, Options
from bankflow_infra.host.runtime import RuntimeFailure
from bankflow_infra.render.alerts import render_alerts_config
from tests.host.watch.pgbackrest_rig import Archiving, Webhook, local_webhook, start_archiving_cluster
from tests.render.helpers import load_settings
from tests.support.postgres import SUPERUSER


@pytest.fixture(scope="module")
def rig() -> Iterator[Archiving]:
    archiving = start_archiving_cluster()
    try:
        archiving.pg.psql("CREATE TABLE entries (id bigserial PRIMARY KEY, memo text)")
        archiving.run_pgbackrest("backup", "--type=full")
        yield archiving
    finally:
        archiving.pg.stop()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    with local_webhook() as hook:
        yield hook


def exec_locally(rig: Archiving):  # type: ignore[no-untyped-def]
    """The postgres container's psql and pgbackrest, run locally with the agent's argv."""

    def run(argv: Sequence[str]) -> str:
        if argv[0] == "psql":
            command = [rig.pg.client("psql"), *argv[1:]]
        elif argv[0] == "pgbackrest":
            command = rig.as_owner([rig.pgbackrest, f"--config={rig.config}", *argv[1:]])
        else:
            raise RuntimeFailure(f"stand-in: cannot exec {argv[0]}")
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            env=rig.pg.env(),
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeFailure(
                f"{argv[0]} in postgres exited {done.returncode}: {done.stderr.strip()[-300:]}"
            )
        return done.stdout

    return run


def make_ctx(
    home: Path, hook: Webhook | None, stack: str = "production"
) -> tuple[Context, io.StringIO, io.StringIO]:
    paths = HostPaths(home)
    paths.ensure()
    if hook is not None:
        path = paths.secrets / "alerts.json"
        path.write_text(
            json.dumps({"schema": 1, "stack": stack, "slack_url": hook.url, "slack_channel": "#ops"})
        )
        os.chmod(path, 0o600)
    out, err = io.StringIO(), io.StringIO()
    return Context(paths, None, Options(), "test", out, err), out, err  # type: ignore[arg-type]


def run_once(rig: Archiving, ctx: Context, now: datetime | None = None) -> int:
    return watch.run_watch(ctx, exec_locally(rig), SUPERUSER, now)


def make_wal(rig: Archiving) -> None:
    rig.pg.psql("INSERT INTO entries (memo) SELECT md5(g::text) FROM generate_series(1, 500) g")
    rig.pg.psql("SELECT pg_switch_wal()", "postgres")


def test_archive_lag_over_five_minutes_alerts_once_reminds_hourly_and_recovers(
    rig: Archiving, webhook: Webhook, tmp_path: Path
) -> None:
    ctx, out, err = make_ctx(tmp_path / "home", webhook)
    assert run_once(rig, ctx) == 0, err.getvalue()  # archiving works, a fresh backup: nothing to say
    assert webhook.posts == []
    assert "ok  archive: WAL archiving keeps up" in out.getvalue()

    rig.set_archive_command("false")  # the archiver now fails for real
    make_wal(rig)
    deadline = time.monotonic() + 20
    while not rig.ready_files() or "0|" in rig.pg.psql("SELECT failed_count || '|' FROM pg_stat_archiver"):
        assert time.monotonic() < deadline, "the archiver never failed"
        time.sleep(0.2)
    assert run_once(rig, ctx) == 0  # a failing segment younger than 5 minutes is not yet a lag
    assert webhook.posts == []

    # The oldest waiting segment was completed 6 minutes ago (its .ready file's time).
    old = time.time() - 360
    for ready in rig.ready_files():
        os.utime(ready, (old, old))
    assert run_once(rig, ctx) == 1
    assert len(webhook.posts) == 1
    text = webhook.texts()[0]
    assert "production backups" in text
    assert "FAILING: WAL archive lag over 5 min" in text
    assert "failure(s)" in text
    assert webhook.posts[0]["channel"] == "#ops"
    assert run_once(rig, ctx) == 1
    assert len(webhook.posts) == 1
    state = json.loads((ctx.paths.state / WATCH_STATE_FILE).read_text())
    assert state["archive"]["failing"]
    assert state["archive"]["alerted"]
    assert stat.S_IMODE((ctx.paths.state / WATCH_STATE_FILE).stat().st_mode) == 0o600

    assert run_once(rig, ctx, datetime.now(UTC) + timedelta(minutes=61)) == 1  # an hour later: reminded
    assert len(webhook.posts) == 2
    assert "STILL FAILING since" in webhook.texts()[1]

    rig.set_archive_command(rig.push_command())
    rig.wait_archived()
    assert run_once(rig, ctx, datetime.now(UTC) + timedelta(minutes=62)) == 0
    assert len(webhook.posts) == 3
    assert "RECOVERED: WAL archiving keeps up" in webhook.texts()[2]
    assert run_once(rig, ctx, datetime.now(UTC) + timedelta(minutes=63)) == 0
    assert len(webhook.posts) == 3
    assert webhook.url not in out.getvalue() + err.getvalue()  # the webhook is a secret


def test_an_undelivered_alert_is_sent_at_the_next_run(
    rig: Archiving, webhook: Webhook, tmp_path: Path
) -> None:
    ctx, _out, err = make_ctx(tmp_path / "home", webhook)
    st.audit(ctx.paths.audit_log, "root", "backup", None, "failed", "backup: failed: rclone: 403 Forbidden")
    webhook.status = 500  # Slack is down
    assert run_once(rig, ctx) == 1
    assert "not posted: HTTP 500; retried next run" in err.getvalue()
    assert webhook.url not in err.getvalue()
    webhook.status = 200
    assert run_once(rig, ctx) == 1
    assert len(webhook.posts) == 1
    assert "FAILING: last backup run failed at" in webhook.texts()[0]
    assert "403 Forbidden" in webhook.texts()[0]
    st.audit(ctx.paths.audit_log, "root", "backup", None, "refused", "another backup is running")
    assert run_once(rig, ctx) == 1
    assert len(webhook.posts) == 1
    st.audit(ctx.paths.audit_log, "root", "backup", None, "ok", "backup: done")
    assert run_once(rig, ctx) == 0
    assert "RECOVERED: last backup run ok" in webhook.texts()[1]


def test_a_stale_backup_and_an_unreadable_repository_alert(
    rig: Archiving, webhook: Webhook, tmp_path: Path
) -> None:
    ctx, _out, err = make_ctx(tmp_path / "home", webhook)
    assert run_once(rig, ctx, datetime.now(UTC) + timedelta(hours=27)) == 1
    assert "FAILING: newest database backup is older than 26 h: full backup" in webhook.texts()[0]

    def wrong_pass(argv: Sequence[str]) -> str:
        if argv[0] == "pgbackrest":  # the repository's key is not the one it was made with
            env = {**rig.pg.env(), "PGBACKREST_REPO1_CIPHER_PASS": "not-the-pass"}
            command = rig.as_owner([rig.pgbackrest, f"--config={rig.config}", *argv[1:]])
            return subprocess.run(
                command, capture_output=True, text=True, errors="replace", env=env, timeout=60, check=True
            ).stdout
        return exec_locally(rig)(argv)

    assert watch.run_watch(ctx, wrong_pass, SUPERUSER) == 1
    assert "newest database backup unknown: pgbackrest info: stanza 'bankflow': code 99" in err.getvalue()
    assert all(ch.isprintable() for ch in err.getvalue().replace("\n", ""))


def test_without_a_webhook_the_checks_still_fail_the_unit(rig: Archiving, tmp_path: Path) -> None:
    ctx, _out, err = make_ctx(tmp_path / "home", None)
    st.audit(ctx.paths.audit_log, "root", "uploads-backup", None, "interrupted", "killed")
    assert run_once(rig, ctx) == 1
    assert "no webhook configured, not posted: FAILING: last uploads-backup run interrupted" in err.getvalue()


def test_the_rendered_alerts_file_is_what_the_watch_reads(tmp_path: Path) -> None:
    settings = load_settings("production")  # e-mail alerts only: no webhook, no file
    assert render_alerts_config(settings) is None
    url = "https://hooks.slack.com/services/T0/B0/abcdef"
    with_slack = replace(settings, alerts=replace(settings.alerts, slack_url=url, slack_channel="#ops"))
    (tmp_path / "alerts.json").write_text(render_alerts_config(with_slack) or "")
    config = load_alerts_config(tmp_path)
    assert config == AlertsConfig("production", url, "#ops")
    (tmp_path / "alerts.json").write_text(
        json.dumps({"schema": 1, "stack": "production", "slack_url": "http://evil.example/x"})
    )
    with pytest.raises(AlertsConfigError, match="slack_url is not an https:// URL") as caught:
        load_alerts_config(tmp_path)
    assert "evil" not in str(caught.value)
