"""The day-2 commands (ssh, releases, rollback, logs, migrate) over a real SSH connection.

``bankflow-infra`` runs in-process with saved outputs (``--outputs``) whose ``ssh`` points at
the loopback sshd of tests/ops/cli/remote/rig.py, whose host key is the pinned one and whose deploy key
is the harness's authorized client key. The remote side is the REAL host agent (the shipped
launcher, system python3) driving the docker stand-in (Docker has no engine here). The agent's
path comes from the test-only BANKFLOW_SSH_AGENT_PATH (agent_host fixture).

Releases are seeded with the program's own registered deploy payloads, deployed by running the
installed agent directly (no SSH: set-up, not what is tested; no drain to keep it fast).
"""

from __future__ import annotations

import io
import json
import subprocess
from pathlib import Path

import pytest

from bankflow_infra.ops.cli import main
from bankflow_infra.ops.plan import PlanResult
from tests.ops.cli.remote.rig import RemoteHost, generate_other_host_key, registered_payload
from tests.support.tools import require_tool

Plans = tuple[PlanResult, PlanResult]


def seed(host: RemoteHost, plans: Plans) -> tuple[str, str]:
    """Deploy both staging releases (first, then second); returns their release ids."""
    ids = []
    for plan in plans:
        payload, release = registered_payload(plan)
        done = host.agent_locally(
            "receive", "--stdin", "--deploy", "--drain", "0", "--settle", "0", stdin=payload
        )
        assert done.returncode == 0, done.stderr.decode()
        ids.append(release)
    return ids[0], ids[1]


