"""The environment's database-dump storage: the Spaces bucket (edge layer) and the
least-privilege key the droplet uploads with (server layer)."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as do

from bankflow_infra.render.backup import spaces_endpoint

DATA_VOLUME_LABEL = "bankflow-data"


@dataclass(frozen=True)
class BackupBucketArgs:
    name: str  # bankflow-<stack>-backups
    region: str
    retention_days: int
    protect: bool  # production's dumps: never deleted by an `up` or `destroy`


@dataclass(frozen=True)
class BackupAccessArgs:
    key_name: str  # the Spaces key's cloud-side name
    bucket: str  # the one bucket the key may read and write


class BackupBucket(pulumi.ComponentResource):
    """The environment's Spaces bucket for database dumps, expiring them after retentionDays."""

    bucket: do.SpacesBucket
    name: str
    endpoint: str

    def __init__(self, name: str, args: BackupBucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("bankflow:index:BackupBucket", name, None, opts)
        self.name = args.name
        self.endpoint = spaces_endpoint(args.region)
        self.bucket = do.SpacesBucket(
            f"{name}-bucket",
            name=self.name,
            region=args.region,
            acl="private",
            force_destroy=False,
            versioning=do.SpacesBucketVersioningArgs(enabled=True),
            lifecycle_rules=[
                do.SpacesBucketLifecycleRuleArgs(
                    enabled=True,
                    id="expire-dumps",
                    expiration=do.SpacesBucketLifecycleRuleExpirationArgs(days=args.retention_days),
                    noncurrent_version_expiration=do.SpacesBucketLifecycleRuleNoncurrentVersionExpirationArgs(
                        days=args.retention_days
                    ),
                    abort_incomplete_multipart_upload_days=1,
                )
            ],
            # Production's dumps are the last line of defence: never deleted by an `up` or `destroy`.
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.register_outputs({"name": self.name})


class BackupAccess(pulumi.ComponentResource):
    """A Spaces key that can read and write the one bucket this server's dumps go to, nothing else."""

    access_key: pulumi.Output[str]
    secret_key: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        args: BackupAccessArgs,
        bucket: do.SpacesBucket | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        """``bucket``: the bucket resource when this stack owns it. The grant names the bucket
        only by its name, so without this dependency Pulumi could create the key first and
        DigitalOcean refuses a grant on a bucket that does not exist yet."""
        super().__init__("bankflow:index:BackupAccess", name, None, opts)
        key = do.SpacesKey(
            f"{name}-key",
            name=args.key_name,
            grants=[do.SpacesKeyGrantArgs(bucket=args.bucket, permission="readwrite")],
            opts=pulumi.ResourceOptions(
                parent=self, additional_secret_outputs=["secretKey"], depends_on=[bucket] if bucket else None
            ),
        )
        self.access_key = key.access_key
        self.secret_key = pulumi.Output.secret(key.secret_key)
        self.register_outputs({})
