"""bankflow-infra backup / backups / restore: what each sends to the host agent over SSH.

Unit level: the SSH session is a fake (ops/ssh.py's SshSession API: ``run_agent(args, *,
stdin, capture, tty)``) that records the agent arguments and answers like the agent would; the
outputs are saved-outputs files; health probing is replaced by a recorder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.contract.outputs import StackOutputs
from bankflow_infra.host.backups import commands as agent_commands
from bankflow_infra.host.backups.pitr_commands import pitr_target
from bankflow_infra.ops import backups
from bankflow_infra.ops.cli import backup as backup_commands
from bankflow_infra.ops.cli import main
from bankflow_infra.ops.cli import session as cli_session
from bankflow_infra.ops.health import HealthReport
from tests.support.outputs import outputs_document

PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
KEY_NEW = "bankflow-staging-20261125T031500Z.dump"
KEY_OLD = "bankflow-staging-20261124T031500Z.dump"
ROWS = [
    {"key": KEY_NEW, "stack": "staging", "time": "2026-11-25T03:15:00Z", "size": 123456, "age_seconds": 60},
    {
        "key": KEY_OLD,
        "stack": "staging",
        "time": "2026-11-24T03:15:00Z",
        "size": 120000,
        "age_seconds": 86460,
    },
]


@dataclass
class FakeSession:
    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)

    def run_agent(
        self, args: Sequence[str], *, stdin: bytes | None = None, capture: bool = False, tty: bool = False
    ) -> subprocess.CompletedProcess[bytes]:
        self.calls.append(list(args))
        code, out = self.answers.get(args[0], (0, b""))
        return subprocess.CompletedProcess(list(args), code, out if capture else b"", b"")


@dataclass
class Rig:
    session: FakeSession
    opened: list[str]
    health: list[tuple[str, str]]
    outputs: Path
    production_outputs: Path

    def run(self, *argv: str) -> int:
        return main(list(argv))


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Rig:
    session = FakeSession({"backups": (0, json.dumps(ROWS).encode())})
    opened: list[str] = []
    health: list[tuple[str, str]] = []

    @contextlib.contextmanager
    def fake_ssh_session(outputs: StackOutputs, **_options: Any) -> Iterator[FakeSession]:
        opened.append(outputs.stack)
        yield session

    def fake_check_health(
        outputs: StackOutputs, mode: str = "edge", *args: Any, **kwargs: Any
    ) -> HealthReport:
        health.append((outputs.stack, mode))
        return HealthReport(outputs.stack, mode, (), 1)  # type: ignore[arg-type]

    monkeypatch.setattr(cli_session, "ssh_session", fake_ssh_session)
    monkeypatch.setattr(backups, "ssh_session", fake_ssh_session)
    monkeypatch.setattr(backup_commands, "check_health", fake_check_health)
    outputs = tmp_path / "staging.json"
    outputs.write_text(json.dumps(outputs_document(origin_certificate=PEM)))
    fresh = outputs_document(origin_ip=None)  # a stack without its own bucket...
    production = {**fresh, "backup_bucket": {"name": "bankflow-production-backups", "region": "fra1",
                                             "endpoint": "https://fra1.digitaloceanspaces.com"}}  # fmt: skip
    production_outputs = tmp_path / "production.json"
    production_outputs.write_text(json.dumps(production))
    return Rig(session, opened, health, outputs, production_outputs)


def tty(monkeypatch: pytest.MonkeyPatch, answer: str | None) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    if answer is None:
        return

    def reply(prompt: str = "") -> str:
        return answer

    monkeypatch.setattr("builtins.input", reply)


def no_tty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)


def test_backup_runs_the_agents_backup(rig: Rig) -> None:
    assert rig.run("backup", "staging", "--outputs", str(rig.outputs)) == 0
    assert rig.session.calls == [["backup"]]


def test_backup_failure_is_the_agents_exit_code(rig: Rig) -> None:
    rig.session.answers["backup"] = (1, b"")
    assert rig.run("backup", "staging", "--outputs", str(rig.outputs)) == 1


@pytest.mark.parametrize(
    ("flags", "agent_args"),
    [
        ([], ["backups"]),
        (["--json"], ["backups", "--json"]),
        (["--pitr"], ["pitr-backups"]),  # the set labels restore --backup-set takes
        (["--pitr", "--json"], ["pitr-backups", "--json"]),
    ],
)
def test_backups_lists_through_the_agent(rig: Rig, flags: list[str], agent_args: list[str]) -> None:
    assert rig.run("backups", "staging", "--outputs", str(rig.outputs), *flags) == 0
    assert rig.session.calls == [agent_args]


def test_restore_with_yes_sends_exactly_the_restore_then_checks_health(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_tty(monkeypatch)
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs), "--from", KEY_OLD, "--yes") == 0
    assert rig.session.calls == [["restore", "--from", KEY_OLD, "--yes", "--of-stack", "staging"]]
    assert rig.health == [("staging", "origin")]


def test_restore_defaults_to_latest(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    no_tty(monkeypatch)
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs), "--yes") == 0
    assert rig.session.calls == [["restore", "--from", "latest", "--yes", "--of-stack", "staging"]]


def test_restore_without_yes_and_without_a_terminal_is_refused_before_anything(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    no_tty(monkeypatch)
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs), "--from", KEY_OLD) == 2
    assert rig.opened == []
    assert rig.session.calls == []
    assert "refusing to replace the database without --yes" in capsys.readouterr().err


def test_restore_on_a_terminal_shows_the_dump_and_needs_the_stack_name(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tty(monkeypatch, "yes")  # not the stack's name
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs)) == 1
    assert rig.session.calls == [["backups", "--json"]]  # looked, changed nothing
    err = capsys.readouterr().err
    assert f"REPLACE the database with {KEY_NEW}" in err
    assert "not confirmed; nothing changed" in err

    tty(monkeypatch, "staging")
    rig.session.calls.clear()
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs)) == 0
    # 'latest' became the key that was shown: a dump landing meanwhile cannot slip in
    assert rig.session.calls == [
        ["backups", "--json"],
        ["restore", "--from", KEY_NEW, "--yes", "--of-stack", "staging"],
    ]


def test_restore_of_a_key_that_does_not_exist_is_one_error_and_changes_nothing(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = "bankflow-staging-20200101T000000Z.dump"
    tty(monkeypatch, "staging")
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs), "--from", missing) == 2
    assert rig.session.calls == [["backups", "--json"]]
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"bankflow-infra restore: no backup {missing} in stack staging's bucket; nothing changed"]

    # with --yes the agent decides (it refuses the unknown key with exit 2; nothing changed there)
    rig.session.calls.clear()
    rig.session.answers["restore"] = (2, b"")
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs), "--from", missing, "--yes") == 2
    assert rig.session.calls == [["restore", "--from", missing, "--yes", "--of-stack", "staging"]]
    assert rig.health == []  # no health check after a failed restore


def test_restore_from_another_stacks_bucket(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    no_tty(monkeypatch)
    code = rig.run("restore", "staging", "--outputs", str(rig.outputs), "--source-stack", "production",
                   "--source-outputs", str(rig.production_outputs), "--from", "latest", "--yes")  # fmt: skip
    assert code == 0
    # the source stack's outputs say the same environment (a rebuild): --source-stack is the consent
    assert rig.session.calls == [
        ["restore", "--from", "latest", "--yes", "--of-stack", "production", "--allow-other-stack",
         "--bucket", "bankflow-production-backups", "--endpoint", "https://fra1.digitaloceanspaces.com"],
    ]  # fmt: skip
    assert rig.opened == ["staging"]  # only the target stack's droplet is reached


def test_restore_from_a_stack_without_a_bucket_is_refused(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_tty(monkeypatch)
    nobucket = tmp_path / "r1.json"
    nobucket.write_text(json.dumps({**outputs_document(origin_certificate=PEM), "backup_bucket": None}))
    code = rig.run("restore", "staging", "--outputs", str(rig.outputs), "--source-stack", "production-r1",
                   "--source-outputs", str(nobucket), "--yes")  # fmt: skip
    assert code == 2
    assert rig.opened == []
    assert "has no backups bucket" in capsys.readouterr().err


def test_newest_backup_time_for_health(rig: Rig) -> None:
    from bankflow_infra.ops.outputs import load_outputs

    outputs = load_outputs("staging", rig.outputs)
    assert backups.newest_backup_time(outputs) == datetime(2026, 11, 25, 3, 15, tzinfo=UTC)
    assert rig.session.calls == [["backups", "--json"]]
    rig.session.answers["backups"] = (0, b"[]")
    assert backups.newest_backup_time(outputs) is None
    rig.session.answers["backups"] = (1, b"")
    with pytest.raises(Exception, match="exited 1"):
        backups.newest_backup_time(outputs)


def test_a_key_of_another_stack_is_refused_before_connecting(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 15, 8: a mistyped key must not overwrite a stack with another stack's data."""
    no_tty(monkeypatch)
    other = "bankflow-production-20261125T031500Z.dump"
    code = rig.run("restore", "staging", "--outputs", str(rig.outputs), "--from", other, "--yes")
    assert code == 2
    assert rig.opened == []
    err = capsys.readouterr().err
    assert "the dump is of stack 'production': restoring it replaces 'staging'" in err
    assert "--from-another-stack" in err
    code = rig.run("restore", "staging", "--outputs", str(rig.outputs), "--from", other, "--yes",
                   "--from-another-stack")  # fmt: skip
    assert code == 0
    assert rig.session.calls == [
        ["restore", "--from", other, "--yes", "--of-stack", "staging", "--allow-other-stack"]
    ]


