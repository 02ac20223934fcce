"""``parse_settings``: a stack's ``bankflow:`` values -> :class:`Settings`, or one
:class:`SettingsError` naming every problem."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from bankflow_infra.contract import grammar
from bankflow_infra.contract.services import ENVIRONMENTS
from bankflow_infra.settings.checks import Problems
from bankflow_infra.settings.defaults import TOP_LEVEL_KEYS
from bankflow_infra.settings.edge import (
    check_edge_certificates,
    parse_edge,
    parse_environment,
    parse_hostnames,
    parse_origin_cert,
)
from bankflow_infra.settings.model import Settings, SettingsError
from bankflow_infra.settings.operations import parse_alerts, parse_backups, parse_nginx
from bankflow_infra.settings.release import parse_release
from bankflow_infra.settings.scale import check_scale, parse_scale
from bankflow_infra.settings.server import parse_server

# A stack named after an environment, or an emergency rebuild of one (`rebuild` names them
# <stack>-r<N>: production-r1, staging-r2), belongs to that environment. Other names (a rebuild
# given --name) may be either; the environment then comes from the file alone.
_ENVIRONMENT_STACK: Final = re.compile(rf"({'|'.join(ENVIRONMENTS)})(?:-r[0-9]+)?")


def environment_of_stack_name(stack: str) -> str | None:
    """The environment a stack's name binds it to, or None when the name says nothing."""
    found = _ENVIRONMENT_STACK.fullmatch(stack.rsplit("/", 1)[-1])
    return found.group(1) if found else None


def _check_environment_matches_stack(stack: str, environment: Any, problems: Problems) -> None:
    expected = environment_of_stack_name(stack)
    if expected is not None and environment in ENVIRONMENTS and environment != expected:
        problems.add(
            "environment",
            f"stack {stack!r} is a {expected} stack (stacks named {expected} or {expected}-r<N> are), "
            f"but this file says {environment!r}: set bankflow:environment: {expected}",
        )


def _cross_checks(settings: Settings, problems: Problems) -> None:
    check_edge_certificates(dict(settings.hostnames), settings.edge, problems)
    server, edge = settings.server, settings.edge
    check_scale(settings.environment, server, settings.scale, problems)
    if edge.enabled and settings.backups.bucket_stack != settings.stack:
        problems.add(
            "backups.bucketStack",
            "a stack with bankflow:edge.enabled owns its backups bucket: leave bucketStack unset",
        )
    if edge.enabled and not server.enabled and edge.origin_stack is None:
        problems.add(
            "edge.originStack",
            "required when bankflow:server.enabled is false: the stack whose droplet serves this edge",
        )
    if edge.zone_settings and not edge.enabled:
        problems.add("edge.zoneSettings", "only a stack with bankflow:edge.enabled may own the zone settings")
    if edge.zone_settings and settings.environment != "production":
        problems.add(
            "edge.zoneSettings",
            "only production owns the zone-wide settings; staging shares the zone and must not fight",
        )


# Keys that used to exist, with what to do instead: clearer than "unknown key".
REMOVED_KEYS: Final = {
    "originCaKey": "Cloudflare switched Service Key (Origin CA key) auth off on 2026-09-30; remove it "
    "(pulumi config rm bankflow:originCaKey): the Cloudflare API token with 'SSL and Certificates: "
    "Edit' issues Origin CA certificates",
}


def parse_settings(
    project: str, stack: str, values: Mapping[str, Any], source: str = "stack config"
) -> Settings:
    """Validate ``values`` (top-level ``bankflow:`` keys without the namespace) into Settings."""
    problems = Problems()
    if not grammar.is_stack_name(stack):
        problems.add("stack", f"{stack!r} is not a usable stack name (letters, digits, _ . -)")
    for name in values:
        if name in REMOVED_KEYS:
            problems.add(name, REMOVED_KEYS[name])
        elif name not in TOP_LEVEL_KEYS:
            problems.add(name, f"unknown key; valid keys: {', '.join(TOP_LEVEL_KEYS)}")
    env = parse_environment(values.get("environment"), problems)
    _check_environment_matches_stack(stack, values.get("environment"), problems)
    edge = parse_edge(values.get("edge"), env, stack, problems)
    settings = Settings(
        project=project,
        stack=stack,
        environment=env,
        hostnames=parse_hostnames(values.get("hostnames"), edge.zone, problems),
        server=parse_server(values.get("server"), env, problems),
        edge=edge,
        alerts=parse_alerts(values.get("alerts"), env, problems),
        release=parse_release(values.get("release"), env, problems),
        backups=parse_backups(values.get("backups"), env, stack, problems),
        nginx=parse_nginx(values.get("nginx"), env, problems),
        origin_cert_validity_days=parse_origin_cert(values.get("originCert"), env, problems),
        scale=parse_scale(values, env, problems),
    )
    _cross_checks(settings, problems)
    if problems.items:
        raise SettingsError(source, problems.items)
    return settings
