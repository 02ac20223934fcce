"""pgBackRest's files: backup.json's pitr object (the agent accepts what the renderer writes and
refuses the rest), secrets/pgbackrest.conf, the postgres service's archiving, the image tag."""

from __future__ import annotations

import configparser
import hashlib
import json
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from bankflow_infra import catalog
from bankflow_infra.contract import release
from bankflow_infra.host.backups import config as backup_config
from bankflow_infra.render import backup as render_backup
from bankflow_infra.render import compose
from bankflow_infra.render.model import NginxParams
from bankflow_infra.render.nginx import MAINTENANCE_PAGE, maintenance_address, render_nginx_files
from tests.render import helpers
from tests.support.tools import require_tool

ACCESS, SECRET = "DO00ABCDEFGHIJKLMNOP", "c2VjcmV0K2tleS9mb3Ivc3BhY2VzPT0rK3NlY3JldA=="
CIPHER = "Y2lwaGVyLXBhc3MtZm9yLXRoZS1yZXBvc2l0b3J5LTAx"


def test_backup_json_carries_the_pitr_fields_the_agent_accepts() -> None:
    for stack in ("staging", "production"):
        settings = helpers.load_settings(stack)
        document = json.loads(render_backup.render_backup_config(settings))
        assert document["schema"] == 2
        parsed = backup_config.parse_config(document, "backup.json")
        assert parsed.pitr is not None
        assert parsed.pitr.stanza == release.PITR_STANZA == "bankflow"
        assert parsed.pitr.postgres_uid == release.POSTGRES_UID == 70
        assert parsed.pitr.archive_timeout == 60
        assert parsed.pitr.data_dir == catalog.postgres_data_dir(settings)


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("stanza", "Bad Name", "pitr.stanza"),
        ("data_dir", "relative/dir", "pitr.data_dir"),
        ("data_dir", "/mnt/../etc", "pitr.data_dir"),
        ("postgres_uid", 0, "pitr.postgres_uid"),
        ("archive_timeout", 3600, "pitr.archive_timeout"),
        ("container_data_dir", None, "pitr.container_data_dir"),
        ("owns_repository", "yes", "pitr.owns_repository"),
    ],
)
def test_bad_pitr_fields_are_refused_by_name(field: str, value: object, named: str) -> None:
    document = json.loads(render_backup.render_backup_config(helpers.load_settings("production")))
    document["pitr"][field] = value
    with pytest.raises(backup_config.BackupUsageError, match=named.replace(".", r"\.")):
        backup_config.parse_config(document, "backup.json")


def test_only_the_stack_that_owns_the_bucket_owns_its_repository() -> None:
    """A rebuild (backups.bucketStack = the original) must never create the shared stanza."""
    production = helpers.load_settings("production")
    rebuild = replace(
        production, stack="production-r1", backups=replace(production.backups, bucket_stack="production")
    )
    owner = backup_config.parse_config(json.loads(render_backup.render_backup_config(production)), "b")
    guest = backup_config.parse_config(json.loads(render_backup.render_backup_config(rebuild)), "b")
    assert owner.pitr is not None
    assert guest.pitr is not None
    assert owner.pitr.owns_repository
    assert not guest.pitr.owns_repository
    older = json.loads(render_backup.render_backup_config(production))
    del older["pitr"]["owns_repository"]  # a bundle rendered before the field: its own repository
    parsed = backup_config.parse_config(older, "b")
    assert parsed.pitr is not None
    assert parsed.pitr.owns_repository


def test_schema_1_files_still_parse_without_pitr_and_schema_2_needs_it() -> None:
    document = json.loads(render_backup.render_backup_config(helpers.load_settings("production")))
    old = {k: v for k, v in document.items() if k != "pitr"} | {"schema": 1}
    assert backup_config.parse_config(old, "backup.json").pitr is None
    with pytest.raises(backup_config.BackupUsageError, match="pitr: expected an object"):
        backup_config.parse_config({**old, "schema": 2}, "backup.json")


