"""Make Pulumi's secret markers visible to the rules, and read values through them.

The engine sends a resource's properties to the pack with their secret markers
(``MarshalProperties(..., KeepSecrets: true)`` in pkg/resource/plugin/analyzer_plugin.go), but
pulumi-policy's Python ``Analyze``/``AnalyzeStack`` unwrap them before any rule runs, so a rule
cannot tell a secret input from a plain one (pulumi/pulumi-policy#241, open). The SDK's own
``Remediate`` path keeps them as :class:`pulumi_policy.Secret`; :func:`keep_secret_markers` makes
validation do the same. It replaces one module attribute of the pinned SDK (1.21.0);
tests/policy/test_markers.py drives the SDK's real servicer with a wire-format request, so an
SDK upgrade that moves it fails the suite instead of silently passing every secret.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pulumi_policy.policy as sdk_policy
from pulumi_policy import Secret
from pulumi_policy.deserialize import SPECIAL_SECRET_SIG, SPECIAL_SIG_KEY, deserialize_properties
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

# A path into a resource's properties, e.g. ("connection", "privateKey").
Path = tuple[str | int, ...]


def _mark(value: Any) -> Any:
    """One wire-format property with each secret kept as a ``Secret`` around its plain value."""
    if isinstance(value, list):
        return [_mark(item) for item in value]
    if isinstance(value, dict):
        if value.get(SPECIAL_SIG_KEY) == SPECIAL_SECRET_SIG:
            return Secret(_mark(value["value"]))
        if SPECIAL_SIG_KEY in value:  # assets and archives: the SDK's own reading
            return deserialize_properties({"v": value})["v"]
        return {key: _mark(item) for key, item in value.items()}
    return value


def deserialize_marking_secrets(props: Mapping[str, Any], proxy_secrets: bool = False) -> dict[str, Any]:
    """The SDK's ``deserialize_properties``, except that secrets stay marked as ``Secret``.

    ``proxy_secrets`` (the Remediate path) is passed through to the SDK unchanged.
    """
    if proxy_secrets:
        return deserialize_properties(dict(props), True)
    return {key: _mark(value) for key, value in props.items()}


def keep_secret_markers() -> None:
    """Make the SDK hand rules ``Secret``-marked properties (call before ``PolicyPack``)."""
    sdk_policy.deserialize_properties = deserialize_marking_secrets  # type: ignore[attr-defined]


def checked(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """Properties as the SDK gives them to a rule: secrets marked, unknowns raising on access."""
    return unknown_checking_proxy(deserialize_marking_secrets(props))


# --------------------------------------------------------------------------- reading values


def reveal(value: Any) -> Any:
    """``value`` without its secret marker (rules that compare addresses do not care)."""
    while isinstance(value, Secret):
        value = value.value
    return value


def field(props: Mapping[str, Any], *path: str) -> Any:
    """The value at ``path``, or None when a key is missing; secrets are read through."""
    value: Any = props
    for key in path:
        value = reveal(value)
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return reveal(value)


def items(value: Any) -> list[Any]:
    """A list-valued property as a list (None and non-lists give an empty list)."""
    value = reveal(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [reveal(item) for item in value]
    return []


def known_items(value: Any) -> list[Any]:
    """Like :func:`items`, leaving out elements a preview cannot know yet."""
    value = reveal(value)
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [reveal(v) for v in (known(value, i) for i in range(len(value))) if v is not UNKNOWN]
    return []


def plain_leaves(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every leaf outside a secret, with its path; unknown (preview-time) values are skipped."""
    if isinstance(value, Secret):
        return
    if isinstance(value, Mapping):
        for key in list(value):
            child = known(value, key)
            if child is not UNKNOWN:
                yield from plain_leaves(child, (*path, key))
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for index in range(len(value)):
            child = known(value, index)
            if child is not UNKNOWN:
                yield from plain_leaves(child, (*path, index))
    else:
        yield path, value


def plain_entries(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    """Every (path, value) of a mapping entry outside a secret, at any depth."""
    if isinstance(value, Secret):
        return
    if isinstance(value, Mapping):
        for key in list(value):
            child = known(value, key)
            if child is not UNKNOWN:
                yield (*path, key), child
                yield from plain_entries(child, (*path, key))
    elif isinstance(value, Sequence) and not isinstance(value, str):
        for index in range(len(value)):
            child = known(value, index)
            if child is not UNKNOWN:
                yield from plain_entries(child, (*path, index))


UNKNOWN = object()  # what known() gives for a value only the update will know


def known(container: Any, key: Any) -> Any:
    """``container[key]``, or UNKNOWN when that value is not known during a preview."""
    try:
        return container[key]
    except UnknownValueError:
        return UNKNOWN


def dotted(path: Path) -> str:
    """``("connection", "privateKey")`` -> ``connection.privateKey``; list indexes as ``[0]``."""
    text = ""
    for key in path:
        text += f"[{key}]" if isinstance(key, int) else f".{key}"
    return text.lstrip(".")
