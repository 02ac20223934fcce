"""The renderer writes what the agent reads (issue 13): a scaled bundle's backup.json and
uploads.json parse with the agent's own parsers, naming the droplet that backs up; a
single-droplet bundle keeps its schema."""

from __future__ import annotations

import json

from bankflow_infra.host.backups.config import parse_config
from bankflow_infra.host.backups.uploads_restic import parse_uploads_config
from bankflow_infra.render import render_bundle
from tests.render.helpers import CLOUDFLARE, OriginCert, load_settings
from tests.render.test_bundle_managed import _render, _secrets
from tests.settings.scaled import scaled_settings as fixture_settings


def test_a_scaled_bundle_backs_up_from_droplet_one_over_verify_full(origin_cert: OriginCert) -> None:
    bundle = _render(origin_cert, fixture_settings())
    config = parse_config(json.loads(bundle.file("backup/backup.json").text), "backup/backup.json")
    assert config.backup_droplet == "bankflow-scaled-server"
    assert config.managed is not None
    assert config.managed.ca_file.endswith("managed-database-ca.pem")  # the parser requires verify-full
    assert config.pitr is None  # DigitalOcean's point in time, not pgBackRest's
    uploads = parse_uploads_config(json.loads(bundle.file("backup/uploads.json").text), "backup/uploads.json")
    assert uploads.backup_droplet == "bankflow-scaled-server"


def test_a_single_droplet_bundle_backs_up_on_its_droplet(origin_cert: OriginCert) -> None:
    settings = load_settings("production")
    bundle = render_bundle(settings, _secrets(origin_cert), CLOUDFLARE, origin_cert.cert_pem)
    config = parse_config(json.loads(bundle.file("backup/backup.json").text), "backup/backup.json")
    assert config.backup_droplet is None
    assert config.managed is None
