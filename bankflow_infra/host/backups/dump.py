"""``backup``: pg_dump and pg_dumpall in the postgres container, sha256 recorded, uploaded to the
bucket and verified, then the local dumps past their retention pruned. Stdlib only.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import state as st
from ..context import Context
from .archive import DUMP_MAGIC, checksum_text, digest_file, dump_name, local_prune_plan
from .config import (
    BackupFailed,
    BackupSkipped,
    LiveDatabase,
    ensure_private_dir,
    load_live_database,
    skip_reason,
)
from .database import DUMP_TIMEOUT
from .managed_dump import MANAGED_GLOBALS, dump_managed
from .storage import open_bucket, verify_remote


@dataclass
class DumpResult:
    key: str
    size: int
    sha256: str
    pruned: list[str] = field(default_factory=list)


def _dump_into(ctx: Context, live: LiveDatabase, argv: Sequence[str], partial: Path, final: Path) -> None:
    partial.unlink(missing_ok=True)
    try:
        ctx.runtime.exec(live.base, live.config.service, argv, stdout_path=partial, timeout=DUMP_TIMEOUT)
        os.chmod(partial, 0o600)
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)


def run_backup(ctx: Context, now: dt.datetime | None = None) -> DumpResult:
    live = load_live_database(ctx)
    config = live.config
    skipped = skip_reason(config.backup_droplet, socket.gethostname())
    if skipped is not None:
        raise BackupSkipped(skipped)
    when = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    name = dump_name(config.stack, when)
    directory = ctx.paths.backups
    ensure_private_dir(directory)
    dump, globals_sql, checksums = (
        directory / f"{name}{suffix}" for suffix in (".dump", ".globals.sql", ".sha256")
    )

    _dump_database(ctx, live, dump, globals_sql)
    digests = {path.name: digest_file(path) for path in (dump, globals_sql)}
    st.write_atomic(checksums, checksum_text({n: d.sha256 for n, d in digests.items()}).encode(), 0o600)
    digests[checksums.name] = digest_file(checksums)

    bucket = open_bucket(ctx, config)
    for path in (dump, globals_sql, checksums):  # the checksum file last: its presence means complete
        ctx.say(f"backup: upload {path.name} ({digests[path.name].size} bytes) to {bucket.name}")
        bucket.upload(path, path.name)
        verify_remote(bucket, path.name, digests[path.name])

    # Only after a verified upload: while uploads fail, the local dumps are the only ones.
    pruned = prune_local(directory, when, config.local_days)
    return DumpResult(dump.name, digests[dump.name].size, digests[dump.name].sha256, pruned)


def _dump_database(ctx: Context, live: LiveDatabase, dump: Path, globals_sql: Path) -> None:
    """The dump and its globals: in the release's postgres container, or from a managed cluster."""
    config, directory = live.config, dump.parent
    if config.managed is not None:
        where = f"{config.managed.host}:{config.managed.port}"
        ctx.say(f"backup: pg_dump -Fc of database {config.database} on the managed cluster {where} "
                "(TLS verify-full)")
        dump_managed(config, directory / f".{dump.name}.partial", dump)
    else:
        ctx.say(f"backup: pg_dump -Fc of database {config.database} ({config.service} of release "
                f"{live.release})")
        _dump_into(ctx, live, ["pg_dump", "--format=custom", "--no-password", "-U", config.user, "-d",
                               config.database], directory / f".{dump.name}.partial", dump)  # fmt: skip
    with dump.open("rb") as handle:
        if handle.read(len(DUMP_MAGIC)) != DUMP_MAGIC:
            raise BackupFailed(f"pg_dump wrote {dump.name} but it is not a custom-format archive")
    if config.managed is not None:
        st.write_atomic(globals_sql, MANAGED_GLOBALS.encode(), 0o600)
        return
    ctx.say("backup: pg_dumpall --globals-only (roles without their passwords, tablespaces)")
    _dump_into(ctx, live, ["pg_dumpall", "--globals-only", "--no-role-passwords", "--no-password", "-U",
                           config.user], directory / f".{globals_sql.name}.partial", globals_sql)  # fmt: skip


def prune_local(directory: Path, now: dt.datetime, local_days: int) -> list[str]:
    names = [p.name for p in directory.iterdir() if p.is_file() and not p.is_symlink()]
    doomed = local_prune_plan(names, now, local_days)
    for name in doomed:
        (directory / name).unlink(missing_ok=True)
    return doomed

