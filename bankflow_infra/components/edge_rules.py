"""The zone's edge rules as code (issue 12), within what the Cloudflare plan allows.

Every resource here is zone-wide (a zone has one entry-point ruleset per phase, one DNSSEC
state, one CAA set at the apex), so only the stack that owns the zone creates them
(``edge.zoneSettings``: production); the path rules and the client-port header cover every
hostname of the zone, staging's included. Provider and plan facts, with their sources:
docs/PROVIDERS.md "Edge rules".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_cloudflare as cloudflare

# Plans with Cloudflare's Managed Ruleset (WAF managed rules need Pro or higher; Free zones get
# the "Cloudflare Free Managed Ruleset", which Cloudflare deploys itself and cannot be added here).
MANAGED_RULES_PLANS: Final = frozenset({"pro", "business", "enterprise"})
# The Cloudflare Managed Ruleset's id: the same constant on every zone (Cloudflare docs, "Deploy
# a WAF managed ruleset via API"; terraform-provider-cloudflare v5 ruleset examples).
CLOUDFLARE_MANAGED_RULESET_ID: Final = "efb7b8c949ac4650a09736fc376e9aee"
# Paths no service of ours has and scanners probe first (leaked dotfiles, other stacks' admin
# pages). Lower-cased before matching. Not "/.": /.well-known must stay reachable.
KNOWN_BAD_PATH_PREFIXES: Final = (
    "/.env",
    "/.git",
    "/.svn",
    "/.hg",
    "/.aws",
    "/.ssh",
    "/.ds_store",
    "/.htaccess",
    "/.htpasswd",
    "/wp-admin",
    "/wp-login.php",
    "/xmlrpc.php",
    "/phpmyadmin",
    "/server-status",
    "/cgi-bin/",
    "/actuator",
)
# The marketing site is static: only reads.
SITE_METHODS: Final = ("GET", "HEAD")
# Rate limiting: the one counting period and mitigation timeout every plan allows (10 s), per
# client IP; Cloudflare requires cf.colo.id among the characteristics (counters are per data
# centre).
RATE_LIMIT_PERIOD_SECONDS: Final = 10
RATE_LIMIT_TIMEOUT_SECONDS: Final = 10
RATE_LIMIT_CHARACTERISTICS: Final = ["cf.colo.id", "ip.src"]
# The visitor's TCP source port: the Rules-language field `cf.edge.client_port` (Integer), one of
# the fields a request-header transform rule may use in a value expression (Cloudflare docs,
# rules/transform/request-header-modification/reference/fields-functions); `to_string` makes it a
# header value.
CLIENT_PORT_EXPRESSION: Final = "to_string(cf.edge.client_port)"
# CAA: who may issue certificates for the zone. Cloudflare's edge certificates: the advanced
# certificate pack is Let's Encrypt (edge.py PACK_CERTIFICATE_AUTHORITY); Universal SSL is issued
# by Let's Encrypt or Google Trust Services, Cloudflare's choice (Cloudflare docs,
# ssl/reference/certificate-authorities). Once a zone has any CAA record, Cloudflare adds the
# records its own CAs need itself (docs "CAA records added by Cloudflare"), so a CA change on
# their side does not break renewals. The Origin CA certificate is not publicly trusted: no CAA.
CAA_ISSUERS: Final = ("letsencrypt.org", "pki.goog")
CAA_TTL: Final = 3600


@dataclass(frozen=True)
class ZoneSecurityArgs:
    zone: str
    plan: str  # one of settings.edge.CLOUDFLARE_PLANS
    site_hostnames: tuple[str, ...]  # the marketing site's hostnames: reads only
    rate_limit_paths: tuple[str, ...]
    rate_limit_requests: int  # per RATE_LIMIT_PERIOD_SECONDS, per IP and data centre
    caa_iodef: str | None  # mailto:/https: for CAA violation reports; None: no iodef record
    client_port_header: str  # catalog.CLIENT_PORT_HEADER


def string_set(values: Iterable[str]) -> str:
    """A Rules-language set literal of strings: ``{"a" "b"}`` (values are validated: no quotes)."""
    return "{" + " ".join(f'"{value}"' for value in values) + "}"


def any_prefix(field: str, prefixes: Iterable[str]) -> str:
    return "(" + " or ".join(f'starts_with({field}, "{prefix}")' for prefix in prefixes) + ")"


def site_writes_expression(site_hostnames: tuple[str, ...]) -> str:
    return (
        f"(http.host in {string_set(site_hostnames)} "
        f"and not http.request.method in {string_set(SITE_METHODS)})"
    )


def bad_paths_expression() -> str:
    return any_prefix("lower(http.request.uri.path)", KNOWN_BAD_PATH_PREFIXES)


def rate_limit_expression(paths: tuple[str, ...]) -> str:
    # Free plans may use only the path in a rate-limiting expression: no host, no method.
    return any_prefix("http.request.uri.path", paths)


def custom_rules(args: ZoneSecurityArgs) -> list[cloudflare.RulesetRuleArgs]:
    """WAF custom rules (Free allows 5): writes to the marketing site, known-bad paths."""
    rules = [
        cloudflare.RulesetRuleArgs(
            ref="bankflow_block_bad_paths",
            description="bankflow: block paths scanners probe (no service has them)",
            expression=bad_paths_expression(),
            action="block",
        )
    ]
    if args.site_hostnames:
        rules.insert(
            0,
            cloudflare.RulesetRuleArgs(
                ref="bankflow_site_read_only",
                description="bankflow: the marketing site takes reads only",
                expression=site_writes_expression(args.site_hostnames),
                action="block",
            ),
        )
    return rules


class ZoneSecurity(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        args: ZoneSecurityArgs,
        zone_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("bankflow:index:ZoneSecurity", name, None, opts)
        self._name, self._zone_id = name, zone_id
        self._ruleset("waf-custom", "http_request_firewall_custom", custom_rules(args))
        self._ruleset("rate-limit", "http_ratelimit", [self._rate_limit_rule(args)])
        if args.plan in MANAGED_RULES_PLANS:
            managed = cloudflare.RulesetRuleArgs(
                ref="bankflow_cloudflare_managed",
                description="bankflow: Cloudflare Managed Ruleset",
                expression="true",
                action="execute",
                action_parameters=cloudflare.RulesetRuleActionParametersArgs(
                    id=CLOUDFLARE_MANAGED_RULESET_ID
                ),
            )
            self._ruleset("waf-managed", "http_request_firewall_managed", [managed])
        port = cloudflare.RulesetRuleArgs(
            ref="bankflow_client_port_header",
            description=f"bankflow: {args.client_port_header} = visitor source port (Marco Civil art. 15)",
            expression="true",
            action="rewrite",
            action_parameters=cloudflare.RulesetRuleActionParametersArgs(
                headers={
                    args.client_port_header: cloudflare.RulesetRuleActionParametersHeadersArgs(
                        operation="set", expression=CLIENT_PORT_EXPRESSION
                    )
                }
            ),
        )
        self._ruleset("request-headers", "http_request_late_transform", [port])
        # Destroying this resource would switch DNSSEC off while the registrar still publishes the
        # DS record: every validating resolver would then refuse the zone. Kept on delete; turning
        # DNSSEC off is a manual two-step (remove the DS, wait its TTL, then disable).
        cloudflare.ZoneDnssec(
            f"{name}-dnssec",
            zone_id=zone_id,
            status="active",
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        self._caa(args)
        self.register_outputs({})

    @staticmethod
    def _rate_limit_rule(args: ZoneSecurityArgs) -> cloudflare.RulesetRuleArgs:
        return cloudflare.RulesetRuleArgs(
            ref="bankflow_login_rate_limit",
            description="bankflow: login and token endpoints, per client IP",
            expression=rate_limit_expression(args.rate_limit_paths),
            action="block",
            ratelimit=cloudflare.RulesetRuleRatelimitArgs(
                characteristics=RATE_LIMIT_CHARACTERISTICS,
                period=RATE_LIMIT_PERIOD_SECONDS,
                requests_per_period=args.rate_limit_requests,
                mitigation_timeout=RATE_LIMIT_TIMEOUT_SECONDS,
            ),
        )

    def _ruleset(self, kind: str, phase: str, rules: list[cloudflare.RulesetRuleArgs]) -> None:
        cloudflare.Ruleset(
            f"{self._name}-{kind}",
            zone_id=self._zone_id,
            kind="zone",  # the zone's entry-point ruleset of this phase (one per phase per zone)
            phase=phase,
            name=f"bankflow {kind}",
            description="managed by pulumi (bankflow edge rules, issue 12)",
            rules=rules,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _caa(self, args: ZoneSecurityArgs) -> None:
        entries = [(tag, issuer) for issuer in CAA_ISSUERS for tag in ("issue", "issuewild")]
        if args.caa_iodef:
            entries.append(("iodef", args.caa_iodef))
        for tag, value in entries:
            label = value.split(":", 1)[0] if tag == "iodef" else value
            cloudflare.DnsRecord(
                f"{self._name}-caa-{tag}-{label}",
                zone_id=self._zone_id,
                name=args.zone,
                type="CAA",
                ttl=CAA_TTL,
                data=cloudflare.DnsRecordDataArgs(flags=0, tag=tag, value=value),
                comment="managed by pulumi: bankflow CAA (issue 12)",
                opts=pulumi.ResourceOptions(parent=self),
            )
