"""Issue 4: the program's deploy command, exactly as registered, run over a real SSH connection.

The real program runs under the mock engine (``run_stack``); the ``deploy`` remote command's
``create`` text and ``stdin`` are taken exactly as registered and sent over the real OpenSSH
server on loopback (tests/support/sshd.py: the droplet's hardening drop-in, pinned host key) to the
REAL host agent, unpacked from the registered bootstrap payload's ``agent/`` entries.

The substitutions: the ``/opt/bankflow/bin`` prefix of the command text becomes the
temporary dir the agent was unpacked into, and ``/opt/bankflow/state`` (where the deploy keeps the
agent's output) the test host's. Everything else the host provides comes from the
SSH session's environment (sshd ``SetEnv``), as it would on a droplet: BANKFLOW_HOME (a tmp
dir), PATH with a ``docker`` stand-in first (Docker has no engine here; see
docker_standin.py), BANKFLOW_VERIFY_URL (the agent's nginx address, here a recording HTTP
server). The connection goes to the loopback sshd, not the registered droplet address.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.contract.layout import BIN_DIR, STATE_DIR
from bankflow_infra.contract.release import POSTGRES_UID
from bankflow_infra.ops.cli import main
from bankflow_infra.ops.mocks import unwrap
from bankflow_infra.ops.plan import PlanResult
from tests.ops.cli.remote.rig import RemoteHost, agent_entries_of_bootstrap, install, registered_commands


def registered(result: PlanResult) -> tuple[str, bytes, str]:
    """(deploy command text with the bin dir prefix as registered, its stdin, the release id)."""
    commands = registered_commands(result)
    deploy = unwrap(commands["deploy"].inputs)
    assert result.bundle is not None
    return deploy["create"], deploy["stdin"].encode(), result.bundle.digest[:12]


def on_test_host(create: str, host: RemoteHost) -> str:
    """The registered text with the host's two folders moved under the test host's root, and
    systemd (which the test host has not) a recording stand-in in its bin dir."""
    assert create.count(f" {BIN_DIR}/") == 1, create
    systemctl = host.bin_dir / "systemctl"
    systemctl.write_text(f'#!/bin/sh\necho "$@" >>"{host.home}/systemctl.calls"\n')
    systemctl.chmod(0o755)
    return (
        create.replace(BIN_DIR, str(host.bin_dir), 1)
        .replace(STATE_DIR, str(host.home / "state"))
        .replace("systemctl start --no-block", f"{systemctl} start --no-block")
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def releases(host: RemoteHost, capfd: pytest.CaptureFixture[str], outputs: str) -> list[dict[str, Any]]:
    capfd.readouterr()
    assert main(["releases", "staging", "--outputs", outputs, "--json"]) == 0
    rows: list[dict[str, Any]] = json.loads(capfd.readouterr().out)
    return rows


def test_registered_deploy_runs_over_real_ssh(
    remote_host: RemoteHost,
    staging_plans: tuple[PlanResult, PlanResult],
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    host = remote_host
    first, second = staging_plans
    bootstrap = unwrap(registered_commands(first)["bootstrap"].inputs)
    install(host.bin_dir, agent_entries_of_bootstrap(bootstrap["stdin"]))
    monkeypatch.setenv("BANKFLOW_SSH_AGENT_PATH", str(host.agent))
    outputs = host.write_outputs()
    create_1, stdin_1, release_1 = registered(first)
    create_2, stdin_2, release_2 = registered(second)
    assert create_1 == create_2
    # The agent's output goes to a root-only log, never into pulumi-command's error message.
    assert create_1.startswith("umask 077; ")
    assert (f"{BIN_DIR}/bankflow-agent --actor pulumi:staging receive --stdin --deploy "
            f">{STATE_DIR}/pulumi-deploy.log 2>&1") in create_1
    (host.home / "state").mkdir(exist_ok=True)  # the bootstrap creates it before any deploy
    deploy_log = host.home / "state" / "pulumi-deploy.log"
    assert release_1 != release_2

    # first deploy, then the backup unit started in the background (stanza + first full backup)
    done = host.ssh(on_test_host(create_1, host), stdin_1)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert (host.home / "systemctl.calls").read_text() == "start --no-block bankflow-backup.service\n"
    release_dir = host.home / "releases" / release_1
    assert (release_dir / "release.json").is_file()
    for secrets in (release_dir / "secrets", host.home / "secrets"):
        assert mode(secrets) == 0o700, secrets
        files = sorted(secrets.iterdir())
        assert [f.name for f in files] == [
            "api.database_url",  # <service>.<name>: one service's own copy, a compose secret (issue 12)
            "api.jwt_secret",
            "api.redis_url",
            "app.env",
            "origin.key",
            "pgbackrest.conf",  # the repository's key and cipher pass (issue 11)
            "postgres.env",
            "postgres.postgres_password",
            "rclone.conf",
            "redis.env",
            "redis.redis_password",
            "saas.database_url",
            "saas.jwt_secret",
            "saas.redis_url",
            "uploads-restic.env",
        ]
        assert all(mode(f) == 0o600 for f in files), [(f.name, oct(mode(f))) for f in files]
    if os.geteuid() == 0:  # archive_command reads it as the postgres image's user, nobody else
        assert (host.home / "secrets" / "pgbackrest.conf").stat().st_uid == POSTGRES_UID
    assert host.current() == release_1
    hostnames = {
        h
        for s in json.loads((release_dir / "release.json").read_text())["app_services"]
        for h in s["hostnames"]
    }
    assert {h for h, path in host.verify.requests if path == "/health"} == hostnames
    rows = releases(host, capfd, outputs)
    assert [(r["release"], r["current"]) for r in rows] == [(release_1, True)]
    assert host.audit()[-1]["actor"] == "pulumi:staging"
    journal = host.journal()
    assert next(a for a in journal if "run" in a)[-4:] == ["--rm", "--no-deps", "api", "/app/migrate"]

    # a corrupted payload for the next release: refused before anything runs, nothing switched
    calls = len(host.journal())
    payload = json.loads(stdin_2)
    payload["files"][0]["text"] += "\n# altered in transit"
    for corrupted in (stdin_2[: len(stdin_2) // 2], json.dumps(payload).encode()):
        done = host.ssh(on_test_host(create_2, host), corrupted)
        assert done.returncode == 2, done.stderr.decode()
        assert b"deploy failed: bankflow-agent exited 2" in done.stderr
        assert "invalid bundle manifest stdin payload" in deploy_log.read_text()
        assert mode(deploy_log) == 0o600
        assert host.current() == release_1
        assert not (host.home / "releases" / release_2).exists()
        assert len(host.journal()) == calls  # docker was never called
    assert "does not match the files" in deploy_log.read_text()  # the altered one: the digest caught it

    # second deploy (new image tag): switches
    done = host.ssh(on_test_host(create_2, host), stdin_2)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
    assert host.current() == release_2
    rows = releases(host, capfd, outputs)
    assert [(r["release"], r["current"], r["previous"]) for r in rows] == [
        (release_2, True, False),
        (release_1, False, True),
    ]
    app_down = ["down"]
    assert any(a[3] == f"bankflow-app-{release_1}" and a[-1:] == app_down for a in host.journal())

    # the same deploy again: a no-op, exit 0
    done = host.ssh(on_test_host(create_2, host), stdin_2)
    assert done.returncode == 0
    assert done.stdout == b""  # nothing the agent says reaches pulumi's output
    assert "already current; nothing to do" in deploy_log.read_text()

    # rollback through the ops CLI: back to the first release
    capfd.readouterr()
    assert main(["rollback", "staging", "--outputs", outputs, "--yes"]) == 0
    out = capfd.readouterr().out
    assert f"rollback {release_1}: done" in out
    assert host.current() == release_1
    assert host.audit()[-1]["action"] == "rollback"
    assert host.audit()[-1]["actor"].startswith("bankflow-infra:")