def test_a_source_stack_of_another_environment_needs_the_explicit_flag(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_tty(monkeypatch)
    production = tmp_path / "prod.json"
    production.write_text(json.dumps(outputs_document("production", backup_bucket={
        "name": "bankflow-production-backups", "region": "fra1",
        "endpoint": "https://fra1.digitaloceanspaces.com"})))  # fmt: skip
    argv = ["restore", "staging", "--outputs", str(rig.outputs), "--source-stack", "production",
            "--source-outputs", str(production), "--yes"]  # fmt: skip
    assert rig.run(*argv) == 2
    assert "pass --from-another-stack" in capsys.readouterr().err
    assert rig.session.calls == []  # nothing sent to the agent
    assert rig.run(*argv, "--from-another-stack") == 0
    assert "--allow-other-stack" in rig.session.calls[-1]


# --------------------------------------------------------------------------- point-in-time restore


@pytest.mark.parametrize(
    ("flags", "agent_args"),
    [
        (["--to-time", "2026-11-25 03:10:00Z"], ["restore", "--to-time", "2026-11-25 03:10:00Z", "--yes"]),
        (["--latest"], ["restore", "--latest", "--yes"]),
        (["--backup-set", "20261125-031500F"], ["restore", "--backup-set", "20261125-031500F", "--yes"]),
        (["--discard-previous"], ["restore", "--discard-previous"]),
    ],
)
def test_pitr_restore_sends_exactly_the_agents_restore(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, flags: list[str], agent_args: list[str]
) -> None:
    no_tty(monkeypatch)
    yes = [] if "--discard-previous" in flags else ["--yes"]
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs), *flags, *yes) == 0
    assert rig.session.calls == [agent_args]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--to-time", "2026-11-25T03:10:00Z"], "is not 'YYYY-MM-DD HH:MM:SSZ'"),
        (["--to-time", "2026-02-30 03:10:00Z"], "is not a valid date and time"),
        (["--to-time", "2999-01-01 00:00:00Z"], "is in the future"),
        (["--latest", "--to-time", "2026-11-25 03:10:00Z"], "choose one of"),
        (["--from", KEY_OLD, "--latest"], "choose one of"),
        (["--backup-set", "latest; rm -rf /"], "is not a pgBackRest label"),
    ],
)
def test_bad_pitr_input_is_one_error_before_connecting(
    rig: Rig,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    no_tty(monkeypatch)
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs), *flags, "--yes") == 2
    assert rig.opened == []
    assert message in capsys.readouterr().err


