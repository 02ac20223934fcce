"""The service catalog: the one description of what runs on a BankFlow droplet.

Ports, health paths, images, environment, the services each one calls, volumes, resource
limits and restart policies of every service live here and nowhere else. Renderers, Pulumi
components, health checks and the ops CLI all read them from this module. Where things live on
the host (``/opt/bankflow`` and its folders) and how releases are named are the contract's
(``bankflow_infra.contract.layout`` / ``.release``): the agent reads those too.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bankflow_infra.contract.layout import DATA_VOLUME_MOUNT, LOGS_DIR, UPLOADS_DIR
from bankflow_infra.contract.upstreams import DEFAULT_DRAIN_SECONDS
from bankflow_infra.settings import APP_SERVICES, Environment, Settings

SSH_USER: Final = "root"  # Ubuntu droplets: root by key only (sshd drop-in)
SSH_PORT: Final = 22

# --------------------------------------------------------------------------- shared values
HEALTH_PATH: Final = "/health"
NGINX_HEALTH_PATH: Final = "/health"  # answered by nginx itself, for its container health check
DATABASE_NAME: Final = "bankflow"
DATABASE_USER: Final = "bankflow"
POSTGRES_PORT: Final = 5432
REDIS_PORT: Final = 6379
HTTP_PORT: Final = 80
HTTPS_PORT: Final = 443

# Images by digest (issue 12, item 6): "name:tag@sha256:<64 hex>". The tag says what it is (and is
# what the update bots bump); the digest is what Docker pulls, so a re-pushed tag never changes
# what runs. No registry is reachable where this is written: each digest below is one the official
# image published and public repositories pin (found with the code search, several independent
# repositories each); the update bots (Renovate/Dependabot, .github/) propose newer ones as PRs.
# The postgres image is ours: the pinned postgres:15-alpine + pgBackRest (files/postgres/Dockerfile,
# built and pushed by .github/workflows/postgres-image.yml), tagged by the Dockerfile's content
# hash so a change to it is a new tag and an unchanged file always pulls the same image.
POSTGRES_BASE_IMAGE: Final = (  # Alpine (musl) forever: see the Dockerfile, whose FROM is this
    "postgres:15-alpine@sha256:fe0737ba566a2c5b2a28f34433c0a423261900ec17b9bf7ad115e1aae7e57f1b"
)
POSTGRES_DOCKERFILE: Final = Path(__file__).resolve().parents[1] / "files" / "postgres" / "Dockerfile"
POSTGRES_IMAGE_REPOSITORY: Final = "bankflow-postgres"
REDIS_IMAGE: Final = "redis:7-alpine@sha256:6ab0b6e7381779332f97b8ca76193e45b0756f38d4c0dcda72dbb3c32061ab99"
NGINX_IMAGE: Final = (  # 1.28: the stable branch (1.27 is out of support)
    "nginx:1.28-alpine@sha256:a8b39bd9cf0f83869a2162827a0caf6137ddf759d50a171451b335cecc87d236"
)
# The port holder nginx's network namespace belongs to (render/edge_ports.py): registry.k8s.io/pause
# 3.10, pinned by the digest its publishers list (kind, KubeRay and kubernetes-client manifests pin
# exactly this digest).
PORT_HOLDER_IMAGE: Final = (
    "registry.k8s.io/pause:3.10@sha256:ee6521f290b2168b6e0935a181d4cff9be1ac3f505666ef0e3c98fae8199917a"
)
# `[registry/]repository:tag@sha256:<64 lowercase hex>`: the only form production accepts.
PINNED_IMAGE_RE: Final = re.compile(
    r"^[a-z0-9][a-z0-9._/:-]*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}@sha256:[0-9a-f]{64}$"
)


class UnpinnedImageError(ValueError):
    """An image reference without a digest where one is required."""


def is_pinned(image: str) -> bool:
    return PINNED_IMAGE_RE.fullmatch(image) is not None


def require_pinned(image: str, what: str) -> str:
    """``image`` when it carries a digest, else one clear error naming ``what`` and the valid form."""
    if not is_pinned(image):
        raise UnpinnedImageError(
            f"{what}: image {image!r} has no digest; production runs images by digest only: "
            "use 'name:tag@sha256:<64 hex>' (docker buildx imagetools inspect name:tag prints it)"
        )
    return image

# Secret environment variables of the app services: their values come from the 0600 env file.
SECRET_ENV_NAMES: Final = ("DATABASE_URL", "REDIS_URL", "JWT_SECRET")
# The app service whose image runs the release's migrate command (release.migrateCommand).
MIGRATE_SERVICE: Final = "api"
# With a managed database (issue 13) the apps connect through its connection pool, in transaction
# mode: session state such as the advisory lock migration tools hold for the whole run does not
# survive between transactions there. The migrate command connects to the cluster directly, with
# this URL (only MIGRATE_SERVICE reads it; the agent points DATABASE_URL_FILE at it for migrate).
MIGRATE_DATABASE_URL: Final = "DATABASE_MIGRATE_URL"


@dataclass(frozen=True)
class Limits:
    cpus: str  # compose `deploy.resources.limits.cpus`
    memory: str  # compose memory string (256M, 1G)


# The seed's numbers, per environment.
LIMITS: Final[Mapping[Environment, Mapping[str, Limits]]] = {
    "staging": {
        "site": Limits("0.25", "256M"),
        "saas": Limits("0.5", "512M"),
        "api": Limits("1.0", "1G"),
        "postgres": Limits("1.0", "1G"),
        "redis": Limits("0.25", "256M"),
        "nginx": Limits("0.25", "128M"),
    },
    "production": {
        "site": Limits("0.5", "512M"),
        "saas": Limits("1.0", "1G"),
        "api": Limits("2.0", "2G"),
        "postgres": Limits("2.0", "2G"),
        "redis": Limits("0.5", "512M"),
        "nginx": Limits("0.5", "256M"),
    },
}
RESTART_POLICY: Final[Mapping[Environment, str]] = {"staging": "unless-stopped", "production": "always"}
RUST_LOG: Final[Mapping[Environment, str]] = {"staging": "info", "production": "warn"}

# What each app service listens on and what it needs; everything else is derived.
_PORTS: Final = {"site": 3000, "saas": 3001, "api": 8080}
# Drain bound per service (seconds): the marketing site answers fast; the app and the API may be
# in the middle of a statement upload or a reconciliation, so they get nginx's whole shutdown
# window (contract.upstreams.DEFAULT_DRAIN_SECONDS, also its worker_shutdown_timeout).
_DRAIN_SECONDS: Final = {"site": 10, "saas": DEFAULT_DRAIN_SECONDS, "api": DEFAULT_DRAIN_SECONDS}
_NEEDS_DATA: Final = {"site": False, "saas": True, "api": True}
# Which sibling app service each one calls, and the variable that carries the sibling's URL: the
# renderer turns each into that release's own address of the sibling (see render/compose.py).
_CALLS: Final[Mapping[str, Mapping[str, str]]] = {"saas": {"API_BASE_URL": "api"}}
_UPLOADS_VOLUME: Final = (UPLOADS_DIR, "/app/uploads")


@dataclass(frozen=True)
class AppService:
    name: str
    port: int
    health_path: str
    image: str  # registry/repository:tag
    hostnames: tuple[str, ...]  # first one is canonical
    environment: Mapping[str, str]  # non-secret values only, sibling URLs excepted (see calls)
    calls: Mapping[str, str]  # variable -> the sibling app service whose internal URL it holds
    secret_env: tuple[str, ...]  # names read from the secret env file
    volumes: tuple[tuple[str, str], ...]  # (host dir, container path)
    limits: Limits
    restart: str
    health_command: tuple[str, ...]  # compose healthcheck `test`, exec form
    upstream: str  # nginx upstream name in the switched include file
    # How long a switch waits for this service's in-flight requests before stopping a release
    # (at most nginx's worker_shutdown_timeout: nginx ends its old workers then anyway).
    drain_seconds: int

    @property
    def public_url(self) -> str:
        return f"https://{self.hostnames[0]}"


@dataclass(frozen=True)
class BaseService:
    name: str
    image: str
    port: int | None  # container port on the internal network (nginx publishes 80/443 instead)
    limits: Limits
    restart: str


def port_of(service: str) -> int:
    return _PORTS[service]


def default_health_command(service: str) -> tuple[str, ...]:
    # The app images are not ours: this is what the seed's images ship; override per service with
    # bankflow:release.healthCommands when an image has no curl.
    return ("CMD", "curl", "-fsS", f"http://localhost:{_PORTS[service]}{HEALTH_PATH}")


def secret_env_of(service: str, managed_database: bool = False) -> tuple[str, ...]:
    """The secret values an app service reads (the same in every single-droplet stack; with a
    managed database the migrate service also reads :data:`MIGRATE_DATABASE_URL`)."""
    if not _NEEDS_DATA[service]:
        return ()
    if managed_database and service == MIGRATE_SERVICE:
        return (*SECRET_ENV_NAMES, MIGRATE_DATABASE_URL)
    return SECRET_ENV_NAMES


def image_ref(settings: Settings, service: str) -> str:
    """``registry/repository:tag``, plus ``@sha256:...`` when release.digests has the image's digest."""
    release = settings.release
    digest = release.digests.get(service)
    return f"{release.registry}/{release.images[service]}:{release.tag}" + (f"@{digest}" if digest else "")


