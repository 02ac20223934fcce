"""The rendered compose files: valid against the official Compose spec schema, and safe.

``compose-spec.json`` beside this file is the official Compose specification schema, vendored
because the tests have no internet: repository compose-spec/compose-spec, file
schema/compose-spec.json at commit 00655e2222608fa6eaecdf12ac5195889ca2244a (74,133 bytes; the
test below pins its sha256 so it is only ever replaced on purpose, by a newer official copy).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bankflow_infra import catalog
from bankflow_infra.contract import layout
from bankflow_infra.contract.release import APP_PROJECT_PREFIX, RELEASE_ENV_VAR
from bankflow_infra.contract.upstreams import CANDIDATE_PORT
from bankflow_infra.render import Bundle, edge_ports, render_bundle
from tests.render.helpers import CLOUDFLARE, STACKS, OriginCert, load_settings, make_secrets, secret_values

SCHEMA_PATH = Path(__file__).with_name("compose-spec.json")
SCHEMA_SHA256 = "bc50c2d79102aed8df21b3a13e56c9396c7a06da6cff5ce37629f2ee7eb41735"
COMPOSE_FILES = ("compose/base.yaml", "compose/app.yaml")


def _bundle(stack: str, cert: OriginCert) -> Bundle:
    return render_bundle(load_settings(stack), make_secrets(cert), CLOUDFLARE, cert.cert_pem)


def _compose(bundle: Bundle, path: str) -> dict[str, Any]:
    document = yaml.safe_load(bundle.file(path).text)
    assert isinstance(document, dict)
    return document


def test_vendored_schema_is_the_pinned_official_copy() -> None:
    assert hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest() == SCHEMA_SHA256


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("path", COMPOSE_FILES)
def test_compose_files_match_the_compose_spec(stack: str, path: str, origin_cert: OriginCert) -> None:
    schema = yaml.safe_load(SCHEMA_PATH.read_text())  # JSON is YAML
    jsonschema.Draft7Validator.check_schema(schema)
    document = _compose(_bundle(stack, origin_cert), path)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(document), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)
    assert "version" not in document


@pytest.mark.parametrize("stack", STACKS)
def test_only_nginx_publishes_80_443_and_its_verify_listener_on_loopback(
    stack: str, origin_cert: OriginCert
) -> None:
    # through the port holder, whose network namespace nginx joins (render/edge_ports.py)
    bundle = _bundle(stack, origin_cert)
    published: dict[str, list[tuple[str, str | None]]] = {}
    for path in COMPOSE_FILES:
        for name, service in _compose(bundle, path)["services"].items():
            assert "expose" not in service
            expected_mode = f"service:{edge_ports.PORT_HOLDER}" if name == "nginx" else None
            assert service.get("network_mode") == expected_mode, name
            if "ports" in service:
                published[name] = [(str(p["published"]), p.get("host_ip")) for p in service["ports"]]
    # the verify listener (a release checked through nginx before the public switch) is reachable
    # from the host's loopback only: never from the network, whatever the firewall says
    assert published == {
        edge_ports.PORT_HOLDER: [
            (str(catalog.HTTP_PORT), None),
            (str(catalog.HTTPS_PORT), None),
            (str(CANDIDATE_PORT), "127.0.0.1"),
        ]
    }


@pytest.mark.parametrize("stack", STACKS)
def test_data_services_only_on_the_internal_network(stack: str, origin_cert: OriginCert) -> None:
    bundle = _bundle(stack, origin_cert)
    base, app = _compose(bundle, "compose/base.yaml"), _compose(bundle, "compose/app.yaml")
    networks = base["networks"]
    for name in ("postgres", "redis"):
        joined = base["services"][name]["networks"]
        assert joined, name
        assert all(networks[n].get("internal") is True for n in joined), name
    assert base["services"][edge_ports.PORT_HOLDER]["networks"] == ["edge"]  # nginx's namespace
    assert "networks" not in base["services"]["nginx"]
    # app.yaml joins the same networks by their fixed names, created by the base project
    for key, network in app["networks"].items():
        assert network == {"name": networks[key]["name"], "external": True}
    assert networks["data"]["name"] == catalog.DATA_NETWORK
    assert networks["edge"]["name"] == catalog.EDGE_NETWORK


@pytest.mark.parametrize("stack", STACKS)
def test_every_service_is_pinned_limited_rotated_and_checked(stack: str, origin_cert: OriginCert) -> None:
    settings = load_settings(stack)
    bundle = _bundle(stack, origin_cert)
    services = {
        **_compose(bundle, "compose/base.yaml")["services"],
        **_compose(bundle, "compose/app.yaml")["services"],
    }
    holder = services.pop(edge_ports.PORT_HOLDER)  # not a catalog service: it only sleeps
    assert holder["image"] == catalog.PORT_HOLDER_IMAGE
    assert catalog.is_pinned(holder["image"])
    assert holder["restart"] == catalog.RESTART_POLICY[settings.environment]
    assert set(holder["deploy"]["resources"]["limits"]) == {"cpus", "memory"}
    assert set(services) == {"site", "saas", "api", "postgres", "redis", "nginx"}
    for name, service in services.items():
        assert "build" not in service, name
        limits = catalog.LIMITS[settings.environment][name]
        assert service["deploy"]["resources"]["limits"] == {"cpus": limits.cpus, "memory": limits.memory}, (
            name
        )
        assert service["restart"] == catalog.RESTART_POLICY[settings.environment], name
        logging = service["logging"]
        assert logging["driver"] in ("local", "json-file")
        assert {"max-size", "max-file"} <= set(logging["options"])
        assert service["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
    for app in catalog.app_services(settings):
        assert services[app.name]["image"] == app.image
        assert app.image.startswith(settings.release.registry + "/")
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert "redis-cli" in services["redis"]["healthcheck"]["test"][1]
    assert "--appendonly yes" in services["redis"]["command"][2]
    assert "requirepass" in services["redis"]["command"][2]


def test_postgres_data_location_per_environment(origin_cert: OriginCert) -> None:
    # Both environments keep PostgreSQL on their data volume (staging's is 10 GB): a replaced
    # droplet keeps its database. Never silently on the droplet disk.
    for environment in ("production", "staging"):
        compose = _compose(_bundle(environment, origin_cert), "compose/base.yaml")
        volume = compose["services"]["postgres"]["volumes"][0]
        assert volume["type"] == "bind"
        assert volume["source"] == catalog.postgres_data_dir(load_settings(environment))
        assert volume["source"].startswith("/mnt/bankflow-data/")
        assert volume["bind"]["create_host_path"] is False
        assert "postgres-data" not in compose["volumes"]
    staging = _compose(_bundle("staging", origin_cert), "compose/base.yaml")
    assert "redis-data" in staging["volumes"]


@pytest.mark.parametrize("stack", STACKS)
def test_app_services_are_per_release(stack: str, origin_cert: OriginCert) -> None:
    app = _compose(_bundle(stack, origin_cert), "compose/app.yaml")
    release = f"${{{RELEASE_ENV_VAR}:?"
    assert app["name"].startswith(f"{APP_PROJECT_PREFIX}{release}")
    for name, service in app["services"].items():
        for network in service["networks"].values():
            assert network["aliases"] == [f"{name}-{release}set by bankflow-agent}}"]
    # saas calls *its own release's* api, never the plain name shared by every release
    assert app["services"]["saas"]["environment"]["API_BASE_URL"].startswith(f"http://api-{release}")
    assert app["services"]["saas"]["depends_on"] == {"api": {"condition": "service_healthy"}}
    assert "data" not in app["services"]["site"]["networks"]  # site needs no database


@pytest.mark.parametrize("stack", STACKS)
def test_secrets_come_from_0600_files_never_inline(stack: str, origin_cert: OriginCert) -> None:
    secrets = make_secrets(origin_cert)
    bundle = render_bundle(load_settings(stack), secrets, CLOUDFLARE, origin_cert.cert_pem)
    for item in bundle.files:
        for value in secret_values(secrets):
            assert value not in item.text, f"a secret value is in {item.path}"
    # the env files stay for the agent (database roles); the containers read their own copies
    # (tests/render/test_compose_hardening.py: compose `secrets:`, never env_file or environment)
    per_service = {
        f"secrets/{service}.{name}"
        for service, names in {
            "saas": ("database_url", "redis_url", "jwt_secret"),
            "api": ("database_url", "redis_url", "jwt_secret"),
            "postgres": ("postgres_password",),
            "redis": ("redis_password",),
        }.items()
        for name in names
    }
    assert {f.path for f in bundle.secret_files} == {
        "secrets/app.env",
        "secrets/postgres.env",
        "secrets/redis.env",
        "secrets/origin.key",
        "secrets/registry-password",
        *per_service,
    }
    assert all(f.mode == 0o600 for f in bundle.secret_files)
    services = {
        **_compose(bundle, "compose/base.yaml")["services"],
        **_compose(bundle, "compose/app.yaml")["services"],
    }
    for name, service in services.items():
        assert "env_file" not in service, name
        assert not set(catalog.SECRET_ENV_NAMES) & set(service.get("environment", {})), name
    assert "POSTGRES_PASSWORD" not in services["postgres"]["environment"]
    file_variable = services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"]
    assert file_variable == "/run/secrets/postgres_password"
    key_mount = [v for v in services["nginx"]["volumes"] if v["source"].endswith("origin.key")]
    assert key_mount == [
        {
            "type": "bind",
            "source": f"{layout.SECRETS_DIR}/origin.key",
            "target": catalog.NGINX_KEY_PATH,
            "read_only": True,
            "bind": {"create_host_path": False},
        }
    ]
    app_env = bundle.file("secrets/app.env").text
    assert re.findall(r"^([A-Z_]+)=", app_env, flags=re.MULTILINE) == list(catalog.SECRET_ENV_NAMES)
    assert f"DATABASE_URL={catalog.database_url(secrets.postgres_password)}\n" in app_env


def test_nginx_mounts_the_live_dir_over_etc_nginx(origin_cert: OriginCert) -> None:
    nginx = _compose(_bundle("production", origin_cert), "compose/base.yaml")["services"]["nginx"]
    mounts = {v["target"]: v for v in nginx["volumes"]}
    assert mounts[catalog.NGINX_CONFIG_DIR]["source"] == layout.NGINX_LIVE_DIR
    assert mounts[catalog.NGINX_TLS_DIR]["source"] == layout.TLS_DIR
    # everything read-only but its own log directory
    writable = [v["source"] for v in nginx["volumes"] if not v.get("read_only")]
    assert writable == [catalog.service_log_dir("nginx")]
    assert nginx["command"] == ["nginx", "-g", "daemon off;"]
    assert nginx["image"] == catalog.NGINX_IMAGE