def test_pitr_restore_on_a_terminal_previews_then_needs_the_stack_name(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    preview = b"restore: target: the newest archived WAL (latest)\n"
    rig.session.answers["restore"] = (0, preview)  # the fake answers the --yes run with 0 too
    tty(monkeypatch, "staging")
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs), "--latest") == 0
    assert rig.session.calls == [["restore", "--latest"], ["restore", "--latest", "--yes"]]


def test_pitr_restore_refused_by_the_agent_asks_nothing(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.session.answers["restore"] = (2, b"")  # e.g. the repository cannot be read: no preview
    tty(monkeypatch, "staging")
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs), "--latest") == 2
    assert rig.session.calls == [["restore", "--latest"]]


def test_pitr_restore_declined_sends_nothing_after_the_preview(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    rig.session.answers["restore"] = (2, b"restore: target: the newest archived WAL (latest)\n")
    tty(monkeypatch, "no")
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs), "--latest") == 1
    assert rig.session.calls == [["restore", "--latest"]]


def test_backup_pitr_runs_the_agents_pitr_backup(rig: Rig) -> None:
    assert rig.run("backup", "staging", "--outputs", str(rig.outputs), "--pitr", "--type", "full") == 0
    assert rig.session.calls == [["pitr-backup", "--type", "full"]]


# ------------------------------------------------ point-in-time restore of another stack's data (rebuild)

PRODUCTION_BUCKET = {"name": "bankflow-production-backups", "region": "fra1",
                     "endpoint": "https://fra1.digitaloceanspaces.com"}  # fmt: skip


def _write(path: Path, document: dict[str, Any]) -> str:
    path.write_text(json.dumps(document))
    return str(path)


