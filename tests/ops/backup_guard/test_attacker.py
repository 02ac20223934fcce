"""Issue 11 item 3: an attacker with root on the droplet holds the droplet's Spaces key. What can
they destroy? Tested against a real S3 API on loopback (moto's server) and the real rclone.

What stands in for what (see ``spaces_model``): each Spaces key is an IAM user whose identity
policy is its grants, and moto enforces IAM identity policies on every S3 call (auth switched on
with ``/moto-api/reset-auth`` after the setup). Not a bucket policy: moto does not enforce bucket
policies on DeleteObject(Version), lifecycle, versioning or policy calls, and Spaces refuses a
bucket policy on a bucket with per-bucket keys anyway. ``readwrite`` is modelled at its worst
(every S3 action on that bucket), so where this test says the attacker CAN, Spaces may allow
less, never more. Both "regions" are one moto server: region separation is not modelled.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bankflow_infra.components.backups import drill_grants, droplet_grants, replication_grants
from bankflow_infra.contract.outputs import BackupBucket, SpacesKeyPair
from bankflow_infra.ops.workflow import replicate
from tests.ops.backup_guard.spaces_model import key_policy
from tests.support.ports import free_port
from tests.support.s3 import reset_moto
from tests.support.tools import require_tool

PRIMARY = "bankflow-production-backups"
REPLICA = "bankflow-production-backups-replica"
DUMP = "bankflow-production-20261129T031500Z.dump"
WAL = "pgbackrest/archive/bankflow/15-1/0000000100000000/000000010000000000000007-5f1c.gz"
PACK = "uploads/data/3a/3a9c0e"
INFO = "pgbackrest/backup/bankflow/backup.info"
ORIGINAL = {
    DUMP: b"PGDMP dump of the night",
    WAL: b"wal segment 7",
    PACK: b"restic pack",
    INFO: b"[backup]\n",
}


@dataclass
class Spaces:
    endpoint: str
    admin: Any
    droplet: Any
    replication: SpacesKeyPair
    drill: Any
    client: Callable[[SpacesKeyPair], Any]


def _client(boto3: Any, endpoint: str, key: SpacesKeyPair) -> Any:
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key.access_key,
        aws_secret_access_key=key.secret_key,
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def _user(iam: Any, name: str, policy: str) -> SpacesKeyPair:
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName=f"{name}-grants", PolicyDocument=policy)
    created = iam.create_access_key(UserName=name)["AccessKey"]
    return SpacesKeyPair(created["AccessKeyId"], created["SecretAccessKey"])


def _admin_policy() -> str:
    return (
        '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'
    )


@pytest.fixture(scope="module")
def spaces() -> Iterator[Spaces]:
    require_tool("rclone")
    try:
        import boto3
        import requests
        from moto import server as moto_server
    except ImportError:  # dev dependencies (pyproject): like a missing tool, fatal in CI
        message = "moto[server] is not installed: pip install -e '.[dev]'"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)

    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    reset_moto(endpoint)  # moto's state is the process's: start from no bucket at all
    try:
        setup = SpacesKeyPair("setup", "setup")  # moto accepts any key until auth is switched on
        root = _client(boto3, endpoint, setup)
        for bucket in (PRIMARY, REPLICA):
            root.create_bucket(Bucket=bucket)
            root.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",  # noqa: S106 - moto accepts any key before auth is on
        )
        keys = {
            "admin": _user(iam, "admin", _admin_policy()),
            "droplet": _user(iam, "droplet", key_policy(droplet_grants(PRIMARY))),
            "replication": _user(iam, "replication", key_policy(replication_grants(PRIMARY, REPLICA))),
            "drill": _user(iam, "drill", key_policy(drill_grants(PRIMARY, REPLICA))),
        }
        # From here on every request is checked against its key's identity policy.
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"0", timeout=10).raise_for_status()
        yield Spaces(
            endpoint,
            admin=_client(boto3, endpoint, keys["admin"]),
            droplet=_client(boto3, endpoint, keys["droplet"]),
            replication=keys["replication"],
            drill=_client(boto3, endpoint, keys["drill"]),
            client=lambda key: _client(boto3, endpoint, key),
        )
    finally:
        requests.post(f"{endpoint}/moto-api/reset-auth", data=b"inf", timeout=10)
        reset_moto(endpoint)
        server.stop()


def _replicate(spaces: Spaces, tmp_path: Path) -> replicate.ReplicationReport:
    plan = replicate.ReplicationPlan(
        BackupBucket(PRIMARY, "nyc3", spaces.endpoint),
        BackupBucket(REPLICA, "sfo3", spaces.endpoint),
        spaces.replication,
    )
    return replicate.replicate(plan, tmp_path, os.environ["PATH"])


def _denied(call: Callable[[], Any]) -> bool:
    """Refused: an AccessDenied error, or (DeleteObjects answers 200 per S3) every key refused."""
    from botocore.exceptions import ClientError

    try:
        answer = call()
    except ClientError as error:
        return error.response["Error"]["Code"] in ("AccessDenied", "403")
    errors = answer.get("Errors", []) if isinstance(answer, dict) else []
    return bool(errors) and not answer.get("Deleted") and all(e["Code"] == "AccessDenied" for e in errors)


def _versions(client: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    listed = client.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", [])
    return [v for v in listed if v["Key"] == key]


def _body(client: Any, bucket: str, key: str, version: str | None = None) -> bytes:
    extra = {"VersionId": version} if version else {}
    return client.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def replicated_once(spaces: Spaces, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The droplet uploads its backups; the workflow copies them. Returns each key's first replica version."""
    for key, body in ORIGINAL.items():
        spaces.droplet.put_object(Bucket=PRIMARY, Key=key, Body=body)
    report = _replicate(spaces, tmp_path_factory.mktemp("first"))
    assert sorted(report.copied) == sorted(ORIGINAL)
    assert report.versioning == ((PRIMARY, "Enabled"), (REPLICA, "Enabled"))
    assert report.unversioned == ()
    return {key: _versions(spaces.admin, REPLICA, key)[0]["VersionId"] for key in ORIGINAL}


