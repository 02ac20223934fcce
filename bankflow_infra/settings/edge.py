"""The public face of a stack: its environment, hostnames, ``bankflow:edge`` and the Origin CA
certificate's validity (``bankflow:originCert``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from bankflow_infra.contract import grammar
from bankflow_infra.contract.services import APP_SERVICES, ENVIRONMENTS, Environment
from bankflow_infra.settings.checks import HOSTNAME_RE, Problems, check, flag, merged, string_list, typed
from bankflow_infra.settings.defaults import defaults
from bankflow_infra.settings.model import EdgeSettings

# Cloudflare Origin CA accepts only these validity periods (days).
ORIGIN_CERT_VALIDITIES: Final = (7, 30, 90, 365, 730, 1095, 5475)


def parse_environment(raw: Any, problems: Problems) -> Environment:
    if raw in ENVIRONMENTS:
        return raw  # type: ignore[no-any-return]
    problems.add("environment", f"must be one of {', '.join(ENVIRONMENTS)}, got {raw!r}")
    return "staging"


def _service_hostnames(
    service: str, value: Any, zone: str, seen: dict[str, str], problems: Problems
) -> tuple[str, ...]:
    key = f"hostnames.{service}"
    names = string_list(problems, key, value)
    if value is not None and isinstance(value, list) and not names:
        problems.add(key, "must list at least one hostname")
    for index, name in enumerate(names):
        item = f"{key}[{index}]"
        if not HOSTNAME_RE.match(name):
            problems.add(item, f"{name!r} is not a lower-case DNS hostname (e.g. app.{zone})")
        elif name != zone and not name.endswith("." + zone):
            problems.add(item, f"{name!r} is not in the zone {zone!r} (bankflow:edge.zone)")
        if name in seen:
            problems.add(item, f"{name!r} is already used by service {seen[name]!r}")
        seen.setdefault(name, service)
    return names


def parse_hostnames(raw: Any, zone: str, problems: Problems) -> dict[str, tuple[str, ...]]:
    result: dict[str, tuple[str, ...]] = {s: () for s in APP_SERVICES}
    if not isinstance(raw, Mapping):
        problems.add("hostnames", f"required: a mapping of {', '.join(APP_SERVICES)} to lists of hostnames")
        return result
    for name in raw:
        if name not in APP_SERVICES:
            problems.add(f"hostnames.{name}", f"unknown service; valid services: {', '.join(APP_SERVICES)}")
    seen: dict[str, str] = {}  # hostname -> the service that claimed it first
    for service in APP_SERVICES:
        if service not in raw:
            problems.add(f"hostnames.{service}", "required: at least one hostname for this service")
            continue
        result[service] = _service_hostnames(service, raw[service], zone, seen, problems)
    return result


def _origin_stack(value: Any, stack: str, problems: Problems) -> str | None:
    if value is None:
        return None
    origin = typed(problems, "edge.originStack", value, str, "", "a stack name or null")
    if not grammar.is_stack_name(origin):
        problems.add("edge.originStack", f"{origin!r} is not a stack name (letters, digits, _ . -)")
    elif origin.rsplit("/", 1)[-1] == stack:
        problems.add(
            "edge.originStack",
            f"{origin!r} is this stack; leave it unset to serve from this stack's own droplet",
        )
    return origin or None


def parse_edge(raw: Any, env: str, stack: str, problems: Problems) -> EdgeSettings:
    default = defaults(env)["edge"]
    v = merged("edge", raw, default, problems)
    zone = typed(problems, "edge.zone", v["zone"], str, default["zone"])
    check(problems, "edge.zone", bool(HOSTNAME_RE.match(zone)), f"{zone!r} is not a DNS zone name")
    origin = _origin_stack(v["originStack"], stack, problems)
    return EdgeSettings(
        enabled=flag(problems, "edge.enabled", v["enabled"], default["enabled"]),
        zone=zone,
        origin_stack=origin,
        # A bad value owns nothing: the zone settings are never taken over by mistake.
        zone_settings=flag(problems, "edge.zoneSettings", v["zoneSettings"], False),
        uptime_checks=flag(problems, "edge.uptimeChecks", v["uptimeChecks"], default["uptimeChecks"]),
    )


def parse_origin_cert(raw: Any, env: str, problems: Problems) -> int:
    default = defaults(env)["originCert"]
    v = merged("originCert", raw, default, problems)
    days = v["validityDays"]
    if days not in ORIGIN_CERT_VALIDITIES or isinstance(days, bool):
        problems.add(
            "originCert.validityDays",
            f"must be one of {', '.join(map(str, ORIGIN_CERT_VALIDITIES))} (Cloudflare Origin CA), "
            f"got {days!r}",
        )
        return int(default["validityDays"])
    return int(days)