def test_pgbackrest_conf_is_an_encrypted_s3_repository_in_the_bucket() -> None:
    text = render_backup.render_pgbackrest_config(
        "https://fra1.digitaloceanspaces.com", "bankflow-production-backups", ACCESS, SECRET, CIPHER
    )
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    glob, stanza = parser["global"], parser["bankflow"]
    assert glob["repo1-type"] == "s3"
    assert glob["repo1-s3-endpoint"] == "fra1.digitaloceanspaces.com"
    assert glob["repo1-s3-bucket"] == "bankflow-production-backups"
    assert glob["repo1-path"] == "/pgbackrest"
    assert glob["repo1-s3-uri-style"] == "path"
    assert glob["repo1-cipher-type"] == "aes-256-cbc"
    assert glob["repo1-cipher-pass"] == CIPHER
    assert glob["repo1-s3-key"] == ACCESS
    assert glob["log-level-file"] == "off"
    assert int(glob["repo1-retention-full"]) >= 1
    assert "repo1-storage-port" not in glob  # 443
    assert stanza["pg1-path"] == catalog.POSTGRES_CONTAINER_DATA
    assert stanza["pg1-user"] == catalog.DATABASE_USER


def test_pgbackrest_accepts_the_rendered_conf(tmp_path: Path) -> None:
    """The real pgbackrest parses the file without a warning about misplaced options."""
    binary = require_tool("pgbackrest")
    conf = tmp_path / "pgbackrest.conf"
    conf.write_text(
        render_backup.render_pgbackrest_config(
            "https://fra1.digitaloceanspaces.com", "bankflow-production-backups", ACCESS, SECRET, CIPHER
        )
    )
    done = subprocess.run(
        [binary, f"--config={conf}", "--stanza=bankflow", "help", "backup"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "WARN" not in done.stderr, done.stderr


def test_postgres_archives_with_pgbackrest_only_when_the_conf_exists(tmp_path: Path) -> None:
    settings = helpers.load_settings("production")
    params = helpers.local_params(tmp_path)
    on = compose.base_service_definitions(settings, params, pitr=True)["postgres"]
    args = on["command"]
    assert args[0] == "postgres"
    settings_given = dict(a.split("=", 1) for a in args[2::2])
    assert settings_given == {
        "wal_level": "replica",
        "archive_mode": "on",
        "archive_timeout": "60",
        "archive_command": "pgbackrest --stanza=bankflow archive-push %p",
    }
    mount = [v for v in on["volumes"] if v["target"] == release.PGBACKREST_CONTAINER_CONFIG]
    assert mount
    assert mount[0]["read_only"]
    assert mount[0]["bind"] == {"create_host_path": False}
    off = compose.base_service_definitions(settings, params)["postgres"]
    assert "command" not in off
    assert len(off["volumes"]) == 1


def test_the_postgres_image_tag_is_the_dockerfiles_content_hash() -> None:
    settings = helpers.load_settings("production")
    text = catalog.POSTGRES_DOCKERFILE.read_bytes()
    sha12 = hashlib.sha256(text).hexdigest()[:12]
    assert (
        catalog.postgres_image(settings)
        == f"{settings.release.registry}/bankflow-postgres:15-pgbackrest-{sha12}"
    )
    assert b"FROM postgres:15-alpine" in text  # never a glibc base: collation (see the Dockerfile)
    workflow = (Path(__file__).resolve().parents[2] / ".github/workflows/postgres-image.yml").read_text()
    assert "sha256sum files/postgres/Dockerfile | cut -c1-12" in workflow
    assert "15-pgbackrest-${sha}" in workflow


def test_maintenance_listener_answers_503_with_the_page_and_retry_after(tmp_path: Path) -> None:
    settings = helpers.load_settings("production")
    params = helpers.local_params(tmp_path)
    files = render_nginx_files(settings, params, ["173.245.48.0/20"])
    sites = files["sites.conf"]
    assert f"return 503 '{MAINTENANCE_PAGE}';" in sites
    assert f"listen {maintenance_address(params)} reuseport;" in sites
    # in the container (default params) the listener is where the agent points the upstreams
    assert maintenance_address(NginxParams()) == release.MAINTENANCE_LISTEN
    assert f"add_header Retry-After {release.MAINTENANCE_RETRY_AFTER} always;" in sites
