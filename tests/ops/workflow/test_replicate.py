"""`bankflow-infra workflow replicate-backups`: its decisions without a network (the real copy,
with rclone against an S3 API on loopback, is in tests/ops/backup_guard)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.outputs import BackupBucket, SpacesKeyPair, parse_outputs
from bankflow_infra.ops import cli
from bankflow_infra.ops.workflow import replicate
from bankflow_infra.ops.workflow.tools import StepFailed, WorkflowError
from tests.support.outputs import outputs_document

SECRET = "replica-secret-value"  # noqa: S105 - a stand-in, checked never to be printed
KEY = {"access_key": "DOREPLICAACCESS", "secret_key": SECRET}


def plan() -> replicate.ReplicationPlan:
    return replicate.ReplicationPlan(
        BackupBucket("bankflow-staging-backups", "nyc3", "https://nyc3.digitaloceanspaces.com"),
        BackupBucket("bankflow-staging-backups-replica", "sfo3", "https://sfo3.digitaloceanspaces.com"),
        SpacesKeyPair("DOREPLICAACCESS", SECRET),
    )


def test_it_copies_and_never_syncs_with_no_key_in_argv(tmp_path: Path):
    argv = replicate.copy_argv(plan())
    assert argv[:4] == [
        "rclone",
        "copy",
        "primary:bankflow-staging-backups",
        "replica:bankflow-staging-backups-replica",
    ]
    assert not {"sync", "move", "delete", "purge", "--delete-excluded"} & set(argv)
    assert SECRET not in " ".join(argv)
    env = replicate.rclone_environment(plan(), tmp_path, "/usr/bin")
    assert env["RCLONE_CONFIG_PRIMARY_ENDPOINT"] == "https://nyc3.digitaloceanspaces.com"
    assert env["RCLONE_CONFIG_REPLICA_ENDPOINT"] == "https://sfo3.digitaloceanspaces.com"
    assert env["RCLONE_CONFIG_REPLICA_SECRET_ACCESS_KEY"] == SECRET
    assert set(env) - {"PATH", "HOME", "RCLONE_CONFIG"} == {
        k for k in env if k.startswith("RCLONE_CONFIG_")
    }


def test_the_log_says_what_was_copied_replaced_and_suspicious():
    lines = [
        json.dumps(
            {"level": "info", "msg": "Copied (new)", "object": "bankflow-staging-20261130T031500Z.dump"}
        ),
        json.dumps(
            {
                "level": "info",
                "msg": "Copied (replaced existing)",
                "object": "pgbackrest/backup/bankflow/backup.info",
            }
        ),
        json.dumps(
            {"level": "info", "msg": "Copied (replaced existing)", "object": "uploads/data/3a/3a9c"}
        ),
        json.dumps({"level": "error", "msg": "Failed to copy: AccessDenied", "object": "x"}),
        "not json at all",
    ]
    report = replicate.parse_log(lines)
    assert report.copied == ("bankflow-staging-20261130T031500Z.dump",)
    assert report.suspicious == ("uploads/data/3a/3a9c",)  # pgBackRest rewrites its info files
    assert report.errors == ("x: Failed to copy: AccessDenied",)
    text = replicate.summary("staging", plan(), report)
    assert "1 new object(s), 2 replaced" in text
    assert "`uploads/data/3a/3a9c`" in text
    assert "backup.info" not in text


def test_a_failed_copy_fails_the_step_without_printing_the_key(tmp_path: Path):
    def failing(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 1, "", f"Failed to create file system: bad key {SECRET}\n")

    with pytest.raises(StepFailed) as raised:
        replicate.replicate(plan(), tmp_path, "/usr/bin", run=failing)
    assert raised.value.exit_code == exit_codes.FAILED
    assert SECRET not in str(raised.value)
    assert "exited 1" in str(raised.value)


def test_hidden_or_missing_outputs_are_refused_naming_them():
    hidden = parse_outputs("staging", outputs_document())
    with pytest.raises(WorkflowError, match="backup_replica_key"):
        replicate.replication_plan(hidden)
    bare = outputs_document()
    del bare["backup_replica"]
    with pytest.raises(WorkflowError, match="backup_replica output"):
        replicate.replication_plan(parse_outputs("staging", bare, show_secrets=True))


def test_the_cli_refuses_outputs_saved_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("GITHUB_OUTPUT", raising=False)
    saved = tmp_path / "outputs.json"
    saved.write_text(json.dumps(outputs_document()))
    code = cli.main(["workflow", "replicate-backups", "staging", f"--outputs={saved}"])
    assert code == exit_codes.USAGE
    assert "::error title=No replication key::" in capsys.readouterr().out


def test_the_cli_never_echoes_a_broken_outputs_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    saved = tmp_path / "outputs.json"
    saved.write_text('{"backup_replica_key": {"secret_key": "' + SECRET + '"')  # cut short
    code = cli.main(["workflow", "replicate-backups", "staging", f"--outputs={saved}"])
    assert code == exit_codes.USAGE
    printed = capsys.readouterr()
    assert SECRET not in printed.out + printed.err
    document = outputs_document() | {"backup_replica_key": KEY}
    saved.write_text(json.dumps(document))
    assert (
        replicate.replication_plan(parse_outputs("staging", document, show_secrets=True)).key.secret_key
        == SECRET
    )


def test_versioning_switched_off_is_found_after_the_copy(tmp_path: Path):
    calls = []

    def fake(argv, **kwargs):
        calls.append(argv)
        if argv[1] == "copy":
            return subprocess.CompletedProcess(argv, 0, "", "")
        status = "Suspended" if argv[3].startswith("primary:") else "Enabled"
        return subprocess.CompletedProcess(argv, 0, status + "\n", "")

    report = replicate.replicate(plan(), tmp_path, "/usr/bin", run=fake)
    assert [argv[1] for argv in calls] == ["copy", "backend", "backend"]
    assert all(len(argv) == 8 and argv[2] == "versioning" for argv in calls[1:])  # read, never set
    assert report.unversioned == ("bankflow-staging-backups",)
    text = replicate.summary("staging", plan(), report)
    assert "**Versioning is off** on `bankflow-staging-backups`" in text
    assert replicate.outputs_values(report)["unversioned"] == "bankflow-staging-backups"


def test_a_versioning_status_the_key_may_not_read_is_no_failure(tmp_path: Path):
    def fake(argv, **kwargs):
        if argv[1] == "copy":
            return subprocess.CompletedProcess(argv, 0, "", "")
        return subprocess.CompletedProcess(argv, 1, "", "AccessDenied")

    report = replicate.replicate(plan(), tmp_path, "/usr/bin", run=fake)
    assert report.versioning == (
        ("bankflow-staging-backups", "unreadable"),
        ("bankflow-staging-backups-replica", "unreadable"),
    )
    assert report.unversioned == ()
