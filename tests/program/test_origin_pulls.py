"""Issue 12 item 2 (Cloudflare side): Authenticated Origin Pulls per hostname, under the mock
engine. Each stack that runs nginx has its own CA and client certificate; its edge uploads that
client certificate and enables AOP on each of its own hostnames only; the deploy that ships an
nginx requiring the certificate waits until AOP is on; an edge served by another stack's droplet
uploads that stack's client certificate (read from its outputs)."""

from __future__ import annotations

from typing import Any

import pytest

from bankflow_infra.components import fleet
from bankflow_infra.contract.outputs import SECRET_OUTPUTS
from bankflow_infra.ops.mocks import without_secrets
from bankflow_infra.ops.plan import PlanResult
from bankflow_infra.render.bundle import ORIGIN_PULL_CA_FILE
from tests.program.stacks import (
    PRODUCTION_HOSTS,
    STAGING_HOSTS,
    ZONE_SETTING,
    cut_over,
    edge_on_other_stack,
    inputs,
    named,
    only,
    production,
    rebuild,
    run_stack,
    staging,
)

CA = "tls:index/selfSignedCert:SelfSignedCert"
CLIENT = "tls:index/locallySignedCert:LocallySignedCert"
UPLOAD = (
    "cloudflare:index/authenticatedOriginPullsHostnameCertificate:AuthenticatedOriginPullsHostnameCertificate"
)
ASSOCIATION = "cloudflare:index/authenticatedOriginPulls:AuthenticatedOriginPulls"


def _stored_in_plain_text(registration_inputs: dict[str, Any], key: str) -> Any:
    """What Pulumi would keep of one input in plain text (None: it is a secret)."""
    return without_secrets(registration_inputs)[key]


def _aop_switches(result: PlanResult) -> list[Any]:
    return [z for z in result.recorder.of_type(ZONE_SETTING) if inputs(z)["settingId"] == "tls_client_auth"]


def _hostnames(result: PlanResult) -> set[str]:
    names = set()
    for association in result.recorder.of_type(ASSOCIATION):
        (config,) = inputs(association)["configs"]  # the provider refuses any other length
        names.add(config["hostname"])
    return names


@pytest.mark.parametrize(("plan", "hosts"), [(staging, STAGING_HOSTS), (production, PRODUCTION_HOSTS)],
                         ids=["staging", "production"])
def test_the_stack_running_nginx_has_its_own_ca_and_a_client_certificate_it_signs(plan, hosts) -> None:
    result = plan()
    ca = only(result, CA)
    assert inputs(ca)["isCaCertificate"] is True
    assert set(inputs(ca)["allowedUses"]) == {"cert_signing", "crl_signing"}
    client = only(result, CLIENT)
    assert "client_auth" in inputs(client)["allowedUses"]
    assert "cert_signing" not in inputs(client)["allowedUses"]
    # Signed by this stack's CA, with this stack's CA key (a secret in every input).
    assert inputs(client)["caCertPem"] == ca.state["certPem"]
    assert _stored_in_plain_text(client.inputs, "caPrivateKeyPem") is None
    assert inputs(client)["earlyRenewalHours"] > 0  # a routine `up` renews it before expiry


@pytest.mark.parametrize(("plan", "hosts"), [(staging, STAGING_HOSTS), (production, PRODUCTION_HOSTS)],
                         ids=["staging", "production"])
def test_the_edge_uploads_its_own_client_certificate_and_enables_aop_on_each_of_its_hostnames(
    plan, hosts
) -> None:
    result = plan()
    upload = only(result, UPLOAD)
    assert inputs(upload)["certificate"] == only(result, CLIENT).state["certPem"]
    assert _stored_in_plain_text(upload.inputs, "privateKey") is None
    assert inputs(upload)["privateKey"] == named(result, "origin-pull-client-key").state["privateKeyPem"]
    assert _hostnames(result) == hosts
    for association in result.recorder.of_type(ASSOCIATION):
        (config,) = inputs(association)["configs"]
        assert config["enabled"] is True
        assert config["certId"] == upload.state.get("id", "origin-pulls-certificate-id")
        assert upload.urn in association.dependencies


