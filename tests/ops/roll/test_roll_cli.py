"""``bankflow-infra roll --stdin``: a bad request is one clear error before any droplet is
contacted, the deploy key never appears in what it prints, and a failed roll exits non-zero so
``pulumi up`` fails."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.contract.roll import RollRequest, RollTarget, render_roll_request
from bankflow_infra.ops import roll_ssh
from bankflow_infra.ops.cli import main
from bankflow_infra.ops.roll import AgentAnswer, TargetUnreachable

KEY_BODY = "ZmFrZS1kZXBsb3kta2V5LXZhbHVlLTQyNDI="  # not a key: a distinctive value to search for
KEY = f"-----BEGIN OPENSSH PRIVATE KEY-----\n{KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"
TARGET = RollTarget("bankflow-scaled-server", "203.0.113.10", 22, "root", "ssh-ed25519 AAAAC3Nza")
REQUEST = RollRequest(
    "scaled",
    "0123456789ab",
    (TARGET, RollTarget("bankflow-scaled-server-2", "203.0.113.11", 22, "root", "ssh-ed25519 AAAAC3Nzb")),
    KEY,
)


def run_cli(
    stdin: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin.encode())))
    code = main(["roll", "--stdin", "--drain-wait", "0.01", "--rejoin-wait", "0.01"])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def no_ssh(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []

    def refuse(self: Any, target: RollTarget, args: Any) -> AgentAnswer:
        calls.append((target.name, tuple(args)))
        raise AssertionError("a bad request must not reach any droplet")

    monkeypatch.setattr(roll_ssh.SshRollTransport, "agent", refuse)
    return calls


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda d: d.update(release="latest"), "release must be a 12-hex-digit release id"),
        (lambda d: d.update(targets=[]), "targets must be a non-empty list"),
        (lambda d: d["targets"][1].update(port=70000), "targets[1].port"),
        (lambda d: d["targets"][1].update(host="203.0.113.10"), "a droplet is listed twice"),
        (lambda d: d.update(private_key="hunter2"), "private_key must be an OpenSSH private key"),
    ],
)
def test_a_bad_request_is_refused_before_anything_changes(
    change: Any, named: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls = no_ssh(monkeypatch)
    document = json.loads(render_roll_request(REQUEST))
    change(document)
    code, printed = run_cli(json.dumps(document), monkeypatch, capsys)
    assert code == 2
    assert named in printed
    assert "nothing changed" in printed
    assert calls == []
    assert KEY_BODY not in printed
    assert "hunter2" not in printed


def test_not_json_is_refused(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    no_ssh(monkeypatch)
    code, printed = run_cli("{not json", monkeypatch, capsys)
    assert code == 2
    assert "roll request: not JSON" in printed


def test_a_failed_roll_exits_1_naming_the_droplet_and_never_the_key(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[tuple[str, str]] = []

    def agent(self: Any, target: RollTarget, args: Any) -> AgentAnswer:
        seen.append((self.private_key, target.host_public_key))
        if target.name.endswith("-2"):
            raise TargetUnreachable("ssh to 203.0.113.11: Connection timed out")
        return AgentAnswer(0, json.dumps({"current": "ba9876543210"}), "")

    monkeypatch.setattr(roll_ssh.SshRollTransport, "agent", agent)
    code, printed = run_cli(render_roll_request(REQUEST), monkeypatch, capsys)
    assert code == 1
    assert "FAILED" in printed
    assert "bankflow-scaled-server-2" in printed
    assert "unreachable" in printed
    assert KEY_BODY not in printed
    # each droplet is reached with the request's key and its own pinned host key
    assert set(seen) == {(KEY, TARGET.host_public_key), (KEY, "ssh-ed25519 AAAAC3Nzb")}


def test_the_contract_command_runs_the_cli(tmp_path: Path) -> None:
    """contract.roll.ROLL_COMMAND is what the program's local.Command runs in the project dir."""
    from bankflow_infra.contract.roll import ROLL_COMMAND

    repo = Path(__file__).resolve().parents[3]
    argv = ROLL_COMMAND.split()
    done = subprocess.run(
        [str(repo / argv[0]), *argv[1:]], input=b"{}", capture_output=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 2
    assert b"roll request: expected an object with schema 1" in done.stderr
