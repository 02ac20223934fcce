"""Generated credentials: nobody types a database password or an SSH key into config.

Only the cloud tokens are provided by people; everything the droplet needs to authenticate is
generated here, kept as Pulumi secrets, and changes only when its resource is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_random as random
import pulumi_tls as tls

# Every argument of random.RandomPassword forces a replacement (a NEW value) when it changes:
# terraform-provider-random internal/provider/resource_password.go, passwordSchemaV3, gives
# keepers, length, special, upper, lower, numeric, min_* and override_special a RequiresReplace
# plan modifier. A key that must never change therefore ignores its arguments AND is protected
# (the backup repositories' keys: components/backups.py BackupBucket).
KEPT_PASSWORD_ARGUMENTS: Final = [
    "keepers", "length", "special", "upper", "lower", "numeric", "number",
    "min_upper", "min_lower", "min_numeric", "min_special", "override_special",
]  # fmt: skip


@dataclass(frozen=True)
class HostKey:
    """One droplet's generated SSH host key: installed by cloud-init, pinned by every client."""

    private_key: pulumi.Output[str]  # secret
    public_key: pulumi.Output[str]


class Credentials(pulumi.ComponentResource):
    postgres_password: pulumi.Output[str]
    redis_password: pulumi.Output[str]
    jwt_secret: pulumi.Output[str]
    database_app_password: pulumi.Output[str]
    deploy_private_key: pulumi.Output[str]
    deploy_public_key: pulumi.Output[str]
    host_private_key: pulumi.Output[str]
    host_public_key: pulumi.Output[str]

    host_keys: tuple[HostKey, ...]  # one per app droplet, in roll order; the first is host_*_key

    def __init__(self, name: str, host_count: int = 1, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("bankflow:index:Credentials", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        # Alphanumeric only (special=False): the passwords are embedded in DATABASE_URL / REDIS_URL
        # unescaped, and BundleSecrets.validate accepts only RFC 3986 unreserved characters.
        def password(kind: str, length: int) -> pulumi.Output[str]:
            generated = random.RandomPassword(f"{name}-{kind}", length=length, special=False, opts=child)
            return pulumi.Output.secret(generated.result)

        self.postgres_password = password("postgres-password", 40)
        self.redis_password = password("redis-password", 40)
        self.jwt_secret = password("jwt-secret", 64)
        # The apps' least-privilege role (bankflow_app): rotatable, the agent applies it on deploy.
        self.database_app_password = password("database-app-password", 40)

        deploy_key = tls.PrivateKey(f"{name}-deploy-key", algorithm="ED25519", opts=child)
        self.deploy_private_key = pulumi.Output.secret(deploy_key.private_key_openssh)
        self.deploy_public_key = deploy_key.public_key_openssh.apply(str.strip)
        # Droplet 1 keeps the key (and the resource name) it always had; droplets 2..N of a load
        # balanced stack get their own, so one leaked droplet key impersonates no other droplet.
        self.host_keys = tuple(
            self._host_key(f"{name}-host-key" if index == 1 else f"{name}-host-key-{index}", child)
            for index in range(1, host_count + 1)
        )
        self.host_private_key = self.host_keys[0].private_key
        self.host_public_key = self.host_keys[0].public_key
        self.register_outputs({"host_public_key": self.host_public_key})

    @staticmethod
    def _host_key(resource_name: str, opts: pulumi.ResourceOptions) -> HostKey:
        key = tls.PrivateKey(resource_name, algorithm="ED25519", opts=opts)
        return HostKey(
            private_key=pulumi.Output.secret(key.private_key_openssh),
            public_key=key.public_key_openssh.apply(str.strip),
        )
