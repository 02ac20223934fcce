"""``deploy BUNDLE_DIR`` and ``rollback [RELEASE]``: the release switch towards a new bundle or a
kept release. Stdlib only; the switch itself is ``switch.py``.
"""

from __future__ import annotations

from pathlib import Path

from ..contract.exit_codes import OK
from ..contract.release import MANIFEST_NAME, is_release_id
from . import state as st
from .context import Context, UsageError
from .database_roles import load_roles
from .manifest import bundle_release_id, load_manifest
from .reconcile import reconcile
from .release_dir import install_release
from .switch import switch_release


def _already_current(ctx: Context, action: str, release: str) -> int:
    message = f"{action} {release}: release {release} is already current; nothing to do"
    ctx.say(message)
    ctx.audit(action, release, "noop", message)
    return OK


def cmd_deploy(ctx: Context, bundle: Path, release_override: str | None, reconciled: bool = False) -> int:
    """Input first (the manifest, the release id), then reconciliation, then the switch: a bundle
    that cannot be deployed is refused before the host is touched at all."""
    manifest = load_manifest(bundle)
    load_roles(bundle)  # its password files too (the switch reads them again from the release dir)
    release = bundle_release_id(bundle, release_override)
    if not reconciled:
        reconcile(ctx)
    current = st.read_current(ctx.paths)
    if current is not None and current.release == release:
        return _already_current(ctx, "deploy", release)
    install_release(ctx.paths, bundle, release)
    return switch_release(ctx, "deploy", release, manifest, current)


def cmd_switch_staged(ctx: Context, release: str) -> int:
    """The rolling deploy's switch (issue 13): a release received earlier without ``--deploy``
    (``receive --stdin``), behind the same health gate as a deploy. Run with the options'
    ``skip_migrate``: the roll ran the migrations once, on the first droplet, before it began."""
    bundle = ctx.paths.release_dir(release)
    if not (bundle / MANIFEST_NAME).is_file():
        staged = sorted(p.name for p in ctx.paths.releases.iterdir() if is_release_id(p.name))
        raise UsageError(
            f"switch-staged: release {release} was not received on this host "
            f"(`receive --stdin` first); release dirs here: {', '.join(staged) or 'none'}"
        )
    return cmd_deploy(ctx, bundle, release)


def cmd_rollback(ctx: Context, target: str | None) -> int:
    current = st.read_current(ctx.paths)
    history = st.read_history(ctx.paths)
    kept = [r for r in st.releases_by_recency(history) if ctx.paths.release_dir(r).is_dir()]
    release = target or st.previous_release(history, current.release if current else None)
    if release is None or release not in kept:
        raise UsageError(
            f"rollback: no kept release {release or '(previous)'}; kept: {', '.join(kept) or 'none'}"
        )
    if current is not None and current.release == release:
        return _already_current(ctx, "rollback", release)
    manifest = load_manifest(ctx.paths.release_dir(release))
    return switch_release(ctx, "rollback", release, manifest, current)
