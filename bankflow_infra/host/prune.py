"""Deleting old release dirs and the app images only they used, after a successful switch.

Stdlib only. Never fails a switch: the new release already serves, so a problem is a warning.
"""

from __future__ import annotations

import shutil
import time
from typing import Final

from ..contract.release import is_release_id
from . import state as st
from .context import Context
from .manifest import ManifestError, load_manifest
from .runtime import RuntimeFailure

STALE_UPLOAD_SECONDS: Final = 3600  # a never-activated release dir older than this is pruned


def prune_plan(
    kept_order: list[str],
    on_disk: list[str],
    app_releases: dict[str, str],
    keep: int,
    current: st.Current | None,
) -> list[str]:
    """Release dirs to delete: activated ones beyond the newest ``keep`` (never current/previous).

    A kept release whose app containers belong to another release (nginx-only change) keeps
    that release's dir too: its compose file is what stops those containers.
    """
    kept = set(kept_order[: max(keep, 2)])
    if current is not None:
        kept |= {current.release, current.app_release}
    kept |= {app_releases[r] for r in list(kept) if r in app_releases}
    activated = set(kept_order)
    return [r for r in on_disk if r in activated and r not in kept]


def _doomed(ctx: Context, current: st.Current, on_disk: list[str]) -> list[str]:
    """prune_plan's releases, and never-activated uploads older than STALE_UPLOAD_SECONDS."""
    paths = ctx.paths
    history = st.read_history(paths)
    app_releases = {e["release"]: e.get("app_release", e["release"]) for e in history if "release" in e}
    doomed = prune_plan(st.releases_by_recency(history), on_disk, app_releases, ctx.options.keep, current)
    now = time.time()
    activated = set(app_releases) | set(app_releases.values())
    doomed += [
        r
        for r in on_disk
        if r not in activated
        and r != current.release
        and now - paths.release_dir(r).stat().st_mtime > STALE_UPLOAD_SECONDS
    ]
    return doomed


def prune(ctx: Context, current: st.Current) -> list[str]:
    """Delete old release dirs and their app images; returns warnings (never fails a switch)."""
    paths = ctx.paths
    on_disk = sorted(p.name for p in paths.releases.iterdir() if p.is_dir() and is_release_id(p.name))
    doomed = _doomed(ctx, current, on_disk)
    if not doomed:
        return []
    keep_images: set[str] = set()
    drop_images: set[str] = set()
    for release in on_disk:
        try:
            images = {s.image for s in load_manifest(paths.release_dir(release)).app_services}
        except ManifestError:
            continue
        (drop_images if release in doomed else keep_images).update(images)
    warnings: list[str] = []
    for release in doomed:
        shutil.rmtree(paths.release_dir(release), ignore_errors=True)
    unused = sorted(drop_images - keep_images)
    ctx.say(
        f"prune: removed releases {', '.join(doomed)}" + (f"; images {', '.join(unused)}" if unused else "")
    )
    try:
        ctx.runtime.remove_images(unused)
    except RuntimeFailure as exc:
        warnings.append(f"removing images failed: {exc}")
    return warnings
