"""Compose files (Compose spec, no ``version:``) built as Python dicts, dumped with yaml.safe_dump.

Two projects:

- ``compose/base.yaml`` -- project ``bankflow``, long-lived: postgres, redis, nginx. It owns the
  two networks: ``edge`` (nginx and the app services) and ``data`` (``internal: true``: postgres,
  redis and the app services that need them; no route out, no published port).
- ``compose/app.yaml`` -- project ``bankflow-app-${BANKFLOW_RELEASE}``: site, saas, api of one
  release, so two releases run side by side. Each joins the base networks (``external: true``)
  with the alias ``<service>-${BANKFLOW_RELEASE}``, which is what the agent writes into nginx's
  upstream include.

Only the port holder publishes ports (80, 443; the verify listener on the host's 127.0.0.1
only), for nginx, which joins its network namespace (``edge_ports.py``). Secrets are never inline
and never in a container's environment: compose ``secrets:`` (one 0600 file per service and value
under ``layout.SECRETS_DIR``, owned by that service's uid; see render/container_secrets.py) and
nginx's key as a single-file mount. Images are pulled by digest, never built. Every container is
locked down as far as its image allows (catalog.hardening, render/lockdown.py): read-only root
filesystem, tmpfs where it writes, all capabilities dropped but the listed ones,
no-new-privileges, a pids limit, and its own log directory only (catalog.service_log_dir).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import yaml

from bankflow_infra import catalog
from bankflow_infra.contract import layout
from bankflow_infra.contract.release import (
    APP_PROJECT_PREFIX,
    BASE_PROJECT,
    ORIGIN_KEY,
    PGBACKREST_CONFIG,
    PGBACKREST_CONTAINER_CONFIG,
    PITR_STANZA,
    REGISTRY_PASSWORD,
    RELEASE_ENV_VAR,
    release_alias,
    secret_path,
)
from bankflow_infra.render import container_secrets, edge_ports, managed
from bankflow_infra.render.lockdown import lockdown
from bankflow_infra.render.model import NginxParams
from bankflow_infra.settings import Settings

BASE_FILE: Final = "compose/base.yaml"
APP_FILE: Final = "compose/app.yaml"

# Bundle paths of the secret files; on the host they live in layout.SECRETS_DIR under the same name.
APP_ENV_FILE: Final = "secrets/app.env"
POSTGRES_ENV_FILE: Final = "secrets/postgres.env"
REDIS_ENV_FILE: Final = "secrets/redis.env"
ORIGIN_KEY_FILE: Final = secret_path(ORIGIN_KEY)
REGISTRY_PASSWORD_FILE: Final = secret_path(REGISTRY_PASSWORD)
ORIGIN_CERT_FILE: Final = "tls/origin.pem"  # on the host: layout.TLS_DIR (copied by the agent)

DIGEST_LABEL: Final = "com.bankflow.service-digest"
# Compose interpolation, set by the agent; `:?` makes compose refuse to run without it rather
# than silently create a project and aliases with an empty release id.
RELEASE_VAR: Final = f"${{{RELEASE_ENV_VAR}:?set by bankflow-agent}}"

_EDGE = "edge"
_DATA = "data"
_POSTGRES_DATA = "/var/lib/postgresql/data"
_REDIS_DATA = "/data"

_HEALTH_TIMING: Final[Mapping[str, Any]] = {
    "interval": "10s",
    "timeout": "5s",
    "retries": 6,
    "start_period": "30s",
}
_STOP_GRACE: Final[Mapping[str, str]] = {"postgres": "60s", "redis": "30s", "nginx": "30s"}
_APP_STOP_GRACE: Final = "30s"


def host_secret_path(bundle_path: str) -> str:
    """Where a bundle's ``secrets/<name>`` lives on the host."""
    return f"{layout.SECRETS_DIR}/{bundle_path.removeprefix('secrets/')}"


def _logging() -> dict[str, Any]:
    return {
        "driver": catalog.LOG_DRIVER,
        "options": {"max-size": catalog.LOG_MAX_SIZE, "max-file": str(catalog.LOG_MAX_FILE)},
    }


def _limits(limits: catalog.Limits) -> dict[str, Any]:
    return {"resources": {"limits": {"cpus": limits.cpus, "memory": limits.memory}}}


