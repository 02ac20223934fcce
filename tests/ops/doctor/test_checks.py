"""doctor's rules on plain data: DNS collisions and the import command, VPC ranges and names,
the region's default VPC, alert e-mails, the import file."""

from __future__ import annotations

import shlex

import pytest
import yaml

from bankflow_infra.ops.doctor import (
    EDGE_TYPE,
    RECORD_TYPE,
    RECORD_TYPES,
    alert_email_checks,
    dns_record_checks,
    edge_urn,
    import_command,
    import_file,
    record_comment,
    record_resource_name,
    vpc_checks,
)
from bankflow_infra.stackfile import settings_from_stack_file
from tests.support.fake_apis import ZONE_ID, dns_record
from tests.support.tools import REPO

HOSTS = ("qa.conciliaextrato.com", "app.qa.conciliaextrato.com", "api.qa.conciliaextrato.com")


def _settings(stack: str):  # type: ignore[no-untyped-def]
    name = f"Pulumi.{stack}.yaml"
    return settings_from_stack_file("bankflow", stack, yaml.safe_load((REPO / name).read_text()), name)


@pytest.mark.parametrize("stack", ["staging", "production"])
def test_record_identity_matches_the_committed_urns(stack: str) -> None:
    # The import command is only right if it names the URN the program creates.
    urns = set((REPO / "tests" / "program" / "urns" / f"{stack}.txt").read_text().split())
    assert edge_urn("bankflow", stack) in urns
    for hostname in _settings(stack).all_hostnames:
        for record_type in RECORD_TYPES:
            name = record_resource_name(hostname, record_type)
            assert f"urn:pulumi:{stack}::bankflow::{EDGE_TYPE}${RECORD_TYPE}::{name}" in urns


def test_record_comment_is_the_programs() -> None:
    from bankflow_infra.components.edge import record_comment as programs

    assert record_comment("bankflow", "staging") == programs("bankflow", "staging")


def test_import_command_is_exact() -> None:
    command = import_command("bankflow", "staging", "app.qa.conciliaextrato.com", "A", ZONE_ID, "rec1")
    assert command == (
        "pulumi import --stack staging cloudflare:index/dnsRecord:DnsRecord "
        f"edge-app.qa.conciliaextrato.com-a {ZONE_ID}/rec1 --parent "
        "'edge=urn:pulumi:staging::bankflow::pulumi:pulumi:Stack$bankflow:index:Edge::edge' "
        "--protect=false --generate-code=false"
    )


def test_a_foreign_a_record_fails_with_its_import_command() -> None:
    records = [dns_record("app.qa.conciliaextrato.com", "A", "198.51.100.7", "rec1")]
    [check] = dns_record_checks("bankflow", "staging", HOSTS, ZONE_ID, records)
    assert check.status == "fail"
    assert check.commands == (
        import_command("bankflow", "staging", "app.qa.conciliaextrato.com", "A", ZONE_ID, "rec1"),
    )


def test_records_of_this_stack_and_other_names_pass() -> None:
    records = [
        dns_record(
            "app.qa.conciliaextrato.com", "A", "203.0.113.10", "r1", record_comment("bankflow", "staging")
        ),
        dns_record("mail.conciliaextrato.com", "A", "198.51.100.7", "r2"),
        dns_record("api.qa.conciliaextrato.com", "TXT", "v=spf1 -all", "r3"),
    ]
    [check] = dns_record_checks("bankflow", "staging", HOSTS, ZONE_ID, records)
    assert check.status == "ok"
    assert "1 managed by this stack" in check.detail


def test_cname_other_stack_and_second_a_record_are_deleted_not_imported() -> None:
    records = [
        dns_record("api.qa.conciliaextrato.com", "CNAME", "elsewhere.example", "c1"),
        dns_record(
            "qa.conciliaextrato.com", "A", "203.0.113.99", "p1", record_comment("bankflow", "production")
        ),
        dns_record("app.qa.conciliaextrato.com", "A", "198.51.100.7", "a1"),
        dns_record("app.qa.conciliaextrato.com", "A", "198.51.100.8", "a2"),
    ]
    failing = dns_record_checks("bankflow", "staging", HOSTS, ZONE_ID, records)
    assert [c.status for c in failing] == ["fail"] * 4
    with_commands = [c for c in failing if c.commands]
    assert len(with_commands) == 1
    assert "a1" in with_commands[0].commands[0]
    cname = next(c for c in failing if "CNAME" in c.name)
    assert cname.fix is not None
    assert "delete this CNAME" in cname.fix
    other = next(c for c in failing if c.name.startswith("cloudflare.dns-record qa."))
    assert other.fix is not None
    assert "another stack" in other.fix


