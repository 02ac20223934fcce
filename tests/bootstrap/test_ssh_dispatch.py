"""files/ssh/bankflow-ssh-dispatch: the deploy key's forced command (issue 12, item 7).

First as a function: every command the program and the ops CLI really send (built by their own
code, not copied here) is let through, and anything else -- other commands, those commands with
something appended or changed, shells, SFTP -- is refused. Then behind the real sshd with the
drop-in's ``PermitRootLogin forced-commands-only``: the key line is ``restrict,command=...``, the
dispatcher runs a stand-in agent, refuses and logs the rest, and a root key without a forced
command cannot log in at all.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bankflow_infra.components.database_owner import database_owner_command
from bankflow_infra.components.remote_deploy import (
    DEPLOY_OUTPUT_LOG,
    WAIT_CLOUD_INIT_COMMAND,
    RemoteDeployArgs,
    bootstrap_command,
    deploy_command,
    stage_command,
    volume_script_command,
)
from bankflow_infra.contract.layout import AGENT_BIN
from bankflow_infra.render.host_files import FILES_DIR
from bankflow_infra.render.remote_payloads import GROW_DATA_FILESYSTEM_SCRIPT, RELEASE_DATA_VOLUME_SCRIPT
from tests.support.sshd import SshServer, generate_ed25519_key
from tests.support.tools import unavailable

DISPATCH = Path(__file__).resolve().parents[2] / "files" / "ssh" / "bankflow-ssh-dispatch"


def _load() -> ModuleType:
    loader = importlib.machinery.SourceFileLoader("bankflow_ssh_dispatch", str(DISPATCH))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


dispatch = _load()


@pytest.fixture
def config(tmp_path: Path) -> dict[str, str]:
    digests = tmp_path / "scripts.sha256"
    # What host-setup.sh records from the payload's volume/ scripts.
    digests.write_text(
        "".join(
            f"{hashlib.sha256((FILES_DIR / script).read_bytes()).hexdigest()}  {Path(script).name}\n"
            for script in (GROW_DATA_FILESYSTEM_SCRIPT, RELEASE_DATA_VOLUME_SCRIPT)
        )
    )
    return {**dispatch.DEFAULTS, "scripts_digests": str(digests), "log": str(tmp_path / "dispatch.log")}


def _program_commands() -> list[str]:
    """Every remote command text the program sends, for a spread of stacks and settings."""
    commands = [WAIT_CLOUD_INIT_COMMAND]
    for stack, swap, volume, backup in [("staging", 2, False, True), ("production", 0, True, True),
                                        ("rebuild-2026.11_b", 16, True, False)]:  # fmt: skip
        args = RemoteDeployArgs(stack, swap, volume, (), backup_after_deploy=backup)
        commands += [bootstrap_command(args), deploy_command(args)]
    commands += [
        volume_script_command(GROW_DATA_FILESYSTEM_SCRIPT),
        volume_script_command(RELEASE_DATA_VOLUME_SCRIPT),
    ]
    # A load-balanced stack (issue 13): the share's mount in the bootstrap, the stage step of each
    # droplet, and the one-time database ownership step on droplet 1.
    scaled = RemoteDeployArgs("scaled", 2, False, (), backup_after_deploy=False)
    commands += [
        bootstrap_command(scaled, "10.130.0.50:/123456/share-7f3a"),
        stage_command(scaled),
        database_owner_command(),
    ]
    return commands


def _ops_commands() -> list[str]:
    """What bankflow_infra/ops/ssh.py sends: the agent's argv, shlex-joined (the last ssh word)."""
    import shlex

    return [
        shlex.join([AGENT_BIN, "--actor", "bankflow-infra:ana", *args])
        for args in (["status", "--json"], ["releases", "--json"], ["rollback", "--to", "r-1; id"],
                     ["logs", "api", "--follow"], ["backups", "--json", "--bucket", "x y"])
    ] + [shlex.join(["cat", DEPLOY_OUTPUT_LOG])]  # fmt: skip


def test_paths_are_the_contracts() -> None:
    assert dispatch.DEFAULTS["agent"] == AGENT_BIN
    assert dispatch.DEFAULTS["deploy_log"] == DEPLOY_OUTPUT_LOG


