"""The parsers' tools: a problem collector and the typed checks every section uses.

Problems are collected instead of stopping at the first, so one run shows them all, each with
its full key (``bankflow:server.size: ...``).
"""

from __future__ import annotations

import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final, TypeVar, cast

from bankflow_infra.settings.defaults import CONFIG_NAMESPACES, NAMESPACE

_T = TypeVar("_T")

HOSTNAME_RE: Final = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")


class Problems:
    """Every problem found so far, each as ``bankflow:<key>: <message>``."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{NAMESPACE}:{key}: {message}")


def merged(key: str, raw: Any, default: Mapping[str, Any], problems: Problems) -> dict[str, Any]:
    """Defaults overlaid with the stack's values; unknown keys are reported (typos must not pass)."""
    if raw is None:
        return dict(default)
    if not isinstance(raw, Mapping):
        problems.add(key, f"must be a mapping with keys {', '.join(default)}, got {type(raw).__name__}")
        return dict(default)
    for name in raw:
        if name not in default:
            problems.add(f"{key}.{name}", f"unknown key; valid keys: {', '.join(default)}")
    return {**default, **{k: v for k, v in raw.items() if k in default}}


def typed(
    problems: Problems, key: str, value: Any, kind: type[_T], fallback: _T, what: str | None = None
) -> _T:
    # bool is an int in Python: never accept True as a number or 1 as a flag.
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if not ok:
        problems.add(key, f"must be {what or kind.__name__}, got {value!r}")
        return fallback
    return cast(_T, value)


def flag(problems: Problems, key: str, value: Any, fallback: bool) -> bool:
    return typed(problems, key, value, bool, fallback, "true or false")


def string_list(problems: Problems, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.add(key, f"must be a list of strings, got {value!r}")
        return ()
    return tuple(value)


def check(problems: Problems, key: str, ok: bool, message: str) -> None:
    if not ok:
        problems.add(key, message)


def int_range(problems: Problems, key: str, value: Any, low: int, high: int) -> int:
    number = typed(problems, key, value, int, low, f"an integer from {low} to {high}")
    if not low <= number <= high:
        problems.add(key, f"must be an integer from {low} to {high}, got {number}")
    return number


def command(problems: Problems, key: str, value: Any) -> tuple[str, ...]:
    """An exec-form command: a non-empty list of strings."""
    parsed = string_list(problems, key, value)
    if isinstance(value, list) and not parsed:
        problems.add(key, "must not be empty")
    return parsed


def network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(value, strict=True)
    except ValueError:
        return None


def namespace_problems(keys: Iterable[str], source: str) -> list[str]:
    """One problem per config key whose namespace is not one this project uses (``bankfow:``)."""
    problems = []
    for key in keys:
        namespace, colon, _ = key.partition(":")
        if colon and namespace not in CONFIG_NAMESPACES:
            hint = difflib.get_close_matches(namespace, CONFIG_NAMESPACES, n=1)
            mean = f"did you mean {hint[0]}:? " if hint else ""
            problems.append(
                f"{key}: unknown namespace {namespace!r} in {source}; {mean}"
                f"valid namespaces: {', '.join(CONFIG_NAMESPACES)}"
            )
    return problems
