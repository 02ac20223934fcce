"""``render_bundle``: settings + catalog + plain secret values -> one release's files and digests.

Pure: the same inputs give the same bytes, so the digest names the release and a no-op
``pulumi up`` changes nothing on the host.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

from bankflow_infra import catalog
from bankflow_infra.contract.release import APP_PROJECT_PREFIX, BASE_PROJECT, MANIFEST_NAME, MANIFEST_SCHEMA
from bankflow_infra.render import (
    alerts,
    backup,
    compose,
    container_secrets,
    host_access,
    host_files,
    uploads_backup,
)
from bankflow_infra.render import managed as managed_services
from bankflow_infra.render import nginx as nginx_conf
from bankflow_infra.render.managed import ManagedServices
from bankflow_infra.render.model import (
    FILE_MODE,
    ORIGIN_PULL_CA_NAME,
    SECRET_FILE_MODE,
    Bundle,
    BundleFile,
    BundleInputError,
    BundleSecrets,
    CloudflareRanges,
    NginxParams,
    bundle_digest,
)
from bankflow_infra.settings import Settings

NGINX_DIR: Final = "nginx"
MIGRATE_SERVICE: Final = catalog.MIGRATE_SERVICE
# Authenticated Origin Pulls' CA (public): beside the origin certificate in tls/, which the agent
# copies to layout.TLS_DIR (mounted at catalog.NGINX_TLS_DIR, NginxParams.client_ca_path).
ORIGIN_PULL_CA_FILE: Final = f"tls/{ORIGIN_PULL_CA_NAME}"


def _env_file(values: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def _app_values(secrets: BundleSecrets, services: ManagedServices) -> dict[str, str]:
    """app.env's values: the managed clusters' URLs (issue 13) where the stack has them."""
    # The apps log in as the least-privilege role once the stack generates its password; a
    # bundle without one (rendered before issue 11) keeps the superuser, as before.
    if services.database is not None:
        database_url = managed_services.database_url(services.database)  # through the pool, verify-full
    elif secrets.database_app_password is not None:
        database_url = catalog.database_url(secrets.database_app_password, catalog.DATABASE_APP_ROLE)
    else:
        database_url = catalog.database_url(secrets.postgres_password)
    cache = services.cache
    redis_url = managed_services.cache_url(cache) if cache else catalog.redis_url(secrets.redis_password)
    app_values = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "JWT_SECRET": secrets.jwt_secret,
    }
    if (
        tuple(app_values) != catalog.SECRET_ENV_NAMES
    ):  # pragma: no cover - catalog and renderer change together
        raise ValueError(f"app.env names {tuple(app_values)} differ from catalog.SECRET_ENV_NAMES")
    return app_values


def _base_env_files(secrets: BundleSecrets, services: ManagedServices) -> dict[str, str]:
    """postgres.env and redis.env, for the containers the stack still runs on the droplet."""
    files = {}
    if services.database is None:
        files[compose.POSTGRES_ENV_FILE] = _env_file({"POSTGRES_PASSWORD": secrets.postgres_password})
    if services.cache is None:
        # REDISCLI_AUTH: the health check's redis-cli authenticates without a password argument.
        files[compose.REDIS_ENV_FILE] = _env_file(
            {"REDIS_PASSWORD": secrets.redis_password, "REDISCLI_AUTH": secrets.redis_password}
        )
    return files


def readers_of(services: ManagedServices) -> dict[str, tuple[str, ...]]:
    return container_secrets.readers(services.database is not None, services.cache is not None)


def render_secret_files(
    secrets: BundleSecrets, services: ManagedServices = ManagedServices()  # noqa: B008 - frozen, immutable
) -> dict[str, str]:
    """Bundle path -> text of every secret file (installed 0600 under layout.SECRETS_DIR)."""
    app_values = _app_values(secrets, services)
    files = {
        compose.APP_ENV_FILE: _env_file(app_values),
        **_base_env_files(secrets, services),
        compose.ORIGIN_KEY_FILE: secrets.origin_private_key_pem.strip() + "\n",
    }
    # --- container secrets (issue 12, render/container_secrets.py): each service's own copies ---
    base_values = {"POSTGRES_PASSWORD": secrets.postgres_password, "REDIS_PASSWORD": secrets.redis_password}
    database = services.database
    if database is not None:  # issue 13: the migrate command's direct URL; pg_dump's password
        base_values[catalog.MIGRATE_DATABASE_URL] = managed_services.database_url(database, direct=True)
        files[managed_services.DATABASE_PGPASS_FILE] = managed_services.pgpass(database)
    files.update(container_secrets.secret_files(readers_of(services), {**app_values, **base_values}))
    # --- end container secrets
    if secrets.registry_password is not None:
        # Read by the agent for `docker login --password-stdin`; no newline, it would be part of it.
        files[compose.REGISTRY_PASSWORD_FILE] = secrets.registry_password
    if secrets.spaces_access_key is not None and secrets.spaces_secret_key is not None:
        files[backup.RCLONE_CONFIG_FILE] = backup.render_rclone_config(
            secrets.spaces_access_key, secrets.spaces_secret_key
        )
    # --- uploads backups (issue 11; render/uploads_backup.py): restic's password + Spaces key ---
    files.update(uploads_backup.uploads_secret_files(secrets))
    # --- end uploads backups ---
    return files


def pitr_config(settings: Settings, secrets: BundleSecrets) -> str | None:
    """``secrets/pgbackrest.conf`` when the stack has the cipher pass and a Spaces key, else None.
    None with a managed database: DigitalOcean archives its WAL (its PITR), not pgBackRest."""
    access, secret, cipher = secrets.spaces_access_key, secrets.spaces_secret_key, secrets.backup_cipher_pass
    if access is None or secret is None or cipher is None or settings.scale.database is not None:
        return None
    endpoint = backup.spaces_endpoint(settings.backups.region)
    return backup.render_pgbackrest_config(endpoint, settings.backup_bucket_name, access, secret, cipher)


def _digest_of(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def service_digests(
    settings: Settings,
    definitions: Mapping[str, Mapping[str, Any]],
    nginx_files: Mapping[str, str],
    secret_files: Mapping[str, str],
    origin_certificate_pem: str,
    origin_pull_ca: str | None = None,
    managed_files: Mapping[str, str] = MappingProxyType({}),
) -> dict[str, str]:
    """service -> sha256 of exactly what that service's behaviour depends on: its compose
    definition plus the files it reads. nginx's upstreams.conf is left out: the live copy is the
    agent's, rewritten at every switch, and the bundle's is only its first-boot placeholder.
    ``managed_files``: what the apps read of the managed clusters (issue 13: their CAs, the
    migrate command's URL), empty for a single-droplet stack."""
    inputs: dict[str, dict[str, Any]] = {name: {"compose": body} for name, body in definitions.items()}
    for service in catalog.app_services(settings):
        if service.secret_env:
            inputs[service.name]["files"] = {compose.APP_ENV_FILE: secret_files[compose.APP_ENV_FILE]}
            inputs[service.name]["files"].update(managed_files)
    inputs[MIGRATE_SERVICE]["migrate"] = list(settings.release.migrate_command)
    for base, env_file in (("postgres", compose.POSTGRES_ENV_FILE), ("redis", compose.REDIS_ENV_FILE)):
        if base in inputs:  # not with the managed cluster (issue 13)
            inputs[base]["files"] = {env_file: secret_files[env_file]}
    inputs["nginx"]["files"] = {
        **{
            f"{NGINX_DIR}/{name}": text
            for name, text in nginx_files.items()
            if name != nginx_conf.UPSTREAMS_FILE
        },
        compose.ORIGIN_CERT_FILE: origin_certificate_pem,
        compose.ORIGIN_KEY_FILE: secret_files[compose.ORIGIN_KEY_FILE],
        **({ORIGIN_PULL_CA_FILE: origin_pull_ca} if origin_pull_ca is not None else {}),
    }
    return {name: _digest_of(value) for name, value in sorted(inputs.items())}


def origin_pull_ca_text(pem: str | None) -> str | None:
    """The text of ``tls/origin-pull-ca.pem``: the CA of the client certificate Cloudflare presents
    (Authenticated Origin Pulls). With it the public HTTPS servers refuse any request without that
    certificate; None: no file, and they accept any TLS client the firewall lets through. Only
    certificates: a private key here would be shipped as a non-secret file."""
    if pem is None:
        return None
    text = pem.strip()
    blocks = text.count("-----BEGIN CERTIFICATE-----")
    if blocks == 0 or "PRIVATE KEY" in text or blocks != text.count("-----END CERTIFICATE-----"):
        raise BundleInputError(
            "origin_pull_ca_pem: must be the origin-pull CA's PEM certificate(s) only "
            "(-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----), no key"
        )
    return text + "\n"


def database_roles(app_role: bool) -> dict[str, Any] | None:
    """The manifest's ``database`` entry: which roles the agent creates and whose passwords it
    applies to the running cluster on every switch (host/database_roles.py), and where in the
    bundle each password is. No value, only names. None without the app role's password."""
    if not app_role:
        return None
    return {
        "service": "postgres",
        "database": catalog.DATABASE_NAME,
        "superuser": catalog.DATABASE_USER,
        "superuser_password": {"file": compose.POSTGRES_ENV_FILE, "key": "POSTGRES_PASSWORD"},
        "app_role": catalog.DATABASE_APP_ROLE,
        "app_url": {"file": compose.APP_ENV_FILE, "key": "DATABASE_URL"},
    }


def migrate_entry(settings: Settings, services: ManagedServices) -> dict[str, Any]:
    """The manifest's ``migrate``. With a managed database, ``environment``: what the agent sets
    for the migrate run only (``compose run -e``), so the command reaches the cluster's direct
    port instead of the pool the service itself uses (catalog.MIGRATE_DATABASE_URL)."""
    entry: dict[str, Any] = {"service": MIGRATE_SERVICE, "command": list(settings.release.migrate_command)}
    if services.database is not None:
        direct = container_secrets.container_path(catalog.MIGRATE_DATABASE_URL)
        entry["environment"] = {container_secrets.file_variable("DATABASE_URL"): direct}
    return entry


def scale_flags(services: ManagedServices) -> dict[str, bool]:
    """The manifest's issue 13 keys, present only when true (a single-droplet manifest is as
    before): ``managed_database`` (no postgres container, no database_roles: DigitalOcean's
    DatabaseUser is the app role), ``managed_cache`` (no redis container), ``shared_uploads`` (the
    uploads directory is the NFS share host-setup.sh mounted: never moved onto a data volume)."""
    flags = {
        "managed_database": services.database is not None,
        "managed_cache": services.cache is not None,
        "shared_uploads": services.uploads is not None,
    }
    return {key: True for key, value in flags.items() if value}


def render_manifest(
    settings: Settings,
    digests: Mapping[str, str],
    params: NginxParams,
    app_role: bool = False,
    services: ManagedServices = ManagedServices(),  # noqa: B008 - frozen dataclass: an immutable default
) -> str:
    """``release.json``: what the agent needs to run the release. Never holds a secret."""
    roles = database_roles(app_role and services.database is None)
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "stack": settings.stack,
        "environment": settings.environment,
        "project": BASE_PROJECT,
        "app_services": [
            {
                "name": s.name,
                "port": s.port,
                "health_path": s.health_path,
                "upstream": s.upstream,
                "drain_seconds": s.drain_seconds,
                "image": s.image,
                "hostnames": list(s.hostnames),
            }
            for s in catalog.app_services(settings)
        ],
        "base_services": [s.name for s in catalog.base_services(settings)],
        "migrate": migrate_entry(settings, services),
        "registry": settings.release.registry,
        "registry_username": settings.release.registry_username,
        "service_digests": dict(digests),
        "compose": {"base": compose.BASE_FILE, "app": compose.APP_FILE},
        "nginx_dir": NGINX_DIR,
        "upstreams_file": nginx_conf.UPSTREAMS_FILE,
        # Additions beyond the agreed keys (the agent may ignore them):
        "tls_dir": compose.ORIGIN_CERT_FILE.rsplit("/", 1)[0],  # copied to layout.TLS_DIR
        "nginx_conf": f"{params.config_dir}/{nginx_conf.MAIN_FILE}",  # inside the nginx container
        **({"database": roles} if roles is not None else {}),
        # issue 12: secret file (in layout.SECRETS_DIR) -> the uid the agent makes its owner
        "container_secrets": container_secrets.owners(readers_of(services)),
        **scale_flags(services),
    }
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def _migrate_url_file(secret_texts: Mapping[str, str]) -> dict[str, str]:
    """The migrate service's copy of the direct URL, when the bundle has one (managed database)."""
    path = f"secrets/{container_secrets.file_name(MIGRATE_SERVICE, catalog.MIGRATE_DATABASE_URL)}"
    return {path: secret_texts[path]} if path in secret_texts else {}