def app_service(settings: Settings, name: str) -> AppService:
    env = settings.environment
    hostnames = settings.hostnames[name]
    environment = {
        "RUST_LOG": RUST_LOG[env],
        "ENVIRONMENT": env,
        "DOMAIN": hostnames[0],
        "PORT": str(_PORTS[name]),
    }
    return AppService(
        name=name,
        port=_PORTS[name],
        health_path=HEALTH_PATH,
        image=image_ref(settings, name),
        hostnames=hostnames,
        environment=environment,
        calls=_CALLS.get(name, {}),
        secret_env=secret_env_of(name, settings.scale.database is not None),
        # each service its own log directory, never the parent LOGS_DIR (issue 12, item 3)
        volumes=(
            *((_UPLOADS_VOLUME,) if _NEEDS_DATA[name] else ()),
            (service_log_dir(name), APP_CONTAINER_LOG_DIR),
        ),
        limits=LIMITS[env][name],
        restart=RESTART_POLICY[env],
        health_command=settings.release.health_commands.get(name) or default_health_command(name),
        upstream=f"bankflow_{name}",
        drain_seconds=_DRAIN_SECONDS[name],
    )


def app_services(settings: Settings) -> tuple[AppService, ...]:
    return tuple(app_service(settings, name) for name in APP_SERVICES)


