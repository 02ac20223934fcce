"""DockerRuntime's one-off containers and per-service stop (pgBackRest restore while PostgreSQL is
stopped). A mixin of :class:`~bankflow_infra.host.runtime.DockerRuntime`; stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class _Compose(Protocol):
    def compose_argv(self, project: Any, *args: str) -> list[str]: ...
    def _check(
        self, what: str, argv: Sequence[str], stdin: bytes | None = None, timeout: float | None = None
    ) -> str: ...


class ComposeTools:
    """``docker compose run --rm --no-deps`` with extra mounts, and ``docker compose stop``."""

    def run_tool_argv(
        self: _Compose, project: Any, service: str, argv: Sequence[str], mounts: Mapping[str, str], user: str
    ) -> list[str]:
        # the service's own mounts (data dir, pgbackrest.conf) plus these; -T: plain pipes
        volumes = [arg for source, target in mounts.items() for arg in ("-v", f"{source}:{target}")]
        return self.compose_argv(
            project, "run", "--rm", "--no-deps", "-T", "--user", user, *volumes, service, *argv
        )

    def stop_services_argv(self: _Compose, project: Any, services: Sequence[str]) -> list[str]:
        return self.compose_argv(project, "stop", *services)

    def run_tool(
        self: Any,
        project: Any,
        service: str,
        argv: Sequence[str],
        mounts: Mapping[str, str],
        *,
        user: str,
        timeout: float | None = None,
    ) -> str:
        what = f"{argv[0] if argv else 'run'} in a one-off {service} container"
        return str(
            self._check(what, self.run_tool_argv(project, service, argv, mounts, user), timeout=timeout)
        )

    def stop_services(self: Any, project: Any, services: Sequence[str]) -> None:
        self._check("docker compose stop", self.stop_services_argv(project, services))
