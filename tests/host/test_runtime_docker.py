"""DockerRuntime builds exact docker/compose argv lists: one test per command and option.

Nothing runs docker here (no engine on this machine): a recording runner captures argv.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from bankflow_infra.host.runtime import Completed, DockerRuntime, Project, RuntimeFailure, parse_ps

REL = "abc123def456"
BUNDLE = Path("/opt/bankflow/releases") / REL
APP = Project(f"bankflow-app-{REL}", BUNDLE, (BUNDLE / "compose/app.yaml",), BUNDLE / "release.env", REL)
BASE = Project("bankflow", BUNDLE, (BUNDLE / "compose/base.yaml",), BUNDLE / "release.env", REL)
COMPOSE_APP = [
    "docker",
    "compose",
    "-p",
    f"bankflow-app-{REL}",
    "-f",
    f"{BUNDLE}/compose/app.yaml",
    "--env-file",
    f"{BUNDLE}/release.env",
]
COMPOSE_BASE = [
    "docker",
    "compose",
    "-p",
    "bankflow",
    "-f",
    f"{BUNDLE}/compose/base.yaml",
    "--env-file",
    f"{BUNDLE}/release.env",
]


class Recorder:
    def __init__(self, *results: Completed) -> None:
        self.calls: list[tuple[list[str], bytes | None]] = []
        self.results = list(results)

    def __call__(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> Completed:
        self.calls.append((list(argv), stdin))
        return self.results.pop(0) if self.results else Completed(0, "", "")

    @property
    def argvs(self) -> list[list[str]]:
        return [argv for argv, _ in self.calls]


def runtime(*results: Completed) -> tuple[DockerRuntime, Recorder]:
    recorder = Recorder(*results)
    return DockerRuntime(recorder), recorder


def test_validate_command() -> None:
    rt, rec = runtime()
    rt.validate(APP)
    assert rec.argvs == [[*COMPOSE_APP, "config", "-q"]]


def test_project_without_env_file_has_no_env_file_option() -> None:
    rt, rec = runtime()
    rt.validate(Project("bankflow", BUNDLE, (BUNDLE / "compose/base.yaml",), None, REL))
    assert rec.argvs == [
        ["docker", "compose", "-p", "bankflow", "-f", f"{BUNDLE}/compose/base.yaml", "config", "-q"]
    ]


def test_several_compose_files_each_get_f() -> None:
    project = Project("p", BUNDLE, (Path("/a.yaml"), Path("/b.yaml")), None, REL)
    assert DockerRuntime(Recorder()).compose_argv(project, "ps") == [
        "docker",
        "compose",
        "-p",
        "p",
        "-f",
        "/a.yaml",
        "-f",
        "/b.yaml",
        "ps",
    ]


def test_login_command_passes_password_on_stdin_only() -> None:
    rt, rec = runtime()
    rt.login("ghcr.io/bankflow", "ci-bot", b"s3cret-token")
    assert rec.calls == [
        (["docker", "login", "ghcr.io/bankflow", "-u", "ci-bot", "--password-stdin"], b"s3cret-token")
    ]
    assert not any("s3cret" in part for part in rec.argvs[0])


def test_pull_command() -> None:
    rt, rec = runtime()
    rt.pull(APP)
    assert rec.argvs == [[*COMPOSE_APP, "pull"]]


def test_pull_command_with_services() -> None:
    rt, rec = runtime()
    rt.pull(BASE, ["postgres"])
    assert rec.argvs == [[*COMPOSE_BASE, "pull", "postgres"]]


def test_run_once_command() -> None:
    rt, rec = runtime()
    rt.run_once(APP, "api", ["/app/migrate", "--yes"], {})
    assert rec.argvs == [[*COMPOSE_APP, "run", "--rm", "--no-deps", "api", "/app/migrate", "--yes"]]


def test_run_once_with_the_migrate_environment_sets_it_for_that_run_only() -> None:
    # A managed database (issue 13): the migrate run reaches the direct port, not the pool.
    rt, rec = runtime()
    rt.run_once(APP, "api", ["/app/migrate"], {"DATABASE_URL_FILE": "/run/secrets/database_migrate_url"})
    assert rec.argvs == [[*COMPOSE_APP, "run", "--rm", "--no-deps", "-e",
                          "DATABASE_URL_FILE=/run/secrets/database_migrate_url", "api", "/app/migrate"]]


def test_start_command() -> None:
    rt, rec = runtime()
    rt.start(APP)
    assert rec.argvs == [[*COMPOSE_APP, "up", "-d", "--no-build"]]


def test_start_command_with_services() -> None:
    rt, rec = runtime()
    rt.start(BASE, ["postgres", "redis"])
    assert rec.argvs == [[*COMPOSE_BASE, "up", "-d", "--no-build", "postgres", "redis"]]


def test_wait_healthy_command_and_timeout() -> None:
    rt, rec = runtime()
    assert rt.wait_healthy(APP, ["site", "api"], 120) == {"site": True, "api": True}
    assert rec.argvs == [
        [*COMPOSE_APP, "up", "-d", "--no-build", "--wait", "--wait-timeout", "120", "site", "api"]
    ]


def test_wait_healthy_failure_names_services_from_ps() -> None:
    ps = "\n".join(
        json.dumps(r)
        for r in (
            {"Service": "site", "State": "running", "Health": "healthy"},
            {"Service": "api", "State": "running", "Health": "unhealthy"},
        )
    )
    rt, rec = runtime(Completed(1, "", "container api is unhealthy"), Completed(0, ps, ""))
    assert rt.wait_healthy(APP, ["site", "api"], 30) == {"site": True, "api": False}
    assert rec.argvs[1] == [*COMPOSE_APP, "ps", "--all", "--format", "json"]


def test_ps_command() -> None:
    rt, rec = runtime(Completed(0, "[]", ""))
    assert rt.health(APP, ["site"]) == {"site": False}
    assert rec.argvs == [[*COMPOSE_APP, "ps", "--all", "--format", "json"]]


def test_parse_ps_accepts_array_and_lines() -> None:
    rows = [
        {"Service": "site", "State": "running", "Health": ""},
        {"Service": "api", "State": "exited", "Health": ""},
    ]
    assert parse_ps(json.dumps(rows)) == {"site": True, "api": False}
    assert parse_ps("\n".join(json.dumps(r) for r in rows)) == {"site": True, "api": False}
    assert parse_ps("") == {}


def test_stop_command() -> None:
    rt, rec = runtime()
    rt.stop(APP)
    assert rec.argvs == [[*COMPOSE_APP, "down"]]


def test_nginx_test_command() -> None:
    rt, rec = runtime()
    rt.nginx_test()
    assert rec.argvs == [["docker", "exec", "bankflow-nginx-1", "nginx", "-t"]]


def test_nginx_reload_command() -> None:
    rt, rec = runtime()
    rt.nginx_reload()
    assert rec.argvs == [["docker", "exec", "bankflow-nginx-1", "nginx", "-s", "reload"]]


def test_remove_images_command() -> None:
    rt, rec = runtime()
    rt.remove_images(["ghcr.io/bankflow/bankflow-site:v1", "ghcr.io/bankflow/bankflow-api:v1"])
    assert rec.argvs == [
        ["docker", "image", "rm", "ghcr.io/bankflow/bankflow-site:v1", "ghcr.io/bankflow/bankflow-api:v1"]
    ]


def test_remove_no_images_runs_nothing() -> None:
    rt, rec = runtime()
    rt.remove_images([])
    assert rec.argvs == []


def test_upstream_address_is_the_release_alias() -> None:
    assert DockerRuntime(Recorder()).upstream_address(REL, "api", 8080) == f"api-{REL}:8080"


def test_docker_binary_and_nginx_container_are_options() -> None:
    rt = DockerRuntime(Recorder(), docker="/usr/bin/docker", nginx_container="bankflow-nginx-2")
    assert rt.nginx_test_argv() == ["/usr/bin/docker", "exec", "bankflow-nginx-2", "nginx", "-t"]


def test_failure_names_the_action_and_last_stderr_line() -> None:
    rt, _ = runtime(Completed(1, "", "pulling...\nError: manifest unknown\n"))
    with pytest.raises(
        RuntimeFailure, match=r"^pull of bankflow-app-abc123def456 exited 1: Error: manifest unknown$"
    ):
        rt.pull(APP)


def test_projects_lists_compose_projects_running_or_not() -> None:
    listing = json.dumps(
        [
            {"Name": "bankflow", "Status": "running(3)", "ConfigFiles": "/x/base.yaml"},
            {"Name": f"bankflow-app-{REL}", "Status": "exited(3)", "ConfigFiles": "/x/app.yaml"},
        ]
    )
    rt, rec = runtime(Completed(0, listing, ""))
    assert list(rt.projects()) == ["bankflow", f"bankflow-app-{REL}"]
    assert rec.argvs == [["docker", "compose", "ls", "--all", "--format", "json"]]


def test_projects_refuses_output_it_cannot_read() -> None:
    rt, _ = runtime(Completed(0, "not json", ""))
    with pytest.raises(RuntimeFailure, match="docker compose ls: unexpected output"):
        rt.projects()


def test_nginx_draining_counts_the_workers_still_shutting_down() -> None:
    top = (
        "PID                 COMMAND\n"
        "4101                nginx: master process nginx -g daemon off;\n"
        "4160                nginx: worker process is shutting down\n"
        "4161                nginx: worker process is shutting down\n"
        "4170                nginx: worker process\n"
    )
    rt, rec = runtime(Completed(0, top, ""))
    assert rt.nginx_draining() == 2
    assert rec.argvs == [["docker", "top", "bankflow-nginx-1", "-o", "pid,args"]]


# --------------------------------------------------------------------------- base services (issue 12)

CONFIG = {
    "name": "bankflow",
    "services": {
        "nginx": {"image": "nginx:1.28@sha256:" + "a" * 64, "labels": {"com.bankflow.service-digest": "x"}},
        "redis": {"image": "redis:7@sha256:" + "b" * 64},
    },
}


def test_fingerprints_come_from_compose_config_with_resolved_digests_labels_left_out() -> None:
    rt, rec = runtime(Completed(0, json.dumps(CONFIG), ""))
    first = rt.fingerprints(BASE, ["nginx", "redis", "postgres"])
    assert rec.argvs == [[*COMPOSE_BASE, "config", "--format", "json", "--resolve-image-digests"]]
    assert set(first) == {"nginx", "redis"}  # postgres not defined: unknown, left out
    relabeled = json.loads(json.dumps(CONFIG))
    relabeled["services"]["nginx"]["labels"] = {"com.bankflow.service-digest": "new nginx.conf"}
    moved = json.loads(json.dumps(CONFIG))
    moved["services"]["nginx"]["image"] = "nginx:1.28@sha256:" + "c" * 64  # the tag moved
    assert runtime(Completed(0, json.dumps(relabeled), ""))[0].fingerprints(BASE, ["nginx"]) == {
        "nginx": first["nginx"]
    }
    after_move = runtime(Completed(0, json.dumps(moved), ""))[0].fingerprints(BASE, ["nginx"])
    assert after_move["nginx"] != first["nginx"]
    with pytest.raises(RuntimeFailure, match="compose config of bankflow: unexpected output"):
        runtime(Completed(0, "not json", ""))[0].fingerprints(BASE, ["nginx"])


def test_recreate_forces_only_the_named_services() -> None:
    rt, rec = runtime()
    rt.recreate(BASE, ["postgres"])
    up = ["up", "-d", "--no-build", "--no-deps", "--force-recreate"]
    assert rec.argvs == [[*COMPOSE_BASE, *up, "postgres"]]


NGINX_PS = [
    "docker", "ps", "--quiet", "--no-trunc",
    "--filter", "label=com.docker.compose.project=bankflow",
    "--filter", "label=com.docker.compose.service=nginx",
]  # fmt: skip


SCALE_TO_2 = [
    "up", "-d", "--no-build", "--no-deps", "--no-recreate",
    "--scale", "nginx=2", "--wait", "--wait-timeout", "60", "nginx",
]  # fmt: skip


def test_replace_nginx_starts_the_new_container_beside_the_old_then_stops_the_old() -> None:
    rt, rec = runtime(
        Completed(0, "old1\n", ""),  # docker ps: the serving container
        Completed(0, "container:holder1\n", ""),  # it joined the port holder's namespace
        Completed(0, "", ""),  # scale to 2 --wait
        Completed(0, "old1\nnew1\n", ""),
    )
    text = rt.replace_nginx(BASE, 60, 30)
    assert rec.argvs == [
        NGINX_PS,
        ["docker", "inspect", "--format", "{{.HostConfig.NetworkMode}}", "old1"],
        [*COMPOSE_BASE, *SCALE_TO_2],
        NGINX_PS,
        ["docker", "exec", "new1", "nginx", "-t"],
        ["docker", "stop", "--time", "30", "old1"],
        ["docker", "rm", "old1"],
        ["docker", "rename", "new1", "bankflow-nginx-1"],  # exec/reload/top keep their fixed name
    ]
    assert "beside the old one" in text


def test_a_new_nginx_that_fails_is_removed_and_the_old_one_keeps_serving() -> None:
    rt, rec = runtime(
        Completed(0, "old1\n", ""),
        Completed(0, "container:holder1\n", ""),
        Completed(1, "", "container bankflow-nginx-2 is unhealthy"),
        Completed(0, "old1\nnew1\n", ""),
    )
    with pytest.raises(RuntimeFailure, match="not healthy, the running one kept: container bankflow-nginx-2"):
        rt.replace_nginx(BASE, 60, 30)
    assert rec.argvs[-1] == ["docker", "rm", "--force", "new1"]
    assert not any(argv[:2] == ["docker", "stop"] for argv in rec.argvs)


def test_an_nginx_that_owns_the_ports_itself_is_moved_to_the_port_holder_with_a_gap() -> None:
    rt, rec = runtime(Completed(0, "old1\n", ""), Completed(0, "bankflow-edge\n", ""))
    text = rt.replace_nginx(BASE, 60, 30)
    assert rec.argvs[2:] == [
        ["docker", "stop", "--time", "30", "old1"],
        [*COMPOSE_BASE, "up", "-d", "--no-build", "--force-recreate", "nginx"],
    ]
    assert "short gap" in text
