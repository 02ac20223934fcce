"""The stack outputs contract: the README documents exactly the outputs the contract defines."""

from __future__ import annotations

import pytest

from bankflow_infra.contract import outputs
from tests.support.outputs import outputs_document
from tests.support.tools import REPO


def test_the_readme_table_is_the_contracts() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert outputs.readme_table() in readme


def test_the_names_are_unique_and_only_the_keys_are_secret() -> None:
    assert len(set(outputs.OUTPUT_NAMES)) == len(outputs.OUTPUT_NAMES)
    assert {
        "deploy_private_key",
        "backup_replica_key",
        "backup_drill_key",
        "backup_repository",
        "origin_pull_client",
    } == outputs.SECRET_OUTPUTS


def test_the_backup_keys_parse_only_with_secrets_shown_and_never_print() -> None:
    document = outputs_document() | {
        "backup_replica_key": {"access_key": "DOREPLICA", "secret_key": "s3cr3t-replica"},
        "backup_drill_key": {"access_key": "DODRILL", "secret_key": "s3cr3t-drill"},
    }
    parsed = outputs.parse_outputs("staging", document, show_secrets=True)
    assert parsed.backup_replica_key == outputs.SpacesKeyPair("DOREPLICA", "s3cr3t-replica")
    assert parsed.backup_drill_key == outputs.SpacesKeyPair("DODRILL", "s3cr3t-drill")
    assert parsed.backup_replica == outputs.BackupBucket(
        "bankflow-staging-backups-replica", "sfo3", "https://sfo3.digitaloceanspaces.com"
    )
    assert "s3cr3t" not in repr(parsed)
    hidden = outputs.parse_outputs("staging", outputs_document())
    assert hidden.backup_replica_key is None
    assert hidden.backup_drill_key is None


def test_the_repository_keys_parse_only_with_secrets_shown_and_never_print() -> None:
    keys = {"cipher_pass": "c1pher-pass-value", "uploads_password": "upl0ads-pass-value"}
    parsed = outputs.parse_outputs("staging", outputs_document() | {"backup_repository": keys}, True)
    assert parsed.backup_repository == outputs.RepositorySecrets("c1pher-pass-value", "upl0ads-pass-value")
    assert "pass-value" not in repr(parsed)
    assert outputs.parse_outputs("staging", outputs_document()).backup_repository is None
    keys = {"cipher_pass": "s3cr3t-c1pher", "uploads_password": 7}
    broken = outputs_document() | {"backup_repository": keys}
    with pytest.raises(outputs.OutputsError) as raised:
        outputs.parse_outputs("staging", broken, show_secrets=True)
    assert "backup_repository.uploads_password" in str(raised.value)
    assert "s3cr3t" not in str(raised.value)


def test_a_stack_deployed_before_the_replica_still_parses() -> None:
    document = outputs_document()
    for name in ("backup_replica", "backup_replica_key", "backup_drill_key"):
        del document[name]
    parsed = outputs.parse_outputs("staging", document, show_secrets=True)
    assert parsed.backup_replica is None
    assert parsed.backup_replica_key is None


def test_a_malformed_key_pair_is_named_without_its_value() -> None:
    document = outputs_document() | {"backup_replica_key": {"access_key": "DOREPLICA", "secret_key": 7}}
    with pytest.raises(outputs.OutputsError) as raised:
        outputs.parse_outputs("staging", document, show_secrets=True)
    assert "backup_replica_key.secret_key" in str(raised.value)
    assert "7" not in str(raised.value).replace("staging", "")


def test_a_document_with_every_output_parses() -> None:
    parsed = outputs.parse_outputs("staging", outputs_document())
    assert parsed.environment == "staging"
    assert parsed.deploy_private_key is None  # hidden by pulumi without --show-secrets


def test_a_missing_output_is_named() -> None:
    document = outputs_document()
    del document["health"]
    with pytest.raises(outputs.OutputsError, match="'health' of stack 'staging' is missing"):
        outputs.parse_outputs("staging", document)
