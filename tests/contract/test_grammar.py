"""The names that cross boundaries: whole-value matches only."""

from __future__ import annotations

import pytest

from bankflow_infra.contract import grammar


@pytest.mark.parametrize("name", ["staging", "production", "production-r2", "a.b_c-1"])
def test_stack_names_accepted(name: str) -> None:
    assert grammar.is_stack_name(name)
    assert grammar.is_qualified_stack_name(name)


@pytest.mark.parametrize("name", ["", "staging\n", "prod uction", "x" * 101, "a/b", "-s", "stá"])
def test_stack_names_refused(name: str) -> None:
    assert not grammar.is_stack_name(name)


@pytest.mark.parametrize("name", ["org/bankflow/staging", "bankflow/staging"])
def test_qualified_names_only_where_the_cli_reads_outputs(name: str) -> None:
    assert grammar.is_qualified_stack_name(name)
    assert not grammar.is_stack_name(name)


@pytest.mark.parametrize("name", ["-s", "--show-secrets", "a/b/c/d", "staging\n"])
def test_a_qualified_name_is_never_a_flag_or_a_path(name: str) -> None:
    assert not grammar.is_qualified_stack_name(name)


@pytest.mark.parametrize("name", ["staging-r1", "Prod2"])
def test_new_stack_names_start_with_a_letter(name: str) -> None:
    assert grammar.is_new_stack_name(name)
    assert not grammar.is_new_stack_name(f"1{name}")
    assert not grammar.is_new_stack_name(f"{name}\n")


@pytest.mark.parametrize("tag", ["2026.11.26-1", "v1", "_x", "a" * 128])
def test_image_tags_accepted(tag: str) -> None:
    assert grammar.is_image_tag(tag)


@pytest.mark.parametrize("tag", ["", ".x", "-x", "a" * 129, "1.0\n", "a b", "a:b", "a/b"])
def test_image_tags_refused(tag: str) -> None:
    assert not grammar.is_image_tag(tag)
