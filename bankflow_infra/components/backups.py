"""The environment's backup storage: the Spaces bucket (edge layer), its replica in another
region with the keys of the replication workflow and of the restore drill (edge layer), and the
least-privilege key the droplet uploads with (server layer).

What Spaces offers against a key that must not destroy backups (sources in docs/PROVIDERS.md,
"Backups the droplet cannot destroy"):
- a key's grant per bucket is `read` or `readwrite` ("Read/Write/Delete" in the control panel):
  there is no write-without-delete grant, so the droplet's key can delete what it can write;
- bucket policies cannot be combined with limited-access (per-bucket) keys: "you can't apply a
  bucket policy to a bucket that already uses a limited-access key" (DigitalOcean, How to
  Configure Bucket Policies) -- so no `SpacesBucketPolicy` here: it would fail at deploy or
  force a full-access key (every bucket of the account) onto the droplet;
- no Object Lock (not among the S3 features Spaces supports, Spaces S3 Compatibility).
So the guarantee comes from a second bucket in another region that no droplet key can reach,
written by a scheduled workflow with its own key that copies and never deletes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import pulumi
import pulumi_digitalocean as do
import pulumi_random as random

from bankflow_infra.components.credentials import KEPT_PASSWORD_ARGUMENTS
from bankflow_infra.render.backup import spaces_endpoint
from bankflow_infra.render.host_files import ACCESS_LOG_RETENTION_DAYS, ACCESS_LOGS_PREFIX
from bankflow_infra.settings import Settings

DATA_VOLUME_LABEL = "bankflow-data"
# Every nightly dump's key starts with this (contract.backups.DUMP_KEY: bankflow-<stack>-<time>.dump,
# at the bucket's root). Only dumps expire by age: pgBackRest (pgbackrest/) and restic (uploads/)
# repositories reference old files from new backups and expire their own files.
DUMP_PREFIX: Final = "bankflow-"
READ: Final = "read"
READ_WRITE: Final = "readwrite"  # Spaces: read, write AND delete (no narrower grant that writes)


@dataclass(frozen=True)
class Grant:
    bucket: str
    permission: str  # READ or READ_WRITE (never fullaccess: that is every bucket of the account)


def droplet_grants(bucket: str) -> tuple[Grant, ...]:
    """The droplet's key: its own environment's bucket only. Never the replica."""
    return (Grant(bucket, READ_WRITE),)


def replication_grants(primary: str, replica: str) -> tuple[Grant, ...]:
    """The replication workflow's key: reads the primary, writes the replica."""
    return (Grant(primary, READ), Grant(replica, READ_WRITE))


def drill_grants(primary: str, replica: str) -> tuple[Grant, ...]:
    """The restore drill's key: reads both, changes nothing."""
    return (Grant(primary, READ), Grant(replica, READ))


def _key_grants(grants: tuple[Grant, ...]) -> list[do.SpacesKeyGrantArgs]:
    return [do.SpacesKeyGrantArgs(bucket=g.bucket, permission=g.permission) for g in grants]


def lifecycle_rules(retention_days: int) -> list[do.SpacesBucketLifecycleRuleArgs]:
    """Dumps expire after the retention; every overwritten or deleted version of anything is kept
    that long as a noncurrent version (versioning), then removed. Spaces lifecycle: time-based
    expiration and incomplete multipart uploads only (Spaces S3 Compatibility).

    nginx's access logs (``access-logs/<droplet>/``, issue 12) expire after
    ACCESS_LOG_RETENTION_DAYS (render/host_files.py says why 13 months); on this versioned bucket
    the expired object stays a noncurrent version ``retention_days`` more, so a log is gone at
    the latest ACCESS_LOG_RETENTION_DAYS + retention_days after its upload, in both buckets (the
    replica has the same rules)."""
    return [
        do.SpacesBucketLifecycleRuleArgs(
            enabled=True,
            id="expire-access-logs",
            prefix=f"{ACCESS_LOGS_PREFIX}/",
            expiration=do.SpacesBucketLifecycleRuleExpirationArgs(days=ACCESS_LOG_RETENTION_DAYS),
            abort_incomplete_multipart_upload_days=1,
        ),
        do.SpacesBucketLifecycleRuleArgs(
            enabled=True,
            id="expire-dumps",
            prefix=DUMP_PREFIX,
            expiration=do.SpacesBucketLifecycleRuleExpirationArgs(days=retention_days),
            abort_incomplete_multipart_upload_days=1,
        ),
        do.SpacesBucketLifecycleRuleArgs(
            enabled=True,
            id="keep-old-versions",
            noncurrent_version_expiration=do.SpacesBucketLifecycleRuleNoncurrentVersionExpirationArgs(
                days=retention_days
            ),
            abort_incomplete_multipart_upload_days=1,
        ),
    ]


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


def versioned_bucket(
    parent: pulumi.Resource, resource_name: str, bucket: str, region: str, retention_days: int, protect: bool
) -> do.SpacesBucket:
    """A private, versioned Spaces bucket with the backups' lifecycle (the primary and its replica)."""
    return do.SpacesBucket(
        resource_name,
        name=bucket,
        region=region,
        acl="private",
        force_destroy=False,
        versioning=do.SpacesBucketVersioningArgs(enabled=True),
        lifecycle_rules=lifecycle_rules(retention_days),
        opts=pulumi.ResourceOptions(parent=parent, protect=protect),
    )


