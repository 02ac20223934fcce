"""The response headers every server adds (OWASP Secure Headers) and the CSP per service.

- ``security-headers.conf``: included by every server; ``always``, so nginx's own 4xx/5xx pages
  carry them too.
- ``csp.conf``: ``$bankflow_csp`` by Host (http level): each hostname gets its service's policy,
  anything else (nginx's own 421/400/502 answers) the strictest one.
"""

from __future__ import annotations

from typing import Final

from bankflow_infra import catalog
from bankflow_infra.settings import Settings

HEADERS_FILE: Final = "security-headers.conf"
CSP_FILE: Final = "csp.conf"
_HEADER = "# Rendered by bankflow_infra.render.nginx -- do not edit on the host; change the settings.\n"

# Nothing may load, run, frame or submit: for answers that are never a page to render (JSON, nginx's
# own error pages). A JSON API loses nothing; an HTML page served under it would render inert.
STRICT_CSP: Final = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


def _page_csp(form_targets: tuple[str, ...]) -> str:
    """The pages (site, saas): what stops injection without knowing the apps' asset origins and
    inline scripts (a script-src would break them unseen): no <base> hijack, no plugins, no framing,
    forms only to this origin and the stack's API, every subresource over https."""
    targets = " ".join(("'self'", *form_targets))
    return (
        f"base-uri 'self'; object-src 'none'; form-action {targets}; frame-ancestors 'none'; "
        "upgrade-insecure-requests"
    )


def csp_by_service(settings: Settings) -> dict[str, str]:
    """service -> its Content-Security-Policy. The api answers JSON only: the strict policy."""
    api_origins = tuple(f"https://{host}" for host in settings.hostnames.get("api", ()))
    policies = {"api": STRICT_CSP, "site": _page_csp(api_origins), "saas": _page_csp(api_origins)}
    services = catalog.app_services(settings)
    return {service.name: policies.get(service.name, STRICT_CSP) for service in services}


def render_csp(settings: Settings) -> str:
    policies = csp_by_service(settings)
    lines = [
        _HEADER.rstrip("\n"),
        "# Content-Security-Policy by Host: each hostname its service's (render/nginx_headers.py says",
        "# why per service); unknown hosts (nginx's own 421 and error answers) the strictest.",
        "map $host $bankflow_csp {",
        f'    default "{STRICT_CSP}";',
    ]
    for service in catalog.app_services(settings):
        lines += [f'    {hostname} "{policies[service.name]}";' for hostname in service.hostnames]
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_security_headers(settings: Settings) -> str:
    # `always`: also on 4xx/5xx answers nginx makes itself (a 502 page is still a page).
    # No X-XSS-Protection: deprecated, and its filter could be abused (OWASP Secure Headers).
    headers = (
        ("Strict-Transport-Security", f"max-age={settings.nginx.hsts_max_age}; includeSubDomains"),
        ("X-Content-Type-Options", "nosniff"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", "$bankflow_csp"),  # csp.conf
        ("Referrer-Policy", "strict-origin-when-cross-origin"),
        ("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("Cross-Origin-Resource-Policy", "same-site"),
        ("X-Permitted-Cross-Domain-Policies", "none"),
        ("X-Request-ID", "$request_id"),  # lets support match a user's report to the JSON log line
    )
    lines = [_HEADER.rstrip("\n"), *(f'add_header {name} "{value}" always;' for name, value in headers)]
    return "\n".join(lines) + "\n"