@pytest.mark.parametrize("command", _program_commands() + _ops_commands())
def test_what_the_program_and_the_cli_send_is_allowed(config: dict[str, str], command: str) -> None:
    assert dispatch.classify(command, config) is not None, command


def test_agent_commands_run_as_argv_without_a_shell(config: dict[str, str]) -> None:
    found = dispatch.classify(f"{AGENT_BIN} --actor x rollback --to 'r-1; id'", config)
    assert found is not None
    assert found[1] == [AGENT_BIN, "--actor", "x", "rollback", "--to", "r-1; id"]


REFUSED = [
    "id",
    "bash",
    "sh -c id",
    "touch /tmp/owned",
    "cat /etc/shadow",
    "internal-sftp",
    "/usr/lib/openssh/sftp-server",
    f"{AGENT_BIN}",  # no --actor: not what the CLI sends
    f"/tmp/{Path(AGENT_BIN).name} --actor x status",  # another binary of the same name
    f"cat {DEPLOY_OUTPUT_LOG} /etc/shadow",
    "bash -c 'id' grow-data-filesystem.sh /mnt/bankflow-data",  # a volume script that is not ours
    # the ownership step with another image, or another command in the pinned one
    database_owner_command("alpine:3").replace("alpine:3", "attacker/psql:latest"),
    database_owner_command().replace("psql -X", "sh -c id; psql -X"),
]


@pytest.mark.parametrize("command", REFUSED)
def test_anything_else_is_refused(config: dict[str, str], command: str) -> None:
    assert dispatch.classify(command, config) is None


@pytest.mark.parametrize("index", range(len(_program_commands())))
def test_program_commands_with_anything_changed_are_refused(config: dict[str, str], index: int) -> None:
    command = _program_commands()[index]
    variants = [command + "; id", "id; " + command, command.replace("$work", "$HOME", 1),
                command.replace(" ", " $(id) ", 1), command + "\nid", command[:-1]]  # fmt: skip
    for variant in (v for v in variants if v != command):
        if command.startswith("bash -c") and variant == command[:-1]:
            continue  # a volume script's mount point is a parameter: one character less is another path
        assert dispatch.classify(variant, config) is None, variant


def test_bootstrap_values_cannot_carry_shell_syntax(config: dict[str, str]) -> None:
    args = RemoteDeployArgs("staging", 2, False, ())
    command = bootstrap_command(args)
    assert dispatch.classify(command.replace("BANKFLOW_SWAP_GB=2", "BANKFLOW_SWAP_GB=$(id)"), config) is None
    assert dispatch.classify(command.replace("BANKFLOW_SWAP_GB=2", "BANKFLOW_SWAP_GB=2;id"), config) is None


def test_volume_scripts_need_their_recorded_digest(config: dict[str, str], tmp_path: Path) -> None:
    command = volume_script_command(GROW_DATA_FILESYSTEM_SCRIPT)
    Path(config["scripts_digests"]).write_text("")
    assert dispatch.classify(command, config) is None


# ------------------------------------------------------------------------------ behind real sshd


def _stand_in_agent(tmp_path: Path) -> Path:
    agent = tmp_path / "bankflow-agent"
    record = tmp_path / "agent-calls.jsonl"
    agent.write_text(
        "#!/usr/bin/python3\nimport json, sys\n"
        "call = {'argv': sys.argv[1:], 'stdin': sys.stdin.read()}\n"
        f"open({str(record)!r}, 'a').write(json.dumps(call) + '\\n')\n"
        "print('agent ran')\n"
    )
    agent.chmod(0o755)
    return agent


def _calls(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "agent-calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def restricted(tmp_path: Path, config: dict[str, str]) -> Any:
    agent = _stand_in_agent(tmp_path)
    live = {**config, "agent": str(agent), "deploy_log": str(tmp_path / "deploy.log"), "systemctl": "true"}
    config_path = tmp_path / "dispatch.json"
    config_path.write_text(json.dumps(live))
    options = f'restrict,command="{DISPATCH} --config {config_path}"'
    with SshServer(tmp_path / "sshd", authorized_keys_options=options) as server:
        yield server, live


def _ssh(
    server: SshServer, command: str, stdin: bytes | None = None, **kw: Any
) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        server.ssh_argv(command, **kw), input=stdin, capture_output=True, timeout=30, check=False
    )


