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
from bankflow_infra.render import nginx as nginx_conf
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
MIGRATE_SERVICE: Final = "api"
# Authenticated Origin Pulls' CA (public): beside the origin certificate in tls/, which the agent
# copies to layout.TLS_DIR (mounted at catalog.NGINX_TLS_DIR, NginxParams.client_ca_path).
ORIGIN_PULL_CA_FILE: Final = f"tls/{ORIGIN_PULL_CA_NAME}"


def _env_file(values: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


def render_secret_files(secrets: BundleSecrets) -> dict[str, str]:
    """Bundle path -> text of every secret file (installed 0600 under layout.SECRETS_DIR)."""
    # The apps log in as the least-privilege role once the stack generates its password; a
    # bundle without one (rendered before issue 11) keeps the superuser, as before.
    if secrets.database_app_password is not None:
        database_url = catalog.database_url(secrets.database_app_password, catalog.DATABASE_APP_ROLE)
    else:
        database_url = catalog.database_url(secrets.postgres_password)
    app_values = {
        "DATABASE_URL": database_url,
        "REDIS_URL": catalog.redis_url(secrets.redis_password),
        "JWT_SECRET": secrets.jwt_secret,
    }
    if (
        tuple(app_values) != catalog.SECRET_ENV_NAMES
    ):  # pragma: no cover - catalog and renderer change together
        raise ValueError(f"app.env names {tuple(app_values)} differ from catalog.SECRET_ENV_NAMES")
    files = {
        compose.APP_ENV_FILE: _env_file(app_values),
        compose.POSTGRES_ENV_FILE: _env_file({"POSTGRES_PASSWORD": secrets.postgres_password}),
        # REDISCLI_AUTH: the health check's redis-cli authenticates without a password argument.
        compose.REDIS_ENV_FILE: _env_file(
            {"REDIS_PASSWORD": secrets.redis_password, "REDISCLI_AUTH": secrets.redis_password}
        ),
        compose.ORIGIN_KEY_FILE: secrets.origin_private_key_pem.strip() + "\n",
    }
    # --- container secrets (issue 12, render/container_secrets.py): each service's own copies ---
    base_values = {"POSTGRES_PASSWORD": secrets.postgres_password, "REDIS_PASSWORD": secrets.redis_password}
    files.update(container_secrets.secret_files(container_secrets.readers(), {**app_values, **base_values}))
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
    """``secrets/pgbackrest.conf`` when the stack has the cipher pass and a Spaces key, else None."""
    access, secret, cipher = secrets.spaces_access_key, secrets.spaces_secret_key, secrets.backup_cipher_pass
    if access is None or secret is None or cipher is None:
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
) -> dict[str, str]:
    """service -> sha256 of exactly what that service's behaviour depends on: its compose
    definition plus the files it reads. nginx's upstreams.conf is left out: the live copy is the
    agent's, rewritten at every switch, and the bundle's is only its first-boot placeholder."""
    inputs: dict[str, dict[str, Any]] = {name: {"compose": body} for name, body in definitions.items()}
    for service in catalog.app_services(settings):
        if service.secret_env:
            inputs[service.name]["files"] = {compose.APP_ENV_FILE: secret_files[compose.APP_ENV_FILE]}
    inputs[MIGRATE_SERVICE]["migrate"] = list(settings.release.migrate_command)
    inputs["postgres"]["files"] = {compose.POSTGRES_ENV_FILE: secret_files[compose.POSTGRES_ENV_FILE]}
    inputs["redis"]["files"] = {compose.REDIS_ENV_FILE: secret_files[compose.REDIS_ENV_FILE]}
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


def render_manifest(
    settings: Settings, digests: Mapping[str, str], params: NginxParams, app_role: bool = False
) -> str:
    """``release.json``: what the agent needs to run the release. Never holds a secret."""
    roles = database_roles(app_role)
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
        "migrate": {"service": MIGRATE_SERVICE, "command": list(settings.release.migrate_command)},
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
        "container_secrets": container_secrets.owners(container_secrets.readers()),
    }
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def _tls_texts(origin_certificate_pem: str, origin_pull_ca_pem: str | None) -> tuple[str, str | None]:
    if "-----BEGIN CERTIFICATE-----" not in origin_certificate_pem:
        raise BundleInputError("origin_certificate_pem: not a PEM certificate")
    return origin_certificate_pem.strip() + "\n", origin_pull_ca_text(origin_pull_ca_pem)


def render_bundle(
    settings: Settings,
    secrets: BundleSecrets,
    cloudflare: CloudflareRanges,
    origin_certificate_pem: str,
    nginx: NginxParams = NginxParams(),  # noqa: B008 - frozen dataclass: an immutable default
    *,
    origin_pull_ca_pem: str | None = None,
) -> Bundle:
    """Every file of one release, its digest and the per-service digests (``origin_pull_ca_pem``:
    see :func:`origin_pull_ca_text`)."""
    secrets.validate()
    nginx.validate()
    cert_text, pull_ca = _tls_texts(origin_certificate_pem, origin_pull_ca_pem)
    nginx_files = nginx_conf.render_nginx_files(settings, nginx, cloudflare.validated(), pull_ca is not None)
    secret_texts = render_secret_files(secrets)
    # --- backup alerts (issue 11): the droplet's backup watch posts to the stack's webhook
    alerts_text = alerts.render_alerts_config(settings, secrets.alerts_webhook_url)
    if alerts_text is not None:
        secret_texts[alerts.ALERTS_CONFIG_FILE] = alerts_text
    # --- end backup alerts
    # --- continuous archiving (issue 11, render/backup.py): pgBackRest's repository and key
    pitr_text = pitr_config(settings, secrets)
    if pitr_text is not None:
        secret_texts[backup.PGBACKREST_CONFIG_FILE] = pitr_text
    # archive_command only with a config to run it: one that always failed would fill the volume
    base_defs = compose.base_service_definitions(settings, nginx, pitr=pitr_text is not None)
    app_defs = compose.app_service_definitions(settings)
    all_defs = {**app_defs, **base_defs}
    digests = service_digests(settings, all_defs, nginx_files, secret_texts, cert_text, pull_ca)

    texts = {
        MANIFEST_NAME: render_manifest(settings, digests, nginx, secrets.database_app_password is not None),
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
        **{f"{NGINX_DIR}/{name}": text for name, text in nginx_files.items()},
        **host_files.render_host_files(settings),
        **host_access.render_host_access_files(settings, cloudflare),  # issue 12: who reaches the host
        backup.BACKUP_CONFIG_FILE: backup.render_backup_config(settings),
        # --- uploads backups (issue 11): backup/uploads.json and the 5-minute timer ---
        **uploads_backup.uploads_files(settings, secrets),
    }
    files = tuple(BundleFile(path, texts[path], FILE_MODE) for path in sorted(texts))
    secret_files = tuple(
        BundleFile(path, secret_texts[path], SECRET_FILE_MODE) for path in sorted(secret_texts)
    )
    return Bundle(
        files=files,
        secret_files=secret_files,
        digest=bundle_digest((*files, *secret_files)),
        service_digests=MappingProxyType(digests),
    )
