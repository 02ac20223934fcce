"""Issue 10: what the providers would really do on the first `pulumi up` (items 1-11), checked on
the offline plan. Each test names the item; the provider source behind each is in
docs/PROVIDERS.md."""

from __future__ import annotations

import functools
import random

import pytest

from bankflow_infra.ops.mocks import CLOUDFLARE_IPV4_SNAPSHOT, PlanMocks, unwrap
from bankflow_infra.ops.plan import PlanResult
from tests.program.options import Options, recorded_options
from tests.program.stacks import DNS, DROPLET, VOLUME, inputs, named, only, production, run_stack, staging

PACK = "cloudflare:index/certificatePack:CertificatePack"
ORIGIN_CERT = "cloudflare:index/originCaCertificate:OriginCaCertificate"
SPACES_KEY = "digitalocean:index/spacesKey:SpacesKey"
BUCKET = "digitalocean:index/spacesBucket:SpacesBucket"
ATTACHMENT = "digitalocean:index/volumeAttachment:VolumeAttachment"
COMMAND = "command:remote:Command"


@functools.cache
def production_with_options() -> tuple[PlanResult, dict[str, Options]]:
    with recorded_options() as options:
        result = run_stack("production")
    return result, dict(options)


def command(result: PlanResult, name: str):
    return next(r for r in result.recorder.of_type(COMMAND) if r.name == f"host-{name}")


# --------------------------------------------------------------------------- 1 certificate pack


def test_1_staging_orders_a_certificate_pack_for_its_two_level_hostnames():
    pack = inputs(only(staging(), PACK))
    assert pack["hosts"] == ["conciliaextrato.com", "*.qa.conciliaextrato.com", "qa.conciliaextrato.com"]
    assert (pack["type"], pack["validationMethod"], pack["validityDays"]) == ("advanced", "txt", 90)
    assert pack["certificateAuthority"] == "lets_encrypt"


def test_1_every_hostname_in_the_pack_has_an_uptime_check_and_an_edge_certificate_alert():
    result = staging()
    checks = {
        inputs(c)["target"] for c in result.recorder.of_type("digitalocean:index/uptimeCheck:UptimeCheck")
    }
    for host in ("app.qa.conciliaextrato.com", "api.qa.conciliaextrato.com"):
        assert f"https://{host}/health" in checks
    alerts = [inputs(a) for a in result.recorder.of_type("digitalocean:index/uptimeAlert:UptimeAlert")]
    assert sum(a["type"] == "ssl_expiry" for a in alerts) == 3


def test_1_production_needs_no_pack():
    assert production().recorder.of_type(PACK) == []


# --------------------------------------------------------------------------- 2 no Origin CA key


def test_2_the_origin_ca_key_is_refused_naming_the_key_and_no_provider_uses_it():
    def with_key(config):
        config["bankflow:originCaKey"] = "v1.0-service-key"

    from bankflow_infra.settings import SettingsError

    with pytest.raises(SettingsError, match=r"bankflow:originCaKey: Cloudflare switched Service Key"):
        run_stack("staging", with_key)
    assert not [r for r in staging().recorder.resources if r.type == "pulumi:providers:cloudflare"]


# --------------------------------------------------------------------------- 3 droplet delete


def test_3_the_droplet_delete_has_a_budget_beyond_the_providers_60_seconds():
    _, options = production_with_options()
    assert options["server-droplet"].delete_timeout == "10m"


def test_3_the_volume_is_released_by_a_delete_step_deleted_before_its_attachment():
    result, _ = production_with_options()
    step = command(result, "release-data-volume")
    attachment = only(result, ATTACHMENT)
    assert attachment.urn in step.dependencies  # so Pulumi deletes the step first
    assert step.deleted_with == ""  # its delete must run when the droplet goes
    assert step.replace_with == (only(result, DROPLET).urn,)
    plain = unwrap(step.inputs)
    assert "create" not in plain
    assert "release-data-volume.sh" in plain["delete"]
    assert "umount" in plain["delete"]
    assert "bankflow-agent" not in plain["delete"]  # no host agent needed


# --------------------------------------------------------------------------- 6 origin certificate


def test_6_origin_certificate_ignores_the_hostname_order_and_lives_the_maximum():
    result, options = production_with_options()
    certificate = only(result, ORIGIN_CERT)
    assert options[certificate.name].ignore_changes == ("hostnames",)
    assert inputs(certificate)["requestedValidity"] == 5475
    assert result.outputs["origin_cert_expires_on"].startswith("2040-")