def _tls_texts(origin_certificate_pem: str, origin_pull_ca_pem: str | None) -> tuple[str, str | None]:
    if "-----BEGIN CERTIFICATE-----" not in origin_certificate_pem:
        raise BundleInputError("origin_certificate_pem: not a PEM certificate")
    return origin_certificate_pem.strip() + "\n", origin_pull_ca_text(origin_pull_ca_pem)


def _secret_texts(settings: Settings, secrets: BundleSecrets, managed: ManagedServices) -> dict[str, str]:
    """Every secret file of the release: the services' values, the alerts webhook, pgBackRest's."""
    secret_texts = render_secret_files(secrets, managed)
    # --- backup alerts (issue 11): the droplet's backup watch posts to the stack's webhook
    alerts_text = alerts.render_alerts_config(settings, secrets.alerts_webhook_url)
    if alerts_text is not None:
        secret_texts[alerts.ALERTS_CONFIG_FILE] = alerts_text
    # --- end backup alerts
    # --- continuous archiving (issue 11, render/backup.py): pgBackRest's repository and key
    pitr_text = pitr_config(settings, secrets)
    if pitr_text is not None:
        secret_texts[backup.PGBACKREST_CONFIG_FILE] = pitr_text
    return secret_texts


def _packaged(
    texts: Mapping[str, str], secret_texts: Mapping[str, str], digests: Mapping[str, str]
) -> Bundle:
    files = tuple(BundleFile(path, texts[path], FILE_MODE) for path in sorted(texts))
    secret_files = tuple(
        BundleFile(path, secret_texts[path], SECRET_FILE_MODE) for path in sorted(secret_texts)
    )
    return Bundle(
        files=files,
        secret_files=secret_files,
        digest=bundle_digest((*files, *secret_files)),
        service_digests=MappingProxyType(dict(digests)),
    )