def postgres_image(settings: Settings) -> str:
    """``<registry>/bankflow-postgres:15-pgbackrest-<sha12 of the Dockerfile>`` (the workflow's tag)."""
    digest = hashlib.sha256(POSTGRES_DOCKERFILE.read_bytes()).hexdigest()[:12]
    return f"{settings.release.registry}/{POSTGRES_IMAGE_REPOSITORY}:15-pgbackrest-{digest}"


def _public_image(settings: Settings, image: str, service: str) -> str:
    """A public image as production may run it: by digest (a tag alone can be re-pushed)."""
    if settings.environment == "production":
        return require_pinned(image, f"catalog: the {service} image")
    return image


def base_services(settings: Settings) -> tuple[BaseService, ...]:
    """postgres, redis, nginx; without postgres when the stack's database is DigitalOcean's managed
    cluster, without redis when its cache is the managed Valkey cluster (issue 13)."""
    env = settings.environment
    restart = RESTART_POLICY[env]
    services = []
    if settings.scale.database is None:
        # postgres is ours, tagged by its Dockerfile's content (which pins its base by digest)
        postgres = postgres_image(settings)
        services.append(BaseService("postgres", postgres, POSTGRES_PORT, LIMITS[env]["postgres"], restart))
    if settings.scale.cache is None:
        redis = _public_image(settings, REDIS_IMAGE, "redis")
        services.append(BaseService("redis", redis, REDIS_PORT, LIMITS[env]["redis"], restart))
    nginx = _public_image(settings, NGINX_IMAGE, "nginx")
    services.append(BaseService("nginx", nginx, None, LIMITS[env]["nginx"], restart))
    return tuple(services)


