"""Day-2 bad input refused locally, through the CLI as a process: one error line, exit 2, and
nothing reached (no SSH login on the loopback droplet, no probe of the local HTTPS server)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bankflow_infra.ops.cli.health import HEALTH_RESOLVE_ENV
from tests.ops.cli.remote.conftest import agent_host, remote_host, staging_plans  # noqa: F401 -- fixtures
from tests.ops.cli.remote.rig import RemoteHost
from tests.ops.cli.remote.test_commands_over_ssh import Plans, seed
from tests.support.https import Behaviour, Certs, LocalHttps, hostnames
from tests.support.outputs import outputs_document
from tests.support.tools import REPO

CLI = str(Path(sys.executable).parent / "bankflow-infra")


def cli(argv: list[str], cwd: Path = REPO, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *argv], env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("release", ["x;rm", "$(reboot)", "ABCDEF012345", "abc", "g" * 12])
def test_rollback_refuses_a_bad_release_id_before_connecting(
        release: str, agent_host: RemoteHost) -> None:  # noqa: F811
    logins = agent_host.logins()
    done = cli(["rollback", "staging", release, "--yes", "--outputs", agent_host.write_outputs()])
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith(f"bankflow-infra rollback: {release!r} is not a release id: expected 12 lowercase")
    assert agent_host.logins() == logins


def test_rollback_takes_the_full_digest_as_its_release_id(
        agent_host: RemoteHost, staging_plans: Plans) -> None:  # noqa: F811
    first, _ = seed(agent_host, staging_plans)
    digest = staging_plans[0].bundle.digest if staging_plans[0].bundle else ""
    assert digest.startswith(first)
    done = cli(["rollback", "staging", digest, "--yes", "--outputs", agent_host.write_outputs()])
    assert done.returncode == 0, done.stderr
    assert agent_host.current() == first


@pytest.fixture
def probed(certs: Certs) -> tuple[LocalHttps, dict[str, str]]:
    with LocalHttps(certs.origin, {h: Behaviour() for h in hostnames()}) as server:
        yield server, {HEALTH_RESOLVE_ENV: ",".join(f"{h}=127.0.0.1:{server.port}" for h in hostnames()),
                       "SSL_CERT_FILE": str(certs.ca.cert)}


def _saved(tmp_path: Path, stack: str) -> str:
    path = tmp_path / f"outputs-{stack}.json"
    path.write_text(json.dumps(outputs_document(stack)))
    return str(path)


@pytest.mark.parametrize(
    ("stack", "said_by"),
    [("production", "Pulumi.production.yaml, bankflow:environment"),
     ("production-r2", "the stack name 'production-r2'")],
    ids=["committed-file", "rebuild-stack-name"],
)
def test_health_refuses_another_environments_outputs(
        stack: str, said_by: str, probed: tuple[LocalHttps, dict[str, str]], tmp_path: Path) -> None:
    server, env = probed
    done = cli(["health", stack, "--outputs", _saved(tmp_path, "staging")], **env)
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if "overrides addresses" not in line]
    assert errors == [
        f"bankflow-infra health: outputs from {tmp_path}/outputs-staging.json are for environment 'staging', "
        f"but stack {stack!r} is 'production' (from {said_by}): pass the outputs of stack {stack!r} "
        f"(`pulumi stack output --json -s {stack}`)"]
    assert server.connections == 0


def test_the_project_dir_file_decides(probed: tuple[LocalHttps, dict[str, str]], tmp_path: Path) -> None:
    server, env = probed
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.staging.yaml").write_text("config:\n  bankflow:environment: production\n")
    done = cli(["health", "staging", "--outputs", _saved(tmp_path, "staging"), "--project-dir", str(project)],
               **env)
    assert done.returncode == 2
    assert "(from Pulumi.staging.yaml, bankflow:environment)" in done.stderr
    assert server.connections == 0


def test_matching_outputs_still_probe(probed: tuple[LocalHttps, dict[str, str]], tmp_path: Path) -> None:
    server, env = probed
    done = cli(["health", "staging", "--outputs", _saved(tmp_path, "staging")], **env)
    assert done.returncode == 0, done.stderr
    assert server.connections > 0


def test_a_stack_name_that_says_nothing_is_not_checked(tmp_path: Path,
                                                       probed: tuple[LocalHttps, dict[str, str]]) -> None:
    _, env = probed
    done = cli(["health", "demo", "--outputs", _saved(tmp_path, "staging")], cwd=tmp_path, **env)
    assert done.returncode == 0, done.stderr
