"""Today's single-droplet bundles stay byte-identical (issue 13: scale-out is an addition).

The digests below are of the staging and production bundles rendered from the committed stack
files with fixed inputs, taken on main before issue 13's renderer changes, and re-taken once on purpose when
the maintenance unit gained `ExecStartPre=... patch-wait` (a no-op on one droplet). A release's digest is
what the agent switches on: a changed byte here means every existing droplet would get a new
release on the next ``pulumi up``. If a change is meant to reach today's droplets (a new nginx
directive, a new image digest), re-take the figures deliberately and say so in the commit:
``venv/bin/python -m tests.render.test_bundle_golden``.
"""

from __future__ import annotations

import pytest

from bankflow_infra.render import Bundle, BundleSecrets, render_bundle
from tests.render.helpers import CLOUDFLARE, SECRETS_NO_KEY, STACKS, load_settings

# Fixed stand-ins: the renderer checks only their PEM shape, and a digest needs the same bytes.
_CERT = "-----BEGIN CERTIFICATE-----\nTUlJQmZpeGVkLW9yaWdpbi1jZXJ0aWZpY2F0ZQ==\n-----END CERTIFICATE-----\n"
_PULL_CA = "-----BEGIN CERTIFICATE-----\nTUlJQmZpeGVkLW9yaWdpbi1wdWxsLWNh\n-----END CERTIFICATE-----\n"
_KEY = "-----BEGIN PRIVATE KEY-----\nTUlJRXZmaXhlZC1vcmlnaW4ta2V5\n-----END PRIVATE KEY-----\n"
_ALL_SECRETS = {
    **SECRETS_NO_KEY,
    "spaces_access_key": "DO00GOLDENACCESSKEY01",
    "spaces_secret_key": "GoldenSpacesSecretKey0123456789abcdefghij=",
    "database_app_password": "AppRoleGoldenPassw0rd-51c2",
    "backup_cipher_pass": "CipherGoldenPass-0a9b8c7d6e5f",
    "uploads_repo_password": "UploadsGoldenPass-1b2c3d4e5f",
    "alerts_webhook_url": "https://hooks.slack.com/services/T000/B000/golden",
}

EXPECTED: dict[tuple[str, str], str] = {
    ("staging", "minimal"): "03c75d1e116e5a07353c97b092f0bdf4304d90819a6f77493c11f2c8efb3a8bb",
    ("staging", "all-secrets"): "9186fb790d3b0d4ab1086dd8c1cd0595ebb9cec623c4b69078516e840dd0a1d0",
    ("production", "minimal"): "dd4b261a556b5799151aff0fb7660ca4001d65c1680daed8d56e0ae917414808",
    ("production", "all-secrets"): "c6613b223f6ef284ce2ec4009dab6e092b63461e8df74a4496bb522161b8cb7a",
}


def _bundle(stack: str, variant: str) -> Bundle:
    values = _ALL_SECRETS if variant == "all-secrets" else SECRETS_NO_KEY
    secrets = BundleSecrets(origin_private_key_pem=_KEY, **values)
    pull_ca = _PULL_CA if variant == "all-secrets" else None
    return render_bundle(load_settings(stack), secrets, CLOUDFLARE, _CERT, origin_pull_ca_pem=pull_ca)


VARIANTS = ("minimal", "all-secrets")


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_todays_bundle_is_byte_identical(stack: str, variant: str) -> None:
    bundle = _bundle(stack, variant)
    assert bundle.digest == EXPECTED[(stack, variant)], (
        f"the {stack} bundle ({variant}) changed: today's droplets would all get a new release. "
        "If that is meant, re-take the figures (see the module docstring)."
    )


if __name__ == "__main__":  # pragma: no cover - prints the figures to paste above
    for stack in STACKS:
        for variant in VARIANTS:
            print(f'    ("{stack}", "{variant}"): "{_bundle(stack, variant).digest}",')