def _healthcheck(test: list[str]) -> dict[str, Any]:
    return {"test": test, **_HEALTH_TIMING}


def _bind(source: str, target: str, *, read_only: bool = False, must_exist: bool = False) -> dict[str, Any]:
    mount: dict[str, Any] = {"type": "bind", "source": source, "target": target}
    if read_only:
        mount["read_only"] = True
    if must_exist:
        # Fail instead of letting Docker create an empty directory: for PostgreSQL data that would
        # mean silently writing to the droplet disk when the data volume is not mounted.
        mount["bind"] = {"create_host_path": False}
    return mount


def _common(service: str, image: str, restart: str, limits: catalog.Limits) -> dict[str, Any]:
    return {
        "image": image,
        "restart": restart,
        **lockdown(service),
        "logging": _logging(),
        "deploy": _limits(limits),
    }


def _secrets(service: str, names: tuple[str, ...]) -> dict[str, Any]:
    """The service's own secret files (compose ``secrets:``), never their values in its environment."""
    return {"secrets": container_secrets.service_refs(service, names)} if names else {}


def declared_secrets(definitions: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The project's ``secrets:``: every secret its services use, each its service's own host file."""
    return container_secrets.declarations(
        {name: tuple(ref["target"] for ref in body.get("secrets", ())) for name, body in definitions.items()}
    )


# --------------------------------------------------------------------------- base project


PGBACKREST_CONFIG_FILE: Final = secret_path(PGBACKREST_CONFIG)


def _archiving_command(pitr: bool) -> list[str]:
    """PostgreSQL's settings for continuous archiving (pgBackRest pushes each WAL segment; a
    segment switch at least every archive_timeout seconds while there are writes: the RPO). Without
    a pgBackRest config (no cipher pass yet) nothing is archived: an archive_command that can never
    succeed would keep every WAL segment in pg_wal until the volume is full."""
    if not pitr:
        return []
    settings = {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_timeout": str(catalog.ARCHIVE_TIMEOUT_SECONDS),
        "archive_command": f"pgbackrest --stanza={PITR_STANZA} archive-push %p",
    }
    return ["postgres", *[arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]]


def _postgres(service: catalog.BaseService, settings: Settings, pitr: bool = False) -> dict[str, Any]:
    data_dir = catalog.postgres_data_dir(settings)
    volume = (
        _bind(data_dir, _POSTGRES_DATA, must_exist=True)
        if data_dir is not None
        else {"type": "volume", "source": "postgres-data", "target": _POSTGRES_DATA}
    )
    # pg_isready over TCP, not the socket: during first initialisation the image runs a temporary
    # server on the socket only, which must not count as healthy.
    ready = [
        "CMD",
        "pg_isready",
        "-h",
        "127.0.0.1",
        "-p",
        str(service.port),
        "-U",
        catalog.DATABASE_USER,
        "-d",
        catalog.DATABASE_NAME,
    ]
    volumes = [volume]
    if pitr:  # pgbackrest's default config path; the file is 0600 uid 70 on the host
        volumes.append(_bind(host_secret_path(PGBACKREST_CONFIG_FILE), PGBACKREST_CONTAINER_CONFIG,
                             read_only=True, must_exist=True))  # fmt: skip
    command = _archiving_command(pitr)
    names = container_secrets.service_secret_names(service.name)
    return {
        **_common(service.name, service.image, service.restart, service.limits),
        **({"command": command} if command else {}),
        "environment": {
            "POSTGRES_USER": catalog.DATABASE_USER,
            "POSTGRES_DB": catalog.DATABASE_NAME,
            **container_secrets.file_variables(names),  # POSTGRES_PASSWORD_FILE: the image reads it
        },
        **_secrets(service.name, names),
        "volumes": volumes,
        "networks": [_DATA],
        "healthcheck": _healthcheck(ready),
        "stop_grace_period": _STOP_GRACE["postgres"],
    }


def _redis(service: catalog.BaseService) -> dict[str, Any]:
    # The password reaches redis-server as config on stdin (`redis-server -`), never as an argument:
    # arguments are world-readable in /proc on the host. The sh reads the secret file
    # (REDIS_PASSWORD_FILE) into a shell variable (not exported: not in redis-server's environment)
    # and expands it in the heredoc; no password, no start. `exec` keeps redis-server as PID 1 so
    # `docker stop` reaches it and the append-only file is closed cleanly.
    names = container_secrets.service_secret_names(service.name)
    read = '"$$(cat "$$REDIS_PASSWORD_FILE")"'
    start = (
        f'password={read} && [ -n "$$password" ] || exit 1\n'
        "exec docker-entrypoint.sh redis-server - --appendonly yes --appendfsync everysec"
        f" --port {service.port} <<EOF\nrequirepass $$password\nEOF\n"
    )
    # REDISCLI_AUTH, set for redis-cli alone, authenticates it without a password argument;
    # without grep, an error answer (NOAUTH) could still exit 0.
    ping = ["CMD-SHELL", f"REDISCLI_AUTH={read} redis-cli --no-auth-warning -p {service.port} ping"
            " | grep -q PONG"]  # fmt: skip
    return {
        **_common(service.name, service.image, service.restart, service.limits),
        "command": ["sh", "-c", start],
        "environment": container_secrets.file_variables(names),  # REDIS_PASSWORD_FILE
        **_secrets(service.name, names),
        "volumes": [{"type": "volume", "source": "redis-data", "target": _REDIS_DATA}],
        "networks": [_DATA],
        "healthcheck": _healthcheck(ping),
        "stop_grace_period": _STOP_GRACE["redis"],
    }


def _nginx(service: catalog.BaseService, params: NginxParams) -> dict[str, Any]:
    health = f"http://127.0.0.1:{params.health_port}{catalog.NGINX_HEALTH_PATH}"
    return {
        **_common(service.name, service.image, service.restart, service.limits),
        # The image's default command; its nginx.conf is the bundle's (the live dir over /etc/nginx).
        "command": ["nginx", "-g", "daemon off;"],
        # ports and networks belong to the port holder, whose namespace nginx joins (edge_ports.py)
        **edge_ports.nginx_networking(),
        "volumes": [
            _bind(layout.NGINX_LIVE_DIR, params.config_dir, read_only=True, must_exist=True),
            _bind(layout.TLS_DIR, catalog.NGINX_TLS_DIR, read_only=True, must_exist=True),
            _bind(host_secret_path(ORIGIN_KEY_FILE), params.key_path, read_only=True, must_exist=True),
            # its own log directory (uid 101's; the access log, issue 12 item 4), not LOGS_DIR
            _bind(catalog.service_log_dir(service.name), catalog.NGINX_CONTAINER_LOG_DIR, must_exist=True),
        ],
        "healthcheck": _healthcheck(["CMD", "wget", "-q", "-O", "/dev/null", health]),
        "stop_grace_period": _STOP_GRACE["nginx"],
    }


def base_service_definitions(
    settings: Settings, params: NginxParams, pitr: bool = False
) -> dict[str, dict[str, Any]]:
    """postgres, redis, nginx -- without their digest labels (the digests are computed from these).
    ``pitr``: the bundle has secrets/pgbackrest.conf (continuous archiving on)."""
    definitions: dict[str, dict[str, Any]] = {}
    for service in catalog.base_services(settings):
        if service.name == "postgres":
            definitions[service.name] = _postgres(service, settings, pitr)
        elif service.name == "redis":
            definitions[service.name] = _redis(service)
        elif service.name == "nginx":
            definitions[service.name] = _nginx(service, params)
            balanced = settings.load_balanced
            holder = edge_ports.port_holder(params, _EDGE, service.restart, _logging(), balanced)
            definitions[edge_ports.PORT_HOLDER] = holder
        else:  # pragma: no cover - the catalog and this module change together
            raise ValueError(f"no compose definition for base service {service.name!r}")
    return definitions


def base_compose(
    settings: Settings, definitions: Mapping[str, Mapping[str, Any]], digests: Mapping[str, str]
) -> dict[str, Any]:
    # The digest label changes exactly when what the service depends on changes (including mounted
    # files such as the TLS key), so `compose up -d` recreates that container and no other.
    services = {name: {**body, "labels": {DIGEST_LABEL: digests[name]}} for name, body in definitions.items()}
    volumes: dict[str, Any] = {}
    if "redis" in definitions:  # not with the managed Valkey cluster
        volumes["redis-data"] = {"name": "bankflow-redis-data"}
    if "postgres" in definitions and catalog.postgres_data_dir(settings) is None:
        volumes["postgres-data"] = {"name": "bankflow-postgres-data"}
    return {
        "name": BASE_PROJECT,
        "services": services,
        "secrets": declared_secrets(definitions),
        "networks": {
            _EDGE: {"name": catalog.EDGE_NETWORK, "driver": "bridge"},
            _DATA: {"name": catalog.DATA_NETWORK, "driver": "bridge", "internal": True},
        },
        "volumes": dict(sorted(volumes.items())),
    }


# --------------------------------------------------------------------------- app project


def sibling_url(service: str) -> str:
    """The internal URL of a sibling app service *of this release*.

    On the shared network every release's ``api`` answers to the plain name ``api``; only the
    release alias is unique, so saas of a new release never talks to the old release's api.
    """
    return f"http://{release_alias(service, RELEASE_VAR)}:{catalog.port_of(service)}"


def managed_ca_mounts(settings: Settings) -> dict[str, str]:
    """Host path -> container path of each managed cluster's CA (public, layout.TLS_DIR where the
    agent copies the bundle's tls/), for the app services that connect to the clusters."""
    wanted = (
        (settings.scale.database is not None, managed.DATABASE_CA_FILE, managed.DATABASE_CA_CONTAINER_PATH),
        (settings.scale.cache is not None, managed.CACHE_CA_FILE, managed.CACHE_CA_CONTAINER_PATH),
    )
    return {managed.host_tls_path(bundle_path): inside for on, bundle_path, inside in wanted if on}


