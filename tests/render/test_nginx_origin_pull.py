"""Authenticated Origin Pulls and the SNI/Host match (issue 12, items 2 and 8), on a real nginx.

The rendered staging config with an origin-pull CA made by openssl (the stack's pulumi-tls CA
stands in for it; the client certificate it issues is what Cloudflare presents): only that
certificate reaches the apps, on the public port. The loopback verify listener, which the agent
uses and Cloudflare never reaches, needs none.
"""

from __future__ import annotations

import ssl

import pytest

from bankflow_infra.contract.upstreams import CANDIDATE_SUFFIX, CANDIDATE_UPSTREAMS_FILE, render_upstreams
from tests.render.conftest import TRUSTED, PullPki, StartNginx
from tests.render.helpers import RunningNginx, https, load_settings, start_backend, wait_for
from tests.render.perimeter import client_context, open_tls, read_status, request_head

STAGING = load_settings("staging")
SITE, SAAS, API = (STAGING.hostnames[name][0] for name in ("site", "saas", "api"))


@pytest.fixture
def pulled(start_live_nginx: StartNginx, pull_pki: PullPki) -> RunningNginx:
    return start_live_nginx(STAGING, TRUSTED, origin_pull_ca=pull_pki.ca.cert_pem)


def _status(running: RunningNginx, sni: str, context: ssl.SSLContext, host: str | None = None) -> int:
    return https(running.params.https_port, running.cert_path, sni, host=host, context=context).status


@pytest.mark.parametrize("hostname", STAGING.all_hostnames)
def test_the_stacks_client_certificate_reaches_every_app(
    pulled: RunningNginx, pull_pki: PullPki, hostname: str
) -> None:
    context = client_context(pulled.cert_path, pull_pki.ours)
    response = https(pulled.params.https_port, pulled.cert_path, hostname, context=context)
    assert response.status == 200
    assert response.json()["service"] in ("site", "saas", "api")


def test_no_client_certificate_is_refused(pulled: RunningNginx) -> None:
    context = client_context(pulled.cert_path, None)
    response = https(pulled.params.https_port, pulled.cert_path, API, context=context)
    assert response.status == 400
    assert b"No required SSL certificate" in response.body
    assert "service" not in response.body.decode()  # nginx answered; the app never saw it
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


def test_another_cas_client_certificate_is_refused(pulled: RunningNginx, pull_pki: PullPki) -> None:
    context = client_context(pulled.cert_path, pull_pki.foreign)
    response = https(pulled.params.https_port, pulled.cert_path, API, context=context)
    assert response.status == 400
    assert b"The SSL certificate error" in response.body
    assert "service" not in response.body.decode()


def test_the_verify_listener_needs_no_client_certificate(pulled: RunningNginx) -> None:
    # The agent checks a candidate release here (127.0.0.1 on the droplet) with no certificate.
    candidate = start_backend("api-candidate")
    try:
        addresses = {f"bankflow_{name}": backend.address for name, backend in pulled.backends.items()}
        addresses["bankflow_api"] = candidate.address
        (pulled.conf.parent / CANDIDATE_UPSTREAMS_FILE).write_text(
            render_upstreams(addresses, "next00000001", suffix=CANDIDATE_SUFFIX)
        )
        pulled.reload()
        verify = pulled.params.verify_port
        no_cert = client_context(pulled.cert_path, None)

        def served() -> bool:
            response = https(verify, pulled.cert_path, API, context=no_cert)
            return response.status == 200 and response.json()["service"] == "api-candidate"

        assert wait_for(served)
        assert _status(pulled, API, no_cert) == 400  # the public port still demands it
    finally:
        candidate.stop()


@pytest.mark.parametrize(("sni", "host"), [(SITE, API), (API, SAAS), (SAAS, SITE)])
def test_a_host_other_than_the_sni_is_misdirected(
    pulled: RunningNginx, pull_pki: PullPki, sni: str, host: str
) -> None:
    # Both names are served here, with one certificate: without the check nginx would route by Host.
    context = client_context(pulled.cert_path, pull_pki.ours)
    response = https(pulled.params.https_port, pulled.cert_path, sni, host=host, context=context)
    assert response.status == 421
    assert "service" not in response.body.decode()
    assert "strict-transport-security" in response.headers


def test_sni_and_host_match_case_insensitively(pulled: RunningNginx, pull_pki: PullPki) -> None:
    context = client_context(pulled.cert_path, pull_pki.ours)
    assert _status(pulled, API, context, host=API.upper()) == 200


def test_the_sni_check_holds_without_origin_pulls(start_live_nginx: StartNginx) -> None:
    plain = start_live_nginx(STAGING, TRUSTED)
    context = client_context(plain.cert_path, None)
    assert _status(plain, SITE, context) == 200
    assert _status(plain, SITE, context, host=API) == 421


def _get_status(sock: ssl.SSLSocket, host: str) -> int:
    sock.sendall(request_head(host, "/"))
    return read_status(sock)


def test_a_verify_listener_session_does_not_resume_past_the_client_check(pulled: RunningNginx) -> None:
    # Both listeners share nginx's session cache; a session made without a certificate on the
    # loopback port must not open the public one.
    context = client_context(pulled.cert_path, None)
    verify = pulled.params.verify_port
    with open_tls(pulled, API, verify, context) as first:
        _get_status(first, API)
        session = first.session
    with open_tls(pulled, API, verify, context, session) as again:  # the control: resumption works
        _get_status(again, API)
        assert again.session_reused
    with open_tls(pulled, API, pulled.params.https_port, context, session) as public:
        assert _get_status(public, API) == 400