POSTGRES_CONTAINER_DATA: Final = "/var/lib/postgresql/data"  # PGDATA in the postgres image
ARCHIVE_TIMEOUT_SECONDS: Final = 60  # WAL segment switch at least this often with writes: the RPO


def postgres_data_dir(settings: Settings) -> str | None:
    """Host directory for PostgreSQL data: the attached volume when there is one, else a named volume."""
    return f"{DATA_VOLUME_MOUNT}/postgres" if settings.server.volume_size_gb > 0 else None


# The apps' least-privilege role: LOGIN, no superuser, owner of the app's objects in the
# `public` schema; the host agent creates it and applies its password on every deploy
# (host/database_roles.py). DATABASE_USER stays the superuser, used by the agent only.
DATABASE_APP_ROLE: Final = "bankflow_app"


def database_url(password: str, user: str = DATABASE_USER) -> str:
    return f"postgres://{user}:{password}@postgres:{POSTGRES_PORT}/{DATABASE_NAME}"


def redis_url(password: str) -> str:
    return f"redis://:{password}@redis:{REDIS_PORT}/0"


# --------------------------------------------------------------------------- containers
EDGE_NETWORK: Final = "bankflow-edge"  # nginx + app services (may reach the internet)
DATA_NETWORK: Final = "bankflow-data"  # internal: postgres, redis and the app services that need data
# The live nginx dir (contract.layout.NGINX_LIVE_DIR) as mounted (read-only) in the container: over
# /etc/nginx itself, so a plain `nginx -t` / `nginx -s reload` in the container uses the bundle's
# nginx.conf, and a directory (not single-file) mount so the agent's atomic file replacements are
# seen without a restart.
NGINX_CONFIG_DIR: Final = "/etc/nginx"
NGINX_TLS_DIR: Final = "/etc/bankflow-tls"  # layout.TLS_DIR as mounted (read-only) in the nginx container
NGINX_KEY_PATH: Final = "/run/secrets/origin.key"  # layout.SECRETS_DIR/origin.key, a single-file mount
NGINX_HEALTH_PORT: Final = 8081  # loopback-only listener inside the nginx container for NGINX_HEALTH_PATH
# Container log rotation, for the Docker daemon default and for every compose service alike.
LOG_DRIVER: Final = "local"
LOG_MAX_SIZE: Final = "10m"
LOG_MAX_FILE: Final = 5

# --------------------------------------------------------------------------- security (issue 12)
# Every service runs as its own unprivileged uid where its image allows (postgres and redis: the
# images' own users; nginx: the image's `nginx` user for workers, see render/compose.py), so each
# owns its own log directory and nothing else on the host.
SERVICE_UIDS: Final[Mapping[str, int]] = {
    "site": 10001,
    "saas": 10002,
    "api": 10003,
    "postgres": 70,  # postgres:15-alpine's `postgres`
    "redis": 999,  # redis:7-alpine's `redis`
    "nginx": 101,  # nginx:*-alpine's `nginx` (worker processes; the master opens the logs)
}
# Logs: one host directory per service, `LOGS_DIR/<service>/`, mounted into that service's
# container only. The parent LOGS_DIR (root, 0755) is mounted into no container, so no container
# can plant a path that a root process (logrotate, the log shipper) would follow outside its own
# directory; logrotate works in each directory as that directory's owner (`su`).
APP_CONTAINER_LOG_DIR: Final = "/app/logs"
NGINX_CONTAINER_LOG_DIR: Final = "/var/log/bankflow"
ACCESS_LOG_NAME: Final = "access.log"  # nginx's access log (Marco Civil art. 15), JSON lines


def service_log_dir(service: str) -> str:
    """The host directory one service writes its log files in (and nothing else does)."""
    if service not in SERVICE_UIDS:
        raise KeyError(f"no log directory for unknown service {service!r}")
    return f"{LOGS_DIR}/{service}"


# The visitor's source port (Marco Civil art. 15 asks for it with the IP). Cloudflare does not send
# it by default: a request-header transform rule on the zone sets this header (components/), and
# nginx logs it, overwriting whatever a client sent (render/nginx.py).
CLIENT_PORT_HEADER: Final = "X-Client-Source-Port"