def _app(service: catalog.AppService, settings: Settings) -> dict[str, Any]:
    ca_mounts = managed_ca_mounts(settings) if service.secret_env else {}
    managed_cache = settings.scale.cache is not None
    cache_ca = {managed.CACHE_CA_ENV: managed.CACHE_CA_CONTAINER_PATH} if managed_cache else {}
    values = {
        **service.environment,
        **(cache_ca if service.secret_env else {}),
        **{key: sibling_url(sibling) for key, sibling in service.calls.items()},
        **container_secrets.file_variables(service.secret_env),  # the app images read *_FILE
    }
    environment = {key: values[key] for key in sorted(values)}
    depends = set(service.calls.values()) - {service.name}
    networks: dict[str, Any] = {_EDGE: {"aliases": [release_alias(service.name, RELEASE_VAR)]}}
    if service.secret_env:  # needs the database/cache: joins the internal data network too
        networks[_DATA] = {"aliases": [release_alias(service.name, RELEASE_VAR)]}
    body: dict[str, Any] = {
        **_common(service.name, service.image, service.restart, service.limits),
        "environment": environment,
        **_secrets(service.name, service.secret_env),
    }
    if service.volumes or ca_mounts:
        # must exist: a directory Docker created would be root's, unwritable by the service's uid
        body["volumes"] = [
            *(_bind(source, target, must_exist=True) for source, target in service.volumes),
            *(_bind(source, target, read_only=True, must_exist=True) for source, target in ca_mounts.items()),
        ]
    if depends:
        body["depends_on"] = {name: {"condition": "service_healthy"} for name in sorted(depends)}
    body["networks"] = networks
    body["healthcheck"] = _healthcheck(list(service.health_command))
    body["stop_grace_period"] = _APP_STOP_GRACE
    return body


def app_service_definitions(settings: Settings) -> dict[str, dict[str, Any]]:
    return {service.name: _app(service, settings) for service in catalog.app_services(settings)}


def app_compose(definitions: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "name": f"{APP_PROJECT_PREFIX}{RELEASE_VAR}",
        "services": dict(definitions),
        "secrets": declared_secrets(definitions),
        "networks": {
            _EDGE: {"name": catalog.EDGE_NETWORK, "external": True},
            _DATA: {"name": catalog.DATA_NETWORK, "external": True},
        },
    }


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings (the redis start script) as literal blocks."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def dump(document: Mapping[str, Any], title: str) -> str:
    header = (
        f"# {title}\n"
        "# Rendered by bankflow_infra.render.compose -- do not edit on the host; change the settings.\n"
    )
    body = yaml.dump(dict(document), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
    return header + body
