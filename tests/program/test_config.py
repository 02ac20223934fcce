"""How the program reads its stack config: known keys through ``pulumi.Config``, and every
``bankflow:`` key the engine passed, so that a typo is an error naming the key."""

from __future__ import annotations

import json

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


WEBHOOK = "https://hooks.slack.com/services/T000/B000/backup-watch-0123456789"


def test_the_backup_watch_webhook_is_a_config_secret_that_reaches_only_the_secret_alerts_file() -> None:
    """Both committed stack files alert by e-mail only, which the droplet cannot send: its backup
    watch posts to bankflow:alertsWebhookUrl (a `secure:` value), rendered into secrets/alerts.json."""

    def with_webhook(config: dict[str, object]) -> None:
        config["bankflow:alertsWebhookUrl"] = WEBHOOK

    without = run_stack("production").bundle
    assert without is not None
    assert "secrets/alerts.json" not in {f.path for f in without.secret_files}
    bundle = run_stack("production", with_webhook).bundle
    assert bundle is not None
    [alerts] = [f for f in bundle.secret_files if f.path == "secrets/alerts.json"]
    assert json.loads(alerts.text)["slack_url"] == WEBHOOK
    assert all(WEBHOOK not in f.text for f in bundle.files)  # only in the 0600 secret file


def test_a_webhook_that_is_not_https_is_refused_without_showing_it() -> None:
    def plain_http(config: dict[str, object]) -> None:
        config["bankflow:alertsWebhookUrl"] = "http://hooks.example/secret-path-0123"

    with pytest.raises(Exception, match=r"alertsWebhookUrl\): must be an https:// URL") as raised:
        run_stack("production", plain_http)
    assert "secret-path-0123" not in str(raised.value)
