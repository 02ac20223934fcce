"""The one interface through which the agent touches containers and nginx.

Stdlib only. :class:`Runtime` is what the agent calls; :class:`DockerRuntime` is the real one
on the droplet and only *builds argv lists* and hands them to an injected runner, so every
command line is testable by exact comparison. The tests use a stand-in that starts local
processes, because there is no Docker engine where the tests run.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from ..contract.release import BASE_PROJECT, release_alias
from .runtime_base import BaseServiceTools
from .runtime_tools import ComposeTools

NGINX_CONTAINER: Final = f"{BASE_PROJECT}-nginx-1"  # compose names it <project>-<service>-<index>
_TAIL_CHARS: Final = 300


class RuntimeFailure(RuntimeError):
    """A runtime action failed; the message is safe to print (no command input, tail of stderr)."""


@dataclass(frozen=True)
class Project:
    """One compose project: the base (``bankflow``) or one release's app services."""

    name: str
    bundle: Path  # the release dir the compose files belong to
    files: tuple[Path, ...]
    env_file: Path | None  # compose interpolation values (BANKFLOW_RELEASE, BANKFLOW_HOME)
    release: str


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(
        self, argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
    ) -> Completed: ...


class Streamer(Protocol):
    """Runs argv with the agent's own stdin/stdout/stderr (output streams as it comes); the exit code."""

    def __call__(self, argv: Sequence[str]) -> int: ...


def subprocess_streamer(argv: Sequence[str]) -> int:
    # Not captured: `logs --follow` never ends, and its lines must reach the operator at once.
    try:
        return subprocess.run(list(argv), stdin=subprocess.DEVNULL, check=False).returncode
    except OSError as exc:
        raise RuntimeFailure(f"{argv[0]}: {exc.strerror or exc}") from None


