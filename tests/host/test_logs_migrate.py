"""The host agent's `logs` and `migrate` subcommands, and DockerRuntime's logs argv.

The agent runs in-process against a throw-away BANKFLOW_HOME with LocalProcessRuntime
(tests/host/standin.py: local processes stand in for Docker, which has no engine here; it
journals the logs/run_once calls it cannot perform) and the real local nginx.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.contract import exit_codes, logs
from bankflow_infra.host import agent
from bankflow_infra.host import state as st
from bankflow_infra.host.runtime import DockerRuntime, Project
from tests.host.fixtures import HostEnv, make_host
from tests.support.tools import require_tool

REL = "abc123def456"
BUNDLE = Path("/opt/bankflow/releases") / REL
APP = Project(f"bankflow-app-{REL}", BUNDLE, (BUNDLE / "compose/app.yaml",), BUNDLE / "release.env", REL)
COMPOSE_APP = [
    "docker", "compose", "-p", f"bankflow-app-{REL}", "-f", f"{BUNDLE}/compose/app.yaml",
    "--env-file", f"{BUNDLE}/release.env",
]  # fmt: skip


@pytest.fixture
def host(tmp_path: Path) -> Iterator[HostEnv]:
    env = make_host(tmp_path, require_tool("nginx"))
    try:
        yield env
    finally:
        env.runtime.shutdown()


def deployed(host: HostEnv) -> str:
    code, _, err = host.deploy(host.bundle("v1"))
    assert code == 0, err
    current = host.current()
    assert current is not None
    return current


def audit(host: HostEnv) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (host.home / "state" / "audit.log").read_text().splitlines()]


def calls(host: HostEnv, call: str) -> list[dict[str, object]]:
    return [entry for entry in host.runtime.journal() if entry["call"] == call]


# --------------------------------------------------------------------------- DockerRuntime


class Streamed:
    def __init__(self, code: int = 0) -> None:
        self.argvs: list[list[str]] = []
        self.code = code

    def __call__(self, argv: Sequence[str]) -> int:
        self.argvs.append(list(argv))
        return self.code


def test_docker_logs_command() -> None:
    streamed = Streamed()
    assert DockerRuntime(streamer=streamed).logs(APP, ["api"], 50, False) == 0
    assert streamed.argvs == [[*COMPOSE_APP, "logs", "--tail", "50", "api"]]


def test_docker_logs_follow_command() -> None:
    streamed = Streamed()
    DockerRuntime(streamer=streamed).logs(APP, ["api"], 10, True)
    assert streamed.argvs == [[*COMPOSE_APP, "logs", "--tail", "10", "--follow", "api"]]


def test_docker_logs_of_every_service_and_its_exit_code() -> None:
    streamed = Streamed(code=1)
    assert DockerRuntime(streamer=streamed).logs(APP, [], 200, False) == 1
    assert streamed.argvs == [[*COMPOSE_APP, "logs", "--tail", "200"]]


# --------------------------------------------------------------------------- agent logs


def test_logs_of_an_app_service_use_the_serving_app_project(host: HostEnv) -> None:
    release = deployed(host)
    code, out, err = host.agent("logs", "api", "--tail", "20")
    assert code == 0, err
    assert out == ""  # the runtime printed to the real stdout, not the agent's
    assert calls(host, "logs") == [
        {
            "call": "logs",
            "project": f"bankflow-app-{release}",
            "services": ["api"],
            "tail": 20,
            "follow": False,
        }
    ]


def test_logs_without_a_service_are_every_app_services(host: HostEnv) -> None:
    release = deployed(host)
    assert host.agent("logs")[0] == 0
    assert calls(host, "logs")[-1]["project"] == f"bankflow-app-{release}"
    assert calls(host, "logs")[-1]["services"] == []
    assert calls(host, "logs")[-1]["tail"] == logs.LOG_TAIL_DEFAULT


def test_logs_of_a_base_service_use_the_base_project(host: HostEnv) -> None:
    deployed(host)
    assert host.agent("logs", "postgres", "--follow")[0] == 0
    entry = calls(host, "logs")[-1]
    assert (entry["project"], entry["services"], entry["follow"]) == ("bankflow", ["postgres"], True)


def test_logs_of_an_unknown_service_lists_the_release_services(host: HostEnv) -> None:
    release = deployed(host)
    code, _, err = host.agent("logs", "mysql")
    assert code == exit_codes.USAGE
    assert err.strip() == (
        f"logs: unknown service 'mysql'; services of release {release}: "
        "site, saas, api, postgres, redis, nginx"
    )
    assert calls(host, "logs") == []


def test_logs_before_any_release(host: HostEnv) -> None:
    code, _, err = host.agent("logs")
    assert code == exit_codes.USAGE
    assert "no release deployed yet" in err


@pytest.mark.parametrize("tail", ["0", "-1", "x", str(logs.LOG_TAIL_MAX + 1)])
def test_logs_tail_is_bounded(host: HostEnv, tail: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        agent.main(
            ["--home", str(host.home), "logs", "--tail", tail],
            runtime=host.runtime,
            out=io.StringIO(),
            err=io.StringIO(),
        )
    assert exit_info.value.code == exit_codes.USAGE


# --------------------------------------------------------------------------- agent migrate


def test_migrate_runs_the_manifest_command_in_the_serving_project_and_audits(host: HostEnv) -> None:
    release = deployed(host)
    before = len(calls(host, "run_once"))
    code, out, err = host.agent("migrate")
    assert code == 0, err
    assert calls(host, "run_once")[before:] == [
        {
            "call": "run_once",
            "project": f"bankflow-app-{release}",
            "service": "api",
            "command": ["/app/migrate"],
        }
    ]
    assert out.splitlines() == [
        f"migrate {release}: api /app/migrate in bankflow-app-{release}",
        f"migrate {release}: done",
    ]
    entry = audit(host)[-1]
    assert (entry["action"], entry["release"], entry["result"], entry["actor"]) == (
        "migrate",
        release,
        "ok",
        "test",
    )


def test_a_failed_migration_is_exit_1_audited_and_changes_nothing(host: HostEnv) -> None:
    release = deployed(host)
    (host.home / "releases" / release / "standin-fail-migrate").write_text("1")
    code, _, err = host.agent("migrate")
    assert code == exit_codes.FAILED
    assert (
        f"migrate {release}: failed: api /app/migrate exited 1: migration failed; "
        f"release {release} still serving" in err
    )
    assert host.current() == release
    assert (audit(host)[-1]["action"], audit(host)[-1]["result"]) == ("migrate", "failed")


def test_migrate_waits_for_no_one_while_a_deploy_holds_the_lock(host: HostEnv) -> None:
    deployed(host)
    with st.exclusive_lock(host.home / "state" / "lock"):
        code, _, err = host.agent("migrate")
    assert code == exit_codes.LOCKED
    assert "holds the lock" in err
    assert len(calls(host, "run_once")) == 1  # the deploy's migration only
    assert (audit(host)[-1]["action"], audit(host)[-1]["result"]) == ("migrate", "refused")


def test_migrate_before_any_release(host: HostEnv) -> None:
    code, _, err = host.agent("migrate")
    assert code == exit_codes.USAGE
    assert "no release deployed yet: nothing to migrate" in err
