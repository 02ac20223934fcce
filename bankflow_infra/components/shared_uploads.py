"""The uploads on a DigitalOcean Network File Storage share (``uploads.shared``; issue 13),
mounted by the bootstrap on every app droplet at the uploads path.

Why NFS and not Spaces: the apps write and read uploads as files under one path today; a shared
POSIX file system keeps them (and the restic backup of that path) unchanged on N droplets.

Provider facts relied on (terraform-provider-digitalocean digitalocean/nfs/, read at 401992a):
- ``resource_nfs.go``: ``size`` (GiB) at least 50 and can only grow (CustomizeDiff refuses a
  smaller one); ``region``, ``name`` and ``vpc_id`` are ForceNew; ``performance_tier`` defaults
  to ``high``; the computed ``host`` (an address in the VPC) and ``mount_path`` are set once the
  share is ACTIVE: the droplet mounts ``<host>:<mount_path>``.
- ``resource_nfs_attachment.go``: create is a no-op when the share already lists the VPC, and
  otherwise attaches it and waits (up to 5 minutes) until the share is ACTIVE with the VPC. Kept
  for that wait: the bootstrap that mounts the share depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_digitalocean as do

from bankflow_infra.render.managed import SharedUploads


@dataclass(frozen=True)
class SharedUploadsArgs:
    name: str  # the cloud-side name, bankflow-<stack>-uploads
    region: str
    size_gb: int
    tags: tuple[str, ...]
    protect: bool  # production: customers' files


def nfs_source(host: str, mount_path: str) -> str:
    """What `mount -t nfs` takes: ``<host>:<path>``."""
    return f"{host}:{mount_path}"


class SharedUploadsShare(pulumi.ComponentResource):
    share: do.Nfs
    attachment: do.NfsAttachment
    uploads: pulumi.Output[SharedUploads]

    def __init__(
        self,
        name: str,
        args: SharedUploadsArgs,
        vpc_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("bankflow:index:SharedUploads", name, None, opts)
        self.share = do.Nfs(
            f"{name}-share",
            name=args.name,
            region=args.region,
            size=args.size_gb,
            vpc_id=vpc_id,
            tags=list(args.tags),
            opts=pulumi.ResourceOptions(parent=self, protect=args.protect),
        )
        self.attachment = do.NfsAttachment(
            f"{name}-attachment",
            share_id=self.share.id,
            vpc_id=vpc_id,
            region=args.region,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.uploads = pulumi.Output.all(self.share.host, self.share.mount_path).apply(
            lambda v: SharedUploads(nfs_source(v[0], v[1]))
        )
        self.register_outputs({})
