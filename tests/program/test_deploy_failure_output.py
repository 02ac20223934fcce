"""Issue 10 item 10: pulumi-command puts a failed command's text and its combined stdout/stderr
into the error message, whatever `logging` says (provider/pkg/provider/remote/commandOutputs.go:
``fmt.Errorf("%w: running %q:\\n%s", err, cmd, stdouterrbuf.String())``). So whatever the agent
prints must never reach the runner: the deploy command itself is run here, by a real shell, with
a stand-in agent that prints a secret and fails."""

from __future__ import annotations

import os
import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from bankflow_infra.components.remote_deploy import RemoteDeployArgs, deploy_command
from bankflow_infra.components.stack_args import remote_deploy_args
from tests.render.helpers import load_settings

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


def stand_in_systemctl(tmp_path: Path, exit_code: int) -> Path:
    """Records its arguments in systemctl.calls and exits with ``exit_code``."""
    tool = tmp_path / "systemctl"
    tool.write_text(f'#!/bin/sh\necho "$@" >>"{tmp_path}/systemctl.calls"\nexit {exit_code}\n')
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR)
    return tool


def run_deploy(
    tmp_path: Path, exit_code: int, systemctl_exit: int = 0
) -> tuple[subprocess.CompletedProcess[str], Path]:
    args = RemoteDeployArgs(stack="staging", swap_gb=2, data_volume=False, admin_ssh_keys=())
    log = tmp_path / "state" / "pulumi-deploy.log"
    log.parent.mkdir()
    text = deploy_command(
        args,
        agent=str(stand_in_agent(tmp_path, exit_code)),
        log=str(log),
        systemctl=str(stand_in_systemctl(tmp_path, systemctl_exit)),
    )
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


def test_a_successful_deploy_prints_nothing_and_starts_the_backup_in_the_background(tmp_path):
    done, _ = run_deploy(tmp_path, 0)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    # The first deploy's pgBackRest stanza and full backup now, not at the nightly timer.
    assert (tmp_path / "systemctl.calls").read_text() == "start --no-block bankflow-backup.service\n"


def test_a_failed_deploy_starts_no_backup(tmp_path):
    done, _ = run_deploy(tmp_path, 1)
    assert done.returncode == 1
    assert not (tmp_path / "systemctl.calls").exists()


def test_a_backup_that_cannot_start_fails_the_up_and_says_the_release_is_deployed(tmp_path):
    done, _ = run_deploy(tmp_path, 0, systemctl_exit=5)
    assert done.returncode == 5
    assert "deployed, but the backup after the deploy could not be started" in done.stderr
    assert SECRET not in done.stdout + done.stderr


def test_the_command_text_itself_holds_no_secret_and_names_the_stack():
    args = RemoteDeployArgs(stack="production", swap_gb=2, data_volume=True, admin_ssh_keys=())
    text = deploy_command(args)
    assert "--actor pulumi:production receive --stdin --deploy" in text
    assert ">/opt/bankflow/state/pulumi-deploy.log 2>&1" in text


def test_a_rebuild_stack_starts_no_backup_after_its_deploy(tmp_path):
    """A stack writing into another stack's bucket (a rebuild) must not back up its fresh cluster
    into the shared stanza, nor hold the backup lock its `restore --source-stack` step needs."""
    args = RemoteDeployArgs(
        stack="production-r1", swap_gb=2, data_volume=True, admin_ssh_keys=(), backup_after_deploy=False
    )
    log = tmp_path / "state" / "pulumi-deploy.log"
    log.parent.mkdir()
    text = deploy_command(
        args,
        agent=str(stand_in_agent(tmp_path, 0)),
        log=str(log),
        systemctl=str(stand_in_systemctl(tmp_path, 0)),
    )
    done = subprocess.run(["sh", "-c", text], input="{}", capture_output=True, text=True, timeout=30,
                          env={"PATH": os.defpath})  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert not (tmp_path / "systemctl.calls").exists()


def test_the_program_starts_the_backup_only_where_the_stack_owns_its_bucket():
    production = load_settings("production")
    assert remote_deploy_args(production).backup_after_deploy
    rebuild = replace(production, backups=replace(production.backups, bucket_stack="production-r0"))
    assert not remote_deploy_args(rebuild).backup_after_deploy
