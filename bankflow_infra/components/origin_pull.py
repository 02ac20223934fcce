"""Authenticated Origin Pulls per hostname (issue 12): only Cloudflare, presenting this stack's
own client certificate, reaches nginx.

Allow-listing Cloudflare's ranges admits every Cloudflare customer (anyone can point a zone at
our droplet's address), and the zone-wide AOP certificate is shared too: staging and production
share the zone conciliaextrato.com, so a zone-wide certificate would let one stack's edge reach
the other's origin. So the stack that runs nginx has its own CA (`OriginPullCa`, pulumi-tls; nginx
trusts only that CA's public certificate) and a client certificate it signs; the edge uploads that
client certificate and key for the zone and turns AOP on for each of its hostnames
(`OriginPulls`). Provider facts (one association per resource, the zone toggle, leaf certificate
only): docs/PROVIDERS.md "Authenticated Origin Pulls".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_tls as tls

HOURS_PER_DAY: Final = 24
# The CA only signs the client certificate; replacing it would need nginx and Cloudflare to change
# together, so it lives long (20 years) and never renews by itself.
CA_VALIDITY_HOURS: Final = 20 * 365 * HOURS_PER_DAY
# The client certificate Cloudflare presents: 5 years; any `pulumi up` in its last 90 days issues
# a new one (pulumi-tls `early_renewal_hours`). nginx trusts the CA, so a new client certificate
# is accepted at once: no deploy, no gap.
CLIENT_VALIDITY_HOURS: Final = 5 * 365 * HOURS_PER_DAY
CLIENT_EARLY_RENEWAL_HOURS: Final = 90 * HOURS_PER_DAY
CA_USES: Final = ["cert_signing", "crl_signing"]
# A TLS client certificate (RFC 5280 extended key usage id-kp-clientAuth); ECDSA keys sign only.
CLIENT_USES: Final = ["digital_signature", "client_auth"]
ZONE_TOGGLE_SETTING: Final = "tls_client_auth"  # the zone's "Authenticated Origin Pulls" switch


@dataclass(frozen=True)
class OriginPullCaArgs:
    stack: str  # names the CA and the client (CN), so an operator can tell two stacks' apart


@dataclass(frozen=True)
class OriginPullClient:
    """What the edge uploads: the client certificate and its key (secret)."""

    certificate_pem: pulumi.Input[str]
    private_key_pem: pulumi.Input[str]


class OriginPullCa(pulumi.ComponentResource):
    """The stack's origin-pull CA and the client certificate it signs for Cloudflare."""

    ca_certificate_pem: pulumi.Output[str]  # public: the bundle's tls/origin-pull-ca.pem
    client: OriginPullClient

    def __init__(self, name: str, args: OriginPullCaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("bankflow:index:OriginPullCa", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ca_key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        ca = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=ca_key.private_key_pem,
            is_ca_certificate=True,
            allowed_uses=CA_USES,
            validity_period_hours=CA_VALIDITY_HOURS,
            subject=tls.SelfSignedCertSubjectArgs(
                common_name=f"BankFlow {args.stack} origin-pull CA", organization="BankFlow"
            ),
            opts=child,
        )
        client_key = tls.PrivateKey(f"{name}-client-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        request = tls.CertRequest(
            f"{name}-client-csr",
            private_key_pem=client_key.private_key_pem,
            subject=tls.CertRequestSubjectArgs(
                common_name=f"BankFlow {args.stack} Cloudflare origin pull", organization="BankFlow"
            ),
            opts=child,
        )
        client = tls.LocallySignedCert(
            f"{name}-client",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca_key.private_key_pem,
            ca_cert_pem=ca.cert_pem,
            allowed_uses=CLIENT_USES,
            validity_period_hours=CLIENT_VALIDITY_HOURS,
            early_renewal_hours=CLIENT_EARLY_RENEWAL_HOURS,
            opts=child,
        )
        self.ca_certificate_pem = ca.cert_pem
        self.client = OriginPullClient(client.cert_pem, pulumi.Output.secret(client_key.private_key_pem))
        self.register_outputs({"ca_certificate_pem": self.ca_certificate_pem})


@dataclass(frozen=True)
class OriginPullsArgs:
    hostnames: tuple[str, ...]  # every hostname this stack's edge serves
    # This stack owns the zone (edge.zoneSettings): it turns the zone's AOP toggle on. Cloudflare's
    # per-hostname setup needs the zone-level `tls_client_auth` setting on as well (Cloudflare docs
    # ssl/origin-configuration/authenticated-origin-pull/set-up/per-hostname, step 3); zone-wide,
    # so one owner only. The hostname associations choose each stack's own client certificate.
    zone_toggle: bool


class OriginPulls(pulumi.ComponentResource):
    """The client certificate uploaded to the zone and AOP enabled for each hostname."""

    ready: list[pulumi.Output[str]]  # the associations' ids: nginx may require the certificate after

    def __init__(
        self,
        name: str,
        args: OriginPullsArgs,
        zone_id: pulumi.Input[str],
        client: OriginPullClient,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("bankflow:index:OriginPulls", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # POST /zones/{zone}/origin_tls_client_auth/hostnames/certificates: a leaf certificate and
        # its key (a CA certificate is refused, "missing leaf certificate").
        certificate = cloudflare.AuthenticatedOriginPullsHostnameCertificate(
            f"{name}-certificate",
            zone_id=zone_id,
            certificate=client.certificate_pem,
            private_key=pulumi.Output.secret(client.private_key_pem),
            opts=child,
        )
        self.ready = []
        if args.zone_toggle:
            toggle = cloudflare.ZoneSetting(
                f"{name}-zone-tls-client-auth",
                zone_id=zone_id,
                setting_id=ZONE_TOGGLE_SETTING,
                value="on",
                opts=child,
            )
            self.ready.append(toggle.id)
        for hostname in args.hostnames:
            # terraform-provider-cloudflare v5 (internal/services/authenticated_origin_pulls/
            # resource.go) manages exactly one hostname association per resource and refuses a
            # `config` of any other length; its delete voids the association (enabled: null).
            association = cloudflare.AuthenticatedOriginPulls(
                f"{name}-{hostname}",
                zone_id=zone_id,
                configs=[
                    cloudflare.AuthenticatedOriginPullsConfigArgs(
                        hostname=hostname, cert_id=certificate.id, enabled=True
                    )
                ],
                opts=child,
            )
            self.ready.append(association.id)
        self.register_outputs({})
