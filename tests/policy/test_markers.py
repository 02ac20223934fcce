"""The secret-marker plumbing, through the pinned SDK's real analyzer servicer and wire format.

The engine sends secrets marked; the stock SDK drops the marks before a rule runs. These tests
prove both halves: without ``keep_secret_markers`` a secret private key looks plain (so the rule
could not tell), with it only the plain one is reported, and unknown preview values still
reach the SDK's "can't run during preview" path instead of passing silently.
"""

from __future__ import annotations

from typing import Any

import pulumi_policy.policy as sdk_policy
import pytest
from bankflow_policy import rules
from bankflow_policy.markers import deserialize_marking_secrets, keep_secret_markers
from bankflow_policy.pack import PACK_NAME, policies
from google.protobuf import struct_pb2  # type: ignore[import-untyped]
from pulumi.runtime import proto
from pulumi_policy import EnforcementLevel
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY, deserialize_properties
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE

PEM = "-----BEGIN OPENSSH PRIVATE KEY-----\nMOCKabc\n-----END OPENSSH PRIVATE KEY-----\n"
URN = "urn:pulumi:staging::bankflow::bankflow:index:Host$command:remote:Command::host-deploy"


def secret(value: Any) -> dict[str, Any]:
    return {SPECIAL_SIG_KEY: SPECIAL_SECRET_SIG, "value": value}


def analyze(properties: dict[str, Any], type_: str = rules.COMMAND) -> list[tuple[str, str]]:
    """Run the whole pack through the SDK's servicer, as the engine's Analyze call does."""
    servicer = sdk_policy._PolicyAnalyzerServicer(PACK_NAME, "1.0.0", policies(), EnforcementLevel.MANDATORY)
    struct = struct_pb2.Struct()
    struct.update(properties)
    request = proto.AnalyzeRequest(
        urn=URN,
        type=type_,
        name="host-deploy",
        properties=struct,
        options=proto.AnalyzerResourceOptions(),
    )
    response = servicer.Analyze(request, None)  # type: ignore[no-untyped-call]
    return [(d.policyName, d.message) for d in response.diagnostics]


@pytest.fixture
def marking(monkeypatch):
    monkeypatch.setattr(sdk_policy, "deserialize_properties", deserialize_properties)
    keep_secret_markers()


@pytest.fixture
def stock_sdk(monkeypatch):
    monkeypatch.setattr(sdk_policy, "deserialize_properties", deserialize_properties)


def connection(private_key: Any) -> dict[str, Any]:
    return {"host": "203.0.113.10", "user": "root", "privateKey": private_key}


def test_the_stock_sdk_hides_secret_marks_from_rules(stock_sdk):
    # Why markers.py exists: a properly secret key is reported as if it were plain.
    found = analyze({"create": "true", "connection": secret(connection(PEM))})
    assert found == [
        (
            "no-plain-secret-inputs",
            found[0][1],
        )
    ]
    assert "'connection.privateKey'" in found[0][1]


def test_with_markers_a_secret_connection_passes(marking):
    assert analyze({"create": "true", "connection": secret(connection(PEM)), "stdin": secret("A=1")}) == []


def test_with_markers_a_plain_private_key_is_reported_by_path(marking):
    found = analyze({"create": "true", "connection": connection(PEM)})
    assert found
    assert {p for p, _ in found} == {"no-plain-secret-inputs"}
    assert any("'connection.privateKey'" in m for _, m in found)
    assert all("MOCKabc" not in m for _, m in found)


def test_a_secret_inside_a_plain_structure_counts_as_marked(marking):
    assert analyze({"create": "true", "connection": connection(secret(PEM))}) == []


def test_unknown_preview_values_are_skipped_by_the_secret_walk(marking):
    assert analyze({"create": UNKNOWN_STRING_VALUE, "connection": secret(UNKNOWN_STRING_VALUE)}) == []


def test_an_unknown_firewall_rule_cannot_pass_silently(marking):
    # The SDK turns UnknownValueError into an advisory "can't run during preview" diagnostic; the
    # `up` runs the rule again with every input known.
    found = analyze({"inboundRules": UNKNOWN_STRING_VALUE}, rules.FIREWALL)
    rules_reading_the_rules = {"no-internet-ssh", "web-only-from-cloudflare", "no-database-port-published"}
    assert {p for p, _ in found} == rules_reading_the_rules
    assert all("during preview" in m for _, m in found)


def test_the_remediate_path_keeps_the_sdks_own_reading():
    marked = deserialize_marking_secrets({"a": secret("x")}, True)
    assert marked["a"] == "x"  # the SDK's secrets-preserving proxy reads through its marker