def render_bundle(
    settings: Settings,
    secrets: BundleSecrets,
    cloudflare: CloudflareRanges,
    origin_certificate_pem: str,
    nginx: NginxParams = NginxParams(),  # noqa: B008 - frozen dataclass: an immutable default
    *,
    origin_pull_ca_pem: str | None = None,
    managed: ManagedServices = ManagedServices(),  # noqa: B008 - frozen dataclass: an immutable default
) -> Bundle:
    """Every file of one release, its digest and the per-service digests (``origin_pull_ca_pem``:
    see :func:`origin_pull_ca_text`; ``managed``: the stack's DigitalOcean managed clusters and
    share, issue 13, exactly those its settings switch on)."""
    secrets.validate()
    nginx.validate()
    managed_services.check(settings, managed)
    cert_text, pull_ca = _tls_texts(origin_certificate_pem, origin_pull_ca_pem)
    nginx_files = nginx_conf.render_nginx_files(settings, nginx, cloudflare.validated(), pull_ca is not None)
    secret_texts = _secret_texts(settings, secrets, managed)
    # archive_command only with a config to run it: one that always failed would fill the volume
    pitr = backup.PGBACKREST_CONFIG_FILE in secret_texts
    base_defs = compose.base_service_definitions(settings, nginx, pitr=pitr)
    app_defs = compose.app_service_definitions(settings)
    all_defs = {**app_defs, **base_defs}
    ca_texts = managed_services.ca_files(managed)
    app_reads = {**ca_texts, **_migrate_url_file(secret_texts)}
    digests = service_digests(settings, all_defs, nginx_files, secret_texts, cert_text, pull_ca, app_reads)

    app_role = secrets.database_app_password is not None
    texts = {
        MANIFEST_NAME: render_manifest(settings, digests, nginx, app_role, managed),
        compose.BASE_FILE: compose.dump(
            compose.base_compose(settings, base_defs, digests),
            f"BankFlow {settings.stack}: base services (project {BASE_PROJECT})",
        ),
        compose.APP_FILE: compose.dump(
            compose.app_compose(app_defs),
            f"BankFlow {settings.stack}: app services of one release (project {APP_PROJECT_PREFIX}<release>)",
        ),
        compose.ORIGIN_CERT_FILE: cert_text,
        **({ORIGIN_PULL_CA_FILE: pull_ca} if pull_ca is not None else {}),
        **ca_texts,  # issue 13: the managed clusters' CAs (public)
        **{f"{NGINX_DIR}/{name}": text for name, text in nginx_files.items()},
        **host_files.render_host_files(settings),
        **host_access.render_host_access_files(settings, cloudflare),  # issue 12: who reaches the host
        backup.BACKUP_CONFIG_FILE: backup.render_backup_config(settings, managed.database),
        # --- uploads backups (issue 11): backup/uploads.json and the 5-minute timer ---
        **uploads_backup.uploads_files(settings, secrets, managed.uploads),
    }
    return _packaged(texts, secret_texts, digests)
