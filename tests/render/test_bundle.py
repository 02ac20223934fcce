"""The bundle as a whole: layout, manifest, digests, redaction, purity, input checks, host files."""

from __future__ import annotations

import ast
import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from bankflow_infra import catalog
from bankflow_infra.contract import layout, release
from bankflow_infra.host.manifest import parse_manifest
from bankflow_infra.render import Bundle, BundleInputError, BundleSecrets, CloudflareRanges, render_bundle
from bankflow_infra.settings import Settings
from tests.host.logs.rig import require_root, run_logrotate
from tests.render.helpers import CLOUDFLARE, STACKS, OriginCert, load_settings, make_secrets, secret_values
from tests.support.tools import REPO, require_tool

LAYOUT = {
    "release.json",
    "compose/base.yaml",
    "compose/app.yaml",
    "tls/origin.pem",
    "nginx/nginx.conf",
    "nginx/sites.conf",
    "nginx/upstreams.conf",
    "nginx/upstreams-candidate.conf",
    "nginx/cloudflare-realip.conf",
    "nginx/csp.conf",  # Content-Security-Policy per hostname (issue 12)
    "nginx/security-headers.conf",
    "nginx/proxy.conf",
    "host/daemon.json",
    "host/logrotate-bankflow",
    "host/bankflow-backup.service",
    "host/bankflow-backup.timer",
    "host/bankflow-backup-watch.service",  # backup alerts, every minute (issue 11)
    "host/bankflow-backup-watch.timer",
    "host/service-log-dirs",  # per-service log directories and owners (issue 12)
    "host/logrotate-access-logs",  # nginx's access log: hourly, then shipped (issue 12)
    "host/bankflow-access-logs.service",
    "host/bankflow-access-logs.timer",
    "host/bankflow-maintenance.service",  # the weekly maintenance window (issue 12)
    "host/bankflow-maintenance.timer",
    "host/bankflow-maintenance-resume.service",
    "host/firewall-allow",  # the host firewall's sources, as the cloud firewall's (issue 12)
    "host/operators",  # named operator accounts (issue 12)
    "backup/backup.json",  # where the host agent uploads dumps (render/backup.py)
}


def _render(
    cert: OriginCert,
    settings: Settings | None = None,
    secrets: BundleSecrets | None = None,
    cloudflare: CloudflareRanges = CLOUDFLARE,
) -> Bundle:
    return render_bundle(
        settings or load_settings("production"), secrets or make_secrets(cert), cloudflare, cert.cert_pem
    )


@pytest.mark.parametrize("stack", STACKS)
def test_layout_and_manifest(stack: str, origin_cert: OriginCert) -> None:
    settings = load_settings(stack)
    bundle = render_bundle(settings, make_secrets(origin_cert), CLOUDFLARE, origin_cert.cert_pem)
    assert {f.path for f in bundle.files} == LAYOUT
    assert [f.path for f in bundle.files] == sorted(f.path for f in bundle.files)
    assert [f.path for f in bundle.secret_files] == sorted(f.path for f in bundle.secret_files)
    assert all(f.mode == 0o644 for f in bundle.files)
    text = bundle.file("release.json").text
    manifest = json.loads(text)
    assert text == json.dumps(manifest, indent=2, sort_keys=True) + "\n"  # sorted keys
    assert manifest["schema"] == 1
    assert manifest["project"] == "bankflow"
    assert (manifest["stack"], manifest["environment"]) == (stack, settings.environment)
    assert [s["name"] for s in manifest["app_services"]] == ["site", "saas", "api"]
    api = manifest["app_services"][2]
    assert api == {
        "name": "api",
        "port": 8080,
        "health_path": "/health",
        "upstream": "bankflow_api",
        "drain_seconds": 30,
        "image": catalog.image_ref(settings, "api"),
        "hostnames": list(settings.hostnames["api"]),
    }
    assert manifest["base_services"] == ["postgres", "redis", "nginx"]
    assert manifest["migrate"] == {"service": "api", "command": list(settings.release.migrate_command)}
    assert manifest["service_digests"] == dict(bundle.service_digests)
    assert manifest["compose"] == {"base": "compose/base.yaml", "app": "compose/app.yaml"}
    assert (manifest["nginx_dir"], manifest["upstreams_file"]) == ("nginx", "upstreams.conf")
    parse_manifest(manifest)  # the host agent's own reader accepts it


