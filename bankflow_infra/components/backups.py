"""The environment's database-dump storage: the Spaces bucket (edge layer) and the
least-privilege key the droplet uploads with (server layer)."""

from __future__ import annotations

import pulumi
import pulumi_digitalocean as do

from bankflow_infra.settings import Settings

DATA_VOLUME_LABEL = "bankflow-data"


class BackupBucket(pulumi.ComponentResource):
    """The environment's Spaces bucket for database dumps, expiring them after retentionDays."""

    bucket: do.SpacesBucket
    name: str
    endpoint: str

    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("bankflow:index:BackupBucket", name, None, opts)
        self.name = settings.backup_bucket_name
        self.endpoint = f"https://{settings.backups.region}.digitaloceanspaces.com"
        self.bucket = do.SpacesBucket(
            f"{name}-bucket",
            name=self.name,
            region=settings.backups.region,
            acl="private",
            force_destroy=False,
            versioning=do.SpacesBucketVersioningArgs(enabled=True),
            lifecycle_rules=[
                do.SpacesBucketLifecycleRuleArgs(
                    enabled=True,
                    id="expire-dumps",
                    expiration=do.SpacesBucketLifecycleRuleExpirationArgs(
                        days=settings.backups.retention_days
                    ),
                    noncurrent_version_expiration=do.SpacesBucketLifecycleRuleNoncurrentVersionExpirationArgs(
                        days=settings.backups.retention_days
                    ),
                    abort_incomplete_multipart_upload_days=1,
                )
            ],
            # Production's dumps are the last line of defence: never deleted by an `up` or `destroy`.
            opts=pulumi.ResourceOptions(parent=self, protect=settings.is_production),
        )
        self.register_outputs({"name": self.name})


class BackupAccess(pulumi.ComponentResource):
    """A Spaces key that can read and write the one bucket this server's dumps go to, nothing else."""

    access_key: pulumi.Output[str]
    secret_key: pulumi.Output[str]

    def __init__(self, name: str, settings: Settings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("bankflow:index:BackupAccess", name, None, opts)
        key = do.SpacesKey(
            f"{name}-key",
            name=settings.resource_name("backup-key"),
            grants=[do.SpacesKeyGrantArgs(bucket=settings.backup_bucket_name, permission="readwrite")],
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["secretKey"]),
        )
        self.access_key = key.access_key
        self.secret_key = pulumi.Output.secret(key.secret_key)
        self.register_outputs({})
