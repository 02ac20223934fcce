"""The backup-replica workflow's step: copy the environment's backups bucket into its replica in
another region, adding and never deleting (``bankflow-infra workflow replicate-backups``).

Why this shape (issue 11 item 3; sources in docs/PROVIDERS.md): a Spaces key that can write can
also delete, and Spaces has neither Object Lock nor bucket policies beside per-bucket keys. So
the copy that survives a compromised droplet is one the droplet's key cannot reach at all: the
replica, written only by this step with the replication key (read on the primary, read/write on
the replica), which lives in the protected GitHub environment.

- ``rclone copy``, never ``sync`` or ``move``: a deletion in the primary (pgBackRest's own
  expiry, restic's prune, or an attacker) never reaches the replica.
- An object whose content changed in the primary is copied as a new version; the replica is
  versioned, so the previous version stays readable for ``backups.retentionDays``. Such
  replacements are listed in the summary: outside pgBackRest's ``*.info`` files they are
  suspicious (a dump or a WAL segment is written once).
- After the copy, both buckets' versioning is read back (``rclone backend versioning``): a
  primary whose versioning was switched off (what a stolen droplet key may do) fails the step,
  so the next overwrite there is noticed while the replica still holds the old version.
- The keys reach rclone through its environment (``RCLONE_CONFIG_<REMOTE>_...``), never through
  argv (``ps`` shows argv to every user) or a file in the checkout; the environment holds nothing
  else of the runner's.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

from bankflow_infra.contract.outputs import BackupBucket, SpacesKeyPair, StackOutputs
from bankflow_infra.ops.workflow.tools import StepFailed, WorkflowError

PRIMARY_REMOTE: Final = "primary"
REPLICA_REMOTE: Final = "replica"
# Bounded: a black-holed endpoint costs retries x low-level-retries x contimeout per call; a
# stalled transfer --timeout per try; the whole copy COPY_TIMEOUT (the job's own limit is longer).
COPY_FLAGS: Final = (
    "--checksum",  # compare by MD5 (ETag), not by modification time: no extra HEAD per object
    "--retries",
    "3",
    "--low-level-retries",
    "5",
    "--contimeout",
    "10s",
    "--timeout",
    "120s",
    "--stats",
    "0",
    "--use-json-log",
    "--log-level",
    "INFO",
)
COPY_TIMEOUT: Final = 3 * 3600.0
# Objects pgBackRest rewrites on every backup (its repository's info files): replacing them in
# the replica is expected; any other replaced object is reported as suspicious.
REWRITTEN_BY_DESIGN: Final = (".info", ".info.copy")
_MAX_LISTED: Final = 20


@dataclass(frozen=True)
class ReplicationPlan:
    primary: BackupBucket
    replica: BackupBucket
    key: SpacesKeyPair = field(repr=False)


VERSIONING_ON: Final = "Enabled"
UNREADABLE: Final = "unreadable"  # the key may not read the setting (Spaces documents no answer)


@dataclass(frozen=True)
class ReplicationReport:
    copied: tuple[str, ...]  # new in the replica
    replaced: tuple[str, ...]  # changed in the primary: a new version in the replica
    errors: tuple[str, ...]  # rclone's error lines (object names and messages, no key)
    versioning: tuple[tuple[str, str], ...] = ()  # (bucket, status) read back after the copy

    @property
    def suspicious(self) -> tuple[str, ...]:
        return tuple(name for name in self.replaced if not name.endswith(REWRITTEN_BY_DESIGN))

    @property
    def unversioned(self) -> tuple[str, ...]:
        """Buckets whose versioning is readable and not on: old versions are no longer kept."""
        return tuple(b for b, status in self.versioning if status not in (VERSIONING_ON, UNREADABLE))


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def replication_plan(outputs: StackOutputs) -> ReplicationPlan:
    """What to copy where with which key, or a refusal naming the missing output."""
    stack = outputs.stack
    if outputs.backup_bucket is None or outputs.backup_replica is None:
        raise WorkflowError(
            "No replica",
            f"stack {stack!r} has no backup_bucket/backup_replica output: only a stack with "
            "bankflow:edge.enabled owns a bucket and its replica (was it deployed with this version?)",
        )
    if outputs.backup_replica_key is None:
        raise WorkflowError(
            "No replication key",
            f"stack {stack!r}: the backup_replica_key output is absent or hidden; save the outputs "
            "with `pulumi stack output --json --show-secrets` in the protected environment",
        )
    if outputs.backup_replica.name == outputs.backup_bucket.name:
        raise WorkflowError(
            "Replica is the bucket", f"stack {stack!r}: backup_replica names the bucket itself"
        )
    return ReplicationPlan(outputs.backup_bucket, outputs.backup_replica, outputs.backup_replica_key)


def remote_environment(remote: str, endpoint: str, key: SpacesKeyPair) -> dict[str, str]:
    """One rclone S3 remote, defined by environment variables (rclone's documented form)."""
    prefix = f"RCLONE_CONFIG_{remote.upper()}_"
    return {
        f"{prefix}TYPE": "s3",
        # Path-style requests, as the droplet's rclone.conf (render/backup.py): no per-bucket DNS.
        f"{prefix}PROVIDER": "Other",
        f"{prefix}ENDPOINT": endpoint,
        f"{prefix}ACCESS_KEY_ID": key.access_key,
        f"{prefix}SECRET_ACCESS_KEY": key.secret_key,
        f"{prefix}FORCE_PATH_STYLE": "true",
        # The key may not create buckets; the buckets exist (Pulumi made them).
        f"{prefix}NO_CHECK_BUCKET": "true",
        f"{prefix}ACL": "private",
    }


def rclone_environment(plan: ReplicationPlan, home: Path, path: str) -> dict[str, str]:
    """rclone's whole environment: both remotes, a private HOME and no config file of the runner's."""
    return {
        "PATH": path,
        "HOME": str(home),
        "RCLONE_CONFIG": str(home / "rclone.conf"),  # absent: the remotes come from the variables
        **remote_environment(PRIMARY_REMOTE, plan.primary.endpoint, plan.key),
        **remote_environment(REPLICA_REMOTE, plan.replica.endpoint, plan.key),
    }


def copy_argv(plan: ReplicationPlan, rclone: str = "rclone") -> list[str]:
    """``rclone copy primary:<bucket> replica:<replica>``: names only, no key."""
    return [
        rclone,
        "copy",
        f"{PRIMARY_REMOTE}:{plan.primary.name}",
        f"{REPLICA_REMOTE}:{plan.replica.name}",
        *COPY_FLAGS,
    ]


def parse_log(lines: Sequence[str]) -> ReplicationReport:
    """rclone's JSON log (``--use-json-log``) into what was copied, replaced and what failed."""
    copied: list[str] = []
    replaced: list[str] = []
    errors: list[str] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(entry, dict):
            continue
        message, name = str(entry.get("msg", "")), str(entry.get("object", ""))
        if message.startswith("Copied (new)"):
            copied.append(name)
        elif message.startswith("Copied (replaced"):
            replaced.append(name)
        elif entry.get("level") in ("error", "critical"):
            errors.append(f"{name}: {message}" if name else message)
    return ReplicationReport(tuple(copied), tuple(replaced), tuple(errors))


def versioning_argv(remote: str, bucket: str, rclone: str = "rclone") -> list[str]:
    """Read (never set: nothing after the bucket) a bucket's versioning status."""
    return [rclone, "backend", "versioning", f"{remote}:{bucket}", "--retries", "2", "--contimeout", "10s"]


def _run(run: Runner, argv: list[str], env: Mapping[str, str], timeout: float) -> Any:
    return run(
        argv,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_versioning(
    plan: ReplicationPlan, env: Mapping[str, str], run: Runner
) -> tuple[tuple[str, str], ...]:
    """Each bucket's versioning status as rclone reads it, or UNREADABLE."""
    statuses = []
    for remote, bucket in ((PRIMARY_REMOTE, plan.primary.name), (REPLICA_REMOTE, plan.replica.name)):
        try:
            done = _run(run, versioning_argv(remote, bucket), env, 120.0)
        except subprocess.TimeoutExpired:
            statuses.append((bucket, UNREADABLE))
            continue
        status = str(done.stdout).strip() if done.returncode == 0 else ""
        statuses.append((bucket, status or UNREADABLE))
    return tuple(statuses)


def replicate(
    plan: ReplicationPlan, home: Path, path: str, run: Runner = subprocess.run
) -> ReplicationReport:
    """Run the copy, then read both buckets' versioning back; a failed copy raises StepFailed
    with rclone's error lines (never the key)."""
    env = rclone_environment(plan, home, path)
    try:
        done = _run(run, copy_argv(plan), env, COPY_TIMEOUT)
    except subprocess.TimeoutExpired as error:
        raise StepFailed(
            "Replication timed out", f"rclone copy did not finish in {COPY_TIMEOUT:.0f}s"
        ) from error
    except FileNotFoundError as error:
        raise WorkflowError(
            "rclone missing", "rclone is not installed on the runner (apt install rclone)"
        ) from error
    report = parse_log(done.stderr.splitlines())
    if done.returncode != 0:
        detail = "; ".join(report.errors[-5:]) or _scrubbed_tail(done.stderr, plan.key)
        raise StepFailed(
            "Replication failed",
            f"rclone copy {plan.primary.name} -> {plan.replica.name} exited {done.returncode}: {detail}",
        )
    return replace(report, versioning=read_versioning(plan, env, run))


def _scrubbed_tail(text: str, key: SpacesKeyPair) -> str:
    tail = text.strip()[-400:]
    return tail.replace(key.secret_key, "[secret]") if key.secret_key else tail


def _listed(names: Sequence[str]) -> str:
    shown = "".join(f"- `{name}`\n" for name in names[:_MAX_LISTED])
    more = f"- ... and {len(names) - _MAX_LISTED} more\n" if len(names) > _MAX_LISTED else ""
    return shown + more


def summary(stack: str, plan: ReplicationPlan, report: ReplicationReport) -> str:
    """The job summary: what reached the replica; replaced objects outside pgBackRest's info files."""
    text = (
        f"## Backup replica: {stack}\n\n"
        f"`{plan.primary.name}` ({plan.primary.region}) -> `{plan.replica.name}` ({plan.replica.region}): "
        f"{len(report.copied)} new object(s), {len(report.replaced)} replaced (kept as older versions). "
        "Nothing is ever deleted from the replica by this copy.\n"
    )
    for bucket, status in report.versioning:
        text += f"\nVersioning of `{bucket}`: {status}"
    text += "\n" if report.versioning else ""
    if report.unversioned:
        text += (
            "\n**Versioning is off** on "
            + ", ".join(f"`{b}`" for b in report.unversioned)
            + ": overwritten and deleted backups are no longer kept there. Switch it back on with the "
            "admin key and find out who switched it off (the droplet's key can).\n"
        )
    if report.suspicious:
        text += (
            "\n**Replaced objects that are written once** (a dump, a WAL segment, a restic pack): "
            "their previous version is still in the replica; check who changed them:\n\n"
            + _listed(report.suspicious)
        )
    return text


def outputs_values(report: ReplicationReport) -> Mapping[str, str]:
    return {
        "copied": str(len(report.copied)),
        "replaced": str(len(report.replaced)),
        "suspicious": str(len(report.suspicious)),
        "unversioned": ",".join(report.unversioned),
    }