def subprocess_runner(
    argv: Sequence[str], *, stdin: bytes | None = None, timeout: float | None = None
) -> Completed:
    """Run argv (never through a shell); a timeout is a failed command, not an exception."""
    try:
        done = subprocess.run(list(argv), input=stdin, capture_output=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return Completed(124, "", f"timed out after {timeout:.0f}s")
    except OSError as exc:
        return Completed(127, "", str(exc))
    return Completed(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


class FileRunner(Protocol):
    """Runs argv with stdin from a file and/or stdout into a file (a dump never passes through
    memory); stdout is captured (as text) only when ``stdout_path`` is None."""

    def __call__(
        self,
        argv: Sequence[str],
        *,
        stdin_path: Path | None = None,
        stdout_path: Path | None = None,
        timeout: float | None = None,
    ) -> Completed: ...


def subprocess_file_runner(
    argv: Sequence[str],
    *,
    stdin_path: Path | None = None,
    stdout_path: Path | None = None,
    timeout: float | None = None,
) -> Completed:
    """Like :func:`subprocess_runner`, with file stdin/stdout; a stdout file is created 0600."""
    stdin_file = open(stdin_path, "rb") if stdin_path is not None else None  # noqa: SIM115
    stdout_fd = None
    if stdout_path is not None:
        stdout_fd = os.open(stdout_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        done = subprocess.run(
            list(argv),
            stdin=stdin_file if stdin_file is not None else subprocess.DEVNULL,
            stdout=stdout_fd if stdout_fd is not None else subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Completed(124, "", f"timed out after {timeout:.0f}s")
    except OSError as exc:
        return Completed(127, "", str(exc))
    finally:
        if stdin_file is not None:
            stdin_file.close()
        if stdout_fd is not None:
            os.close(stdout_fd)
    return Completed(
        done.returncode,
        (done.stdout or b"").decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


Variables = Mapping[str, str]  # a one-off run's environment (compose run -e)


class Runtime(Protocol):
    """Every container/nginx action of a release switch. Failures raise :class:`RuntimeFailure`."""

    def validate(self, project: Project) -> None: ...
    def login(self, registry: str, username: str, password: bytes) -> None: ...
    def pull(self, project: Project, services: Sequence[str] = ()) -> None: ...
    def run_once(self, project: Project, service: str, command: Sequence[str], env: Variables) -> None: ...
    def start(self, project: Project, services: Sequence[str] = ()) -> None: ...
    def wait_healthy(
        self, project: Project, services: Sequence[str], timeout: float
    ) -> Mapping[str, bool]: ...
    def health(self, project: Project, services: Sequence[str]) -> Mapping[str, bool]: ...
    def upstream_address(self, release: str, service: str, port: int) -> str: ...
    def stop(self, project: Project) -> None: ...
    def nginx_test(self) -> None: ...
    def nginx_reload(self) -> None: ...
    def projects(self) -> Sequence[str]:
        """Names of the compose projects with containers on the host (running or stopped)."""
        ...
    def nginx_draining(self) -> int:
        """nginx workers of an earlier config still finishing their requests (after a reload)."""
        ...
    def remove_images(self, images: Sequence[str]) -> None: ...
    def logs(self, project: Project, services: Sequence[str], tail: int, follow: bool) -> int:
        """Print the services' logs (all of the project's when empty) to stdout; the exit code."""
        ...
    def exec(
        self,
        project: Project,
        service: str,
        argv: Sequence[str],
        *,
        stdin_path: Path | None = None,
        stdout_path: Path | None = None,
        timeout: float | None = None,
    ) -> str:
        """Run argv inside the running ``service`` container of ``project`` (backups: pg_dump,
        pg_restore, psql); stdin from a file, stdout into a file (created 0600) or returned."""
        ...
    # argv in a one-off container of `service` (+ mounts: host dir -> container dir), as `user`
    def run_tool(self, project: Project, service: str, argv: Sequence[str], mounts: Mapping[str, str], *,
                 user: str, timeout: float | None = None) -> str: ...  # fmt: skip
    def stop_services(self, project: Project, services: Sequence[str]) -> None: ...
    def fingerprints(self, project: Project, services: Sequence[str]) -> Mapping[str, str]:
        """service -> what a container of it would be created from now (definition and the image
        its reference resolves to); services the runtime cannot tell are left out."""
        ...
    def recreate(self, project: Project, services: Sequence[str]) -> None: ...
    def replace_nginx(self, project: Project, timeout: float, drain: float) -> str:
        """A new nginx container beside the serving one, then the old one drained and removed."""
        ...


def error_tail(text: str, limit: int = _TAIL_CHARS) -> str:
    """The last non-blank line of a tool's output, cut to ``limit``: enough to say what failed."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][-limit:] if lines else ""


def parse_compose_ls(output: str) -> list[str]:
    """Project names from ``docker compose ls --all --format json`` (one JSON array)."""
    text = output.strip()
    rows = json.loads(text) if text else []
    return sorted({str(r["Name"]) for r in rows if isinstance(r, dict) and r.get("Name")})


def count_draining_workers(top_output: str) -> int:
    """Workers nginx retitled after a graceful reload, from ``docker top C -o pid,args``."""
    return sum("worker process is shutting down" in line for line in top_output.splitlines())


def parse_ps(output: str) -> dict[str, bool]:
    """service -> healthy, from ``docker compose ps --format json``.

    Compose < 2.21 prints one JSON array, newer versions one object per line: accept both. A
    service without a health check counts as healthy once running, as ``up --wait`` does.
    """
    text = output.strip()
    if not text:
        return {}
    rows: list[object] = []
    if text.startswith("["):
        loaded = json.loads(text)
        rows = loaded if isinstance(loaded, list) else []
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    result: dict[str, bool] = {}
    for row in rows:
        if not isinstance(row, dict):
            continue
        service = str(row.get("Service", ""))
        ok = row.get("State") == "running" and row.get("Health", "") in ("", "healthy")
        # several replicas: the service is healthy only if all are
        result[service] = result.get(service, True) and ok
    return result


class DockerRuntime(BaseServiceTools, ComposeTools):
    """Docker Engine + Compose v2 (>= 2.17 for ``--wait-timeout``) on the droplet."""

    def __init__(
        self,
        runner: Runner = subprocess_runner,
        *,
        streamer: Streamer = subprocess_streamer,
        file_runner: FileRunner = subprocess_file_runner,
        docker: str = "docker",
        nginx_container: str = NGINX_CONTAINER,
        command_timeout: float = 900.0,
    ) -> None:
        self._run = runner
        self._stream = streamer
        self._run_files = file_runner
        self._docker = docker
        self._nginx = nginx_container
        self._timeout = command_timeout

    # ---------------------------------------------------------------- argv builders (pure)
    def compose_argv(self, project: Project, *args: str) -> list[str]:
        argv = [self._docker, "compose", "-p", project.name]
        for file in project.files:
            argv += ["-f", str(file)]
        if project.env_file is not None:
            argv += ["--env-file", str(project.env_file)]
        return [*argv, *args]

    def validate_argv(self, project: Project) -> list[str]:
        return self.compose_argv(project, "config", "-q")

    def login_argv(self, registry: str, username: str) -> list[str]:
        # the password goes through stdin only: never in argv (visible in ps) or in logs
        return [self._docker, "login", registry, "-u", username, "--password-stdin"]

    def pull_argv(self, project: Project, services: Sequence[str] = ()) -> list[str]:
        return self.compose_argv(project, "pull", *services)

    def run_once_argv(
        self, project: Project, service: str, command: Sequence[str], env: Variables
    ) -> list[str]:
        # -e values are paths (manifest.migrate.environment admits nothing else), never secrets.
        variables = [arg for name in sorted(env) for arg in ("-e", f"{name}={env[name]}")]
        return self.compose_argv(project, "run", "--rm", "--no-deps", *variables, service, *command)

    def start_argv(self, project: Project, services: Sequence[str] = ()) -> list[str]:
        # images were pulled in the pull step; nothing is ever built on the droplet
        return self.compose_argv(project, "up", "-d", "--no-build", *services)

    def wait_argv(self, project: Project, services: Sequence[str], timeout: float) -> list[str]:
        # `up --wait` on already-started containers changes nothing and waits for health checks
        return self.compose_argv(
            project, "up", "-d", "--no-build", "--wait", "--wait-timeout", str(int(timeout)), *services
        )

    def ps_argv(self, project: Project) -> list[str]:
        return self.compose_argv(project, "ps", "--all", "--format", "json")

    def stop_argv(self, project: Project) -> list[str]:
        return self.compose_argv(project, "down")

    def projects_argv(self) -> list[str]:
        return [self._docker, "compose", "ls", "--all", "--format", "json"]

    def remove_images_argv(self, images: Sequence[str]) -> list[str]:
        return [self._docker, "image", "rm", *images]

    def logs_argv(self, project: Project, services: Sequence[str], tail: int, follow: bool) -> list[str]:
        return self.compose_argv(
            project, "logs", "--tail", str(tail), *(["--follow"] if follow else []), *services
        )

    def exec_argv(self, project: Project, service: str, argv: Sequence[str]) -> list[str]:
        # -T: no pseudo-terminal, so stdin/stdout carry the bytes of a dump unchanged
        return self.compose_argv(project, "exec", "-T", service, *argv)

    # ---------------------------------------------------------------- actions
    def _failure(self, message: str) -> RuntimeFailure:
        return RuntimeFailure(message)

    def _check(
        self, what: str, argv: Sequence[str], stdin: bytes | None = None, timeout: float | None = None
    ) -> str:
        done = self._run(argv, stdin=stdin, timeout=timeout or self._timeout)
        if done.returncode != 0:
            raise RuntimeFailure(
                f"{what} exited {done.returncode}: {error_tail(done.stderr) or error_tail(done.stdout)}"
            )
        return done.stdout

    def validate(self, project: Project) -> None:
        self._check(f"compose config of {project.name}", self.validate_argv(project))

    def login(self, registry: str, username: str, password: bytes) -> None:
        self._check(f"docker login {registry}", self.login_argv(registry, username), stdin=password)

    def pull(self, project: Project, services: Sequence[str] = ()) -> None:
        self._check(f"pull of {project.name}", self.pull_argv(project, services))

    def run_once(self, project: Project, service: str, command: Sequence[str], env: Variables) -> None:
        self._check(f"{service} {' '.join(command)}", self.run_once_argv(project, service, command, env))

    def start(self, project: Project, services: Sequence[str] = ()) -> None:
        self._check(f"start of {project.name}", self.start_argv(project, services))

    def wait_healthy(self, project: Project, services: Sequence[str], timeout: float) -> Mapping[str, bool]:
        done = self._run(self.wait_argv(project, services, timeout), timeout=timeout + 60)
        if done.returncode == 0:
            return {s: True for s in services}
        health = self.health(project, services)
        if all(health.values()):
            raise RuntimeFailure(f"compose up --wait of {project.name} failed: {error_tail(done.stderr)}")
        return health

    def health(self, project: Project, services: Sequence[str]) -> Mapping[str, bool]:
        seen = parse_ps(self._check(f"compose ps of {project.name}", self.ps_argv(project)))
        return {s: seen.get(s, False) for s in services}

    def upstream_address(self, release: str, service: str, port: int) -> str:
        # the renderer gives each app container this network alias (contract.release_alias)
        return f"{release_alias(service, release)}:{port}"

    def stop(self, project: Project) -> None:
        self._check(f"stop of {project.name}", self.stop_argv(project))

    def projects(self) -> Sequence[str]:
        try:
            return parse_compose_ls(self._check("docker compose ls", self.projects_argv(), timeout=60))
        except ValueError as exc:
            raise RuntimeFailure(f"docker compose ls: unexpected output ({exc})") from None

    def nginx_draining(self) -> int:
        return count_draining_workers(self._check("docker top nginx", self.nginx_top_argv(), timeout=30))

    def remove_images(self, images: Sequence[str]) -> None:
        if images:
            self._check("docker image rm", self.remove_images_argv(images))

    def logs(self, project: Project, services: Sequence[str], tail: int, follow: bool) -> int:
        return self._stream(self.logs_argv(project, services, tail, follow))

    def exec(
        self,
        project: Project,
        service: str,
        argv: Sequence[str],
        *,
        stdin_path: Path | None = None,
        stdout_path: Path | None = None,
        timeout: float | None = None,
    ) -> str:
        done = self._run_files(
            self.exec_argv(project, service, argv),
            stdin_path=stdin_path,
            stdout_path=stdout_path,
            timeout=timeout or self._timeout,
        )
        if done.returncode != 0:
            raise RuntimeFailure(
                f"{argv[0] if argv else 'exec'} in {service} exited {done.returncode}: "
                f"{error_tail(done.stderr) or error_tail(done.stdout)}"
            )
        return done.stdout
