"""Generated credentials: nobody types a database password or an SSH key into config.

Only the cloud tokens are provided by people; everything the droplet needs to authenticate is
generated here, kept as Pulumi secrets, and changes only when its resource is replaced.
"""

from __future__ import annotations

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


class Credentials(pulumi.ComponentResource):
    postgres_password: pulumi.Output[str]
    redis_password: pulumi.Output[str]
    jwt_secret: pulumi.Output[str]
    database_app_password: pulumi.Output[str]
    deploy_private_key: pulumi.Output[str]
    deploy_public_key: pulumi.Output[str]
    host_private_key: pulumi.Output[str]
    host_public_key: pulumi.Output[str]

    def __init__(self, name: str, opts: pulumi.ResourceOptions | None = None) -> None:
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
        host_key = tls.PrivateKey(f"{name}-host-key", algorithm="ED25519", opts=child)
        self.deploy_private_key = pulumi.Output.secret(deploy_key.private_key_openssh)
        self.deploy_public_key = deploy_key.public_key_openssh.apply(str.strip)
        self.host_private_key = pulumi.Output.secret(host_key.private_key_openssh)
        self.host_public_key = host_key.public_key_openssh.apply(str.strip)
        self.register_outputs({"host_public_key": self.host_public_key})
