"""The stack outputs contract: the README documents exactly the outputs the contract defines."""

from __future__ import annotations

import pytest

from bankflow_infra.contract import outputs
from tests.support.outputs import outputs_document
from tests.support.tools import REPO


def test_the_readme_table_is_the_contracts() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert outputs.readme_table() in readme


def test_the_names_are_unique_and_only_the_deploy_key_is_secret() -> None:
    assert len(set(outputs.OUTPUT_NAMES)) == len(outputs.OUTPUT_NAMES)
    assert {"deploy_private_key"} == outputs.SECRET_OUTPUTS


def test_a_document_with_every_output_parses() -> None:
    parsed = outputs.parse_outputs("staging", outputs_document())
    assert parsed.environment == "staging"
    assert parsed.deploy_private_key is None  # hidden by pulumi without --show-secrets


def test_a_missing_output_is_named() -> None:
    document = outputs_document()
    del document["health"]
    with pytest.raises(outputs.OutputsError, match="'health' of stack 'staging' is missing"):
        outputs.parse_outputs("staging", document)