class BackupBucket(pulumi.ComponentResource):
    """The environment's Spaces bucket for backups (dumps expire after retentionDays), and the
    keys of the repositories inside it: pgBackRest's cipher pass and restic's password.

    The keys live with the bucket, not with a server: a rebuild stack (its own server, this
    bucket) reads them through a StackReference (output `backup_repository`), and retiring a
    server leaves them where the backups are. Never replaced: pgBackRest cannot re-encrypt a
    repository, and restic's key changes only with `restic key` on a host -- so both are
    `protect`ed and ignore every argument (each one forces a new value, see credentials.py).
    """

    bucket: do.SpacesBucket
    name: str
    endpoint: str
    cipher_pass: pulumi.Output[str]
    uploads_password: pulumi.Output[str]

    def __init__(self, name: str, args: BackupBucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("bankflow:index:BackupBucket", name, None, opts)
        self.name = args.name
        self.endpoint = spaces_endpoint(args.region)
        # Production's dumps are the last line of defence: never deleted by an `up` or `destroy`.
        self.bucket = versioned_bucket(
            self, f"{name}-bucket", args.name, args.region, args.retention_days, args.protect
        )
        kept = pulumi.ResourceOptions(parent=self, protect=True, ignore_changes=KEPT_PASSWORD_ARGUMENTS)

        def repository_key(kind: str) -> pulumi.Output[str]:
            # special=False: BundleSecrets accepts RFC 3986 unreserved characters only.
            generated = random.RandomPassword(f"{name}-{kind}", length=64, special=False, opts=kept)
            return pulumi.Output.secret(generated.result)

        self.cipher_pass = repository_key("cipher-pass")
        self.uploads_password = repository_key("uploads-password")
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
            grants=_key_grants(droplet_grants(args.bucket)),
            opts=pulumi.ResourceOptions(
                parent=self, additional_secret_outputs=["secretKey"], depends_on=[bucket] if bucket else None
            ),
        )
        self.access_key = key.access_key
        self.secret_key = pulumi.Output.secret(key.secret_key)
        self.register_outputs({})


@dataclass(frozen=True)
class BackupReplicaArgs:
    name: str  # bankflow-<stack>-backups-replica
    region: str  # never the primary's (settings: backups.replicaRegion)
    primary_bucket: str
    retention_days: int  # how long an overwritten or deleted version stays readable
    protect: bool
    replication_key_name: str
    drill_key_name: str


def backup_replica_args(settings: Settings) -> BackupReplicaArgs:
    return BackupReplicaArgs(
        name=settings.backup_replica_bucket_name,
        region=settings.backups.replica_region,
        primary_bucket=settings.backup_bucket_name,
        retention_days=settings.backups.retention_days,
        protect=settings.is_production,
        replication_key_name=settings.resource_name("backup-replication-key"),
        drill_key_name=settings.resource_name("backup-drill-key"),
    )


class BackupReplica(pulumi.ComponentResource):
    """The second copy: a versioned bucket in another region, filled by the `backup-replica`
    workflow (rclone copy: adds, never deletes) with a key that lives in the protected GitHub
    environment, never on the droplet; plus the restore drill's read-only key."""

    bucket: do.SpacesBucket
    name: str
    region: str
    endpoint: str
    replication_key: pulumi.Output[dict[str, str]]
    drill_key: pulumi.Output[dict[str, str]]

    def __init__(
        self,
        name: str,
        args: BackupReplicaArgs,
        primary: do.SpacesBucket,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("bankflow:index:BackupReplica", name, None, opts)
        self.name = args.name
        self.region = args.region
        self.endpoint = spaces_endpoint(args.region)
        self.bucket = versioned_bucket(
            self, f"{name}-bucket", args.name, args.region, args.retention_days, args.protect
        )
        # A grant names its buckets by name only: both must exist before the key.
        after = [primary, self.bucket]
        self.replication_key = self._key(
            f"{name}-replication-key",
            args.replication_key_name,
            replication_grants(args.primary_bucket, args.name),
            after,
        )
        self.drill_key = self._key(
            f"{name}-drill-key", args.drill_key_name, drill_grants(args.primary_bucket, args.name), after
        )
        self.register_outputs({"name": self.name})

    def _key(
        self, resource: str, key_name: str, grants: tuple[Grant, ...], after: list[do.SpacesBucket]
    ) -> pulumi.Output[dict[str, str]]:
        key = do.SpacesKey(
            resource,
            name=key_name,
            grants=_key_grants(grants),
            opts=pulumi.ResourceOptions(
                parent=self, additional_secret_outputs=["secretKey"], depends_on=after
            ),
        )
        pair = pulumi.Output.all(key.access_key, key.secret_key).apply(
            lambda v: {"access_key": v[0], "secret_key": v[1]}
        )
        return pulumi.Output.secret(pair)
