"""server.operators (named accounts with sudo) and the end of root's personal keys (issue 12, item 7)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from bankflow_infra.settings import SettingsError, parse_settings
from bankflow_infra.settings.model import OperatorAccount
from tests.test_settings import stack_values

ANA = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGFuYS1ib25pdGEtdGVzdC1rZXktMDAwMDAwMDAwMDAwMDA ana@laptop"
BRUNO = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJydW5vLXRlc3Qta2V5LTAwMDAwMDAwMDAwMDAwMDAwMDA bruno"


def _parse(operators: Any, admin_keys: Any = ()) -> Any:
    values = copy.deepcopy(stack_values("staging"))
    values.setdefault("server", {})["operators"] = operators
    if admin_keys:
        values["server"]["adminSshKeys"] = list(admin_keys)
    return parse_settings("bankflow", "staging", values)


def _problems(operators: Any, admin_keys: Any = ()) -> str:
    with pytest.raises(SettingsError) as raised:
        _parse(operators, admin_keys)
    return str(raised.value)


def test_operators_are_parsed() -> None:
    settings = _parse([{"name": "ana", "publicKey": ANA}, {"name": "bruno", "publicKey": BRUNO}])
    assert settings.server.operators == (OperatorAccount("ana", ANA), OperatorAccount("bruno", BRUNO))


def test_no_operators_by_default() -> None:
    assert parse_settings("bankflow", "staging", stack_values("staging")).server.operators == ()


@pytest.mark.parametrize(
    ("operators", "message"),
    [
        ("ana", "bankflow:server.operators: must be a list"),
        (
            [{"name": "ana"}],
            "server.operators[0]: must be a mapping with exactly the keys name and publicKey",
        ),
        (
            [{"name": "Ana Maria", "publicKey": ANA}],
            "server.operators[0].name: 'Ana Maria' is not an account",
        ),
        ([{"name": "root", "publicKey": ANA}], "server.operators[0].name: 'root' is a system account"),
        (
            [{"name": "ana", "publicKey": "ecdsa-sha2-nistp256 AAAA x"}],
            "server.operators[0].publicKey: not an",
        ),
        (
            [{"name": "ana", "publicKey": ANA}, {"name": "ana", "publicKey": BRUNO}],
            "bankflow:server.operators: lists the same name twice",
        ),
        (
            [{"name": "ana", "publicKey": ANA}, {"name": "bruno", "publicKey": ANA}],
            "bankflow:server.operators: lists the same key twice",
        ),
    ],
    ids=["not-a-list", "missing-key", "bad-name", "system-name", "ecdsa-key", "same-name", "same-key"],
)
def test_bad_operators_are_refused_naming_the_key(operators: Any, message: str) -> None:
    assert message in _problems(operators)


def test_admin_keys_for_root_are_refused_with_the_way_forward() -> None:
    problems = _problems([], admin_keys=[ANA])
    assert "bankflow:server.adminSshKeys: root no longer logs in with personal keys" in problems
    assert "server.operators" in problems