def _log_records(live: dict[str, str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(live["log"]).read_text().splitlines()]


def test_live_agent_command_reaches_the_agent_with_its_argv_and_stdin(
    restricted: Any, tmp_path: Path
) -> None:
    server, live = restricted
    import shlex

    result = _ssh(
        server, shlex.join([live["agent"], "--actor", "bankflow-infra:ana", "rollback", "a b; id"]), b"in"
    )
    assert result.returncode == 0, result.stderr.decode() + server.log_text()
    assert result.stdout == b"agent ran\n"
    assert _calls(tmp_path) == [
        {"argv": ["--actor", "bankflow-infra:ana", "rollback", "a b; id"], "stdin": "in"}
    ]
    assert _log_records(live)[-1]["outcome"] == "allowed"


def test_live_deploy_command_runs(restricted: Any, tmp_path: Path) -> None:
    server, live = restricted
    args = RemoteDeployArgs("staging", 2, False, ())
    command = deploy_command(args, agent=live["agent"], log=live["deploy_log"], systemctl=live["systemctl"])
    result = _ssh(server, command, b'{"bundle": 1}')
    assert result.returncode == 0, result.stderr.decode()
    assert _calls(tmp_path)[-1]["argv"] == ["--actor", "pulumi:staging", "receive", "--stdin", "--deploy"]


def test_live_other_commands_are_refused_and_logged_without_their_text(
    restricted: Any, tmp_path: Path
) -> None:
    server, live = restricted
    marker = tmp_path / "must-not-exist"
    result = _ssh(server, f"touch {marker} # secret-looking-text")
    assert result.returncode == dispatch.REFUSED
    assert b"refused" in result.stderr
    assert not marker.exists()
    record = _log_records(live)[-1]
    assert record["outcome"] == "refused"
    assert record["first_word"] == "touch"
    assert "secret-looking-text" not in Path(live["log"]).read_text()


def test_live_no_login_shell(restricted: Any) -> None:
    server, live = restricted
    result = subprocess.run(
        [*server.ssh_argv("")[:-1]], input=b"id\n", capture_output=True, timeout=30, check=False
    )
    assert result.returncode == dispatch.REFUSED
    assert _log_records(live)[-1]["first_word"] == "(login shell)"


def test_live_root_key_without_forced_command_is_refused(restricted: Any, tmp_path: Path) -> None:
    server, _live = restricted
    plain = tmp_path / "plain"
    public = generate_ed25519_key(plain, "plain-root-key")
    with server.authorized_keys_path.open("a") as handle:
        handle.write(public + "\n")
    marker = tmp_path / "must-not-exist"
    result = _ssh(server, f"touch {marker}", identity=plain)
    assert result.returncode == 255
    assert not marker.exists()
    assert "ROOT LOGIN REFUSED" in server.log_text()


def test_live_sftp_and_forwarding_are_refused(restricted: Any, tmp_path: Path) -> None:
    server, live = restricted
    sftp = shutil.which("sftp")
    if sftp is None:
        unavailable("no sftp client")
    argv = server.ssh_argv("true")
    options = argv[argv.index("-F") : argv.index("-p")]  # the same pinned, key-only options
    batch = tmp_path / "batch"
    batch.write_text(f"put {batch} {tmp_path / 'uploaded'}\n")
    result = subprocess.run(
        [sftp, *options, "-P", str(server.port), "-b", str(batch), f"{server.user}@{server.host}"],
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert not (tmp_path / "uploaded").exists()
    # A remote forward is refused too (restrict, and AllowTcpForwarding no); the agent never runs.
    forward = subprocess.run(
        server.ssh_argv(f"{live['agent']} --actor x status",
                        extra_options=["ExitOnForwardFailure=yes", "RemoteForward=127.0.0.1:0 127.0.0.1:22"]),
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert forward.returncode == 255
    assert b"forwarding failed" in forward.stderr
    assert _calls(tmp_path) == []
