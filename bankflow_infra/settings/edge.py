"""The public face of a stack: its environment, hostnames, ``bankflow:edge`` and the Origin CA
certificate's validity (``bankflow:originCert``)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from bankflow_infra.contract import grammar
from bankflow_infra.contract.services import APP_SERVICES, ENVIRONMENTS, Environment
from bankflow_infra.settings.checks import (
    HOSTNAME_RE,
    Problems,
    check,
    flag,
    int_range,
    merged,
    string_list,
    typed,
)
from bankflow_infra.settings.defaults import defaults
from bankflow_infra.settings.model import EdgeSettings

# Cloudflare Origin CA accepts only these validity periods (days).
ORIGIN_CERT_VALIDITIES: Final = (7, 30, 90, 365, 730, 1095, 5475)
# Cloudflare's plans, lowest first: what the zone's WAF and rate limiting allow (docs/PROVIDERS.md).
CLOUDFLARE_PLANS: Final = ("free", "pro", "business", "enterprise")
# A rate-limited path goes into a Rules-language string literal: a plain absolute URL path only
# (no quote, backslash or space that could end the literal or change the expression).
_RATE_LIMIT_PATH_RE: Final = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*$")
_IODEF_RE: Final = re.compile(r"^(mailto:[^@\s\"]+@[^@\s\"]+\.[a-z]{2,63}|https://[^\s\"]+)$")


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
        if not HOSTNAME_RE.fullmatch(name):
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
    check(problems, "edge.zone", bool(HOSTNAME_RE.fullmatch(zone)), f"{zone!r} is not a DNS zone name")
    origin = _origin_stack(v["originStack"], stack, problems)
    return EdgeSettings(
        enabled=flag(problems, "edge.enabled", v["enabled"], default["enabled"]),
        zone=zone,
        origin_stack=origin,
        # A bad value owns nothing: the zone settings are never taken over by mistake.
        zone_settings=flag(problems, "edge.zoneSettings", v["zoneSettings"], False),
        uptime_checks=flag(problems, "edge.uptimeChecks", v["uptimeChecks"], default["uptimeChecks"]),
        advanced_certificates=flag(problems, "edge.advancedCertificates", v["advancedCertificates"], False),
        plan=_plan(v["plan"], problems),
        caa_iodef=_caa_iodef(v["caaIodef"], problems),
        rate_limit_paths=_rate_limit_paths(v["rateLimitPaths"], problems),
        # Cloudflare counts per 10 s on every plan; 1..10000 keeps a typo (0, 1e9) from disabling it.
        rate_limit_requests=int_range(problems, "edge.rateLimitRequests", v["rateLimitRequests"], 1, 10000),
    )


def _plan(value: Any, problems: Problems) -> str:
    if value not in CLOUDFLARE_PLANS:
        plans = ", ".join(CLOUDFLARE_PLANS)
        problems.add("edge.plan", f"must be one of {plans} (the zone's Cloudflare plan), got {value!r}")
        return CLOUDFLARE_PLANS[0]
    return str(value)


def _caa_iodef(value: Any, problems: Problems) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _IODEF_RE.fullmatch(value):
        problems.add("edge.caaIodef", "must be a mailto: address or an https:// URL (where certificate "
                     f"authorities report refused requests, RFC 8659), or null; got {value!r}")
        return None
    return value


def _rate_limit_paths(value: Any, problems: Problems) -> tuple[str, ...]:
    paths = string_list(problems, "edge.rateLimitPaths", value)
    if isinstance(value, list) and not paths:
        problems.add("edge.rateLimitPaths", "must list at least one path prefix (e.g. /login)")
    for index, path in enumerate(paths):
        if not _RATE_LIMIT_PATH_RE.fullmatch(path):
            problems.add(
                f"edge.rateLimitPaths[{index}]",
                f"{path!r} is not an absolute URL path (starts with /; no quotes, spaces or backslashes)",
            )
    return tuple(p for p in paths if _RATE_LIMIT_PATH_RE.fullmatch(p))


def below_universal_ssl(hostname: str, zone: str) -> bool:
    """Whether Cloudflare's Universal SSL leaves ``hostname`` uncovered: it covers the apex and
    ``*.zone`` only, so ``app.qa.zone`` (two labels below the zone) needs an advanced certificate
    (https://developers.cloudflare.com/ssl/edge-certificates/universal-ssl/limitations/)."""
    if hostname == zone or not hostname.endswith("." + zone):
        return False
    return "." in hostname[: -len(zone) - 1]


def advanced_certificate_hosts(hostnames: tuple[str, ...], zone: str) -> tuple[str, ...]:
    """The hosts of the certificate pack that covers every hostname Universal SSL does not: the
    zone apex (Cloudflare requires it in every pack) and, per parent of such a hostname, the
    parent and its wildcard (``qa.zone``, ``*.qa.zone``). Sorted: the pack's hosts are its identity."""
    parents = {h.split(".", 1)[1] for h in hostnames if below_universal_ssl(h, zone)}
    if not parents:
        return ()
    return (zone, *sorted({name for parent in parents for name in (parent, f"*.{parent}")}))


def check_edge_certificates(
    hostnames: dict[str, tuple[str, ...]], edge: EdgeSettings, problems: Problems
) -> None:
    """Without Advanced Certificate Manager, a hostname deeper than ``*.zone`` would be served
    with no edge certificate at all (a TLS error at Cloudflare): refuse it, naming the key."""
    if not edge.enabled or edge.advanced_certificates:
        return
    for service, names in hostnames.items():
        for index, name in enumerate(names):
            if below_universal_ssl(name, edge.zone):
                problems.add(
                    f"hostnames.{service}[{index}]",
                    f"{name!r} is two or more labels below {edge.zone!r}: Cloudflare's Universal SSL covers "
                    f"only {edge.zone} and *.{edge.zone}. Set bankflow:edge.advancedCertificates: true if "
                    f"the zone has Advanced Certificate Manager (a certificate pack is then ordered), or "
                    f"use a hostname one label below the zone",
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
