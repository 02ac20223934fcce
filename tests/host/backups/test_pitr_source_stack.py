"""`restore --latest --source-stack STACK` on the agent (a rebuild restoring its original stack):
the option reaches the uploads restore as ``of_stack``, and the restore does not ask pgBackRest to
`check` this host's own (fresh) cluster against the shared stanza. No PostgreSQL: the agent's real
parser, the orchestrator with recording stand-ins for restic, pgBackRest and the runtime."""

from __future__ import annotations

import argparse
import datetime as dt
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.host.backups import after_restore, commands, pitr_restore
from bankflow_infra.host.backups.config import BackupFailed, BackupUsageError, PitrConfig
from bankflow_infra.host.backups.pitr import BackupSet
from bankflow_infra.host.backups.pitr_commands import cmd_discard_previous, pitr_target
from bankflow_infra.host.backups.pitr_restore import PitrTarget, Plan
from bankflow_infra.host.context import Context, Options
from bankflow_infra.host.runtime import RuntimeFailure

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
PITR = PitrConfig("bankflow", "/mnt/data/postgres", "/var/lib/postgresql/data", 70, 60)


def _agent_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bankflow-agent")
    commands.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["restore", *argv])


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--latest"], PitrTarget("latest")),
        (["--latest", "--source-stack", "production"], PitrTarget("latest", source_stack="production")),
        (
            ["--to-time", "2026-11-30 11:00:00Z", "--source-stack", "production"],
            PitrTarget("time", time=NOW - dt.timedelta(hours=1), source_stack="production"),
        ),
    ],
)
def test_the_source_stack_is_part_of_the_target(argv: list[str], expected: PitrTarget) -> None:
    assert pitr_target(_agent_args(*argv, "--yes"), NOW) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "latest", "--source-stack", "production"], "--source-stack goes with --to-time"),
        (["--latest", "--source-stack", "prod; rm -rf /"], "is not a stack name"),
    ],
)
def test_a_misused_source_stack_is_refused(argv: list[str], message: str) -> None:
    with pytest.raises(BackupUsageError, match=message):
        pitr_target(_agent_args(*argv, "--yes"), NOW)


def _ctx(tmp_path: Path, runtime: Any = None) -> tuple[Context, io.StringIO]:
    out = io.StringIO()
    paths = HostPaths(tmp_path)
    paths.ensure()
    return Context(paths, runtime, Options(), "test", out, io.StringIO(), sleep=lambda _s: None), out


def test_discard_previous_with_a_source_stack_is_refused(tmp_path: Path) -> None:
    ctx, _out = _ctx(tmp_path)
    assert cmd_discard_previous(ctx, _agent_args("--discard-previous", "--source-stack", "production")) == 2


def test_of_stack_reaches_the_uploads_restore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[dt.datetime | None, str | None]] = []

    def prepare(_ctx: Context, when: dt.datetime | None, of_stack: str | None = None) -> Any:
        calls.append((when, of_stack))
        return SimpleNamespace(snapshot_id="abcd1234", snapshot_time=NOW, path=tmp_path / "u")

    monkeypatch.setattr(after_restore, "has_uploads_backup", lambda _ctx: True)
    monkeypatch.setattr(after_restore, "prepare_uploads_restore", prepare)
    ctx, out = _ctx(tmp_path)
    after_restore.prepare_uploads(ctx, None, "production")
    after_restore.prepare_uploads(ctx, NOW)
    assert calls == [(None, "production"), (NOW, None)]
    assert "snapshot abcd1234 of stack production of 2026-11-30 12:00:00Z" in out.getvalue()


class StopRefused:
    """A runtime whose first stop of PostgreSQL fails: the restore rolls back right after the
    pre-stop steps, which is all these tests look at."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def stop(self, app: Any) -> None:
        self.calls.append(f"stop {app.name}")

    def stop_services(self, _project: Any, services: list[str]) -> None:
        self.calls.append(f"stop {services[0]}")
        raise RuntimeFailure("stand-in: stop refused")

    def start(self, _project: Any, services: list[str]) -> None:
        self.calls.append(f"start {services[0]}")


def _plan(tmp_path: Path, target: PitrTarget) -> Plan:
    live: Any = SimpleNamespace(
        release="r1", base="base", app=SimpleNamespace(name="app", release="r1"),
        config=SimpleNamespace(service="postgres"), manifest=None,
    )  # fmt: skip
    chosen = BackupSet("20261130-030000F", "full", NOW, NOW, 1000)
    data = tmp_path / "postgres"
    return Plan(live, PITR, target, chosen, data, tmp_path / "restoring", tmp_path / "previous", "id")


@pytest.mark.parametrize(("source_stack", "checked"), [(None, ["check"]), ("production", [])])
def test_the_uploads_and_the_archive_check_follow_the_source_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source_stack: str | None, checked: list[str]
) -> None:
    """Own stack: the current WAL is forced into the archive before the stop (`check`). Another
    stack's data: this host's cluster is not the stanza's (another system id) and `check` would
    refuse it, so it is not run; the uploads are the source stack's snapshots."""
    runtime = StopRefused()
    ctx, _out = _ctx(tmp_path, runtime)
    uploads: list[str | None] = []
    pgbackrest: list[str] = []
    monkeypatch.setattr(after_restore, "prepare_uploads", lambda _c, _w, of=None: uploads.append(of))
    monkeypatch.setattr(pitr_restore.maintenance, "enable", lambda *_a: None)
    monkeypatch.setattr(pitr_restore, "restart_apps", lambda *_a: [])
    monkeypatch.setattr(pitr_restore, "_answers", lambda *_a: True)
    monkeypatch.setattr(
        pitr_restore, "exec_pgbackrest", lambda _c, _l, _p, what, **_k: pgbackrest.append(what)
    )
    plan = _plan(tmp_path, PitrTarget("latest", source_stack=source_stack))
    with pytest.raises(BackupFailed, match="rolled back"):
        pitr_restore.run_pitr_restore(ctx, plan, 1.0)
    assert uploads == [source_stack]
    assert pgbackrest == checked
    assert runtime.calls == ["stop app", "stop postgres", "stop postgres", "start postgres"]  # rolled back