def test_import_file_creates_the_edge_parent_only_on_a_first_up() -> None:
    records = [dns_record("app.qa.conciliaextrato.com", "A", "198.51.100.7", "rec1")]
    checks = dns_record_checks("bankflow", "staging", HOSTS, ZONE_ID, records)
    first = import_file("bankflow", "staging", ZONE_ID, checks, edge_exists=False)
    assert first == {
        "resources": [
            {"type": EDGE_TYPE, "name": "edge", "component": True},
            {
                "type": RECORD_TYPE,
                "name": "edge-app.qa.conciliaextrato.com-a",
                "id": f"{ZONE_ID}/rec1",
                "parent": "edge",
            },
        ]
    }
    later = import_file("bankflow", "staging", ZONE_ID, checks, edge_exists=True)
    assert later["nameTable"] == {"edge": edge_urn("bankflow", "staging")}
    assert [r["type"] for r in later["resources"]] == [RECORD_TYPE]
    # The command and the file name the same resource.
    assert shlex.split(checks[0].commands[0])[5] == later["resources"][0]["name"]


def _vpc(name: str, ip_range: str, region: str = "nyc3", default: bool = False) -> dict[str, object]:
    return {"id": name, "name": name, "region": region, "ip_range": ip_range, "default": default}


def test_overlapping_vpc_range_fails_naming_it() -> None:
    checks = vpc_checks(
        "bankflow-staging-vpc",
        "nyc3",
        "10.110.16.0/20",
        [_vpc("default-nyc3", "10.100.0.0/20", default=True), _vpc("legacy", "10.110.0.0/16", "sfo3")],
        deployed=False,
    )
    by_name = {c.name: c for c in checks}
    assert by_name["digitalocean.vpc-range"].status == "fail"
    assert "legacy (10.110.0.0/16, sfo3)" in by_name["digitalocean.vpc-range"].detail
    assert by_name["digitalocean.region-default-vpc"].status == "ok"


def test_own_vpc_is_no_overlap_but_its_name_is_taken_on_a_first_up() -> None:
    vpcs = [_vpc("bankflow-staging-vpc", "10.110.16.0/20", default=True)]
    deployed = {
        c.name: c for c in vpc_checks("bankflow-staging-vpc", "nyc3", "10.110.16.0/20", vpcs, deployed=True)
    }
    assert deployed["digitalocean.vpc-range"].status == "ok"
    assert deployed["digitalocean.vpc-name"].status == "ok"
    assert deployed["digitalocean.region-default-vpc"].status == "warn"  # ours: never deletable
    first = {
        c.name: c for c in vpc_checks("bankflow-staging-vpc", "nyc3", "10.110.16.0/20", vpcs, deployed=False)
    }
    assert first["digitalocean.vpc-name"].status == "fail"


def test_a_region_without_vpcs_warns_that_ours_becomes_the_default() -> None:
    checks = vpc_checks(
        "bankflow-staging-vpc", "nyc3", "10.110.16.0/20", [_vpc("x", "10.1.0.0/20", "ams3")], False
    )
    default = next(c for c in checks if c.name == "digitalocean.region-default-vpc")
    assert default.status == "warn"
    assert "never be deleted" in default.detail


def test_alert_emails() -> None:
    account = {"email": "OPS@conciliaextrato.com", "email_verified": False}
    own, other = alert_email_checks(["ops@conciliaextrato.com", "oncall@conciliaextrato.com"], account)
    assert own.status == "fail"
    assert other.status == "warn"
    [verified] = alert_email_checks(["ops@conciliaextrato.com"], {**account, "email_verified": True})
    assert verified.status == "ok"
    [unread] = alert_email_checks(["ops@conciliaextrato.com"], None)
    assert unread.status == "warn"
