"""Fixtures for the ops tests: certificates made once per session with the real `openssl` CLI."""

from __future__ import annotations

import ssl

import pytest

from tests.support.https import Certs, hostnames, make_certs
from tests.support.tools import require_tool


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    openssl = require_tool("openssl")
    return make_certs(openssl, tmp_path_factory.mktemp("certs"), hostnames())


@pytest.fixture
def test_ca_trust(certs: Certs) -> ssl.SSLContext:
    """Edge-mode trust roots for tests: the test CA plays the public CAs that Cloudflare's edge uses."""
    return ssl.create_default_context(cafile=str(certs.ca.cert))
