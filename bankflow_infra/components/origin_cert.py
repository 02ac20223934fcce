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
        provider: cloudflare.Provider | None = None,
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
        # Some accounts can only issue Origin CA certificates with the Origin CA key: then a
        # dedicated provider (bankflow:originCaKey) is passed in.
        certificate = cloudflare.OriginCaCertificate(
            f"{name}-certificate",
            csr=csr.cert_request_pem,
            hostnames=hostnames,
            request_type="origin-ecc",
            requested_validity=args.validity_days,
            # Replacing the certificate must not revoke the old one: the kept releases on the
            # droplet still hold it, and a rollback to one of them would otherwise serve a revoked
            # certificate (Cloudflare 526 on every hostname). Old ones simply expire.
            opts=pulumi.ResourceOptions(parent=self, provider=provider, retain_on_delete=True),
        )
        self.certificate_pem = certificate.certificate
        self.private_key_pem = pulumi.Output.secret(key.private_key_pem)
        self.expires_on = certificate.expires_on
        self.register_outputs({"expires_on": self.expires_on})
