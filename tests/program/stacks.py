"""Run the real program under the mock engine with a stack file's config, optionally edited."""

from __future__ import annotations

import copy
import dataclasses
import functools
from collections.abc import Callable
from typing import Any

from bankflow_infra.ops.mocks import Registration, unwrap
from bankflow_infra.ops.plan import PlanResult, read_stack, run_program
from bankflow_infra.settings import Settings
from bankflow_infra.settings.model import (
    MaintenanceWindow,
    ManagedCacheSettings,
    ManagedDatabaseSettings,
    ScaleSettings,
    SharedUploadsSettings,
)
from tests.support.tools import REPO

Config = dict[str, Any]


def stack_config(stack: str) -> Config:
    _, config, _ = read_stack(REPO, stack)
    return copy.deepcopy(config)


def run_stack(
    stack: str,
    edit: Callable[[Config], None] | None = None,
    *,
    base: str | None = None,
    referenced_outputs: dict[str, Any] | None = None,
    adjust: Callable[[Settings], Settings] | None = None,
) -> PlanResult:
    """Plan ``stack`` using ``Pulumi.<base or stack>.yaml``'s config after ``edit``."""
    config = stack_config(base or stack)
    if edit is not None:
        edit(config)
    return run_program("bankflow", stack, config, [], referenced_outputs, adjust=adjust)


SCALED_COUNT = 3


def scaled_out(settings: Settings) -> Settings:
    """Production's settings in the scaled shape of issue 13 (as tests/fixtures/scaled-stack.yaml
    states it in config): 3 droplets, no data volume, managed PostgreSQL (primary + standby) and
    Valkey, uploads on an NFS share."""
    server = dataclasses.replace(settings.server, count=SCALED_COUNT, volume_size_gb=0)
    scale = ScaleSettings(
        database=ManagedDatabaseSettings("db-s-2vcpu-4gb", 2, MaintenanceWindow("sunday", "04:00:00")),
        cache=ManagedCacheSettings("db-s-1vcpu-2gb", 1, MaintenanceWindow("sunday", "04:30:00")),
        uploads=SharedUploadsSettings(size_gb=100),
    )
    return dataclasses.replace(settings, server=server, scale=scale)


def rebuild_shaped(config: Config) -> None:
    """What `rebuild` creates: the same config, server only, a fresh VPC range, edge off."""
    config["bankflow:server"]["vpcCidr"] = "10.130.16.0/20"
    config["bankflow:edge"] = {"enabled": False, "zoneSettings": False}


def edge_on_other_stack(config: Config) -> None:
    """What `cutover` makes of production: edge served by production-r1, own server retired."""
    config["bankflow:edge"]["originStack"] = "production-r1"
    config["bankflow:server"] = {"enabled": False}


# --------------------------------------------------------------------------- shared plans

DROPLET = "digitalocean:index/droplet:Droplet"
FIREWALL = "digitalocean:index/firewall:Firewall"
VOLUME = "digitalocean:index/volume:Volume"
BUCKET = "digitalocean:index/spacesBucket:SpacesBucket"
DNS = "cloudflare:index/dnsRecord:DnsRecord"
ZONE_SETTING = "cloudflare:index/zoneSetting:ZoneSetting"
COMMAND = "command:remote:Command"
LOCAL_COMMAND = "command:local:Command"
LOAD_BALANCER = "digitalocean:index/loadBalancer:LoadBalancer"
DATABASE_CLUSTER = "digitalocean:index/databaseCluster:DatabaseCluster"
DATABASE_FIREWALL = "digitalocean:index/databaseFirewall:DatabaseFirewall"
STACK_REFERENCE = "pulumi:pulumi:StackReference"

STAGING_HOSTS = {"qa.conciliaextrato.com", "app.qa.conciliaextrato.com", "api.qa.conciliaextrato.com"}
PRODUCTION_HOSTS = {
    "conciliaextrato.com",
    "www.conciliaextrato.com",
    "app.conciliaextrato.com",
    "api.conciliaextrato.com",
}



@functools.cache
def staging() -> PlanResult:
    return run_stack("staging")


@functools.cache
def production() -> PlanResult:
    return run_stack("production")


@functools.cache
def rebuild() -> PlanResult:
    return run_stack("production-r1", rebuild_shaped, base="production")


@functools.cache
def scaled() -> PlanResult:
    return run_stack("production", adjust=scaled_out)


@functools.cache
def cut_over() -> PlanResult:
    return run_stack("production", edge_on_other_stack)


def only(result: PlanResult, type_: str) -> Registration:
    found = result.recorder.of_type(type_)
    assert len(found) == 1, f"expected one {type_}, found {len(found)}"
    return found[0]


def named(result: PlanResult, name: str) -> Registration:
    """The one resource registered under ``name`` (several resources may share a type)."""
    found = [r for r in result.recorder.resources if r.name == name]
    assert len(found) == 1, f"expected one resource named {name}, found {len(found)}"
    return found[0]


def inputs(registration: Registration) -> dict[str, Any]:
    return unwrap(registration.inputs)  # type: ignore[no-any-return]

