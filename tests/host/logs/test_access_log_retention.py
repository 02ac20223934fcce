"""Issue 12, item 4: access logs are kept at least the 6 months Marco Civil art. 15 asks for, and
deleted after a stated maximum (LGPD minimisation) by both backup buckets' lifecycle rules --
the buckets the shipper's prefix is in."""

from __future__ import annotations

from bankflow_infra.render.host_files import ACCESS_LOG_RETENTION_DAYS, access_log_prefix
from tests.program.stacks import inputs, named, production, staging
from tests.render.helpers import load_settings

SIX_MONTHS_DAYS = 184  # the longest six consecutive months


def test_both_buckets_expire_the_shipped_access_logs_after_the_stated_retention() -> None:
    assert SIX_MONTHS_DAYS <= ACCESS_LOG_RETENTION_DAYS <= 400  # 13 months: README "Security"
    for result, stack in ((staging(), "staging"), (production(), "production")):
        prefix = access_log_prefix(load_settings(stack))
        for bucket in ("backups-bucket", "backup-replica-bucket"):
            rules = inputs(named(result, bucket))["lifecycleRules"]
            expiring = [r for r in rules if "expiration" in r and prefix.startswith(r.get("prefix", ""))]
            # exactly one rule deletes them, and not before the legal minimum
            assert [(r["id"], r["expiration"]["days"]) for r in expiring] == [
                ("expire-access-logs", ACCESS_LOG_RETENTION_DAYS)
            ], (stack, bucket)
            assert expiring[0]["enabled"] is True
            assert expiring[0]["prefix"] == "access-logs/"


def test_each_droplet_ships_into_its_own_folder() -> None:
    assert access_log_prefix(load_settings("production")) == "access-logs/bankflow-production-server"
    assert access_log_prefix(load_settings("staging")) != access_log_prefix(load_settings("production"))