def run(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capfd.readouterr()
    code = main(argv)
    out, err = capfd.readouterr()
    return code, out, err


class Terminal(io.StringIO):
    """stdin that says it is a terminal, with the operator's answer queued."""

    def isatty(self) -> bool:
        return True


# --------------------------------------------------------------------------- releases, rollback


def test_releases_lists_kept_releases_current_first(
    agent_host: RemoteHost, staging_plans: Plans, capfd: pytest.CaptureFixture[str]
) -> None:
    first, second = seed(agent_host, staging_plans)
    outputs = agent_host.write_outputs()
    code, out, _ = run(["releases", "staging", "--outputs", outputs, "--json"], capfd)
    assert code == 0
    rows = json.loads(out)
    assert [(r["release"], r["current"], r["previous"]) for r in rows] == [
        (second, True, False),
        (first, False, True),
    ]
    code, out, _ = run(["releases", "staging", "--outputs", outputs], capfd)
    assert code == 0
    assert out.splitlines()[0].startswith(f"* {second}")
    assert out.splitlines()[0].endswith("(current)")


def test_rollback_to_a_named_release_with_yes(
    agent_host: RemoteHost, staging_plans: Plans, capfd: pytest.CaptureFixture[str]
) -> None:
    first, second = seed(agent_host, staging_plans)
    code, out, err = run(
        ["rollback", "staging", first, "--yes", "--outputs", agent_host.write_outputs()], capfd
    )
    assert code == 0, err
    assert f"rollback {first}: done; release {first} serving (was {second})" in out
    assert agent_host.current() == first
    entry = agent_host.audit()[-1]
    assert (entry["action"], entry["result"], entry["release"]) == ("rollback", "ok", first)
    assert entry["actor"].startswith("bankflow-infra:")


def test_rollback_to_an_unknown_release_is_the_agents_exit_2(
    agent_host: RemoteHost, staging_plans: Plans, capfd: pytest.CaptureFixture[str]
) -> None:
    _, second = seed(agent_host, staging_plans)
    code, _, err = run(
        ["rollback", "staging", "0123456789ab", "--yes", "--outputs", agent_host.write_outputs()], capfd
    )
    assert code == 2
    assert "no kept release 0123456789ab" in err
    assert agent_host.current() == second


def test_rollback_without_a_terminal_needs_yes(
    agent_host: RemoteHost, staging_plans: Plans, capfd: pytest.CaptureFixture[str]
) -> None:
    _, second = seed(agent_host, staging_plans)
    logins = agent_host.logins()
    code, _, err = run(["rollback", "staging", "--outputs", agent_host.write_outputs()], capfd)
    assert code == 2
    assert "not a terminal: refusing to roll back without --yes" in err
    assert agent_host.logins() == logins  # refused before connecting
    assert agent_host.current() == second


@pytest.mark.parametrize(("answer", "expected"), [("n\n", 1), ("", 1), ("yes\n", 0)])
def test_rollback_on_a_terminal_asks_first(
    agent_host: RemoteHost,
    staging_plans: Plans,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answer: str,
    expected: int,
) -> None:
    first, second = seed(agent_host, staging_plans)
    monkeypatch.setattr("sys.stdin", Terminal(answer))
    code, out, err = run(["rollback", "staging", "--outputs", agent_host.write_outputs()], capfd)
    assert code == expected, err
    assert f"stack staging: roll back from release {second} to {first}" in err
    assert "Proceed? [y/N]" in out
    assert agent_host.current() == (first if expected == 0 else second)
    if expected:
        assert "not confirmed; nothing changed" in err


# --------------------------------------------------------------------------- logs, migrate


def _compose_prefix(host: RemoteHost, project: str, release: str, file: str) -> list[str]:
    bundle = host.home / "releases" / release
    return [
        "docker",
        "compose",
        "-p",
        project,
        "-f",
        f"{bundle}/{file}",
        "--env-file",
        f"{bundle}/release.env",
    ]


def test_logs_of_an_app_service(
    agent_host: RemoteHost, staging_plans: Plans, capfd: pytest.CaptureFixture[str]
) -> None:
    _, second = seed(agent_host, staging_plans)
    code, out, err = run(
        ["logs", "staging", "api", "--tail", "2", "--outputs", agent_host.write_outputs()], capfd
    )
    assert code == 0, err
    assert out.splitlines() == ["api | standin log line 1", "api | standin log line 2"]
    assert agent_host.journal()[-1] == [
        *_compose_prefix(agent_host, f"bankflow-app-{second}", second, "compose/app.yaml"),
        "logs",
        "--tail",
        "2",
        "api",
    ]


def test_logs_of_a_base_service_follow(
    agent_host: RemoteHost, staging_plans: Plans, capfd: pytest.CaptureFixture[str]
) -> None:
    _, second = seed(agent_host, staging_plans)
    code, _, err = run(
        ["logs", "staging", "postgres", "--follow", "--outputs", agent_host.write_outputs()], capfd
    )
    assert code == 0, err
    assert agent_host.journal()[-1] == [
        *_compose_prefix(agent_host, "bankflow", second, "compose/base.yaml"),
        "logs",
        "--tail",
        "200",
        "--follow",
        "postgres",
    ]


def test_logs_of_an_unknown_service_is_refused_before_connecting(
    agent_host: RemoteHost, staging_plans: Plans, capfd: pytest.CaptureFixture[str]
) -> None:
    logins = agent_host.logins()
    code, out, err = run(["logs", "staging", "mysql", "--outputs", agent_host.write_outputs()], capfd)
    assert code == 2
    assert err.strip() == (
        "bankflow-infra logs: unknown service 'mysql'; the catalog's services are "
        "site, saas, api, postgres, redis, nginx"
    )
    assert out == ""
    assert agent_host.logins() == logins


def test_migrate_runs_the_current_releases_migrate_command(
    agent_host: RemoteHost, staging_plans: Plans, capfd: pytest.CaptureFixture[str]
) -> None:
    _, second = seed(agent_host, staging_plans)
    code, out, err = run(["migrate", "staging", "--outputs", agent_host.write_outputs()], capfd)
    assert code == 0, err
    assert f"migrate {second}: done" in out
    assert agent_host.journal()[-1] == [
        *_compose_prefix(agent_host, f"bankflow-app-{second}", second, "compose/app.yaml"),
        "run",
        "--rm",
        "--no-deps",
        "api",
        "/app/migrate",
    ]
    entry = agent_host.audit()[-1]
    assert (entry["action"], entry["result"], entry["release"]) == ("migrate", "ok", second)


def test_migrate_before_any_release_is_the_agents_exit_2(
    agent_host: RemoteHost, capfd: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["migrate", "staging", "--outputs", agent_host.write_outputs()], capfd)
    assert code == 2
    assert "no release deployed yet: nothing to migrate" in err
    assert agent_host.journal() == []


# --------------------------------------------------------------------------- ssh


def test_ssh_runs_a_command_with_each_word_quoted(
    agent_host: RemoteHost, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marker = tmp_path / "injected"
    code, out, err = run(
        [
            "ssh",
            "staging",
            "--outputs",
            agent_host.write_outputs(),
            "--",
            "printf",
            "%s\\n",
            "a b",
            f"$HOME; touch {marker}",
        ],
        capfd,
    )
    assert code == 0, err
    assert out.splitlines() == ["a b", f"$HOME; touch {marker}"]
    assert not marker.exists()


def test_ssh_exits_with_the_remote_commands_code(
    agent_host: RemoteHost, capfd: pytest.CaptureFixture[str]
) -> None:
    code, _, _ = run(
        ["ssh", "staging", "--outputs", agent_host.write_outputs(), "--", "sh", "-c", "exit 7"], capfd
    )
    assert code == 7


def test_ssh_with_an_unknown_option_after_the_stack(
    agent_host: RemoteHost, capfd: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["ssh", "staging", "--bogus", "--", "true"], capfd)
    assert code == 2
    assert "put the remote command after `--`" in err


def test_ssh_refuses_a_user_that_is_no_operator_name_before_connecting(
    agent_host: RemoteHost, capfd: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["ssh", "staging", "--user", "Root;x", "--", "true"], capfd)
    assert code == 2
    assert "'Root;x' is not an operator account name" in err


# --------------------------------------------------------------------------- refused


def test_a_wrong_pinned_host_key_is_refused_and_nothing_runs(
    agent_host: RemoteHost, staging_plans: Plans, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, second = seed(agent_host, staging_plans)
    document = agent_host.outputs_document()
    document["ssh"]["host_public_key"] = generate_other_host_key(tmp_path)
    saved = tmp_path / "wrong-key.json"
    saved.write_text(json.dumps(document))
    logins = agent_host.logins()
    for argv in (["rollback", "staging", "--yes"], ["migrate", "staging"], ["ssh", "staging", "--", "true"]):
        code, _, err = run(
            [*argv, "--outputs", str(saved)]
            if argv[0] != "ssh"
            else ["ssh", "staging", "--outputs", str(saved), "--", "true"],
            capfd,
        )
        assert code == 2
        # one error line and nothing of ssh's own output (the agent-path note is the test hook's)
        lines = [line for line in err.splitlines() if line and not line.startswith("bankflow-infra: note:")]
        assert len(lines) == 1, err
        assert lines[0].startswith(f"bankflow-infra {argv[0]}: refusing stack 'staging'")
        assert "stack 'staging'" in lines[0]
        assert f"{agent_host.server.host}:{agent_host.server.port}" in lines[0]
        assert "differs from the key pinned" in lines[0]
        assert "pulumi refresh" in lines[0]
        assert "Host key verification failed" not in err  # ssh's own banner is replaced
    assert agent_host.logins() == logins
    assert agent_host.current() == second
    assert agent_host.audit()[-1]["action"] == "deploy"


def test_a_stack_without_a_server_names_the_stack_serving_it(
    agent_host: RemoteHost, capfd: pytest.CaptureFixture[str]
) -> None:
    outputs = agent_host.write_outputs(ssh=None, origin_ip=None, origin_stack="production-r1")
    for argv in (["releases", "staging"], ["ssh", "staging"], ["logs", "staging"]):
        code, _, err = run([*argv, "--outputs", outputs], capfd)
        assert code == 2
        assert err.strip().endswith(
            "stack 'staging' has no server of its own (output 'ssh' is null); its hostnames are served "
            "by stack 'production-r1': run the command against 'production-r1'"
        ), err


def test_malformed_outputs_are_one_error(agent_host: RemoteHost, capfd: pytest.CaptureFixture[str]) -> None:
    saved = agent_host.root / "broken.json"
    saved.write_text('{"ssh": ')
    logins = agent_host.logins()
    code, _, err = run(["migrate", "staging", "--outputs", str(saved)], capfd)
    assert code == 2
    assert err.startswith("bankflow-infra migrate: outputs of stack 'staging' from ")
    assert "not JSON" in err
    document = agent_host.outputs_document()
    document["ssh"]["port"] = "22"
    saved.write_text(json.dumps(document))
    code, _, err = run(["releases", "staging", "--outputs", str(saved)], capfd)
    assert code == 2
    assert "stack output 'ssh.port' of stack 'staging': expected a port number" in err
    assert agent_host.logins() == logins
    assert agent_host.journal() == []


def test_an_unknown_stack_through_the_pulumi_cli(
    agent_host: RemoteHost, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "pulumi-bin"
    bin_dir.mkdir()
    pulumi = bin_dir / "pulumi"
    pulumi.write_text("#!/bin/sh\necho \"error: no stack named 'nope' found\" >&2\nexit 255\n")
    pulumi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    code, _, err = run(["rollback", "nope", "--yes"], capfd)
    assert code == 2
    assert "cannot read the outputs of stack 'nope'" in err
    assert "--show-secrets" in err  # the deploy key is read from the secret output
    assert "pulumi stack ls" in err


def test_no_ssh_client(
    agent_host: RemoteHost, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    outputs = agent_host.write_outputs()
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    code, _, err = run(["releases", "staging", "--outputs", outputs], capfd)
    assert code == 2
    assert "no `ssh` client on PATH" in err


def test_a_key_the_server_does_not_accept_is_exit_255(
    agent_host: RemoteHost, capfd: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    stranger = tmp_path / "stranger"
    subprocess.run(
        [require_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    outputs = agent_host.write_outputs(deploy_private_key=stranger.read_text())
    code, _, err = run(["releases", "staging", "--outputs", outputs], capfd)
    assert code == 255
    assert "ssh to stack 'staging'" in err
    assert "Permission denied" in err


def test_without_the_deploy_key_the_operators_ssh_agent_is_used(
    agent_host: RemoteHost, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A real ssh-agent holding the authorized key; the outputs carry `[secret]` (saved without
    # --show-secrets), so the key can only come from the agent.
    socket = tmp_path / "agent.sock"
    agent = subprocess.Popen(
        [require_tool("ssh-agent"), "-D", "-a", str(socket)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if socket.exists():
                break
            subprocess.run(["sleep", "0.05"], check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(socket))
        subprocess.run(
            [require_tool("ssh-add"), "-q", str(agent_host.server.client_private_key_path)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        outputs = agent_host.write_outputs(deploy_private_key="[secret]")
        code, out, err = run(["releases", "staging", "--outputs", outputs], capfd)
        assert code == 0, err
        assert out == "no releases yet\n"
        assert "no deploy key in the outputs of stack 'staging'" in err
    finally:
        agent.terminate()
        agent.wait(5)