# --------------------------------------------------------------------------- 7 records after deploy


@pytest.mark.parametrize("plan", [staging, production], ids=["staging", "production"])
def test_7_dns_records_wait_for_the_deploy_on_this_stacks_droplet(plan):
    result = plan()
    deploy = command(result, "deploy")
    # The proxied records (the zone's CAA records point at nothing and need not wait).
    records = [r for r in result.recorder.of_type(DNS) if inputs(r)["type"] in ("A", "AAAA")]
    assert records
    assert all(deploy.urn in r.dependencies for r in records)


# --------------------------------------------------------------------------- 8 production droplet


def test_8_production_droplet_is_protected_keeps_its_disk_size_and_ignores_replace_only_fields():
    result, options = production_with_options()
    droplet = only(result, DROPLET)
    assert droplet.protect is True
    assert inputs(droplet)["resizeDisk"] is False
    ignored = set(options["server-droplet"].ignore_changes)
    assert {"image", "region", "sshKeys", "userData", "vpcUuid"} <= ignored


def test_8_staging_droplet_stays_replaceable_and_resize_disk_is_an_opt_in():
    def opt_in(config):
        config["bankflow:server"]["resizeDisk"] = True

    with recorded_options() as options:
        result = run_stack("staging", opt_in)
    assert only(result, DROPLET).protect is False
    assert options["server-droplet"].ignore_changes == ()
    assert inputs(only(result, DROPLET))["resizeDisk"] is True


def test_8_volume_ignores_its_description_and_a_larger_size_grows_the_filesystem():
    result, options = production_with_options()
    assert options[only(result, VOLUME).name].ignore_changes == ("description",)
    grow = command(result, "grow-data-filesystem")
    assert unwrap(grow.inputs)["triggers"] == [50]
    assert "resize2fs" in unwrap(grow.inputs)["create"]
    assert only(result, VOLUME).urn in grow.dependencies

    def bigger(config):
        config["bankflow:server"]["volumeSizeGb"] = 80

    assert unwrap(command(run_stack("production", bigger), "grow-data-filesystem").inputs)["triggers"] == [80]


# --------------------------------------------------------------------------- 9 stable ranges, IPv6


def test_9_a_reordered_cloudflare_list_is_the_same_release(monkeypatch):
    before = staging().bundle
    shuffled = list(CLOUDFLARE_IPV4_SNAPSHOT)
    random.Random(7).shuffle(shuffled)  # noqa: S311 - an order, not a secret
    monkeypatch.setattr("bankflow_infra.ops.mocks.CLOUDFLARE_IPV4_SNAPSHOT", tuple(shuffled))
    after = run_stack("staging").bundle
    assert before is not None
    assert after is not None
    assert after.digest == before.digest


def test_9_the_droplets_own_ipv6_is_canonical_in_records_and_outputs(monkeypatch):
    original = PlanMocks.new_resource

    def loud_ipv6(self, args):
        resource_id, state = original(self, args)
        if args.typ == DROPLET:
            state = {**state, "ipv6Address": "2001:0DB8:0000:0000:0000:0000:0000:0010"}
        return resource_id, state

    monkeypatch.setattr(PlanMocks, "new_resource", loud_ipv6)
    result = run_stack("staging")
    assert result.outputs["origin_ipv6"] == "2001:db8::10"
    aaaa = [inputs(r)["content"] for r in result.recorder.of_type(DNS) if inputs(r)["type"] == "AAAA"]
    assert set(aaaa) == {"2001:db8::10"}


# --------------------------------------------------------------------------- 11 graph order


def test_11_the_spaces_key_waits_for_its_bucket():
    result = staging()
    assert named(result, "backups-bucket").urn in named(result, "backup-access-key").dependencies


def test_11_monitor_alerts_select_the_stacks_tag_not_a_droplet_id():
    alerts = [inputs(a) for a in staging().recorder.of_type("digitalocean:index/monitorAlert:MonitorAlert")]
    assert len(alerts) == 3
    for alert in alerts:
        assert alert["tags"] == ["stack-staging"]
        assert not alert.get("entities")


def test_11_config_is_read_through_the_public_api():
    import inspect

    from bankflow_infra import program

    source = inspect.getsource(program)
    assert "runtime.config" not in source
    assert "CONFIG.get" not in source
