"""The roll's production transport (ops/roll_ssh.py) over a real SSH connection: each droplet
reached with the roll request's deploy key and ITS pinned host key, the agent's answer returned
as it is; a droplet that does not answer, or answers with another host key, is unreachable (the
roll stops there) and nothing runs on it. The remote side is tests/ops/cli/remote/rig.py's loopback
droplet with the real agent (the docker stand-in for Docker)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bankflow_infra.contract.roll import RollTarget
from bankflow_infra.ops.roll import TargetUnreachable
from bankflow_infra.ops.roll_ssh import SshRollTransport
from tests.ops.cli.remote.rig import RemoteHost, generate_other_host_key
from tests.support.ports import free_port


def target(host: RemoteHost, **change: object) -> RollTarget:
    fields = {
        "name": "bankflow-staging-server-2",
        "host": host.server.host,
        "port": host.server.port,
        "user": host.server.user,
        "host_public_key": host.server.host_public_key,
        **change,
    }
    return RollTarget(**fields)  # type: ignore[arg-type]


def transport(host: RemoteHost) -> SshRollTransport:
    return SshRollTransport("staging", host.server.client_private_key_path.read_text())


def test_the_agent_answers_over_ssh_with_the_pinned_key(agent_host: RemoteHost) -> None:
    answer = transport(agent_host).agent(target(agent_host), ["status", "--json"])
    assert answer.code == 0
    assert json.loads(answer.out) == {"current": None, "open_attempts": []}
    # a command the agent refuses comes back with its exit code, not as unreachable
    refused = transport(agent_host).agent(target(agent_host), ["switch-staged", "0123456789ab"])
    assert refused.code == 2
    assert "was not received on this host" in refused.err


def test_another_host_key_is_unreachable_and_nothing_runs(agent_host: RemoteHost, tmp_path: Path) -> None:
    logins = agent_host.logins()
    impostor = target(agent_host, host_public_key=generate_other_host_key(tmp_path))
    with pytest.raises(TargetUnreachable, match="host key differs"):
        transport(agent_host).agent(impostor, ["drain"])
    assert agent_host.logins() == logins
    assert agent_host.audit() == []


def test_a_droplet_that_does_not_answer_is_unreachable(agent_host: RemoteHost) -> None:
    with pytest.raises(TargetUnreachable, match="refused"):
        transport(agent_host).agent(target(agent_host, port=free_port()), ["status", "--json"])