# --------------------------------------------------------------------------- containers (issue 12, item 5)
# Every container: read-only root filesystem, every capability dropped and only the listed ones
# added back, no-new-privileges, a pids limit, tmpfs where the process must write outside its
# volumes. Per service what its image allows (render/compose.py turns these into compose keys).
# The app services and redis run as their own uid from the start; postgres and nginx start as
# root because their images' entrypoints need it (below) and drop to their users themselves.
UPLOADS_GID: Final = 10000  # group of the uploads directory: saas and api both write it


@dataclass(frozen=True)
class Hardening:
    user: str | None  # compose `user` ("uid:gid"); None: the image starts as root and drops itself
    cap_add: tuple[str, ...]  # the only capabilities kept (all others dropped)
    tmpfs: tuple[str, ...]  # "container path:mount options", memory-backed and size-bounded
    pids_limit: int  # processes AND threads (the pids cgroup counts both)


_TMP: Final = "/tmp:size=64m,mode=1777"
# Rust services: tokio's blocking pool alone may grow to 512 threads under load.
_APP_PIDS: Final = 1024


def hardening(service: str) -> Hardening:
    """What ``service``'s container keeps: see the comment of each case for why."""
    if service not in SERVICE_UIDS:
        raise KeyError(f"no container hardening for unknown service {service!r}")
    uid = SERVICE_UIDS[service]
    if service in ("saas", "api"):
        # the uploads directory is shared (group UPLOADS_GID, setgid, 2770): both must write it
        return Hardening(f"{uid}:{UPLOADS_GID}", (), (_TMP,), _APP_PIDS)
    if service == "site":
        return Hardening(f"{uid}:{uid}", (), (_TMP,), _APP_PIDS)
    if service == "redis":
        # redis:7-alpine's entrypoint "allows the container to be started with --user": as uid 999
        # it skips its chown and su-exec, so nothing needs a capability. gid 1000 is the image's
        # `redis` group; the data volume's files are already the image user's.
        return Hardening(f"{uid}:1000", (), (_TMP,), 64)
    if service == "postgres":
        # The entrypoint starts as root: it chmods/chowns PGDATA (CHOWN, FOWNER; DAC_OVERRIDE to
        # walk the 0700 directory uid 70 owns) and drops to postgres with su-exec (SETUID,
        # SETGID); the agent's pgBackRest runs through `su-exec postgres` in this container too
        # (host/backups/pitr.py). Sockets and pid file in /var/run/postgresql; pgBackRest's lock
        # path /tmp/pgbackrest (its file log is off: render/backup.py).
        return Hardening(
            None,
            ("CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"),
            (_TMP, f"/tmp/pgbackrest:size=1m,uid={uid},gid={uid},mode=0750",
             f"/var/run/postgresql:size=1m,uid={uid},gid={uid},mode=2775"),
            512,  # max_connections backends + background workers + archive_command children
        )  # fmt: skip
    if service == "nginx":
        # The master stays root: it reads the origin key (0600 root) and opens the logs, then
        # its workers run as the image's `nginx` (user directive: SETUID, SETGID; CHOWN for the
        # temp directories it hands them). DAC_OVERRIDE: the log directory is uid 101's, and a
        # root without it is an ordinary uid for file permissions. No KILL: the master tells its
        # workers to quit/reload over its channel (a reload works without it, tested); only its
        # SIGKILL fallback on a fast shutdown needs it, and when the master exits the container's
        # pid namespace ends every process anyway. NET_BIND_SERVICE: 80/443 inside (Docker >=
        # 20.10 lowers ip_unprivileged_port_start in the container's network namespace, other
        # engines may not). Writes: pid file in /run, temp files in /var/cache/nginx (the image's
        # compiled-in temp paths).
        return Hardening(
            None,
            ("CHOWN", "DAC_OVERRIDE", "NET_BIND_SERVICE", "SETGID", "SETUID"),
            ("/run:size=1m,mode=0755", "/var/cache/nginx:size=64m,mode=0755"),
            64,  # one worker per core + cache manager + health checks
        )
    raise KeyError(f"no container hardening for service {service!r}")  # pragma: no cover
