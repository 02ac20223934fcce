"""``restore``: a dump from the bucket, downloaded and checked, restored into a scratch database
with the apps stopped, swapped in by rename; then the apps start again through the release
switch's :func:`~bankflow_infra.host.switch.restart_apps`. Stdlib only.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ...contract.backups import dump_stack
from .. import state as st
from ..context import Context
from ..runtime import RuntimeFailure
from ..switch import restart_apps
from . import after_restore
from .archive import DUMP_MAGIC, KEY_RE, RemoteObject, backup_rows, digest_file, parse_checksums, sidecar_keys
from .config import BackupFailed, BackupUsageError, LiveDatabase, ensure_private_dir, load_live_database
from .database import PostgresClient
from .storage import Bucket, open_bucket

HEALTH_TIMEOUT: Final = 120.0  # for the apps started again after the restore
DEFAULT_DEADLINE: Final = 3 * 3600.0  # the whole restore, download to restart; then it gives up


def resolve_key(bucket: Bucket, wanted: str, stack: str) -> RemoteObject:
    """The dump ``wanted`` names (``latest``: the newest dump of ``stack`` in the bucket).

    One bucket can hold several stacks' dumps (a rebuild's server and the old one both upload
    to the environment's bucket until the old one is retired): "latest" is per stack."""
    if wanted == "latest":
        rows = [r for r in backup_rows(bucket.list(), dt.datetime.now(dt.UTC)) if r["stack"] == stack]
        if not rows:
            raise BackupUsageError(f"no backups of stack {stack} in bucket {bucket.name}: nothing to restore")
        wanted = str(rows[0]["key"])
    if not KEY_RE.match(wanted):
        raise BackupUsageError(
            f"--from: {wanted!r} is not a backup key (bankflow-<stack>-<YYYYmmddTHHMMSSZ>.dump)"
        )
    found = bucket.stat(wanted)
    if found is None:
        raise BackupUsageError(
            f"backup {wanted} is not in bucket {bucket.name}: it expired (the bucket keeps dumps for the "
            "retention days) or never existed; see `backups` for what there is"
        )
    return found


def download_verified(ctx: Context, bucket: Bucket, found: RemoteObject, directory: Path) -> Path:
    local = directory / f"restore-{found.key}"
    partial = directory / f".{local.name}.partial"
    partial.unlink(missing_ok=True)
    try:
        bucket.download(found.key, partial)
        if not partial.is_file():
            raise BackupFailed(
                f"downloading {found.key}: nothing arrived (the key vanished from the bucket?)"
            )
        os.chmod(partial, 0o600)
        got = digest_file(partial)
        if got.size != found.size or (found.md5 is not None and got.md5 != found.md5):
            raise BackupFailed(
                f"downloaded {found.key} does not match the bucket ({got.size} bytes, MD5 {got.md5}; "
                f"bucket: {found.size} bytes, MD5 {found.md5})"
            )
        _, checksum_key = sidecar_keys(found.key)
        if bucket.stat(checksum_key) is not None:
            sums = directory / f".{checksum_key}.restore"
            try:
                bucket.download(checksum_key, sums)
                expected = parse_checksums(sums.read_text(encoding="utf-8", errors="replace")).get(found.key)
            finally:
                sums.unlink(missing_ok=True)
            if expected is None:
                raise BackupFailed(f"{checksum_key} lists no checksum for {found.key}")
            if expected != got.sha256:
                raise BackupFailed(
                    f"{found.key} is corrupt: sha256 {got.sha256}, but {checksum_key} recorded {expected} "
                    "when it was taken"
                )
            ctx.say(f"restore: {found.key}: sha256 matches {checksum_key}")
        else:
            ctx.say(f"restore: {found.key}: no {checksum_key} in the bucket; relying on pg_restore's checks")
        os.replace(partial, local)
    finally:
        partial.unlink(missing_ok=True)
    return local


def download_globals(ctx: Context, bucket: Bucket, found: RemoteObject, directory: Path) -> Path | None:
    """The dump's ``.globals.sql`` (roles), checked against the checksum file; None for a dump
    taken without one."""
    globals_key, checksum_key = sidecar_keys(found.key)
    if bucket.stat(globals_key) is None or bucket.stat(checksum_key) is None:
        # SQL run as the superuser: never unverified
        ctx.say(f"restore: no verifiable {globals_key} in the bucket: roles are not restored")
        return None
    local, sums = directory / f".{globals_key}.restore", directory / f".{checksum_key}.globals"
    try:
        bucket.download(globals_key, local)
        os.chmod(local, 0o600)
        bucket.download(checksum_key, sums)
        expected = parse_checksums(sums.read_text(encoding="utf-8", errors="replace")).get(globals_key)
    finally:
        sums.unlink(missing_ok=True)
    if expected is None or expected != digest_file(local).sha256:
        local.unlink(missing_ok=True)
        raise BackupFailed(f"{globals_key} does not match {checksum_key}: refusing to apply it")
    return local


@dataclass
class RestoreResult:
    key: str
    size: int
    previous: str | None
    apps_healthy: bool
    problems: list[str]


@dataclass(frozen=True)
class RestoreRequest:
    """What ``restore`` was asked for."""

    wanted: str  # a key, or "latest"
    bucket_name: str | None = None
    endpoint: str | None = None
    health_timeout: float = HEALTH_TIMEOUT
    of_stack: str | None = None  # whose "latest"
    allow_other_stack: bool = False  # the explicit consent to restore another stack's data
    deadline: float = DEFAULT_DEADLINE  # seconds from the start: the lock is released by then