def test_the_droplet_key_can_neither_read_nor_touch_the_replica(
    spaces: Spaces, replicated_once: dict[str, str]
):
    d, version = spaces.droplet, replicated_once[DUMP]
    attacks: dict[str, Callable[[], Any]] = {
        "list": lambda: d.list_objects_v2(Bucket=REPLICA),
        "list versions": lambda: d.list_object_versions(Bucket=REPLICA),
        "read": lambda: d.get_object(Bucket=REPLICA, Key=DUMP),
        "overwrite": lambda: d.put_object(Bucket=REPLICA, Key=DUMP, Body=b"garbage"),
        "delete (marker)": lambda: d.delete_object(Bucket=REPLICA, Key=DUMP),
        "delete a version": lambda: d.delete_object(Bucket=REPLICA, Key=DUMP, VersionId=version),
        "bulk delete": lambda: d.delete_objects(Bucket=REPLICA, Delete={"Objects": [{"Key": DUMP}]}),
        "expire everything": lambda: d.put_bucket_lifecycle_configuration(
            Bucket=REPLICA,
            LifecycleConfiguration={
                "Rules": [
                    {"ID": "wipe", "Status": "Enabled", "Filter": {"Prefix": ""}, "Expiration": {"Days": 1}}
                ]
            },
        ),
        "suspend versioning": lambda: d.put_bucket_versioning(
            Bucket=REPLICA, VersioningConfiguration={"Status": "Suspended"}
        ),
        "bucket policy": lambda: d.put_bucket_policy(Bucket=REPLICA, Policy=_admin_policy()),
        "delete the bucket": lambda: d.delete_bucket(Bucket=REPLICA),
    }
    allowed = [name for name, attack in attacks.items() if not _denied(attack)]
    assert allowed == []
    assert _body(spaces.admin, REPLICA, DUMP, version) == ORIGINAL[DUMP]


