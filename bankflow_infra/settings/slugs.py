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
