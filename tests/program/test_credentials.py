"""The generated secrets of issue 11 (mock engine): the app role's password is rotatable; the
backup repositories' keys (pgBackRest cipher pass, restic password) belong to the bucket, can
never be replaced by an `up`, and a rebuild stack takes its environment's keys; all reach the
renderer as plain values inside the apply only."""

from __future__ import annotations

from typing import Any

import pytest

from bankflow_infra.components import fleet
from bankflow_infra.render.model import BundleSecrets
from tests.program.options import recorded_options
from tests.program.stacks import inputs, rebuild_shaped, run_stack

PASSWORD = "random:index/randomPassword:RandomPassword"  # noqa: S105 - a type token
NEVER_REPLACED = ("backups-cipher-pass", "backups-uploads-password")


@pytest.fixture(scope="module")
def planned() -> tuple[Any, dict[str, Any], list[BundleSecrets]]:
    seen: list[BundleSecrets] = []
    original = fleet.render_bundle

    def recording(settings, secrets, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(secrets)
        return original(settings, secrets, **kwargs)

    fleet.render_bundle = recording  # type: ignore[assignment]
    try:
        with recorded_options() as options:
            result = run_stack("production")
    finally:
        fleet.render_bundle = original  # type: ignore[assignment]
    return result, dict(options), seen


def password(result: Any, name: str) -> Any:
    return next(r for r in result.recorder.of_type(PASSWORD) if r.name == name)


def test_the_three_new_secrets_are_alphanumeric_random_passwords(planned) -> None:
    result, _, _ = planned
    for name in ("credentials-database-app-password", *NEVER_REPLACED):
        args = inputs(password(result, name))
        assert args["special"] is False, name
        assert args["length"] >= 40, name


def test_the_backup_keys_are_protected_and_ignore_every_argument_that_would_replace_them(planned) -> None:
    result, options, _ = planned
    for name in NEVER_REPLACED:
        assert password(result, name).protect is True
        ignored = set(options[name].ignore_changes)
        assert {"length", "special", "keepers", "overrideSpecial"} <= ignored, ignored
    rotatable = password(result, "credentials-database-app-password")
    assert rotatable.protect is False
    assert options["credentials-database-app-password"].ignore_changes == ()


def test_they_reach_the_bundle_secrets_with_the_generated_values(planned) -> None:
    result, _, seen = planned
    assert seen, "the program rendered no bundle"
    secrets = seen[-1]
    generated = {
        "database_app_password": "credentials-database-app-password",
        "backup_cipher_pass": "backups-cipher-pass",
        "uploads_repo_password": "backups-uploads-password",
    }
    for field, name in generated.items():
        assert getattr(secrets, field) == password(result, name).state["result"], field
    assert result.bundle is not None
    app_env = result.bundle.file("secrets/app.env").text
    assert f"bankflow_app:{secrets.database_app_password}@" in app_env


def test_the_bucket_stack_exports_the_keys_as_one_secret_output(planned) -> None:
    result, _, _ = planned
    exported = result.outputs["backup_repository"]
    assert exported == {
        "cipher_pass": password(result, "backups-cipher-pass").state["result"],
        "uploads_password": password(result, "backups-uploads-password").state["result"],
    }


def test_a_rebuild_stack_uses_its_environment_buckets_keys_not_new_ones() -> None:
    """A rebuild (own server, edge off, bucketStack production) generates no repository keys: a new
    key could not open the backups it must restore. It reads production's `backup_repository`."""
    referenced = {
        "cipher_pass": "referenced-cipher-pass-0123456789",
        "uploads_password": "referenced-uploads-0123456789",
    }
    seen: list[BundleSecrets] = []
    original = fleet.render_bundle

    def recording(settings, secrets, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(secrets)
        return original(settings, secrets, **kwargs)

    def rebuild(config: Any) -> None:
        rebuild_shaped(config)
        config["bankflow:backups"]["bucketStack"] = "production"

    fleet.render_bundle = recording  # type: ignore[assignment]
    try:
        result = run_stack(
            "production-r1", rebuild, base="production", referenced_outputs={"backup_repository": referenced}
        )
    finally:
        fleet.render_bundle = original  # type: ignore[assignment]
    assert not [r for r in result.recorder.of_type(PASSWORD) if r.name in NEVER_REPLACED]
    assert seen
    assert seen[-1].backup_cipher_pass == referenced["cipher_pass"]
    assert seen[-1].uploads_repo_password == referenced["uploads_password"]
