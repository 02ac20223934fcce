"""The Cloudflare Origin CA certificate nginx presents to Cloudflare (SSL mode: strict)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_cloudflare as cloudflare
import pulumi_tls as tls


@dataclass(frozen=True)
class OriginCertificateArgs:
    hostnames: tuple[str, ...]  # every public hostname; the first is the common name
    validity_days: int  # one of Cloudflare Origin CA's periods


class OriginCertificate(pulumi.ComponentResource):
    certificate_pem: pulumi.Output[str]
    private_key_pem: pulumi.Output[str]
    expires_on: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: OriginCertificateArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("bankflow:index:OriginCertificate", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        hostnames = list(args.hostnames)
        key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P256", opts=child)
        csr = tls.CertRequest(
            f"{name}-csr",
            private_key_pem=key.private_key_pem,
            dns_names=hostnames,
            subject=tls.CertRequestSubjectArgs(common_name=hostnames[0], organization="BankFlow"),
            opts=child,
        )
        # Issued with the stack's Cloudflare API token ("SSL and Certificates: Edit"): the Origin
        # CA key (Service Key auth) that some accounts used instead stopped working on 2026-09-30
        # (docs/PROVIDERS.md).
        certificate = cloudflare.OriginCaCertificate(
            f"{name}-certificate",
            csr=csr.cert_request_pem,
            hostnames=hostnames,
            request_type="origin-ecc",
            requested_validity=args.validity_days,
            # Replacing the certificate must not revoke the old one: the kept releases on the
            # droplet still hold it, and a rollback to one of them would otherwise serve a revoked
            # certificate (Cloudflare 526 on every hostname). Old ones simply expire.
            #
            # `hostnames` forces a replacement, and after `pulumi refresh` the provider reads them
            # back in the API's order, so every later `up` would issue a new certificate and ship a
            # new release (terraform-provider-cloudflare issues #5392 and #6239). Ignoring them is
            # safe: a real change of the hostname set changes the CSR (its dns_names), and `csr`
            # still replaces the certificate.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True, ignore_changes=["hostnames"]),
        )
        self.certificate_pem = certificate.certificate
        self.private_key_pem = pulumi.Output.secret(key.private_key_pem)
        self.expires_on = certificate.expires_on
        self.register_outputs({"expires_on": self.expires_on})
