"""The committed example of the scaled shape (tests/fixtures/scaled-stack.yaml), for every test
folder: its values, and its validated Settings."""

from __future__ import annotations

import copy
import functools
from typing import Any

import yaml

from bankflow_infra.settings import Settings, parse_settings
from bankflow_infra.stackfile import bankflow_values, config_of
from tests.support.tools import REPO

SCALED_STACK = "scaled"
SCALED_STACK_FILE = REPO / "tests" / "fixtures" / "scaled-stack.yaml"


@functools.cache
def _values() -> dict[str, Any]:
    document = yaml.safe_load(SCALED_STACK_FILE.read_text())
    return bankflow_values(config_of(document, SCALED_STACK_FILE.name))


def scaled_values() -> dict[str, Any]:
    """The fixture's ``bankflow:`` values (a fresh copy: edit freely)."""
    return copy.deepcopy(_values())


def scaled_settings() -> Settings:
    """The fixture's Settings: stack ``scaled``, production, 3 droplets, everything managed."""
    return parse_settings("bankflow", SCALED_STACK, scaled_values(), SCALED_STACK_FILE.name)