def check_stack(found: RemoteObject, host_stack: str, allow_other_stack: bool) -> None:
    """A dump of another stack replaces this stack's data with that stack's: only when asked."""
    stack = dump_stack(found.key)
    if stack != host_stack and not allow_other_stack:
        raise BackupUsageError(
            f"{found.key} is a dump of stack {stack}, and this host is stack {host_stack}: restoring it "
            f"would replace {host_stack}'s data with {stack}'s. Pass --allow-other-stack if that is what "
            "you mean (bankflow-infra restore: --from-another-stack)"
        )


def run_restore(ctx: Context, request: RestoreRequest) -> RestoreResult:
    started = time.monotonic()
    # the apps' restart after the restore must fit too: the work itself gets the rest
    work_deadline = started + max(request.deadline - request.health_timeout, 1.0)
    live = load_live_database(ctx)
    config = live.config
    if config.managed is not None:  # no postgres container to restore into; the live cluster is DO's
        raise BackupUsageError("the database is managed by DigitalOcean: restore a point in time as a fork "
                               "(bankflow-infra restore STACK --to-time T), or a dump by hand "
                               "(docs/RUNBOOK-managed-database.md)")
    bucket = open_bucket(ctx, config, request.bucket_name, request.endpoint)
    bucket.deadline = work_deadline
    directory = ctx.paths.backups
    ensure_private_dir(directory)

    found = resolve_key(bucket, request.wanted, request.of_stack or config.stack)
    check_stack(found, config.stack, request.allow_other_stack)
    ctx.say(f"restore: {found.key} ({found.size} bytes) from bucket {bucket.name}")
    local = download_verified(ctx, bucket, found, directory)
    try:
        with local.open("rb") as handle:
            if handle.read(len(DUMP_MAGIC)) != DUMP_MAGIC:
                raise BackupFailed(f"{found.key} is not a pg_dump custom-format archive")
        pg = PostgresClient(ctx, live, work_deadline)
        try:
            listing = pg.list_archive(local)
        except RuntimeFailure as exc:
            raise BackupFailed(
                f"{found.key} is not a valid custom-format dump (pg_restore --list: {exc})"
            ) from None
        entries = sum(1 for line in listing.splitlines() if line and not line.startswith(";"))
        ctx.say(f"restore: pg_restore --list: a valid archive of {entries} entries")
        roles = download_globals(ctx, bucket, found, directory)
        # only now the deploy lock: a slow download never blocks a rollback
        with st.exclusive_lock(ctx.paths.lock, "restore", ctx.actor):
            if roles is not None:
                ctx.say("restore: roles from the dump's globals (existing ones are kept as they are)")
                pg.apply_globals(roles)
            return _restore_with_apps_stopped(ctx, live, pg, local, found, request.health_timeout)
    finally:
        local.unlink(missing_ok=True)
        for leftover in directory.glob(".*.restore"):
            leftover.unlink(missing_ok=True)


def _restore_with_apps_stopped(
    ctx: Context,
    live: LiveDatabase,
    pg: PostgresClient,
    dump: Path,
    found: RemoteObject,
    health_timeout: float,
) -> RestoreResult:
    config = live.config
    scratch = f"{config.database}_restoring"
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dt%H%M%Sz")
    previous = f"{config.database}_before_restore_{stamp}"
    problems: list[str] = []
    failure: BaseException | None = None
    had_live = False
    try:
        try:
            ctx.say(f"restore: stop-apps: {live.app.name}")
            ctx.runtime.stop(live.app)
            pg.drop(scratch)  # a leftover of an interrupted restore: ours by its name
            pg.create_like(scratch, config.database)
            ctx.say(f"restore: pg_restore --single-transaction into scratch database {scratch}")
            pg.restore(dump, scratch)
        except RuntimeFailure as exc:
            failure = BackupFailed(f"restoring {found.key} into the scratch database failed: {exc}")
            try:
                pg.drop(scratch)
            except RuntimeFailure as drop_exc:
                problems.append(f"dropping the scratch database {scratch} failed: {drop_exc}")
        if failure is None:
            ctx.say(f"restore: swap: {scratch} becomes {config.database} (one transaction)")
            try:
                had_live = pg.swap(config.database, scratch, previous)
            except RuntimeFailure as exc:
                failure = BackupFailed(f"swapping in the restored database failed (nothing renamed): {exc}")
        if failure is None:
            try:  # the dump's globals carry the passwords of its day: the release's apply again
                after_restore.reapply_roles(ctx, live)
            except RuntimeFailure as exc:
                problems.append(f"applying the release's database roles failed: {exc}")
    finally:
        healthy = _start_apps_again(ctx, live, health_timeout, problems)
    if failure is not None:
        raise RestoreFailed(str(failure), problems)
    return RestoreResult(found.key, found.size, previous if had_live else None, healthy, problems)


class RestoreFailed(BackupFailed):
    """The restore failed (the database is unchanged); ``problems`` are what else went wrong."""

    def __init__(self, message: str, problems: Sequence[str]) -> None:
        super().__init__(message)
        self.problems = list(problems)


def _start_apps_again(ctx: Context, live: LiveDatabase, health_timeout: float, problems: list[str]) -> bool:
    """Start the app services again and point nginx at them, as the release switch does."""
    ctx.say(f"restore: start-apps: {live.app.name}")
    found = restart_apps(ctx, live.release, live.manifest, live.app, health_timeout)
    problems.extend(found)
    return not found
