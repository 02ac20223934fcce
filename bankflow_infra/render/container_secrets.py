"""Secrets as files in the containers (issue 12, item 5): compose ``secrets:``, never environment.

An environment variable is in ``docker inspect``, in the container's config on disk and in every
child process's environment. A compose file-based secret is a read-only bind mount of one host
file at ``/run/secrets/<name>``; the service is told where with a ``<NAME>_FILE`` variable (the
convention of the official postgres image, which reads ``POSTGRES_PASSWORD_FILE``).

Compose bind-mounts file-based secrets as they are on the host: the long syntax's ``uid``, ``gid``
and ``mode`` are ignored outside Swarm (docker/compose#9648; compose >= 2.21 warns, PR #10904).
So every service gets its own copy of each secret it reads, ``secrets/<service>.<name>``, and the
agent makes that file its service's (``chown SERVICE_UIDS[service]``, 0600 stays): a container
reads only its own secrets, and no other uid on the host reads them at all.

Per service:

- saas, api: DATABASE_URL_FILE, REDIS_URL_FILE, JWT_SECRET_FILE. The app images must read the
  ``*_FILE`` variables (the value is the file's content, a trailing newline stripped).
- postgres: POSTGRES_PASSWORD_FILE (read by the image's entrypoint when it initialises a cluster).
- redis: the start script reads the password file into its config on stdin; the health check
  reads it into REDISCLI_AUTH for redis-cli only.
- site, nginx: no secret values (nginx's TLS key stays the single-file mount it was).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bankflow_infra import catalog
from bankflow_infra.contract import layout
from bankflow_infra.settings import APP_SERVICES

SECRETS_MOUNT: Final = "/run/secrets"  # where compose mounts secrets in the container
# variable names, not values
POSTGRES_PASSWORD: Final = "POSTGRES_PASSWORD"  # noqa: S105
REDIS_PASSWORD: Final = "REDIS_PASSWORD"  # noqa: S105


def service_secret_names(service: str) -> tuple[str, ...]:
    """The secret variables a base service reads (upper case, as the env files name them)."""
    return {"postgres": (POSTGRES_PASSWORD,), "redis": (REDIS_PASSWORD,)}.get(service, ())


def file_name(service: str, name: str) -> str:
    """The host (and bundle ``secrets/``) file of one service's copy of one secret."""
    return f"{service}.{name.lower()}"


def compose_name(service: str, name: str) -> str:
    """The project-level compose secret name: one per service and secret."""
    return f"{service}_{name.lower()}"


def container_path(name: str) -> str:
    return f"{SECRETS_MOUNT}/{name.lower()}"


def file_variable(name: str) -> str:
    return f"{name}_FILE"


def service_refs(service: str, names: tuple[str, ...]) -> list[dict[str, str]]:
    """A service's ``secrets:`` entries: its own copy, mounted under the plain name."""
    return [{"source": compose_name(service, name), "target": name.lower()} for name in names]


def file_variables(names: tuple[str, ...]) -> dict[str, str]:
    """``<NAME>_FILE`` -> the file's path in the container."""
    return {file_variable(name): container_path(name) for name in names}


def host_file(service: str, name: str) -> str:
    return f"{layout.SECRETS_DIR}/{file_name(service, name)}"


def declarations(readers: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    """A compose file's ``secrets:``: service -> the names it reads (any case)."""
    return {
        compose_name(service, name): {"file": host_file(service, name)}
        for service, names in sorted(readers.items())
        for name in names
    }


def secret_files(readers: Mapping[str, tuple[str, ...]], values: Mapping[str, str]) -> dict[str, str]:
    """Bundle path -> text of every per-service copy. No trailing newline: the file is the value."""
    missing = sorted({name for names in readers.values() for name in names} - set(values))
    if missing:
        raise ValueError(f"no value for the container secrets {missing}")
    return {
        f"secrets/{file_name(service, name)}": values[name]
        for service, names in readers.items()
        for name in names
    }


def owners(readers: Mapping[str, tuple[str, ...]]) -> dict[str, int]:
    """Host file name (in layout.SECRETS_DIR) -> the uid that must own it (the agent chowns)."""
    return {
        file_name(service, name): catalog.SERVICE_UIDS[service]
        for service, names in readers.items()
        for name in names
    }


def readers(managed_database: bool = False, managed_cache: bool = False) -> dict[str, tuple[str, ...]]:
    """Every service that reads secrets -> the names it reads (app services, postgres, redis).
    A managed database or cache (issue 13) has no container on the droplet, so no secret copy."""
    found = {
        name: catalog.secret_env_of(name, managed_database)
        for name in APP_SERVICES
        if catalog.secret_env_of(name)
    }
    bases = (("postgres", managed_database), ("redis", managed_cache))
    for base in (name for name, is_managed in bases if not is_managed):
        found[base] = service_secret_names(base)
    return found
