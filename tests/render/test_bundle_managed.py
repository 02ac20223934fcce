"""The bundle of a stack on DigitalOcean's managed building blocks (issue 13, item 3): compose
without postgres/redis, the apps' connection strings to the managed endpoints with TLS verify-full
and DigitalOcean's CA, the manifest keys the agent acts on, backups without pgBackRest."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, unquote, urlsplit

import jsonschema
import pytest
import yaml

from bankflow_infra import catalog
from bankflow_infra.render import Bundle, BundleInputError, BundleSecrets, ManagedServices, render_bundle
from bankflow_infra.render import managed as managed_render
from bankflow_infra.settings import Settings
from tests.render.helpers import CLOUDFLARE, SECRETS_NO_KEY, OriginCert, make_secrets
from tests.render.managed_helpers import (
    CACHE_HOST,
    CACHE_PASSWORD,
    DATABASE_HOST,
    DATABASE_PASSWORD,
    FAKE_CA,
    NFS_SOURCE,
    managed_database,
    managed_services,
    scaled_settings,
)
from tests.render.test_compose import SCHEMA_PATH
from tests.settings.scaled import scaled_settings as fixture_settings

ALL_SECRETS = {
    "spaces_access_key": "DO00MANAGEDACCESSKEY1",
    "spaces_secret_key": "ManagedSpacesSecretKey0123456789abcdefgh=",
    "database_app_password": "AppRoleManagedPassw0rd-51c2",
    "backup_cipher_pass": "CipherManagedPass-0a9b8c7d6e5f",
    "uploads_repo_password": "UploadsManagedPass-1b2c3d4e5f",
}


def _secrets(cert: OriginCert) -> BundleSecrets:
    return BundleSecrets(origin_private_key_pem=cert.key_pem, **SECRETS_NO_KEY, **ALL_SECRETS)


def _render(
    cert: OriginCert, settings: Settings | None = None, services: ManagedServices | None = None
) -> Bundle:
    return render_bundle(
        settings or scaled_settings(),
        _secrets(cert),
        CLOUDFLARE,
        cert.cert_pem,
        managed=services if services is not None else managed_services(),
    )


def _yaml(bundle: Bundle, path: str) -> dict:
    return yaml.safe_load(bundle.file(path).text)


def _manifest(bundle: Bundle) -> dict:
    return json.loads(bundle.file("release.json").text)


def test_compose_has_no_postgres_or_redis_and_the_agent_expects_none(origin_cert: OriginCert) -> None:
    bundle = _render(origin_cert)
    base = _yaml(bundle, "compose/base.yaml")
    assert set(base["services"]) == {"nginx", "edge-ports"}
    assert base["volumes"] == {}  # no postgres-data, no redis-data
    assert not any(name.startswith(("postgres_", "redis_")) for name in base["secrets"])
    manifest = _manifest(bundle)
    assert manifest["base_services"] == ["nginx"]
    assert manifest["managed_database"] is True
    assert manifest["managed_cache"] is True
    assert manifest["shared_uploads"] is True
    # the app role is DigitalOcean's DatabaseUser: the agent creates no role (no `database` entry)
    assert "database" not in manifest
    assert not any(name.startswith(("postgres.", "redis.")) for name in manifest["container_secrets"])
    assert set(bundle.service_digests) == {"site", "saas", "api", "nginx", "edge-ports"}
    paths = {f.path for f in (*bundle.files, *bundle.secret_files)}
    assert not {"secrets/postgres.env", "secrets/redis.env", "secrets/pgbackrest.conf"} & paths


@pytest.mark.parametrize("path", ["compose/base.yaml", "compose/app.yaml"])
def test_managed_compose_files_match_the_compose_spec(origin_cert: OriginCert, path: str) -> None:
    schema = json.loads(SCHEMA_PATH.read_text())
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(_yaml(_render(origin_cert), path)))
    assert not errors, [e.message for e in errors]


def _container_secret(bundle: Bundle, service: str, name: str) -> str:
    return bundle.file(f"secrets/{service}.{name}").text


def test_apps_reach_the_pool_with_verify_full_and_the_migrate_command_the_direct_port(
    origin_cert: OriginCert,
) -> None:
    bundle = _render(origin_cert)
    for service in ("saas", "api"):
        url = urlsplit(_container_secret(bundle, service, "database_url"))
        assert (url.scheme, url.hostname, url.port, url.path) == (
            "postgresql",
            DATABASE_HOST,
            25061,
            "/bankflow-pool",
        )
        assert (unquote(url.username or ""), unquote(url.password or "")) == (
            "bankflow_app",
            DATABASE_PASSWORD,
        )
        query = parse_qs(url.query)
        assert query == {
            "sslmode": ["verify-full"],
            "sslrootcert": [managed_render.DATABASE_CA_CONTAINER_PATH],
        }
        cache = urlsplit(_container_secret(bundle, service, "redis_url"))
        assert (cache.scheme, cache.hostname, cache.port) == ("rediss", CACHE_HOST, 25061)
        assert unquote(cache.password or "") == CACHE_PASSWORD
    direct = urlsplit(_container_secret(bundle, "api", "database_migrate_url"))
    assert (direct.port, direct.path) == (25060, "/bankflow")
    assert parse_qs(direct.query)["sslmode"] == ["verify-full"]
    # only the migrate service has the direct URL, and the agent points DATABASE_URL_FILE at it for migrate
    assert "saas.database_migrate_url" not in _manifest(bundle)["container_secrets"]
    migrate = _manifest(bundle)["migrate"]
    assert migrate["service"] == "api"
    assert migrate["environment"] == {"DATABASE_URL_FILE": "/run/secrets/database_migrate_url"}
    api = _yaml(bundle, "compose/app.yaml")["services"]["api"]
    assert {"source": "api_database_migrate_url", "target": "database_migrate_url"} in api["secrets"]


def test_apps_mount_digitaloceans_ca_read_only_and_it_is_in_their_digests(origin_cert: OriginCert) -> None:
    bundle = _render(origin_cert)
    assert bundle.file(managed_render.DATABASE_CA_FILE).text == FAKE_CA
    assert bundle.file(managed_render.CACHE_CA_FILE).text == FAKE_CA
    apps = _yaml(bundle, "compose/app.yaml")["services"]
    for service in ("saas", "api"):
        mounts = {m["target"]: m for m in apps[service]["volumes"]}
        for inside in (managed_render.DATABASE_CA_CONTAINER_PATH, managed_render.CACHE_CA_CONTAINER_PATH):
            assert mounts[inside]["read_only"] is True
            assert mounts[inside]["source"].startswith("/opt/bankflow/")
        assert apps[service]["environment"]["REDIS_CA_FILE"] == managed_render.CACHE_CA_CONTAINER_PATH
    site_targets = [m["target"] for m in apps["site"].get("volumes", [])]
    assert not [t for t in site_targets if t.startswith(managed_render.CA_CONTAINER_DIR)]
    other_ca = FAKE_CA.replace("TUlJ", "T3Ro")
    others = managed_services()
    rotated = _render(
        origin_cert, services=ManagedServices(managed_database(ca_pem=other_ca), others.cache, others.uploads)
    )
    changed = {n for n in bundle.service_digests if bundle.service_digests[n] != rotated.service_digests[n]}
    assert changed == {"saas", "api"}


def test_managed_passwords_stay_in_secret_files(origin_cert: OriginCert) -> None:
    bundle = _render(origin_cert)
    for plain in bundle.files:
        for value in (DATABASE_PASSWORD, CACHE_PASSWORD, "dbTest"):
            assert value not in plain.text, plain.path
    for hidden in bundle.redacted():
        assert DATABASE_PASSWORD not in hidden.text
        assert CACHE_PASSWORD not in hidden.text
    assert "dbTest" not in repr(managed_services())


def test_pgpass_escapes_the_separator(origin_cert: OriginCert) -> None:
    bundle = _render(origin_cert)
    line = bundle.file(managed_render.DATABASE_PGPASS_FILE).text
    assert line == f"{DATABASE_HOST}:25060:*:bankflow_app:AVNS_dbTest\\:Pass@w/rd-7f3a9c\n"


def test_backups_dump_the_cluster_from_droplet_one_without_pgbackrest(origin_cert: OriginCert) -> None:
    bundle = _render(origin_cert)
    config = json.loads(bundle.file("backup/backup.json").text)
    assert config["schema"] == 3
    assert (config["service"], config["pitr"]) == (None, None)
    assert (config["database"], config["user"]) == ("bankflow", "bankflow_app")
    assert config["backup_droplet"] == "bankflow-scaled-server"
    assert config["managed_database"] == {
        "host": DATABASE_HOST,
        "port": 25060,
        "sslmode": "verify-full",
        "ca_file": "/opt/bankflow/tls/managed-database-ca.pem",
        "passfile": "/opt/bankflow/secrets/managed-database.pgpass",
        "client_image": catalog.POSTGRES_BASE_IMAGE,
    }
    uploads = json.loads(bundle.file("backup/uploads.json").text)
    assert uploads["shared"] is True
    assert uploads["nfs_source"] == NFS_SOURCE
    assert uploads["uploads_dir"] == "/opt/bankflow/uploads"
    assert uploads["on_data_volume"] is False
    assert uploads["backup_droplet"] == "bankflow-scaled-server"


def test_only_the_managed_database_keeps_redis_on_the_droplet(origin_cert: OriginCert) -> None:
    settings = scaled_settings(cache=False, uploads=False, count=1)
    bundle = _render(origin_cert, settings, managed_services(cache=False, uploads=False))
    assert set(_yaml(bundle, "compose/base.yaml")["services"]) == {"redis", "nginx", "edge-ports"}
    manifest = _manifest(bundle)
    assert manifest["base_services"] == ["redis", "nginx"]
    assert "managed_cache" not in manifest
    assert "shared_uploads" not in manifest
    assert _container_secret(bundle, "api", "redis_url").startswith("redis://:")
    assert "REDIS_CA_FILE" not in _yaml(bundle, "compose/app.yaml")["services"]["api"]["environment"]


def test_a_single_droplet_manifest_has_none_of_the_new_keys(origin_cert: OriginCert) -> None:
    settings = scaled_settings(database=False, cache=False, uploads=False, count=1)
    bundle = render_bundle(settings, make_secrets(origin_cert), CLOUDFLARE, origin_cert.cert_pem)
    manifest = _manifest(bundle)
    assert not {"managed_database", "managed_cache", "shared_uploads"} & set(manifest)
    assert "environment" not in manifest["migrate"]
    assert manifest["base_services"] == ["postgres", "redis", "nginx"]


@pytest.mark.parametrize(
    ("settings_kwargs", "services_kwargs", "expected"),
    [
        ({}, {"database": False}, "bankflow:database.managed is set but the bundle got no managed.database"),
        ({"cache": False}, {}, "managed.cache was given but bankflow:cache.managed is not set"),
        ({}, {"uploads": False}, "bankflow:uploads.shared is set but the bundle got no managed.uploads"),
    ],
)
def test_settings_and_endpoints_must_describe_the_same_stack(
    origin_cert: OriginCert, settings_kwargs: dict, services_kwargs: dict, expected: str
) -> None:
    with pytest.raises(BundleInputError, match=expected):
        _render(origin_cert, scaled_settings(**settings_kwargs), managed_services(**services_kwargs))


def test_bad_endpoints_are_one_error_naming_each_field_never_the_password(origin_cert: OriginCert) -> None:
    services = ManagedServices(
        database=managed_database(host="not a host", ca_pem="", pool_port=0, password="Sh0rtPw"),  # noqa: S106
        cache=managed_services().cache,
        uploads=managed_services().uploads,
    )
    with pytest.raises(BundleInputError) as error:
        _render(origin_cert, services=services)
    message = str(error.value)
    for field in ("database.host", "database.pool_port", "database.password", "database.ca_pem"):
        assert f"managed.{field}" in message
    assert "verify-full" in message
    assert "Sh0rtPw" not in message


def test_a_private_key_is_refused_as_ca(origin_cert: OriginCert) -> None:
    key = "-----BEGIN CERTIFICATE-----\n-----BEGIN PRIVATE KEY-----\nx\n-----END CERTIFICATE-----"
    others = managed_services()
    services = ManagedServices(managed_database(ca_pem=key), others.cache, others.uploads)
    with pytest.raises(BundleInputError, match=r"managed\.database\.ca_pem"):
        _render(origin_cert, services=services)


def test_the_committed_scaled_stack_renders_through_the_settings_parser(origin_cert: OriginCert) -> None:
    # tests/fixtures/scaled-stack.yaml as `pulumi up` reads it (settings/parse.py), not a hand-built Settings
    settings = fixture_settings()
    assert settings.load_balanced
    bundle = _render(origin_cert, settings)
    manifest = _manifest(bundle)
    assert manifest["base_services"] == ["nginx"]
    assert [manifest[key] for key in ("managed_database", "managed_cache", "shared_uploads")] == [True] * 3
    assert json.loads(bundle.file("backup/backup.json").text)["backup_droplet"] == "bankflow-scaled-server"
