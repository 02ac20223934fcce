"""Fixtures of the over-SSH tests: the program's registered payloads, a loopback "droplet"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bankflow_infra.ops.plan import PlanResult
from bankflow_infra.render.payloads import agent_files
from tests.ops.cli.remote.rig import RemoteHost, VerifyServer, install
from tests.program.stacks import Config, run_stack
from tests.support.tools import require_tool

NEW_TAG = "2026.12.24-7"


def new_tag(config: Config) -> None:
    config["bankflow:release"]["tag"] = NEW_TAG


@pytest.fixture(scope="session")
def staging_plans() -> tuple[PlanResult, PlanResult]:
    """The real program under the mock engine: staging as committed, then with a new image tag."""
    return run_stack("staging"), run_stack("staging", new_tag)


@pytest.fixture
def remote_host(tmp_path: Path) -> Iterator[RemoteHost]:
    """A started loopback droplet, agent not installed yet (the deploy test installs it itself)."""
    require_tool("sshd")
    if not Path("/usr/bin/python3").exists():  # the launcher runs the system python3, as on Ubuntu
        pytest.skip("no /usr/bin/python3 for the agent launcher")
    with VerifyServer() as verify:
        host = RemoteHost(tmp_path / "droplet", verify)
        try:
            host.server.start()
            yield host
        finally:
            host.server.close()


@pytest.fixture
def agent_host(remote_host: RemoteHost, monkeypatch: pytest.MonkeyPatch) -> RemoteHost:
    """The loopback droplet with the shipped agent installed, and the CLI pointed at it."""
    install(remote_host.bin_dir, agent_files())
    # Test-only hook of ops/ssh.py: the agent lives in the tmp bin dir, not /opt/bankflow/bin.
    monkeypatch.setenv("BANKFLOW_SSH_AGENT_PATH", str(remote_host.agent))
    return remote_host
