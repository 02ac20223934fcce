"""Issue 10 item 10: pulumi-command puts a failed command's text and its combined stdout/stderr
into the error message, whatever `logging` says (provider/pkg/provider/remote/commandOutputs.go:
``fmt.Errorf("%w: running %q:\\n%s", err, cmd, stdouterrbuf.String())``). So whatever the agent
prints must never reach the runner: the deploy command itself is run here, by a real shell, with
a stand-in agent that prints a secret and fails."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from bankflow_infra.components.remote_deploy import RemoteDeployArgs, deploy_command

SECRET = "pg-password-that-must-never-leave-the-droplet-0123456789"  # noqa: S105 - a stand-in the test hunts for


def stand_in_agent(tmp_path: Path, exit_code: int) -> Path:
    agent = tmp_path / "bankflow-agent"
    agent.write_text(
        "#!/bin/sh\n"
        "cat >/dev/null\n"  # reads the bundle from stdin like the real one
        f'echo "switching: DATABASE_URL=postgres://app:{SECRET}@postgres/app"\n'
        f'echo "health gate failed, env: POSTGRES_PASSWORD={SECRET}" >&2\n'
        f"exit {exit_code}\n"
    )
    agent.chmod(agent.stat().st_mode | stat.S_IXUSR)
    return agent


def run_deploy(tmp_path: Path, exit_code: int) -> tuple[subprocess.CompletedProcess[str], Path]:
    args = RemoteDeployArgs(stack="staging", swap_gb=2, data_volume=False, admin_ssh_keys=())
    log = tmp_path / "state" / "pulumi-deploy.log"
    log.parent.mkdir()
    text = deploy_command(args, agent=str(stand_in_agent(tmp_path, exit_code)), log=str(log))
    done = subprocess.run(
        ["sh", "-c", text], input="{}", capture_output=True, text=True, timeout=30, env={"PATH": os.defpath}
    )
    return done, log


@pytest.mark.parametrize("exit_code", [1, 3, 4])
def test_a_failing_deploy_prints_no_secret_and_keeps_the_agents_exit_code(tmp_path, exit_code):
    done, log = run_deploy(tmp_path, exit_code)
    assert done.returncode == exit_code
    assert SECRET not in done.stdout + done.stderr  # what pulumi-command would put in its error
    assert f"bankflow-agent exited {exit_code}" in done.stderr
    assert "bankflow-infra ssh staging -- cat" in done.stderr
    # The output is kept on the droplet, readable by root only.
    assert SECRET in log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_a_successful_deploy_prints_nothing(tmp_path):
    done, _ = run_deploy(tmp_path, 0)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_command_text_itself_holds_no_secret_and_names_the_stack():
    args = RemoteDeployArgs(stack="production", swap_gb=2, data_volume=True, admin_ssh_keys=())
    text = deploy_command(args)
    assert "--actor pulumi:production receive --stdin --deploy" in text
    assert ">/opt/bankflow/state/pulumi-deploy.log 2>&1" in text