@pytest.fixture
def rebuilt(tmp_path: Path) -> list[str]:
    """`restore production-r1 ... --source-stack production`: a rebuild stack (no bucket of its own:
    it writes into production's) and its original, each from saved outputs."""
    r1 = {**outputs_document("production-r1", environment="production", origin_certificate=PEM),
          "backup_bucket": None}  # fmt: skip
    production = outputs_document("production", backup_bucket=PRODUCTION_BUCKET)
    return ["restore", "production-r1", "--outputs", _write(tmp_path / "r1.json", r1), "--source-stack",
            "production", "--source-outputs", _write(tmp_path / "p.json", production)]  # fmt: skip


@pytest.mark.parametrize(
    "flags",
    [["--latest"], ["--to-time", "2026-11-25 03:10:00Z"], ["--backup-set", "20261125-031500F"]],
)
def test_pitr_restore_of_the_source_stack_names_it_to_the_agent(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, rebuilt: list[str], flags: list[str]
) -> None:
    """The rebuild's step 8: same environment, so --source-stack is the consent; no bucket override
    (the repository NEW archives into is the original's), the original's uploads."""
    no_tty(monkeypatch)
    assert rig.run(*rebuilt, *flags, "--yes") == 0
    assert rig.session.calls == [["restore", *flags, "--source-stack", "production", "--yes"]]
    assert rig.opened == ["production-r1"]  # only the new stack's droplet is reached
    # ... and the agent of the same release reads it as the data of production (its uploads)
    agent = argparse.ArgumentParser(prog="bankflow-agent")
    agent_commands.register(agent.add_subparsers(dest="command", required=True))
    target = pitr_target(agent.parse_args(rig.session.calls[0]), datetime.now(UTC))
    assert target is not None
    assert target.source_stack == "production"


def test_pitr_restore_of_the_source_stack_on_a_terminal_previews_it(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, rebuilt: list[str]
) -> None:
    rig.session.answers["restore"] = (0, b"restore: target: the newest archived WAL (latest)\n")
    tty(monkeypatch, "production-r1")
    assert rig.run(*rebuilt, "--latest") == 0
    agent = ["restore", "--latest", "--source-stack", "production"]
    assert rig.session.calls == [agent, [*agent, "--yes"]]


@pytest.mark.parametrize("consent", [[], ["--from-another-stack"]])
def test_pitr_restore_of_another_environment_is_refused_even_with_consent(
    rig: Rig,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    consent: list[str],
) -> None:
    no_tty(monkeypatch)
    production = _write(tmp_path / "p.json", outputs_document("production", backup_bucket=PRODUCTION_BUCKET))
    code = rig.run("restore", "staging", "--outputs", str(rig.outputs), "--source-stack", "production",
                   "--source-outputs", production, "--latest", "--yes", *consent)  # fmt: skip
    assert code == 2
    assert rig.session.calls == []  # nothing sent to the agent
    err = capsys.readouterr().err
    assert "--source-stack 'production' is a production stack and 'staging' a staging one" in err
    assert "--from latest --source-stack production --from-another-stack" in err  # the dump can
    assert err.count("\n") == 1
    assert "nothing changed" in err


def test_pitr_restore_from_a_stack_with_another_bucket_is_refused(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    no_tty(monkeypatch)
    other = _write(tmp_path / "o.json", outputs_document("staging-b", environment="staging"))
    code = rig.run("restore", "staging", "--outputs", str(rig.outputs), "--source-stack", "staging-b",
                   "--source-outputs", other, "--latest", "--yes")  # fmt: skip
    assert code == 2
    assert rig.session.calls == []
    err = capsys.readouterr().err
    assert "'staging' archives into bucket bankflow-staging-backups and 'staging-b' into " in err


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--discard-previous"], "--source-stack does not go with --discard-previous"),
        (["--latest", "--to-time", "2026-11-25 03:10:00Z", "--yes"], "choose one of"),
        (["--latest"], "not a terminal: refusing to replace the database without --yes"),
        (["--latest", "--yes", "--source-outputs", "/nonexistent/p.json"], "/nonexistent/p.json"),
    ],
)
def test_bad_pitr_source_stack_input_is_one_error_before_connecting(
    rig: Rig,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    message: str,
) -> None:
    no_tty(monkeypatch)
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs), "--source-stack", "production",
                   *flags) == 2  # fmt: skip
    assert rig.opened == []
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_pitr_restore_with_its_own_stack_as_source_sends_no_source(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    no_tty(monkeypatch)
    assert rig.run("restore", "staging", "--outputs", str(rig.outputs), "--source-stack", "staging",
                   "--latest", "--yes") == 0  # fmt: skip
    assert rig.session.calls == [["restore", "--latest", "--yes"]]
