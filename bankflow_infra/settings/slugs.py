"""The DigitalOcean region and droplet size slugs this project accepts, stated once.

A slug DigitalOcean does not know fails only at `pulumi up`, after other resources changed; a
slug we never tried may not fit the host setup. So both lists are closed. The source is
DigitalOcean's own list: `doctl compute region list` / `doctl compute size list`
(GET https://api.digitalocean.com/v2/regions and /v2/sizes,
https://docs.digitalocean.com/reference/api/digitalocean/#tag/Sizes).
"""

from __future__ import annotations

from typing import Final

HOW_TO_ADD_A_SLUG: Final = (
    "To use a new one, check it with `doctl compute region list` / `doctl compute size list` and add "
    "it to DROPLET_REGIONS / DROPLET_SIZES in bankflow_infra/settings/slugs.py in a reviewed commit"
)

# Regions that take new droplets (sfo1 and nyc2/ams2 are closed to new ones).
DROPLET_REGIONS: Final = (
    "nyc1",
    "nyc3",
    "sfo2",
    "sfo3",
    "ams3",
    "sgp1",
    "lon1",
    "fra1",
    "tor1",
    "blr1",
    "syd1",
    "atl1",
)

_BASIC: Final = (
    "s-1vcpu-1gb",
    "s-1vcpu-2gb",
    "s-2vcpu-2gb",
    "s-2vcpu-4gb",
    "s-4vcpu-8gb",
    "s-8vcpu-16gb",
)
_PREMIUM: Final = tuple(
    f"{size}-{cpu}"
    for size in ("s-1vcpu-1gb", "s-1vcpu-2gb", "s-2vcpu-2gb", "s-2vcpu-4gb", "s-4vcpu-8gb", "s-8vcpu-16gb")
    for cpu in ("amd", "intel")
)
_GENERAL: Final = tuple(
    f"{family}-{vcpus}vcpu-{vcpus * 4}gb" for family in ("g", "gd") for vcpus in (2, 4, 8, 16, 32)
)
_CPU: Final = ("c-2", "c-4", "c-8", "c-16", "c-32", "c2-2vcpu-4gb", "c2-4vcpu-8gb", "c2-8vcpu-16gb")
_MEMORY: Final = tuple(f"m-{vcpus}vcpu-{vcpus * 8}gb" for vcpus in (2, 4, 8, 16, 24, 32))

DROPLET_SIZES: Final = (*_BASIC, *_PREMIUM, *_GENERAL, *_CPU, *_MEMORY)

# Regions with Spaces object storage (a bucket's region, its S3 endpoint
# https://<region>.digitaloceanspaces.com): https://docs.digitalocean.com/products/spaces/details/availability/
SPACES_REGIONS: Final = (
    "nyc3",
    "sfo2",
    "sfo3",
    "ams3",
    "sgp1",
    "fra1",
    "syd1",
    "blr1",
    "lon1",
    "tor1",
    "atl1",
)

# --------------------------------------------------------------------------- managed services (issue 13)

HOW_TO_ADD_A_DATABASE_SLUG: Final = (
    "To use a new one, check it with `doctl databases options slugs --engine pg` (or `valkey`) / "
    "`doctl databases options regions` and add it to DATABASE_SIZES / MANAGED_DATABASE_REGIONS in "
    "bankflow_infra/settings/slugs.py in a reviewed commit"
)

# DigitalOcean managed database node sizes, as GET /v2/databases/options lists them per engine
# (`layouts[].sizes`; https://docs.digitalocean.com/reference/api/digitalocean/#tag/Databases/operation/databases_list_options,
# which terraform-provider-digitalocean's `digitalocean_database_cluster.size` points to). The same
# slugs serve PostgreSQL and Valkey. Basic (shared CPU) and General Purpose (dedicated CPU) plans.
DATABASE_SIZES: Final = (
    "db-s-1vcpu-1gb",
    "db-s-1vcpu-2gb",
    "db-s-2vcpu-4gb",
    "db-s-4vcpu-8gb",
    "db-s-6vcpu-16gb",
    "db-s-8vcpu-32gb",
    "db-s-16vcpu-64gb",
    "gd-2vcpu-8gb",
    "gd-4vcpu-16gb",
    "gd-8vcpu-32gb",
    "gd-16vcpu-64gb",
)
# "Standby nodes can be added to an existing cluster at any time, with the exception of the
# smallest plan of single node clusters" (https://docs.digitalocean.com/products/databases/).
SINGLE_NODE_ONLY_SIZES: Final = ("db-s-1vcpu-1gb",)

# Regions with managed PostgreSQL and Valkey (GET /v2/databases/options, `regions` per engine).
# The cluster joins the stack's VPC, so it must be in the droplets' region (server.region).
MANAGED_DATABASE_REGIONS: Final = (
    "nyc1",
    "nyc3",
    "sfo2",
    "sfo3",
    "ams3",
    "sgp1",
    "lon1",
    "fra1",
    "tor1",
    "blr1",
    "syd1",
)

# Regions with Network File Storage (digitalocean_nfs). Neither the provider nor the API validates
# the region before the create call, so a wrong one fails only at `pulumi up`. Listed only where a
# source shows a share: atl1 (every acceptance test of terraform-provider-digitalocean
# digitalocean/nfs/*_test.go creates its share there) and nyc1 (the provider's documented example,
# docs/resources/nfs.md). Add a region after creating a share there in the control panel.
NFS_REGIONS: Final = ("atl1", "nyc1")
# digitalocean_nfs `size`: validation.IntAtLeast(50) (resource_nfs.go), no step; the API ("size_gib
# ... Must be >= 50", pydo nfs.create). A share only grows: CustomizeDiff refuses a smaller size.
NFS_MIN_SIZE_GB: Final = 50
# The provider sets no maximum; ours refuses a typo (a 0 too many) at block volumes' 16 TiB.
NFS_MAX_SIZE_GB: Final = 16384