def test_same_inputs_same_bytes(origin_cert: OriginCert) -> None:
    first, second = _render(origin_cert), _render(origin_cert)
    assert first == second
    assert len(first.digest) == 64
    assert first.release == first.digest[: release.RELEASE_ID_LENGTH]
    # edge-ports: the port holder nginx joins (issue 12, render/edge_ports.py)
    assert set(first.service_digests) == {"site", "saas", "api", "postgres", "redis", "nginx", "edge-ports"}


def test_nginx_settings_change_only_the_nginx_digest(origin_cert: OriginCert) -> None:
    settings = load_settings("production")
    changed = dataclasses.replace(
        settings, nginx=dataclasses.replace(settings.nginx, client_max_body_size="50m")
    )
    before, after = _render(origin_cert, settings), _render(origin_cert, changed)
    assert before.digest != after.digest
    assert before.service_digests["nginx"] != after.service_digests["nginx"]
    for name in ("site", "saas", "api", "postgres", "redis"):
        assert before.service_digests[name] == after.service_digests[name], name


def test_cloudflare_ranges_change_only_the_nginx_digest(origin_cert: OriginCert) -> None:
    more = CloudflareRanges((*CLOUDFLARE.ipv4, "131.0.72.0/22"), CLOUDFLARE.ipv6)
    before, after = _render(origin_cert), _render(origin_cert, cloudflare=more)
    changed = {n for n in before.service_digests if before.service_digests[n] != after.service_digests[n]}
    assert changed == {"nginx"}


def test_image_tag_changes_the_app_digests_not_the_base(origin_cert: OriginCert) -> None:
    settings = load_settings("production")
    changed = dataclasses.replace(settings, release=dataclasses.replace(settings.release, tag="2026.12.01-1"))
    before, after = _render(origin_cert, settings), _render(origin_cert, changed)
    differs = {n for n in before.service_digests if before.service_digests[n] != after.service_digests[n]}
    assert differs == {"site", "saas", "api"}


@pytest.mark.parametrize(
    ("field", "value", "changed_services"),
    [
        ("jwt_secret", "AnotherJwtSecret+abcdefghijklmnopqrstuvwxyz01/=", {"saas", "api"}),
        ("postgres_password", "AnotherPgPassw0rd-9f8e7d6c5b", {"saas", "api", "postgres"}),
        ("redis_password", "AnotherRedisPassw0rd-1a2b3c4d", {"saas", "api", "redis"}),
        ("registry_password", "ghp_AnotherRegistryToken0123456789", set()),
    ],
)
def test_a_secret_change_changes_the_digest(
    origin_cert: OriginCert, field: str, value: str, changed_services: set[str]
) -> None:
    secrets = make_secrets(origin_cert)
    before = _render(origin_cert, secrets=secrets)
    after = _render(origin_cert, secrets=dataclasses.replace(secrets, **{field: value}))
    assert before.digest != after.digest
    differs = {n for n in before.service_digests if before.service_digests[n] != after.service_digests[n]}
    assert differs == changed_services


def test_redacted_names_every_file_and_shows_no_secret(origin_cert: OriginCert) -> None:
    secrets = make_secrets(origin_cert)
    bundle = _render(origin_cert, secrets=secrets)
    redacted = bundle.redacted()
    assert [f.path for f in redacted] == sorted(f.path for f in (*bundle.files, *bundle.secret_files))
    everything = "".join(f"{f.path}\n{f.text}" for f in redacted)
    for value in secret_values(secrets):
        assert value not in everything
    for item in redacted:
        if item.path.startswith("secrets/"):
            assert item.path in item.text
            assert item.mode == 0o600
    assert bundle.file("release.json") in redacted
    assert "PgTestPassw0rd" not in repr(bundle.redacted())


