"""ops/ssh.py without a server: exact ssh argv per option, the known_hosts entry, the key file."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import pytest

from bankflow_infra.contract.layout import AGENT_BIN
from bankflow_infra.contract.outputs import SshEndpoint, StackOutputs, parse_outputs
from bankflow_infra.ops.cli import session as cli_session
from bankflow_infra.ops.ssh import (
    RemoteError,
    agent_argv,
    known_hosts_line,
    ssh_argv,
    ssh_session,
)
from tests.support.outputs import outputs_document

KNOWN = Path("/tmp/kh")
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAItest"
PINNED = [
    "-o", "StrictHostKeyChecking=yes",
    "-o", f"UserKnownHostsFile={KNOWN}",
    "-o", "GlobalKnownHostsFile=/dev/null",
    "-o", "HostKeyAlgorithms=ssh-ed25519",
    "-o", "UpdateHostKeys=no",
    "-o", "ConnectTimeout=15",
    "-o", "ServerAliveInterval=15",
    "-o", "ServerAliveCountMax=4",
]  # fmt: skip
FAKE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----"


def outputs(**ssh: object) -> StackOutputs:
    parsed = parse_outputs("staging", outputs_document(origin_certificate=None), show_secrets=True)
    endpoint = dataclasses.replace(parsed.ssh or SshEndpoint("", 0, "", ""), **ssh)  # type: ignore[arg-type]
    return dataclasses.replace(parsed, ssh=endpoint)


def test_agent_argv_default() -> None:
    assert agent_argv(outputs(), ["releases", "--json"], known_hosts=KNOWN) == [
        "ssh", *PINNED, "-o", "BatchMode=yes", "-p", "22", "-T", "--", "root@203.0.113.10",
        f"{AGENT_BIN} releases --json",
    ]  # fmt: skip


def test_agent_argv_identity_uses_only_that_key() -> None:
    argv = agent_argv(outputs(), ["status"], known_hosts=KNOWN, identity=Path("/tmp/k/deploy_key"))
    assert argv == [
        "ssh", *PINNED, "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
        "-i", "/tmp/k/deploy_key", "-p", "22", "-T", "--", "root@203.0.113.10", f"{AGENT_BIN} status",
    ]  # fmt: skip


def test_agent_argv_tty_allows_prompts_and_allocates_a_terminal() -> None:
    assert agent_argv(outputs(), ["status"], known_hosts=KNOWN, tty=True) == [
        "ssh", *PINNED, "-p", "22", "-t", "--", "root@203.0.113.10", f"{AGENT_BIN} status",
    ]  # fmt: skip


def test_agent_argv_quotes_every_argument() -> None:
    argv = agent_argv(outputs(), ["rollback", "x; rm -rf / #", "$(id)", "a'b"], known_hosts=KNOWN)
    assert argv[-1] == f"{AGENT_BIN} rollback 'x; rm -rf / #' '$(id)' 'a'\"'\"'b'"


def test_agent_argv_ssh_binary_and_agent_path_are_injectable() -> None:
    argv = agent_argv(outputs(), ["status"], known_hosts=KNOWN, ssh="/usr/bin/ssh", agent_path="/t/agent")
    assert argv[0] == "/usr/bin/ssh"
    assert argv[-1] == "/t/agent status"


def test_agent_argv_extra_options_come_after_the_pinned_ones() -> None:
    # ssh keeps the first value of an option: an extra option can add, never weaken the pinning.
    argv = agent_argv(outputs(), ["status"], known_hosts=KNOWN, extra_options=["StrictHostKeyChecking=no"])
    assert argv[: len(PINNED) + 1] == ["ssh", *PINNED]
    assert argv[len(PINNED) + 1 : len(PINNED) + 5] == [
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
    ]


def test_agent_argv_port_user_and_ipv6_host() -> None:
    argv = agent_argv(outputs(host="2001:db8::10", port=2222, user="ops"), ["status"], known_hosts=KNOWN)
    assert argv[-5:] == ["2222", "-T", "--", "ops@2001:db8::10", f"{AGENT_BIN} status"]


def test_ssh_argv_without_a_command_is_a_login_shell() -> None:
    argv = ssh_argv(outputs(), None, known_hosts=KNOWN, tty=True)
    assert argv[-3:] == ["-t", "--", "root@203.0.113.10"]


def test_an_operator_login_uses_their_account_and_own_keys_never_the_deploy_key() -> None:
    # root admits the deploy key only with its forced command (the agent): a shell is an
    # operator's own account, authenticated by the operator's own keys (issue 12, item 7)
    deploy_key = Path("/tmp/deploy_key")
    argv = ssh_argv(outputs(), None, known_hosts=KNOWN, tty=True, identity=None, login="ana")
    assert argv[-3:] == ["-t", "--", "ana@203.0.113.10"]
    assert "-i" not in argv
    assert "IdentitiesOnly=yes" not in argv
    assert argv[1 : 1 + len(PINNED)] == PINNED  # the host key stays pinned
    as_root = ssh_argv(outputs(), None, known_hosts=KNOWN, tty=True, identity=deploy_key)
    assert as_root[-1] == "root@203.0.113.10"


def test_known_hosts_line_names_host_and_port_as_ssh_looks_them_up() -> None:
    assert known_hosts_line(outputs(host_public_key=HOST_KEY + " comment")) == f"203.0.113.10 {HOST_KEY}"
    assert known_hosts_line(outputs(port=2222)) == f"[203.0.113.10]:2222 {HOST_KEY}"


def test_a_host_key_of_another_type_is_refused() -> None:
    with pytest.raises(RemoteError, match="is not an ssh-ed25519 public key"):
        known_hosts_line(outputs(host_public_key="ssh-rsa AAAAB3NzaC1yc2E"))


def test_session_writes_the_key_0600_in_a_private_dir_and_removes_it() -> None:
    stack = dataclasses.replace(outputs(), deploy_private_key=FAKE_KEY)
    with ssh_session(stack, ssh="/bin/true") as session:
        assert session.identity is not None
        key = session.identity
        assert key.read_text() == FAKE_KEY + "\n"  # OpenSSH needs the final newline
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
        assert session.known_hosts.read_text() == f"203.0.113.10 {HOST_KEY}\n"
        assert session.agent_argv(["status"])[-1].startswith(f"{AGENT_BIN} --actor bankflow-infra:")
    assert not key.exists()
    assert not key.parent.exists()


def test_session_removes_the_key_on_error_too() -> None:
    stack = dataclasses.replace(outputs(), deploy_private_key=FAKE_KEY)
    seen: list[Path | None] = []

    def interrupted() -> None:
        with ssh_session(stack, ssh="/bin/true") as session:
            seen.append(session.identity)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interrupted()
    key = seen[0]
    assert key is not None
    assert not key.exists()


@pytest.mark.parametrize("key", [None, "[secret]"])
def test_without_a_deploy_key_the_session_has_no_identity(key: str | None) -> None:
    stack = dataclasses.replace(outputs(), deploy_private_key=key)
    with ssh_session(stack, ssh="/bin/true") as session:
        assert session.identity is None
        assert "-i" not in session.agent_argv(["status"])


def test_agent_path_env_is_a_test_hook(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BANKFLOW_SSH_AGENT_PATH", "/tmp/agent")
    # The engine tells its caller; the CLI's session prints it (never silently in effect).
    with ssh_session(outputs(), ssh="/bin/true", note=cli_session.note) as session:
        assert session.agent_argv(["status"])[-1].startswith("/tmp/agent ")
    assert "bankflow-infra: note: remote agent path is /tmp/agent" in capsys.readouterr().err


def test_no_server_is_refused_before_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    stack = dataclasses.replace(outputs(), ssh=None, origin_stack="production-r1")
    monkeypatch.setattr(os, "open", None)  # nothing may be written either
    with pytest.raises(RemoteError, match="served by stack 'production-r1'"), ssh_session(stack):
        pass
