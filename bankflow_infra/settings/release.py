"""``bankflow:release``: which images run, from which registry, and how they migrate and report health."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from bankflow_infra.contract import grammar
from bankflow_infra.contract.services import APP_SERVICES
from bankflow_infra.settings.checks import Problems, check, command, flag, merged, typed
from bankflow_infra.settings.defaults import defaults
from bankflow_infra.settings.model import ReleaseSettings

_REGISTRY_RE: Final = re.compile(r"^[a-z0-9.-]+(?::\d+)?(?:/[a-z0-9._-]+)*$")
_REPOSITORY_RE: Final = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$")


def _tag(value: Any, problems: Problems) -> str:
    if not isinstance(value, str) or not grammar.is_image_tag(value):
        problems.add("release.tag", f"required: the image tag to deploy (e.g. 2026.11.26-1), got {value!r}")
        return ""
    if value == "latest":
        problems.add("release.tag", "'latest' is not a release: pin the tag the application CI published")
    return value


def _images(raw: Any, default: Mapping[str, str], problems: Problems) -> dict[str, str]:
    images_raw = merged("release.images", raw, default, problems)
    images: dict[str, str] = {}
    for service in APP_SERVICES:
        repo = typed(problems, f"release.images.{service}", images_raw[service], str, "")
        check(
            problems,
            f"release.images.{service}",
            bool(_REPOSITORY_RE.fullmatch(repo)),
            f"{repo!r} is not an image repository name (e.g. bankflow-{service})",
        )
        images[service] = repo
    return images


def _health_commands(raw: Any, problems: Problems) -> dict[str, tuple[str, ...]]:
    health: dict[str, tuple[str, ...]] = {}
    if not isinstance(raw, Mapping):
        problems.add("release.healthCommands", "must be a mapping of service to an exec-form command list")
        return health
    for service, value in raw.items():
        if service not in APP_SERVICES:
            problems.add(
                f"release.healthCommands.{service}",
                f"unknown service; valid services: {', '.join(APP_SERVICES)}",
            )
            continue
        health[service] = command(problems, f"release.healthCommands.{service}", value)
    return health


_DIGEST_RE: Final = re.compile(r"^sha256:[0-9a-f]{64}$")


def _digests(raw: Any, problems: Problems) -> dict[str, str]:
    """Issue 12: the digest of each app image at the release tag, as the application CI printed it
    (`docker buildx imagetools inspect <image>:<tag>`); with one, the host pulls by digest and a
    re-pushed tag cannot change what runs."""
    digests: dict[str, str] = {}
    if not isinstance(raw, Mapping):
        problems.add("release.digests", "must be a mapping of service to 'sha256:<64 hex>'")
        return digests
    for service, value in raw.items():
        key = f"release.digests.{service}"
        if service not in APP_SERVICES:
            problems.add(key, f"unknown service; valid services: {', '.join(APP_SERVICES)}")
        elif not isinstance(value, str) or not _DIGEST_RE.fullmatch(value):
            problems.add(key, f"must be 'sha256:<64 lowercase hex>' (the image's digest), got {value!r}")
        else:
            digests[service] = value
    return digests


def _check_required(
    digests: Mapping[str, str], required: bool, refs: Mapping[str, str], problems: Problems
) -> None:
    """With release.requireDigests, every app image needs its digest: a tag alone can be re-pushed."""
    for service in APP_SERVICES if required else ():
        if service not in digests:
            problems.add(
                f"release.digests.{service}",
                f"required (release.requireDigests is true): the 'sha256:<64 hex>' digest of {refs[service]}"
                " (`docker buildx imagetools inspect` prints it)",
            )


def parse_release(raw: Any, env: str, problems: Problems) -> ReleaseSettings:
    default = defaults(env)["release"]
    v = merged("release", raw, default, problems)
    registry = typed(problems, "release.registry", v["registry"], str, "")
    check(
        problems,
        "release.registry",
        bool(_REGISTRY_RE.fullmatch(registry)),
        f"{registry!r} is not a registry path (e.g. ghcr.io/bankflow)",
    )
    tag = _tag(v.get("tag"), problems)
    images = _images(v["images"], default["images"], problems)
    username = v["registryUsername"]
    if username is not None and not isinstance(username, str):
        problems.add("release.registryUsername", f"must be a string or null, got {username!r}")
        username = None
    health = _health_commands(v["healthCommands"], problems)
    digests = _digests(v["digests"], problems)
    required = flag(problems, "release.requireDigests", v["requireDigests"], False)
    _check_required(digests, required, {s: f"{registry}/{images[s]}:{tag}" for s in APP_SERVICES}, problems)
    return ReleaseSettings(
        registry=registry,
        tag=tag,
        images=images,
        registry_username=username,
        migrate_command=command(problems, "release.migrateCommand", v["migrateCommand"]),
        health_commands=health,
        digests=digests,
    )
