"""The bundle manifest as the agent reads it: every problem listed, the contract's project only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bankflow_infra.contract.layout import HostPaths
from bankflow_infra.contract.release import BASE_PROJECT
from bankflow_infra.host.manifest import ManifestError, bundle_release_id, parse_manifest
from bankflow_infra.host.release_dir import install_live_files
from tests.host.fixtures import HostEnv
from tests.host.logs.rig import require_root
from tests.host.standin import LocalProcessRuntime


def manifest_data(tmp_path: Path) -> dict[str, object]:
    env = HostEnv(tmp_path, tmp_path, tmp_path, 1, LocalProcessRuntime(tmp_path, "nginx", tmp_path / "c"))
    data: dict[str, object] = json.loads((env.bundle("v1") / "release.json").read_text())
    return data


def test_manifest_problems_are_all_listed(tmp_path: Path) -> None:
    data = manifest_data(tmp_path)
    data["schema"] = 2
    data["nginx_dir"] = "../../etc"
    data["app_services"][0]["upstream"] = "x; include /etc/passwd"  # type: ignore[index]
    with pytest.raises(ManifestError) as error:
        parse_manifest(data)
    assert [p.split(":")[0] for p in error.value.problems] == [
        "schema",
        "app_services[0].upstream",
        "nginx_dir",
    ]


def test_manifest_ignores_keys_it_does_not_use(tmp_path: Path) -> None:
    data = {**manifest_data(tmp_path), "tls_dir": "tls", "nginx_conf": "/etc/nginx/nginx.conf"}
    assert parse_manifest(data).app_names() == ("site", "saas", "api")


def test_the_migrate_environment_names_secret_files_only(tmp_path: Path) -> None:
    data = manifest_data(tmp_path)
    migrate = data["migrate"]
    assert isinstance(migrate, dict)
    assert parse_manifest(data).migrate.environment == {}  # type: ignore[union-attr]
    direct = {"DATABASE_URL_FILE": "/run/secrets/database_migrate_url"}
    parsed = parse_manifest({**data, "migrate": {**migrate, "environment": direct}}).migrate
    assert parsed is not None
    assert parsed.environment == direct
    refused = ({"DATABASE_URL": "postgres://app:pw@db/x"}, {"lower": "/run/secrets/x"}, ["DATABASE_URL_FILE"])
    for bad in refused:
        with pytest.raises(ManifestError, match=r"migrate\.environment"):
            parse_manifest({**data, "migrate": {**migrate, "environment": bad}})


def test_the_manifests_kept_releases_have_are_accepted(tmp_path: Path) -> None:
    data = manifest_data(tmp_path)
    assert (data["schema"], data["project"]) == (1, BASE_PROJECT)
    assert parse_manifest(data).project == BASE_PROJECT


@pytest.mark.parametrize("project", ["shop", "bankflow-app-abc123def456"])
def test_a_manifest_for_another_compose_project_is_refused(tmp_path: Path, project: str) -> None:
    data = {**manifest_data(tmp_path), "project": project}
    with pytest.raises(ManifestError, match=f"project: expected 'bankflow', got '{project}'"):
        parse_manifest(data)


def test_a_missing_project_is_refused(tmp_path: Path) -> None:
    data = manifest_data(tmp_path)
    del data["project"]
    with pytest.raises(ManifestError) as error:
        parse_manifest(data)
    assert [p.split(":")[0] for p in error.value.problems] == ["project"]


def test_bundle_release_id_is_the_override_the_hex_dir_name_or_the_digest(tmp_path: Path) -> None:
    hex_dir = tmp_path / ("ab" * 32)
    hex_dir.mkdir()
    assert bundle_release_id(hex_dir) == "ab" * 6
    assert bundle_release_id(hex_dir, "0123456789abcdef") == "0123456789ab"
    other = tmp_path / "bundle"
    other.mkdir()
    (other / "release.json").write_text("{}")
    assert len(bundle_release_id(other)) == 12
    with pytest.raises(ManifestError, match="--release"):
        bundle_release_id(other, "XYZ")


@pytest.mark.parametrize(
    "owners",
    [{"../app.key": 10002}, {"saas.database_url": 0}, {"saas.database_url": True}, ["saas.x"]],
)
def test_container_secret_owners_must_be_plain_file_names_and_real_uids(
    tmp_path: Path, owners: object
) -> None:
    data = {**manifest_data(tmp_path), "container_secrets": owners}
    with pytest.raises(ManifestError) as error:
        parse_manifest(data)
    assert [p.split(":")[0] for p in error.value.problems] == ["container_secrets"]


def test_each_container_secret_goes_to_its_readers_uid_and_stays_0600(tmp_path: Path) -> None:
    # Issue 12: the services run as their own uids; compose bind-mounts each one's own copy of a
    # secret, which only that uid may read (compose ignores uid/gid/mode outside Swarm).
    require_root()
    env = HostEnv(tmp_path, tmp_path, tmp_path, 1, LocalProcessRuntime(tmp_path, "nginx", tmp_path / "c"))
    bundle = env.bundle("v1")
    (bundle / "secrets").mkdir(exist_ok=True)
    for name in ("saas.database_url", "api.jwt_secret", "app.env"):
        (bundle / "secrets" / name).write_text(f"value of {name}\n")
    data = json.loads((bundle / "release.json").read_text())
    data["container_secrets"] = {"saas.database_url": 10002, "api.jwt_secret": 10003}
    (bundle / "release.json").write_text(json.dumps(data))
    paths = HostPaths(tmp_path / "home")
    paths.ensure()
    install_live_files(paths, bundle)
    owners = {p.name: (p.stat().st_uid, p.stat().st_mode & 0o777) for p in paths.secrets.iterdir()}
    assert owners["saas.database_url"] == (10002, 0o600)
    assert owners["api.jwt_secret"] == (10003, 0o600)
    assert owners["app.env"] == (0, 0o600)  # the agent's own: root's
