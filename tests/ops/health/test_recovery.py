"""`health --backups`: the newest pgBackRest backup and the WAL-archive lag (the agent's
`pitr-status --json`, over the SSH transport -- a recording stand-in session here, answering
with the documented JSON shape), and the last restore drill (the GitHub CLI -- a stand-in `gh`
executable on PATH answering as `gh run list --json` does)."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.contract.outputs import StackOutputs, parse_outputs
from bankflow_infra.ops import health_backups as recovery
from bankflow_infra.ops.cli import health as health_command
from bankflow_infra.ops.cli import main
from bankflow_infra.ops.ssh import RemoteError
from tests.ops.cli.test_health import FAST, _saved, server  # noqa: F401 -- the fixture
from tests.support.https import Certs, LocalHttps
from tests.support.outputs import outputs_document

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def pitr_document(backup_hours_ago: float | None = 3, lag: int | None = 12) -> dict[str, Any]:
    newest = None
    if backup_hours_ago is not None:
        stop = (NOW - timedelta(hours=backup_hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
        newest = {"label": "20261130-011500F_20261130-091500I", "type": "incr", "stop_time": stop}
    archive = {"last_archived_time": "2026-11-30T11:59:30Z", "last_failed_time": None, "failed_count": 0,
               "lag_seconds": lag}  # fmt: skip
    return {"newest_backup": newest, "archive": archive}


@dataclass
class FakeSession:
    answer: tuple[int, bytes]
    calls: list[list[str]] = field(default_factory=list)

    def run_agent(
        self, args: Sequence[str], *, capture: bool = False, **_kw: Any
    ) -> subprocess.CompletedProcess[bytes]:
        self.calls.append(list(args))
        return subprocess.CompletedProcess(
            list(args), self.answer[0], self.answer[1] if capture else b"", b""
        )


def fake_ssh(monkeypatch: pytest.MonkeyPatch, code: int, stdout: bytes) -> FakeSession:
    session = FakeSession((code, stdout))

    @contextlib.contextmanager
    def ssh_session(_outputs: StackOutputs, **_options: Any) -> Iterator[FakeSession]:
        yield session

    monkeypatch.setattr(recovery, "ssh_session", ssh_session)
    return session


def fake_gh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runs: list[dict[str, Any]], code: int = 0
) -> Path:
    """A `gh` on PATH that records its argv and prints ``runs`` as `gh run list --json` does."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "runs.json").write_text(json.dumps(runs))
    script = bin_dir / "gh"
    script.write_text(
        f'#!/bin/sh\necho "$@" > {tmp_path}/gh-argv\n'
        f'[ {code} -eq 0 ] || {{ echo "gh: not logged in" >&2; exit {code}; }}\n'
        f"cat {tmp_path}/runs.json\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return tmp_path / "gh-argv"


def run(conclusion: str, days_ago: float, status: str = "completed") -> dict[str, Any]:
    created = (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"conclusion": conclusion, "status": status, "createdAt": created,
            "url": f"https://github.com/bankflow/infra/actions/runs/{int(days_ago * 100)}"}  # fmt: skip


def test_pitr_status_is_asked_of_the_agent_and_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    outputs = parse_outputs("staging", outputs_document())
    session = fake_ssh(monkeypatch, 0, json.dumps(pitr_document()).encode())
    assert recovery.fetch_pitr_status(outputs) == pitr_document()
    assert session.calls == [["pitr-status", "--json"]]
    fake_ssh(monkeypatch, 0, b'{"newest_backup": {"label": "x", "stop_time": "yesterday"}, "archive": {}}')
    with pytest.raises(RemoteError, match="unexpected `pitr-status --json` answer from stack 'staging'"):
        recovery.fetch_pitr_status(outputs)
    fake_ssh(monkeypatch, 2, b"")  # an agent without the command
    with pytest.raises(RemoteError, match="exited 2"):
        recovery.fetch_pitr_status(outputs)


@pytest.mark.parametrize(
    ("document", "warning"),
    [
        (pitr_document(), None),
        (pitr_document(backup_hours_ago=26.5), "newest pgBackRest backup is 26.5 h old, past 26 h"),
        (pitr_document(backup_hours_ago=None), "no pgBackRest backup in the repository"),
        (pitr_document(lag=300), None),
        (pitr_document(lag=301), "WAL archive lag 301 s, over 5 min"),
        (pitr_document(lag=None), "WAL archive lag unknown"),
    ],
)
def test_pitr_limits_are_the_watchs(document: dict[str, Any], warning: str | None) -> None:
    report = recovery.judge_pitr(document, NOW)
    if warning is None:
        assert report.warnings == ()
    else:
        assert any(warning in w for w in report.warnings), report.warnings
    assert recovery.pitr_lines(report)


@pytest.mark.parametrize(
    ("runs", "warning"),
    [
        ([run("success", 2)], None),
        ([run("", 0, status="in_progress"), run("success", 7.5)], None),  # the running one is not judged
        ([run("failure", 1), run("success", 8)], "the last restore drill failure"),
        ([run("success", 9)], "the last passing restore drill is 9 days old, past 8 days"),
        ([], "no passing restore drill on record"),
    ],
)
def test_the_last_drill_is_judged(runs: list[dict[str, Any]], warning: str | None) -> None:
    report = recovery.judge_drills(runs, NOW)
    if warning is None:
        assert report.warnings == ()
    else:
        assert any(warning in w for w in report.warnings), report.warnings


def test_the_drill_runs_come_from_the_github_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    argv = fake_gh(tmp_path, monkeypatch, [run("success", 1)])
    assert recovery.fetch_drill_runs() == [run("success", 1)]
    assert argv.read_text().split() == ["run", "list", "--workflow", "restore-drill.yml", "--limit", "20",
                                        "--json", "conclusion,status,createdAt,url"]  # fmt: skip
    fake_gh(tmp_path, monkeypatch, [], code=4)
    report = recovery.drill_report(recovery.fetch_drill_runs, NOW)
    assert report.error == "RuntimeError: gh run list exited 4: gh: not logged in"
    assert recovery.drill_lines(report) == [
        "WARNING: last restore drill unknown: RuntimeError: gh run list exited 4: gh: not logged in"
    ]


def test_health_backups_reports_backup_lag_and_drill(
    certs: Certs, server: LocalHttps, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # noqa: F811
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.setattr(health_command, "newest_backup_time", lambda *_a, **_k: datetime.now(UTC))
    now = datetime.now(UTC)
    document = pitr_document()
    document["newest_backup"]["stop_time"] = (now - timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    document["archive"]["lag_seconds"] = 420  # archiving stuck for 7 minutes
    fake_ssh(monkeypatch, 0, json.dumps(document).encode())
    fake_gh(tmp_path, monkeypatch, [{**run("failure", 0), "createdAt": now.strftime("%Y-%m-%dT%H:%M:%SZ")}])
    saved = _saved(tmp_path, outputs_document(origin_certificate=certs.origin.pem))

    assert main(["health", "staging", "--origin", "--backups", "--outputs", saved, *FAST]) == 0
    out = capsys.readouterr().out
    assert "newest pgBackRest backup: incr 20261130-011500F_20261130-091500I, 2.0 h old" in out
    assert "WAL archive lag: 420 s" in out
    assert "WARNING: WAL archive lag 420 s, over 5 min" in out
    assert "last restore drill: failure at" in out
    assert "WARNING: the last restore drill failure" in out

    assert main(["health", "staging", "--origin", "--backups", "--outputs", saved, *FAST, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["pitr"]["archive_lag_seconds"] == 420
    assert report["pitr"]["newest_backup"]["type"] == "incr"
    assert report["drill"]["last"]["conclusion"] == "failure"
