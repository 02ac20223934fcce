"""Issue 11 item 3 in the resource graph: the replica bucket in another region, the keys'
reach (the droplet's never includes the replica), what is exported plain and what secret."""

from __future__ import annotations

from bankflow_infra.contract.outputs import SECRET_OUTPUTS
from tests.program.stacks import inputs, named, production, rebuild, staging

KEY = "digitalocean:index/spacesKey:SpacesKey"


def grants(result, name):
    return sorted((g["bucket"], g["permission"]) for g in inputs(named(result, name))["grants"])


def test_the_replica_is_a_versioned_bucket_in_another_region():
    for result, stack in ((staging(), "staging"), (production(), "production")):
        bucket = inputs(named(result, "backup-replica-bucket"))
        primary = inputs(named(result, "backups-bucket"))
        assert bucket["name"] == f"bankflow-{stack}-backups-replica"
        assert bucket["region"] == "sfo3" != primary["region"] == "nyc3"
        assert bucket["versioning"] == {"enabled": True}
        assert bucket["forceDestroy"] is False
        rules = {r["id"]: r for r in bucket["lifecycleRules"]}
        assert rules["keep-old-versions"]["noncurrentVersionExpiration"]["days"] == 30
        assert rules["expire-dumps"]["prefix"] == "bankflow-"


def test_no_droplet_key_reaches_the_replica():
    result = production()
    assert grants(result, "backup-access-key") == [("bankflow-production-backups", "readwrite")]
    assert grants(result, "backup-replica-replication-key") == [
        ("bankflow-production-backups", "read"),
        ("bankflow-production-backups-replica", "readwrite"),
    ]
    assert grants(result, "backup-replica-drill-key") == [
        ("bankflow-production-backups", "read"),
        ("bankflow-production-backups-replica", "read"),
    ]
    every_key = [r for r in result.recorder.of_type(KEY)]
    assert len(every_key) == 3
    assert all(g["permission"] != "fullaccess" for k in every_key for g in inputs(k)["grants"])


def test_the_workflow_keys_wait_for_both_buckets_and_stay_secret():
    result = staging()
    buckets = {named(result, "backups-bucket").urn, named(result, "backup-replica-bucket").urn}
    for name in ("backup-replica-replication-key", "backup-replica-drill-key"):
        key = named(result, name)
        assert buckets <= set(key.dependencies)
        assert "secretKey" in key.additional_secret_outputs
    assert {"backup_replica_key", "backup_drill_key"} <= SECRET_OUTPUTS
    assert "backup_replica" not in SECRET_OUTPUTS
    assert staging().outputs["backup_replica"] == {
        "name": "bankflow-staging-backups-replica",
        "region": "sfo3",
        "endpoint": "https://sfo3.digitaloceanspaces.com",
    }


def test_a_rebuild_stack_without_an_edge_has_no_replica_of_its_own():
    result = rebuild()
    assert [r for r in result.recorder.resources if r.name.startswith("backup-replica")] == []
    assert result.outputs["backup_replica"] is None
    assert result.outputs["backup_replica_key"] is None
