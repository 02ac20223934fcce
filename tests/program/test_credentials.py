"""The generated secrets of issue 11 (mock engine): the app role's password is rotatable, the
backup cipher pass and the uploads repository password can never be replaced by an `up`, and all
three reach the renderer as plain values inside the apply only."""

from __future__ import annotations

from typing import Any

import pytest

from bankflow_infra import program
from bankflow_infra.render.model import BundleSecrets
from tests.program.options import recorded_options
from tests.program.stacks import inputs, run_stack

PASSWORD = "random:index/randomPassword:RandomPassword"  # noqa: S105 - a type token
NEVER_REPLACED = ("credentials-backup-cipher-pass", "credentials-uploads-repo-password")


@pytest.fixture(scope="module")
def planned() -> tuple[Any, dict[str, Any], list[BundleSecrets]]:
    seen: list[BundleSecrets] = []
    original = program.render_bundle

    def recording(settings, secrets, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(secrets)
        return original(settings, secrets, **kwargs)

    program.render_bundle = recording  # type: ignore[assignment]
    try:
        with recorded_options() as options:
            result = run_stack("production")
    finally:
        program.render_bundle = original  # type: ignore[assignment]
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
        "backup_cipher_pass": "credentials-backup-cipher-pass",
        "uploads_repo_password": "credentials-uploads-repo-password",
    }
    for field, name in generated.items():
        assert getattr(secrets, field) == password(result, name).state["result"], field
    assert result.bundle is not None
    app_env = result.bundle.file("secrets/app.env").text
    assert f"bankflow_app:{secrets.database_app_password}@" in app_env
