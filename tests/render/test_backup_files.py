"""The backup client's files in the bundle: backup.json (plain) and rclone.conf (secret), and the
agent accepting exactly what the renderer writes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bankflow_infra.host.backups import config as backup_config
from bankflow_infra.render import backup as render_backup
from bankflow_infra.render.bundle import render_bundle
from bankflow_infra.render.model import BundleInputError
from tests.render import helpers
from tests.support.tools import require_tool

ACCESS, SECRET = "DO00ABCDEFGHIJKLMNOP", "c2VjcmV0K2tleS9mb3Ivc3BhY2VzPT0rK3NlY3JldA=="



def _settings():  # type: ignore[no-untyped-def]
    return helpers.load_settings("staging")


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> helpers.OriginCert:
    return helpers.make_cert(require_tool("openssl"), tmp_path_factory.mktemp("cert"), ("app.example.com",))


def test_backup_json_names_the_bucket_endpoint_and_retention() -> None:
    settings = _settings()
    config = json.loads(render_backup.render_backup_config(settings))
    assert config["bucket"] == settings.backup_bucket_name
    assert config["endpoint"] == f"https://{settings.backups.region}.digitaloceanspaces.com"
    assert config["local_days"] == settings.backups.local_days
    assert config["stack"] == settings.stack
    # the agent accepts exactly what the renderer writes
    parsed = backup_config.parse_config(config, "backup.json")
    assert parsed.bucket == settings.backup_bucket_name
    assert parsed.remote == render_backup.RCLONE_REMOTE


def test_rclone_conf_has_the_key_and_no_endpoint() -> None:
    text = render_backup.render_rclone_config(ACCESS, SECRET)
    assert f"access_key_id = {ACCESS}\n" in text
    assert f"secret_access_key = {SECRET}\n" in text
    assert "endpoint" not in text
    assert "env_auth = false" in text
    assert "force_path_style = true" in text


@pytest.mark.parametrize(
    ("access", "secret", "field"),
    [
        (ACCESS, None, "give both or neither"),
        (ACCESS, "short", "spaces_secret_key"),
        ("DO00ABC\nDEFGHIJKLMNOP", SECRET, "spaces_access_key"),
        (ACCESS, SECRET + "; evil", "spaces_secret_key"),
    ],
)
def test_bad_spaces_keys_are_refused_naming_the_field_only(
    origin: helpers.OriginCert, access: str, secret: str | None, field: str
) -> None:
    secrets = replace(helpers.make_secrets(origin), spaces_access_key=access, spaces_secret_key=secret)
    with pytest.raises(BundleInputError) as caught:
        secrets.validate()
    assert field in str(caught.value)
    assert SECRET not in str(caught.value)
    assert "DO00ABC" not in str(caught.value)


def test_render_bundle_with_and_without_spaces_keys(origin: helpers.OriginCert) -> None:
    settings = _settings()
    base = helpers.make_secrets(origin)
    without = render_bundle(settings, base, helpers.CLOUDFLARE, origin.cert_pem)
    assert render_backup.RCLONE_CONFIG_FILE not in {f.path for f in without.secret_files}
    assert render_backup.BACKUP_CONFIG_FILE in {f.path for f in without.files}

    keyed = replace(base, spaces_access_key=ACCESS, spaces_secret_key=SECRET)
    bundle = render_bundle(settings, keyed, helpers.CLOUDFLARE, origin.cert_pem)
    secret_file = bundle.file(render_backup.RCLONE_CONFIG_FILE)
    assert secret_file.mode == 0o600
    assert SECRET in secret_file.text
    assert all(SECRET not in f.text and ACCESS not in f.text for f in bundle.files)
    assert all(SECRET not in f.text and ACCESS not in f.text for f in bundle.redacted())
    assert bundle.digest != without.digest
    assert bundle.service_digests == without.service_digests  # a key change restarts no service
    assert {ACCESS, SECRET} <= set(keyed.values())
    # the host agent accepts the receive payload's paths
    assert all(f.path.startswith(("secrets/", "backup/")) or "/" in f.path or f.path == "release.json"
               for f in (*bundle.files, *bundle.secret_files))  # fmt: skip


