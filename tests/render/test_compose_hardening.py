"""Issue 12, items 5 and 6: every container locked down as far as its image allows, secrets as
files owned by the one service that reads them, each service its own log directory, and every
public image pinned by digest (production refuses one without)."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
import yaml

from bankflow_infra import catalog
from bankflow_infra.contract import layout
from bankflow_infra.render import Bundle, container_secrets, edge_ports, render_bundle
from bankflow_infra.settings import APP_SERVICES, Settings, SettingsError
from bankflow_infra.stackfile import settings_from_stack_file
from tests.render.helpers import CLOUDFLARE, STACKS, OriginCert, load_settings, make_secrets, secret_values
from tests.support.tools import REPO

# Capabilities no BankFlow container may ever hold (each one is a known container escape or
# host-wide power); the few each service keeps are asserted per service below.
FORBIDDEN_CAPS = {"ALL", "SYS_ADMIN", "SYS_PTRACE", "SYS_MODULE", "NET_ADMIN", "DAC_READ_SEARCH", "NET_RAW"}
ROOT_STARTERS = {  # the images whose entrypoints need root at start, and what they keep
    "postgres": {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"},
    "nginx": {"CHOWN", "DAC_OVERRIDE", "NET_BIND_SERVICE", "SETGID", "SETUID"},
}


def _bundle(stack: str, cert: OriginCert) -> Bundle:
    return render_bundle(load_settings(stack), make_secrets(cert), CLOUDFLARE, cert.cert_pem)


def _documents(bundle: Bundle) -> tuple[dict[str, Any], dict[str, Any]]:
    base, app = (yaml.safe_load(bundle.file(f"compose/{name}.yaml").text) for name in ("base", "app"))
    return base, app


def _services(bundle: Bundle) -> dict[str, dict[str, Any]]:
    base, app = _documents(bundle)
    return {**base["services"], **app["services"]}


@pytest.mark.parametrize("stack", STACKS)
def test_every_container_is_locked_down(stack: str, origin_cert: OriginCert) -> None:
    services = _services(_bundle(stack, origin_cert))
    assert set(services) == {*catalog.SERVICE_UIDS, edge_ports.PORT_HOLDER}
    for name, service in services.items():
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert isinstance(service["pids_limit"], int), name
        assert 0 < service["pids_limit"] <= 1024, name
        assert not service.get("privileged"), name
        kept = set(service.get("cap_add", ()))
        assert not kept & FORBIDDEN_CAPS, name
        assert kept == ROOT_STARTERS.get(name, set()), name
        # whatever it must write outside its volumes is a size-bounded tmpfs
        for mount in service.get("tmpfs", ()):  # the port holder writes nothing at all
            assert re.search(r"(^|[:,])size=\d+[km]\b", mount), (name, mount)
        if name in ROOT_STARTERS:
            assert "user" not in service, name  # the entrypoint drops to the image's user itself
        else:
            uid, _, gid = service["user"].partition(":")
            assert int(uid) == catalog.SERVICE_UIDS.get(name, 65535) != 0, name  # pause: 65535
            assert int(gid or "0") != 0, name


@pytest.mark.parametrize("stack", STACKS)
def test_each_service_writes_only_its_own_log_directory(stack: str, origin_cert: OriginCert) -> None:
    services = _services(_bundle(stack, origin_cert))
    for name, service in services.items():
        sources = {m["source"]: m for m in service.get("volumes", ()) if m["type"] == "bind"}
        assert layout.LOGS_DIR not in sources, name  # the parent is mounted into no container
        logs = {s for s in sources if s.startswith(layout.LOGS_DIR + "/")}
        own = {catalog.service_log_dir(name)} if name in catalog.SERVICE_UIDS else set()
        assert logs <= own, name
    for name in ("site", "saas", "api", "nginx"):
        target = catalog.NGINX_CONTAINER_LOG_DIR if name == "nginx" else catalog.APP_CONTAINER_LOG_DIR
        mount = next(m for m in services[name]["volumes"] if m["source"] == catalog.service_log_dir(name))
        assert mount["target"] == target
        assert not mount.get("read_only")
        # a missing directory fails the start: one Docker created would be root's, unwritable
        assert mount["bind"] == {"create_host_path": False}


@pytest.mark.parametrize("stack", STACKS)
def test_secrets_reach_containers_as_their_own_files_never_as_environment(
    stack: str, origin_cert: OriginCert
) -> None:
    secrets = make_secrets(origin_cert)
    bundle = render_bundle(load_settings(stack), secrets, CLOUDFLARE, origin_cert.cert_pem)
    base, app = _documents(bundle)
    secret_texts = {f.path: f.text for f in bundle.secret_files}
    owners = json.loads(bundle.file("release.json").text)["container_secrets"]
    expected = {
        "saas": {"DATABASE_URL", "REDIS_URL", "JWT_SECRET"},
        "api": {"DATABASE_URL", "REDIS_URL", "JWT_SECRET"},
        "postgres": {"POSTGRES_PASSWORD"},
        "redis": {"REDIS_PASSWORD"},
    }
    values = set(secret_values(secrets))
    # what the env files (read by the agent only now) say each variable is
    env_values = dict(
        line.split("=", 1)
        for path in ("secrets/app.env", "secrets/postgres.env", "secrets/redis.env")
        for line in secret_texts[path].splitlines()
    )
    used_files: set[str] = set()
    for document in (base, app):
        declared = document.get("secrets", {})
        for name, service in document["services"].items():
            assert "env_file" not in service, name  # `docker inspect` shows an env file's values
            environment = service.get("environment", {})
            assert not values & {str(v) for v in environment.values()}, name
            assert not set(catalog.SECRET_ENV_NAMES) & set(environment), name
            refs = service.get("secrets", [])
            assert {ref["target"].upper() for ref in refs} == expected.get(name, set()), name
            for ref in refs:
                # the service is told where with <NAME>_FILE; its own copy, owned by its uid
                assert environment[f"{ref['target'].upper()}_FILE"] == f"/run/secrets/{ref['target']}"
                host_file = declared[ref["source"]]["file"]
                assert host_file == f"{layout.SECRETS_DIR}/{name}.{ref['target']}"
                file_name = host_file.rsplit("/", 1)[1]
                assert owners[file_name] == catalog.SERVICE_UIDS[name]
                assert secret_texts[f"secrets/{file_name}"] == env_values[ref["target"].upper()]
                used_files.add(file_name)
        used = {ref["source"] for s in document["services"].values() for ref in s.get("secrets", [])}
        assert set(declared) == used
    # the agent chowns exactly the files the containers read
    assert set(owners) == used_files


def test_secret_files_hold_exactly_the_values(origin_cert: OriginCert) -> None:
    secrets = make_secrets(origin_cert)
    bundle = render_bundle(load_settings("production"), secrets, CLOUDFLARE, origin_cert.cert_pem)
    texts = {f.path: f.text for f in bundle.secret_files}
    assert texts["secrets/postgres.postgres_password"] == secrets.postgres_password
    assert texts["secrets/redis.redis_password"] == secrets.redis_password
    for service in ("saas", "api"):
        assert texts[f"secrets/{service}.jwt_secret"] == secrets.jwt_secret
        assert texts[f"secrets/{service}.redis_url"] == catalog.redis_url(secrets.redis_password)
        assert texts[f"secrets/{service}.database_url"].startswith("postgres://")
    assert all(f.mode == 0o600 for f in bundle.secret_files)
    with pytest.raises(ValueError, match=r"no value for the container secrets \['JWT_SECRET'\]"):
        container_secrets.secret_files({"api": ("JWT_SECRET",)}, {})


# --------------------------------------------------------------------------- item 6: digests


PUBLIC_IMAGES = {
    "nginx": catalog.NGINX_IMAGE,
    "redis": catalog.REDIS_IMAGE,
    "postgres base": catalog.POSTGRES_BASE_IMAGE,
}


@pytest.mark.parametrize(("what", "image"), sorted(PUBLIC_IMAGES.items()))
def test_public_images_are_pinned_by_digest(what: str, image: str) -> None:
    assert re.fullmatch(r"[a-z0-9./-]+:[A-Za-z0-9._-]+@sha256:[0-9a-f]{64}", image), what
    assert catalog.is_pinned(image)


def test_nginx_is_on_a_supported_branch_and_redis_on_7() -> None:
    match = re.match(r"nginx:(\d+)\.(\d+)-alpine@", catalog.NGINX_IMAGE)
    assert match, catalog.NGINX_IMAGE
    assert (int(match[1]), int(match[2])) >= (1, 28)
    assert catalog.REDIS_IMAGE.startswith("redis:7-alpine@sha256:")


def test_the_postgres_dockerfile_builds_on_the_pinned_base() -> None:
    froms = re.findall(r"^FROM\s+(\S+)", catalog.POSTGRES_DOCKERFILE.read_text(), flags=re.MULTILINE)
    assert froms == [catalog.POSTGRES_BASE_IMAGE]


@pytest.mark.parametrize("stack", STACKS)
def test_compose_runs_the_catalog_images(stack: str, origin_cert: OriginCert) -> None:
    services = _services(_bundle(stack, origin_cert))
    assert services["nginx"]["image"] == catalog.NGINX_IMAGE
    assert services["redis"]["image"] == catalog.REDIS_IMAGE


@pytest.mark.parametrize(
    "image",
    [
        "nginx:1.28-alpine",  # a tag alone
        "nginx@sha256:" + "a" * 64,  # a digest without the tag that says what it is
        "nginx:1.28-alpine@sha256:" + "a" * 63,  # short
        "nginx:1.28-alpine@sha256:" + "A" * 64,  # not lowercase hex
    ],
)
def test_production_refuses_an_unpinned_public_image(
    image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "NGINX_IMAGE", image)
    with pytest.raises(catalog.UnpinnedImageError) as refused:
        catalog.base_services(load_settings("production"))
    message = str(refused.value)
    assert "the nginx image" in message
    assert repr(image) in message
    assert "@sha256:<64 hex>" in message
    # staging may try an image by tag (e.g. before a bot's PR pins it)
    staging = {s.name: s.image for s in catalog.base_services(load_settings("staging"))}
    assert staging["nginx"] == image


def test_hardening_is_known_for_every_service_and_refuses_others() -> None:
    for name in catalog.SERVICE_UIDS:
        assert dataclasses.asdict(catalog.hardening(name))
    with pytest.raises(KeyError, match="unknown service 'mongo'"):
        catalog.hardening("mongo")


# --------------------------------------------------------------------------- app images by digest


def _settings_with_digests(stack: str, digests: Any) -> Settings:
    path = REPO / f"Pulumi.{stack}.yaml"
    document = yaml.safe_load(path.read_text())
    document["config"]["bankflow:release"]["digests"] = digests
    return settings_from_stack_file("bankflow", stack, document, str(path))


def test_release_digests_make_compose_pull_the_app_images_by_digest(origin_cert: OriginCert) -> None:
    digests = {service: "sha256:" + f"{index:x}" * 64 for index, service in enumerate(APP_SERVICES, 1)}
    settings = _settings_with_digests("production", digests)
    bundle = render_bundle(settings, make_secrets(origin_cert), CLOUDFLARE, origin_cert.cert_pem)
    app = yaml.safe_load(bundle.file("compose/app.yaml").text)["services"]
    manifest = {s["name"]: s["image"] for s in json.loads(bundle.file("release.json").text)["app_services"]}
    for service, digest in digests.items():
        release = settings.release
        expected = f"{release.registry}/{release.images[service]}:{release.tag}@{digest}"
        assert app[service]["image"] == expected
        assert manifest[service] == expected  # the agent pulls, records and prunes this reference
        assert catalog.is_pinned(expected)
    # without digests, the tag alone (the committed stack files: their digests come with a release)
    plain = _bundle("production", origin_cert)
    assert "@sha256:" not in yaml.safe_load(plain.file("compose/app.yaml").text)["services"]["api"]["image"]


@pytest.mark.parametrize(
    ("digests", "key", "why"),
    [
        ({"api": "sha256:" + "a" * 63}, "release.digests.api", "must be 'sha256:<64 lowercase hex>'"),
        ({"api": "md5:" + "a" * 32}, "release.digests.api", "must be 'sha256:<64 lowercase hex>'"),
        ({"api": 42}, "release.digests.api", "must be 'sha256:<64 lowercase hex>'"),
        ({"worker": "sha256:" + "a" * 64}, "release.digests.worker", "unknown service; valid services: "),
        (["sha256:" + "a" * 64], "release.digests", "must be a mapping of service to"),
    ],
)
def test_bad_release_digests_are_refused_naming_the_key(digests: Any, key: str, why: str) -> None:
    with pytest.raises(SettingsError) as refused:
        _settings_with_digests("staging", digests)
    assert f"{key}: {why}" in str(refused.value)


def test_require_digests_refuses_a_release_missing_any_app_digest() -> None:
    path = REPO / "Pulumi.production.yaml"
    document = yaml.safe_load(path.read_text())
    release = document["config"]["bankflow:release"]
    release["requireDigests"] = True
    release["digests"] = {"api": "sha256:" + "a" * 64}
    with pytest.raises(SettingsError) as refused:
        settings_from_stack_file("bankflow", "production", document, str(path))
    message = str(refused.value)
    for service in ("site", "saas"):
        assert f"release.digests.{service}: required (release.requireDigests is true)" in message
        assert f"ghcr.io/bankflow/bankflow-{service}:{release['tag']}" in message
    assert "release.digests.api" not in message
    release["digests"] = {service: "sha256:" + "a" * 64 for service in APP_SERVICES}
    settings = settings_from_stack_file("bankflow", "production", document, str(path))
    assert all(catalog.is_pinned(service.image) for service in catalog.app_services(settings))
    release["requireDigests"] = "yes"
    with pytest.raises(SettingsError, match=r"release\.requireDigests: must be true or false"):
        settings_from_stack_file("bankflow", "production", document, str(path))
