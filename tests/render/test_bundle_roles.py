"""The bundle's part of the database roles (issue 11 item 5): the apps log in as the
least-privilege role, and the manifest tells the agent which roles and password files to apply."""

from __future__ import annotations

import dataclasses
import json
from urllib.parse import urlsplit

from bankflow_infra import catalog
from bankflow_infra.host.database_roles import load_roles
from bankflow_infra.render import render_bundle
from bankflow_infra.render.model import Bundle, BundleSecrets
from tests.render.helpers import CLOUDFLARE, OriginCert, load_settings, make_secrets

APP_PASSWORD = "AppRoleTestPassw0rd-51c0ffee77"  # noqa: S105 - a test value
ROTATED_PASSWORD = "Rotated0AppPassw0rd-9b8a"  # noqa: S105 - a test value


def with_app_role(cert: OriginCert) -> BundleSecrets:
    return dataclasses.replace(make_secrets(cert), database_app_password=APP_PASSWORD)


def render(secrets: BundleSecrets, cert: OriginCert) -> Bundle:
    return render_bundle(load_settings("production"), secrets, CLOUDFLARE, cert.cert_pem)


def env_value(bundle: Bundle, path: str, key: str) -> str:
    lines = bundle.file(path).text.splitlines()
    (value,) = [line.split("=", 1)[1] for line in lines if line.startswith(f"{key}=")]
    return value


def test_the_apps_log_in_as_the_app_role_with_its_own_password(origin_cert: OriginCert) -> None:
    secrets = with_app_role(origin_cert)
    url = urlsplit(env_value(render(secrets, origin_cert), "secrets/app.env", "DATABASE_URL"))
    assert (url.username, url.password) == (catalog.DATABASE_APP_ROLE, APP_PASSWORD)
    assert url.path == f"/{catalog.DATABASE_NAME}"
    assert catalog.DATABASE_APP_ROLE != catalog.DATABASE_USER
    assert secrets.postgres_password not in render(secrets, origin_cert).file("secrets/app.env").text


def test_the_manifest_names_the_roles_and_their_files_never_a_value(origin_cert: OriginCert) -> None:
    secrets = with_app_role(origin_cert)
    bundle = render(secrets, origin_cert)
    manifest = bundle.file("release.json").text
    database = json.loads(manifest)["database"]
    assert database["app_role"] == catalog.DATABASE_APP_ROLE
    assert database["superuser"] == catalog.DATABASE_USER
    for value in secrets.values():
        assert value not in manifest
    # the files it names hold the passwords the agent will apply
    assert env_value(bundle, database["superuser_password"]["file"], "POSTGRES_PASSWORD") == (
        secrets.postgres_password
    )


def test_the_agent_reads_back_exactly_what_was_rendered(origin_cert: OriginCert, tmp_path) -> None:
    secrets = with_app_role(origin_cert)
    bundle = render(secrets, origin_cert)
    for item in (*bundle.files, *bundle.secret_files):
        path = tmp_path / item.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(item.text)
    spec = load_roles(tmp_path)
    assert spec is not None
    assert (spec.app_role, spec.app_password) == (catalog.DATABASE_APP_ROLE, APP_PASSWORD)
    assert (spec.superuser, spec.superuser_password) == (catalog.DATABASE_USER, secrets.postgres_password)
    assert APP_PASSWORD not in repr(spec)


def test_without_the_app_password_the_bundle_is_as_before(origin_cert: OriginCert) -> None:
    secrets = make_secrets(origin_cert)
    bundle = render(secrets, origin_cert)
    assert "database" not in json.loads(bundle.file("release.json").text)
    url = urlsplit(env_value(bundle, "secrets/app.env", "DATABASE_URL"))
    assert url.username == catalog.DATABASE_USER


def test_a_new_app_password_restarts_the_apps_not_postgres(origin_cert: OriginCert) -> None:
    before = render(with_app_role(origin_cert), origin_cert)
    rotated = dataclasses.replace(with_app_role(origin_cert), database_app_password=ROTATED_PASSWORD)
    after = render(rotated, origin_cert)
    changed = {s for s in before.service_digests if before.service_digests[s] != after.service_digests[s]}
    with_data = {s.name for s in catalog.app_services(load_settings("production")) if s.secret_env}
    assert with_data
    assert changed == with_data
    assert "postgres" not in changed
