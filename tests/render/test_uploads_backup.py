"""The uploads backup's files in the bundle: uploads.json (plain), the restic env file (secret),
the 5-minute timer; and the agent accepting exactly what the renderer writes."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from bankflow_infra.contract.layout import DATA_UPLOADS_DIR, UPLOADS_DIR
from bankflow_infra.host.backups.uploads_restic import parse_uploads_config, read_secret_env
from bankflow_infra.render import uploads_backup
from bankflow_infra.render.bundle import render_bundle
from bankflow_infra.render.model import SECRET_FILE_MODE, BundleSecrets
from bankflow_infra.settings import Settings
from tests.render import helpers
from tests.support.tools import require_tool

ACCESS, SECRET = "DO00ABCDEFGHIJKLMNOP", "c2VjcmV0K2tleS9mb3Ivc3BhY2VzPT0rK3NlY3JldA=="
PASSWORD = "UploadsRepoPassw0rd-5b8d2e7f1a"  # noqa: S105 - a distinctive test value


def _settings(volume_gb: int) -> Settings:
    settings = helpers.load_settings("production")
    return replace(settings, server=replace(settings.server, volume_size_gb=volume_gb))


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> helpers.OriginCert:
    return helpers.make_cert(require_tool("openssl"), tmp_path_factory.mktemp("cert"), ("app.example.com",))


def _secrets(origin: helpers.OriginCert, password: str | None = PASSWORD) -> BundleSecrets:
    return replace(
        helpers.make_secrets(origin),
        spaces_access_key=ACCESS,
        spaces_secret_key=SECRET,
        uploads_repo_password=password,
    )


@pytest.mark.parametrize(
    ("volume_gb", "where", "on_volume"), [(10, DATA_UPLOADS_DIR, True), (0, UPLOADS_DIR, False)]
)
def test_uploads_json_names_the_repository_and_where_the_tree_is(
    volume_gb: int, where: str, on_volume: bool
) -> None:
    settings = _settings(volume_gb)
    config = json.loads(uploads_backup.render_uploads_config(settings))
    endpoint = f"https://{settings.backups.region}.digitaloceanspaces.com"
    assert config["repository"] == f"s3:{endpoint}/{settings.backup_bucket_name}/uploads"
    assert config["uploads_dir"] == where
    assert config["on_data_volume"] is on_volume
    assert ("root disk" in config["note"]) is not on_volume  # a stack without a volume says so
    parsed = parse_uploads_config(config, "uploads.json")  # the agent reads what the renderer writes
    assert str(parsed.uploads_dir) == where


def test_the_bundle_carries_the_password_only_in_the_secret_file(
    origin: helpers.OriginCert, tmp_path: Path
) -> None:
    bundle = render_bundle(_settings(10), _secrets(origin), helpers.CLOUDFLARE, origin.cert_pem)
    secret = {f.path: f for f in bundle.secret_files}[uploads_backup.UPLOADS_SECRET_FILE]
    assert secret.mode == SECRET_FILE_MODE
    plain = {f.path: f.text for f in bundle.files}
    assert all(PASSWORD not in text and SECRET not in text for text in plain.values())
    timer = plain[uploads_backup.UPLOADS_TIMER]
    assert "OnCalendar=*:0/5\n" in timer
    assert (
        "ExecStart=/opt/bankflow/bin/bankflow-agent uploads-backup\n" in plain[uploads_backup.UPLOADS_SERVICE]
    )
    # the agent reads the values the renderer wrote, each under its own name
    path = tmp_path / "uploads-restic.env"
    path.write_text(secret.text)
    os.chmod(path, 0o600)
    assert read_secret_env(path) == {
        "RESTIC_PASSWORD": PASSWORD,
        "AWS_ACCESS_KEY_ID": ACCESS,
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }


def test_without_the_password_no_uploads_file_is_rendered(origin: helpers.OriginCert) -> None:
    bundle = render_bundle(_settings(10), _secrets(origin, None), helpers.CLOUDFLARE, origin.cert_pem)
    paths = {f.path for f in (*bundle.files, *bundle.secret_files)}
    assert not paths & {
        uploads_backup.UPLOADS_SECRET_FILE,
        uploads_backup.UPLOADS_TIMER,
        uploads_backup.UPLOADS_SERVICE,
        "backup/uploads.json",
    }