def test_rendering_is_pure_and_never_imports_pulumi() -> None:
    for source in (REPO / "bankflow_infra" / "render").glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else ([node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            )
            assert not any(n.split(".")[0].startswith("pulumi") for n in names), source.name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"postgres_password": "short"}, "secrets.postgres_password"),
        ({"redis_password": "has space in it 0123456789"}, "secrets.redis_password"),
        ({"postgres_password": "p@ss:word/with#chars$0123"}, "secrets.postgres_password"),
        ({"jwt_secret": "x"}, "secrets.jwt_secret"),
        ({"origin_private_key_pem": "not a key"}, "secrets.origin_private_key_pem"),
        ({"registry_password": "two words"}, "secrets.registry_password"),
    ],
)
def test_bad_secrets_are_refused_without_showing_them(
    origin_cert: OriginCert, change: dict[str, str], message: str
) -> None:
    secrets = dataclasses.replace(make_secrets(origin_cert), **change)
    with pytest.raises(BundleInputError, match=message) as raised:
        _render(origin_cert, secrets=secrets)
    assert next(iter(change.values())) not in str(raised.value)


@pytest.mark.parametrize(
    "ranges",
    [
        CloudflareRanges((), ("2400:cb00::/32",)),
        CloudflareRanges(("173.245.48.0/33",), ()),
        CloudflareRanges(("2400:cb00::/32",), ()),
    ],
)
def test_bad_cloudflare_ranges_are_refused(origin_cert: OriginCert, ranges: CloudflareRanges) -> None:
    with pytest.raises(BundleInputError, match="cloudflare"):
        _render(origin_cert, cloudflare=ranges)


# --------------------------------------------------------------------------- host files


@pytest.mark.parametrize("stack", STACKS)
def test_host_files(stack: str, origin_cert: OriginCert) -> None:
    settings = load_settings(stack)
    bundle = render_bundle(settings, make_secrets(origin_cert), CLOUDFLARE, origin_cert.cert_pem)
    daemon = json.loads(bundle.file("host/daemon.json").text)
    assert daemon["live-restore"] is True
    assert daemon["log-driver"] == catalog.LOG_DRIVER
    assert {"max-size", "max-file"} <= set(daemon["log-opts"])
    timer = bundle.file("host/bankflow-backup.timer").text
    assert f"OnCalendar=*-*-* {settings.backups.time_utc}:00 UTC\n" in timer
    assert "Persistent=true\n" in timer
    service = bundle.file("host/bankflow-backup.service").text
    assert f"ExecStart={layout.AGENT_BIN} backup\n" in service
    assert "Type=oneshot\n" in service
    logrotate = bundle.file("host/logrotate-bankflow").text
    assert logrotate.startswith("#")
    assert f"{layout.LOGS_DIR}/site/*.log {{" in logrotate
    assert f"{layout.LOGS_DIR}/*" not in logrotate  # never a glob over the parent (issue 12, item 3)
    audit = logrotate.split(f"{layout.STATE_DIR}/audit.log {{", 1)[1].split("}", 1)[0]
    assert "rotate 24" in audit  # two years of monthly audit files, not 14 days
    assert "@" not in "".join(
        bundle.file(p).text
        for p in ("host/logrotate-bankflow", "host/bankflow-backup.timer", "host/bankflow-backup.service")
    )


def test_backup_schedule_is_a_valid_systemd_calendar(origin_cert: OriginCert) -> None:
    tool = require_tool("systemd-analyze")
    timer = _render(origin_cert).file("host/bankflow-backup.timer").text
    calendar = next(line.split("=", 1)[1] for line in timer.splitlines() if line.startswith("OnCalendar="))
    done = subprocess.run([tool, "calendar", calendar], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "03:15:00 UTC" in done.stdout


def test_the_real_logrotate_accepts_the_rendered_rules(tmp_path: Path, origin_cert: OriginCert) -> None:
    require_root()
    settings = load_settings("production")
    bundle = render_bundle(settings, make_secrets(origin_cert), CLOUDFLARE, origin_cert.cert_pem)
    rules = tmp_path / "bankflow"
    rules.write_text(bundle.file("host/logrotate-bankflow").text)
    done = run_logrotate(rules, tmp_path / "status", force=False, debug=True)
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stderr.lower()
    assert "rotating pattern: /opt/bankflow/state/audit.log  monthly (24 rotations)" in done.stderr