def test_staging_and_production_never_share_a_client_certificate() -> None:
    # One zone, two stacks: a zone-wide certificate would let staging's edge reach production's
    # origin. Each uploads its own, and associates only its own hostnames.
    uploaded = {inputs(only(plan(), UPLOAD))["certificate"] for plan in (staging, production)}
    assert len(uploaded) == 2
    assert not _hostnames(staging()) & _hostnames(production())


def test_only_the_zone_owner_turns_the_zone_aop_switch_on() -> None:
    toggles = _aop_switches(production())
    assert [inputs(t)["value"] for t in toggles] == ["on"]
    assert not [z for z in staging().recorder.of_type(ZONE_SETTING)]


@pytest.mark.parametrize("plan", [staging, production], ids=["staging", "production"])
def test_the_deploy_waits_until_aop_is_on_for_every_hostname(plan) -> None:
    # nginx requires Cloudflare's client certificate from this deploy on: shipping it before the
    # associations exist would answer 400 to every visitor.
    result = plan()
    deploy = named(result, "host-deploy")
    waits_for = {r.urn for r in result.recorder.of_type(ASSOCIATION)}
    waits_for |= {z.urn for z in _aop_switches(result)}
    assert waits_for
    assert waits_for <= set(deploy.dependencies)


def test_the_bundle_gets_the_ca_nginx_must_trust(monkeypatch) -> None:
    seen: list[str] = []
    real = fleet.render_bundle

    def recording(*args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["origin_pull_ca_pem"])
        return real(*args, **kwargs)

    monkeypatch.setattr(fleet, "render_bundle", recording)
    result = run_stack("staging")
    ca_pem = only(result, CA).state["certPem"]
    assert seen == [ca_pem]
    # The bundle ships it as the file nginx verifies client certificates against.
    assert result.bundle is not None
    files = {f.path: f.text for f in result.bundle.files}
    assert files[ORIGIN_PULL_CA_FILE] == ca_pem.strip() + "\n"


def test_the_client_certificate_is_a_secret_output_for_an_edge_on_another_stack() -> None:
    result = production()
    value = result.outputs["origin_pull_client"]
    assert value["certificate"] == only(result, CLIENT).state["certPem"]
    assert value["private_key"] == named(result, "origin-pull-client-key").state["privateKeyPem"]
    assert "origin_pull_client" in SECRET_OUTPUTS  # exported as a secret: `export` wraps it


def test_a_rebuild_stack_without_edge_has_a_ca_but_uploads_nothing_and_waits_for_nothing() -> None:
    result = rebuild()
    assert only(result, CA)
    assert result.recorder.of_type(UPLOAD) == []
    assert result.recorder.of_type(ASSOCIATION) == []


def test_an_edge_on_another_stack_uploads_that_stacks_client_certificate() -> None:
    result = cut_over()
    assert result.recorder.of_type(CA) == []  # no server of its own
    upload = only(result, UPLOAD)
    referenced = only(result, "pulumi:pulumi:StackReference").state["outputs"]["origin_pull_client"]
    assert inputs(upload)["certificate"] == referenced["certificate"]
    assert inputs(upload)["privateKey"] == referenced["private_key"]
    assert _stored_in_plain_text(upload.inputs, "privateKey") is None
    assert _hostnames(result) == PRODUCTION_HOSTS


@pytest.mark.parametrize(
    "bad",
    [None, {}, {"certificate": "not a pem", "private_key": "-----BEGIN PRIVATE KEY-----"}],
    ids=["absent", "empty", "not-pem"],
)
def test_an_origin_stack_without_a_usable_client_certificate_is_one_clear_error(bad: Any) -> None:
    outputs: dict[str, Any] = {"origin_ip": "192.0.2.20", "origin_ipv6": "2001:db8::20"}
    if bad is not None:
        outputs["origin_pull_client"] = bad
    expected = r"stack 'production-r1' has no usable origin_pull_client\.certificate"
    with pytest.raises(ValueError, match=expected) as raised:
        run_stack("production", edge_on_other_stack, referenced_outputs=outputs)
    assert "not a pem" not in str(raised.value)