def test_an_attack_on_the_primary_never_reaches_the_replica(
    spaces: Spaces, replicated_once: dict[str, str], tmp_path: Path
):
    d = spaces.droplet
    dump_version = _versions(spaces.admin, PRIMARY, DUMP)[0]["VersionId"]
    # What the droplet's readwrite grant allows on its own bucket (worst case, see the docstring):
    d.delete_object(Bucket=PRIMARY, Key=DUMP, VersionId=dump_version)  # gone for good in the primary
    d.put_object(Bucket=PRIMARY, Key=WAL, Body=b"ransomware was here")  # overwrite
    d.delete_object(Bucket=PRIMARY, Key=PACK)  # delete marker
    d.put_bucket_versioning(Bucket=PRIMARY, VersioningConfiguration={"Status": "Suspended"})
    assert _versions(spaces.admin, PRIMARY, DUMP) == []

    report = _replicate(spaces, tmp_path)  # the next scheduled copy, with the replication key

    assert report.copied == ()
    assert report.replaced == (WAL,)
    assert report.suspicious == (WAL,)  # a WAL segment is written once: flagged in the summary
    assert report.unversioned == (PRIMARY,)  # the step fails: versioning was switched off there
    admin = spaces.admin
    # The deletions did not propagate: the dump and the pack are still current in the replica.
    assert _body(admin, REPLICA, DUMP) == ORIGINAL[DUMP]
    assert _body(admin, REPLICA, PACK) == ORIGINAL[PACK]
    # The overwrite became a new version; the original stays readable by the admin.
    assert _body(admin, REPLICA, WAL) == b"ransomware was here"
    assert _body(admin, REPLICA, WAL, replicated_once[WAL]) == ORIGINAL[WAL]
    for key, version in replicated_once.items():
        assert _body(admin, REPLICA, key, version) == ORIGINAL[key], key
    assert admin.get_bucket_versioning(Bucket=REPLICA)["Status"] == "Enabled"


def test_the_workflow_and_drill_keys_cannot_destroy_the_primary(
    spaces: Spaces, replicated_once: dict[str, str]
):
    replication = spaces.client(spaces.replication)
    for client in (replication, spaces.drill):
        assert _denied(lambda c=client: c.delete_object(Bucket=PRIMARY, Key=INFO))
        assert _denied(lambda c=client: c.put_object(Bucket=PRIMARY, Key=INFO, Body=b"x"))
        assert _denied(
            lambda c=client: c.put_bucket_versioning(
                Bucket=PRIMARY, VersioningConfiguration={"Status": "Suspended"}
            )
        )
    # The drill reads both buckets and changes neither.
    assert _body(spaces.drill, REPLICA, INFO, replicated_once[INFO]) == ORIGINAL[INFO]
    assert _denied(lambda: spaces.drill.delete_object(Bucket=REPLICA, Key=INFO))
    assert _denied(lambda: spaces.drill.put_object(Bucket=REPLICA, Key=INFO, Body=b"x"))


def test_the_workflow_step_fails_when_the_droplet_key_switched_versioning_off(
    spaces: Spaces,
    replicated_once: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    import json

    from bankflow_infra.contract import exit_codes
    from bankflow_infra.ops import cli
    from tests.support.outputs import outputs_document

    spaces.droplet.put_bucket_versioning(Bucket=PRIMARY, VersioningConfiguration={"Status": "Suspended"})
    key = spaces.replication
    saved = tmp_path / "outputs.json"
    saved.write_text(
        json.dumps(
            outputs_document("production")
            | {
                "backup_bucket": {"name": PRIMARY, "region": "nyc3", "endpoint": spaces.endpoint},
                "backup_replica": {"name": REPLICA, "region": "sfo3", "endpoint": spaces.endpoint},
                "backup_replica_key": {"access_key": key.access_key, "secret_key": key.secret_key},
            }
        )
    )
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "output"))

    code = cli.main(["workflow", "replicate-backups", "production", f"--outputs={saved}"])

    printed = capsys.readouterr()
    assert code == exit_codes.FAILED
    assert "::error title=Backup versioning is off::" in printed.out
    assert f"unversioned={PRIMARY}" in (tmp_path / "output").read_text()
    assert key.secret_key not in printed.out + printed.err + (tmp_path / "summary.md").read_text()
