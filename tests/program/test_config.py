"""How the program reads its stack config: known keys through ``pulumi.Config``, and every
``bankflow:`` key the engine passed, so that a typo is an error naming the key."""

from __future__ import annotations

import pytest

from bankflow_infra.settings import SettingsError
from tests.program.stacks import run_stack


def test_an_unknown_key_from_the_engine_is_an_error_naming_it() -> None:
    # The plan hands the program its config as a real `pulumi up` does: PULUMI_CONFIG (JSON).
    def typo(config: dict[str, object]) -> None:
        config["bankflow:servr"] = {}
        config["digitalocean:token"] = "x"  # a provider's own namespace is not ours to judge

    with pytest.raises(SettingsError) as raised:
        run_stack("staging", typo)
    assert "bankflow:servr: unknown key; valid keys: environment, hostnames," in str(raised.value)
    assert "digitalocean:token" not in str(raised.value)


def test_secret_keys_are_not_settings() -> None:
    def with_secret(config: dict[str, object]) -> None:
        config["bankflow:registryPassword"] = "x" * 24

    assert run_stack("staging", with_secret).outputs["environment"] == "staging"


def test_a_structured_value_that_is_not_json_is_reported_with_its_key() -> None:
    def broken(config: dict[str, object]) -> None:
        config["bankflow:nginx"] = "{not json"

    with pytest.raises(SettingsError, match=r"bankflow:nginx: must be a mapping"):
        run_stack("staging", broken)
