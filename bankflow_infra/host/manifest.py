"""The bundle manifest (``release.json``): everything the agent knows about services.

Stdlib only. The renderer writes ``release.json`` (its name, schema and compose project come from
``contract.release``, which both sides import); the agent never imports the catalog, so this
module states the shape it expects and refuses anything else with every problem listed at once.
Names and paths from the manifest end up in argv lists, container names and nginx config, so
they are checked against tight patterns here, before anything runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeGuard

from ..contract.release import (
    BASE_PROJECT,
    MANIFEST_NAME,
    MANIFEST_SCHEMA,
    NON_APP_SECRETS,
    SECRETS_BUNDLE_DIR,
    digest_files,
    release_id,
)
from ..contract.upstreams import DEFAULT_DRAIN_SECONDS

_NAME_RE: Final = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_UPSTREAM_RE: Final = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_HOST_RE: Final = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")
_HEALTH_RE: Final = re.compile(r"^/[A-Za-z0-9._~/-]*$")
_IMAGE_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$")
# What --release and a bundle dir's name may be: a release id, or a longer prefix of the digest.
_RELEASE_RE: Final = re.compile(r"^[0-9a-f]{12,64}$")
_ARG_RE: Final = re.compile(r"^[^\x00\n]{1,200}$")
# migrate.environment: a variable name, and a value that can only name a container secret file
# (never a secret itself: it reaches `compose run -e` on the command line).
_ENV_NAME_RE: Final = re.compile(r"^[A-Z][A-Z0-9_]{0,62}$")
_ENV_SECRET_PATH_RE: Final = re.compile(r"^/run/secrets/[a-z0-9_]{1,63}$")
MAX_DRAIN_SECONDS: Final = 600


class ManifestError(ValueError):
    """The bundle cannot be deployed; lists every problem found."""

    def __init__(self, source: str, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(f"invalid bundle manifest {source}: " + "; ".join(self.problems))


@dataclass(frozen=True)
class AppSpec:
    name: str
    port: int
    health_path: str
    upstream: str
    image: str
    hostnames: tuple[str, ...]
    # how long the previous release's containers of this service may take to finish in-flight
    # requests after a switch (optional in the manifest; not part of the app fingerprint)
    drain_seconds: float = DEFAULT_DRAIN_SECONDS


@dataclass(frozen=True)
class Migrate:
    service: str
    command: tuple[str, ...]
    # Variables set for the migrate run only (issue 13): with a managed database the apps reach
    # the connection pool, whose transaction mode loses the session state (advisory locks)
    # migration tools rely on, so the migrate run points DATABASE_URL_FILE at the direct URL.
    environment: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    stack: str
    environment: str
    project: str
    app_services: tuple[AppSpec, ...]
    base_services: tuple[str, ...]
    migrate: Migrate | None
    registry: str
    registry_username: str | None
    service_digests: Mapping[str, str]
    compose_base: str
    compose_app: str
    nginx_dir: str
    upstreams_file: str
    # Issue 12: secret file name (in the live secrets dir) -> the uid of the one container that
    # reads it (compose ignores uid/gid/mode of file secrets outside Swarm: the agent chowns).
    container_secrets: Mapping[str, int] = field(default_factory=dict)

    def app_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.app_services)

    def drain_seconds(self) -> float:
        """The longest drain of its app services: how long a switch away from it waits."""
        return max((s.drain_seconds for s in self.app_services), default=float(DEFAULT_DRAIN_SECONDS))


def _relative_path(value: object, key: str, problems: list[str]) -> str:
    # Manifest paths are joined to the bundle dir: an absolute path or `..` would escape it.
    if not isinstance(value, str) or not value or value.startswith("/") or ".." in Path(value).parts:
        problems.append(f"{key}: expected a relative path inside the bundle, got {value!r}")
        return ""
    return value


def _string(data: Mapping[str, Any], key: str, problems: list[str], pattern: re.Pattern[str]) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not pattern.match(value):
        problems.append(f"{key}: invalid value {value!r}")
        return ""
    return value


def _app_spec(index: int, raw: object, problems: list[str]) -> AppSpec | None:
    where = f"app_services[{index}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object")
        return None
    local: list[str] = []
    name = _string(raw, "name", local, _NAME_RE)
    port = raw.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        local.append(f"port: invalid value {port!r}")
        port = 0
    health = _string(raw, "health_path", local, _HEALTH_RE)
    upstream = _string(raw, "upstream", local, _UPSTREAM_RE)
    image = _string(raw, "image", local, _IMAGE_RE)
    hostnames = raw.get("hostnames")
    if (
        not isinstance(hostnames, list)
        or not hostnames
        or not all(isinstance(h, str) and _HOST_RE.match(h) for h in hostnames)
    ):
        local.append(f"hostnames: expected a non-empty list of hostnames, got {hostnames!r}")
        hostnames = []
    drain = raw.get("drain_seconds", DEFAULT_DRAIN_SECONDS)
    if not isinstance(drain, int | float) or isinstance(drain, bool) or not 0 <= drain <= MAX_DRAIN_SECONDS:
        local.append(f"drain_seconds: expected a number of seconds in 0..{MAX_DRAIN_SECONDS}, got {drain!r}")
        drain = 0
    problems.extend(f"{where}.{p}" for p in local)
    if local:
        return None
    return AppSpec(name, port, health, upstream, image, tuple(hostnames), float(drain))


def _migrate(raw: object, app_names: Sequence[str], problems: list[str]) -> Migrate | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        problems.append("migrate: expected an object or null")
        return None
    service, command = raw.get("service"), raw.get("command")
    if service not in app_names:
        problems.append(f"migrate.service: {service!r} is not an app service")
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(c, str) and _ARG_RE.match(c) for c in command)
    ):
        problems.append(f"migrate.command: expected a non-empty list of strings, got {command!r}")
        return None
    return Migrate(str(service), tuple(command), _migrate_environment(raw.get("environment"), problems))


def _migrate_environment(raw: object, problems: list[str]) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and _ENV_NAME_RE.match(k) and isinstance(v, str) and _ENV_SECRET_PATH_RE.match(v)
        for k, v in raw.items()
    ):
        problems.append(
            "migrate.environment: expected an object of VARIABLE_NAME to /run/secrets/<name> "
            "(a secret file's path, never a value)"
        )
        return {}
    return dict(raw)


def _project(data: Mapping[str, Any], problems: list[str]) -> str:
    # The agent names its compose projects after contract.release, never after the manifest: a
    # bundle rendered for another project would run its containers beside ours, so it is refused.
    project = _string(data, "project", problems, _NAME_RE)
    if project and project != BASE_PROJECT:
        problems.append(f"project: expected {BASE_PROJECT!r}, got {project!r}")
    return project


_SECRET_FILE_RE: Final = re.compile(r"^[a-z0-9_-]+\.[a-z0-9_]+$")


def _container_secrets(raw: object, problems: list[str]) -> dict[str, int]:
    """``container_secrets``: absent in bundles before issue 12 (nothing to chown)."""
    if raw is None:
        return {}
    owners: dict[str, int] = {}
    for name, uid in raw.items() if isinstance(raw, dict) else [("", None)]:
        if not (isinstance(name, str) and _SECRET_FILE_RE.match(name)) or not _is_uid(uid):
            problems.append("container_secrets: expected an object of secret file name -> uid (1-65535)")
            return {}
        owners[name] = uid
    return owners


def _is_uid(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 65536


def parse_manifest(data: object, source: str = MANIFEST_NAME) -> Manifest:
    """A validated :class:`Manifest`, or :class:`ManifestError` naming every problem."""
    if not isinstance(data, dict):
        raise ManifestError(source, ["expected a JSON object"])
    problems: list[str] = []
    if data.get("schema") != MANIFEST_SCHEMA:
        problems.append(f"schema: expected {MANIFEST_SCHEMA}, got {data.get('schema')!r}")
    raw_apps = data.get("app_services")
    apps: list[AppSpec] = []
    if not isinstance(raw_apps, list) or not raw_apps:
        problems.append("app_services: expected a non-empty list")
    else:
        for i, raw in enumerate(raw_apps):
            spec = _app_spec(i, raw, problems)
            if spec is not None:
                apps.append(spec)
    names = [a.name for a in apps]
    if len(set(names)) != len(names):
        problems.append(f"app_services: duplicate names in {names}")
    base = data.get("base_services")
    if not isinstance(base, list) or not all(isinstance(b, str) and _NAME_RE.match(b) for b in base):
        problems.append(f"base_services: expected a list of service names, got {base!r}")
        base = []
    digests = data.get("service_digests")
    if not isinstance(digests, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in digests.items()
    ):
        problems.append("service_digests: expected an object of strings")
        digests = {}
    missing = sorted((set(names) | set(base)) - set(digests))
    if missing:
        problems.append(f"service_digests: missing {missing}")
    user = data.get("registry_username")
    if user is not None and (not isinstance(user, str) or not _ARG_RE.match(user)):
        problems.append("registry_username: expected a string or null")
    raw_compose = data.get("compose")
    compose: Mapping[str, Any] = raw_compose if isinstance(raw_compose, dict) else {}
    manifest = Manifest(
        stack=str(data.get("stack", "")),
        environment=str(data.get("environment", "")),
        project=_project(data, problems),
        app_services=tuple(apps),
        base_services=tuple(base),
        migrate=_migrate(data.get("migrate"), names, problems),
        registry=_string(data, "registry", problems, _IMAGE_RE),
        registry_username=user if isinstance(user, str) else None,
        service_digests=dict(digests),
        compose_base=_relative_path(compose.get("base"), "compose.base", problems),
        compose_app=_relative_path(compose.get("app"), "compose.app", problems),
        nginx_dir=_relative_path(data.get("nginx_dir"), "nginx_dir", problems),
        upstreams_file=_relative_path(data.get("upstreams_file"), "upstreams_file", problems),
        container_secrets=_container_secrets(data.get("container_secrets"), problems),
    )
    if problems:
        raise ManifestError(source, problems)
    return manifest


def load_manifest(bundle: Path) -> Manifest:
    path = bundle / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestError(str(path), [f"cannot read: {exc}"]) from exc
    return parse_manifest(data, str(path))


def bundle_digest(bundle: Path, exclude: frozenset[str] = frozenset()) -> str:
    """:func:`digest_files` of a bundle directory (files named in ``exclude`` left out)."""
    return digest_files(
        (p.relative_to(bundle).as_posix(), os.stat(p).st_mode & 0o777, p.read_bytes())
        for p in bundle.rglob("*")
        if p.is_file() and p.relative_to(bundle).as_posix() not in exclude
    )


def bundle_release_id(bundle: Path, override: str | None = None) -> str:
    """The release id of a bundle dir: ``--release``, else a hex directory name, else its digest."""
    for candidate in (override, bundle.name):
        if candidate is not None and _RELEASE_RE.match(candidate):
            return release_id(candidate)
    if override is not None:
        raise ManifestError("--release", [f"expected 12-64 lowercase hex chars, got {override!r}"])
    return release_id(bundle_digest(bundle))




def app_fingerprint(bundle: Path, manifest: Manifest) -> str:
    """What the app containers of a release are made of.

    Two releases with the same fingerprint run identical app containers, so switching between
    them needs no new containers (an nginx-only or base-only change). Conservative on purpose:
    any secret file other than the TLS key and registry password counts, since a false
    "changed" only costs a restart while a false "unchanged" would keep stale secrets running.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({n: manifest.service_digests[n] for n in manifest.app_names()}).encode())
    specs = [{k: v for k, v in s.__dict__.items() if k != "drain_seconds"} for s in manifest.app_services]
    digest.update(json.dumps(specs, sort_keys=True).encode())
    app_compose = bundle / manifest.compose_app
    digest.update(app_compose.read_bytes() if app_compose.is_file() else b"")
    secrets = bundle / SECRETS_BUNDLE_DIR
    if secrets.is_dir():
        for path in sorted(secrets.iterdir()):
            if path.is_file() and path.name not in NON_APP_SECRETS:
                digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()
