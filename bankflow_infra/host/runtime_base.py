"""DockerRuntime's base-service actions: nginx (test, reload, workers, replacement without
downtime), what a base container is created from, and a forced recreate. A mixin of
:class:`~bankflow_infra.host.runtime.DockerRuntime`; stdlib only.

nginx is replaced without a gap the way ``docker rollout`` (github.com/wowu/docker-rollout)
replaces a compose service: scale to one more container with ``--no-recreate`` (the running one
is kept, the new one gets the new definition), wait until it is healthy, stop the old one, remove
it. Two nginx containers can only serve side by side because neither owns the published ports:
the port holder (compose service ``edge-ports``, ``render/compose.py``) owns the ports and the
network namespace, every nginx container joins it (``network_mode: service:edge-ports``) and
listens with ``reuseport``, so the kernel spreads new connections over both until the old one
closes its sockets. ``docker stop`` sends the image's STOPSIGNAL, SIGQUIT in the official nginx
image: a graceful shutdown that finishes the requests in flight.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

NGINX: Final = "nginx"
_PROJECT_LABEL: Final = "com.docker.compose.project"
_SERVICE_LABEL: Final = "com.docker.compose.service"
_SHARED_NETWORK: Final = "container:"  # HostConfig.NetworkMode of a container that joined another's


def definition_fingerprints(config_json: str, services: Sequence[str]) -> dict[str, str]:
    """service -> sha256 of its definition in ``docker compose config --format json
    --resolve-image-digests`` output, labels left out.

    The image reference there carries the digest the tag resolves to NOW, so a new image under
    the same tag changes the fingerprint; labels are left out because the bundle's digest label
    also covers files nginx picks up by a reload (a new config alone must not replace nginx).
    Empty output (a compose that printed nothing) knows no service: ``{}``.
    """
    text = config_json.strip()
    if not text:
        return {}
    loaded = json.loads(text)
    defined = loaded.get("services", {}) if isinstance(loaded, dict) else {}
    result: dict[str, str] = {}
    for name in services:
        body = defined.get(name)
        if isinstance(body, dict):
            canonical = json.dumps({k: v for k, v in body.items() if k != "labels"}, sort_keys=True)
            result[name] = hashlib.sha256(canonical.encode()).hexdigest()
    return result


def ids(output: str) -> list[str]:
    return [line.strip() for line in output.splitlines() if line.strip()]


class BaseServiceTools:
    """Needs ``_docker``, ``_nginx`` (the fixed container name), ``compose_argv`` and ``_check``."""

    _docker: str
    _nginx: str

    # ---------------------------------------------------------------- argv builders (pure)
    def nginx_test_argv(self) -> list[str]:
        return [self._docker, "exec", self._nginx, "nginx", "-t"]

    def nginx_reload_argv(self) -> list[str]:
        return [self._docker, "exec", self._nginx, "nginx", "-s", "reload"]

    def nginx_top_argv(self) -> list[str]:
        # docker top runs ps on the host for the container's processes; it needs the pid column
        return [self._docker, "top", self._nginx, "-o", "pid,args"]

    def config_argv(self: Any, project: Any) -> list[str]:
        return list(self.compose_argv(project, "config", "--format", "json", "--resolve-image-digests"))

    def recreate_argv(self: Any, project: Any, services: Sequence[str]) -> list[str]:
        up = ("up", "-d", "--no-build", "--no-deps", "--force-recreate")
        return list(self.compose_argv(project, *up, *services))

    def nginx_ids_argv(self, project: Any) -> list[str]:
        return [
            self._docker, "ps", "--quiet", "--no-trunc",
            "--filter", f"label={_PROJECT_LABEL}={project.name}",
            "--filter", f"label={_SERVICE_LABEL}={NGINX}",
        ]  # fmt: skip

    def network_mode_argv(self, containers: Sequence[str]) -> list[str]:
        return [self._docker, "inspect", "--format", "{{.HostConfig.NetworkMode}}", *containers]

    def scale_nginx_argv(self: Any, project: Any, count: int, timeout: float) -> list[str]:
        # --no-recreate keeps the running container as it is; the added one gets the new definition
        return list(
            self.compose_argv(
                project, "up", "-d", "--no-build", "--no-deps", "--no-recreate",
                "--scale", f"{NGINX}={count}", "--wait", "--wait-timeout", str(int(timeout)), NGINX,
            )
        )  # fmt: skip

    def replace_in_place_argv(self: Any, project: Any) -> list[str]:
        # without --no-deps: compose starts the port holder nginx now joins
        return list(self.compose_argv(project, "up", "-d", "--no-build", "--force-recreate", NGINX))

    # ---------------------------------------------------------------- actions
    def nginx_test(self: Any) -> None:
        self._check("nginx -t", self.nginx_test_argv())

    def nginx_reload(self: Any) -> None:
        self._check("nginx -s reload", self.nginx_reload_argv())

    def fingerprints(self: Any, project: Any, services: Sequence[str]) -> Mapping[str, str]:
        output = self._check(f"compose config of {project.name}", self.config_argv(project), timeout=120)
        try:
            return definition_fingerprints(output, services)
        except (ValueError, AttributeError) as exc:
            raise self._failure(f"compose config of {project.name}: unexpected output ({exc})") from None

    def recreate(self: Any, project: Any, services: Sequence[str]) -> None:
        self._check(f"recreate of {', '.join(services)}", self.recreate_argv(project, services))

    def replace_nginx(self: Any, project: Any, timeout: float, drain: float) -> str:
        """A new nginx container from the current definition beside the running one, healthy and
        ``nginx -t`` clean, then the old one stopped gracefully (up to ``drain`` s) and removed;
        the new one takes the fixed name. What happened, for the output."""
        old = ids(self._check("docker ps nginx", self.nginx_ids_argv(project), timeout=60))
        if not old:
            self._check("start of nginx", self.replace_in_place_argv(project))
            return "started (no nginx container was running)"
        modes = ids(self._check("docker inspect nginx", self.network_mode_argv(old), timeout=60))
        if not all(mode.startswith(_SHARED_NETWORK) for mode in modes):
            # the running nginx publishes the ports itself (rendered before the port holder): the
            # holder cannot bind them while it runs, so this one move has a gap
            self._check("docker stop nginx", self.stop_containers_argv(old, drain), timeout=drain + 60)
            self._check("recreate of nginx", self.replace_in_place_argv(project))
            return "recreated with a short gap (the old nginx owned the ports: first move to the port holder)"
        new = self._start_beside(project, old, timeout)
        self._check("docker stop old nginx", self.stop_containers_argv(old, drain), timeout=drain + 60)
        self._check("docker rm old nginx", [self._docker, "rm", *old], timeout=120)
        self._check("docker rename nginx", [self._docker, "rename", new, self._nginx], timeout=60)
        return "new container serving beside the old one, the old one stopped gracefully"

    def stop_containers_argv(self, containers: Sequence[str], drain: float) -> list[str]:
        # the nginx image's STOPSIGNAL is SIGQUIT: workers finish their requests, then exit
        return [self._docker, "stop", "--time", str(int(drain)), *containers]

    def _start_beside(self: Any, project: Any, old: Sequence[str], timeout: float) -> str:
        """The one new nginx container, healthy and with a config its nginx accepts; on any
        failure it is removed (the old one never stopped serving) and RuntimeFailure raised."""
        scale = self._run(self.scale_nginx_argv(project, len(old) + 1, timeout), timeout=timeout + 60)
        listed = self._check("docker ps nginx", self.nginx_ids_argv(project), timeout=60)
        new = [c for c in ids(listed) if c not in old]
        problem = scale.stderr if scale.returncode != 0 else ""
        if not problem and len(new) != 1:
            problem = f"expected one new container, found {len(new)}"
        if not problem:
            test = self._run([self._docker, "exec", new[0], "nginx", "-t"], timeout=60)
            problem = test.stderr if test.returncode != 0 else ""
        if problem:
            if new:
                self._run([self._docker, "rm", "--force", *new], timeout=120)
            why = problem.strip()[-300:]
            raise self._failure(f"new nginx container not healthy, the running one kept: {why}")
        return str(new[0])
