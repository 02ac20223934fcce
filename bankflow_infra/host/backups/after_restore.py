"""What every restore does besides the database itself: the uploads restored to the same point
(restic, ``uploads.py``) and the serving release's roles and passwords applied again. Stdlib only.

- Uploads: a point-in-time restore brings the files back to the same moment as the rows that
  name them. The snapshot is restored into a sibling tree BEFORE anything stops (the download
  runs while the apps still serve; a missing snapshot refuses the restore with nothing changed),
  swapped in by rename next to the cluster, swapped back if the restore rolls back, and the
  previous tree is kept until ``restore --discard-previous``. A release without an uploads
  backup (no ``backup/uploads.json``) restores the database only, and says so.
- Roles: a physical restore brings back ``pg_authid`` as it was at the target time and a dump
  brings back its globals: passwords the current bundle no longer carries. Before the apps start,
  the release's roles are applied again (``database_roles``: SCRAM verifiers, one transaction),
  or the apps could not log in.
"""

from __future__ import annotations

import datetime as dt
import shutil

from ..context import Context
from ..database_roles import apply_roles, load_roles
from .config import BackupUsageError, LiveDatabase
from .uploads import (
    PreparedUploads,
    discard_previous_uploads,
    prepare_uploads_restore,
    swap_back_uploads,
    swap_in_uploads,
)
from .uploads_restic import load_uploads_config


def has_uploads_backup(ctx: Context) -> bool:
    try:
        load_uploads_config(ctx)
    except BackupUsageError:
        return False
    return True


def prepare_uploads(
    ctx: Context, when: dt.datetime | None, of_stack: str | None = None
) -> PreparedUploads | None:
    """The uploads snapshot at or before ``when`` (None: the newest) restored beside the live tree;
    None when the release has no uploads backup. Raises (nothing changed) when none fits.
    ``of_stack``: another stack's snapshots (a rebuild restoring its original's uploads)."""
    if not has_uploads_backup(ctx):
        ctx.say("restore: uploads: this release has no uploads backup (backup/uploads.json): database only")
        return None
    prepared = prepare_uploads_restore(ctx, when, of_stack=of_stack)
    ctx.say(
        f"restore: uploads: snapshot {prepared.snapshot_id}{f' of stack {of_stack}' if of_stack else ''} of "
        f"{prepared.snapshot_time.strftime('%Y-%m-%d %H:%M:%S')}Z prepared in {prepared.path}"
    )
    return prepared


def swap_uploads_in(ctx: Context, prepared: PreparedUploads | None) -> None:
    if prepared is not None:
        swap_in_uploads(ctx, prepared)
        ctx.say(f"restore: uploads: swapped in; the previous tree is kept as {prepared.previous}")


def swap_uploads_back(ctx: Context, prepared: PreparedUploads | None) -> None:
    """Undo swap_uploads_in, or drop a prepared tree that was never swapped in."""
    if prepared is not None:
        swap_back_uploads(ctx, prepared)


def drop_unused_uploads(prepared: PreparedUploads | None) -> None:
    """A prepared tree never swapped in (the restore failed before the swap, e.g. the apps could
    not be stopped): removed, or a full copy of the uploads would stay on the volume. Safe after
    any step: ``prepared.path`` is never the live tree (swap_in renames it to the live path)."""
    if prepared is not None:
        shutil.rmtree(prepared.path, ignore_errors=True)


def discard_previous_trees(ctx: Context) -> list[str]:
    return discard_previous_uploads(ctx) if has_uploads_backup(ctx) else []


def reapply_roles(ctx: Context, live: LiveDatabase) -> None:
    """The serving release's roles and passwords, on the restored cluster (raises RuntimeFailure)."""
    spec = load_roles(ctx.paths.release_dir(live.release))
    if spec is not None:
        ctx.say(f"restore: database-roles: {apply_roles(ctx, spec, live.base, live.release)}")
