"""What one release switch will do, decided before any step runs (pure reads, no change).

Stdlib only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..contract.fleet import LB_HEALTH_INCLUDE
from ..contract.release import app_project_name
from ..contract.upstreams import CANDIDATE_UPSTREAMS_FILE
from . import state as st
from .context import Context
from .manifest import Manifest, ManifestError, app_fingerprint, load_manifest
from .release_dir import RELEASE_ENV, projects
from .runtime import Project, RuntimeFailure
from .traffic import has_verify_listener, upstream_addresses

NGINX_SERVICE: Final = "nginx"  # the base service that proxies: reloaded for a new config, replaced
# beside the serving container for a new image or definition (Runtime.replace_nginx)


def changed_base(manifest: Manifest, running: Mapping[str, str], first: bool) -> list[str]:
    """Base services (other than nginx) whose digest differs from what runs now."""
    return [
        s
        for s in manifest.base_services
        if s != NGINX_SERVICE and (first or running.get(s) != manifest.service_digests[s])
    ]


def stale_base(
    manifest: Manifest, running: Mapping[str, str], recorded: Mapping[str, str], fresh: Mapping[str, str]
) -> list[str]:
    """Base services (nginx included) whose container was created from something else than what
    their definition names now: a new image under the same reference, or a changed definition.

    ``fresh`` is ``Runtime.fingerprints`` after the pull, ``recorded`` what the last deploy applied
    (``state.read_base_images``). A service the runtime cannot tell is left alone. Without a
    record (an agent before this one, or a lost file) only nginx counts, and only when its digest
    changed: that is exactly the change the earlier agent recorded without recreating nginx;
    postgres and redis are then judged by their digest (:func:`changed_base`) as before.
    """
    stale = []
    for service in manifest.base_services:
        now, before = fresh.get(service), recorded.get(service)
        if now is None:
            continue
        if before is not None:
            if before != now:
                stale.append(service)
        elif service == NGINX_SERVICE and running.get(service, now) != manifest.service_digests[service]:
            stale.append(service)
    return stale


def nginx_files_kept(manifest: Manifest) -> frozenset[str]:
    """Live nginx files the agent writes itself: never copied from (or deleted for) a bundle."""
    # lb-health.conf: a droplet drained for a roll stays drained while it switches
    return frozenset({manifest.upstreams_file, CANDIDATE_UPSTREAMS_FILE, LB_HEALTH_INCLUDE})


def app_project(ctx: Context, app_release: str) -> tuple[Project, Manifest | None]:
    """A release's app project, also when its dir or manifest is gone (compose can stop a
    project by name alone)."""
    bundle = ctx.paths.release_dir(app_release)
    try:
        manifest = load_manifest(bundle)
    except ManifestError:
        return Project(app_project_name(app_release), bundle, (), None, app_release), None
    app, _ = projects(ctx.paths, app_release, manifest)
    if not (bundle / RELEASE_ENV).is_file():
        app = Project(app.name, bundle, app.files, None, app_release)
    return app, manifest


@dataclass(frozen=True)
class SwitchPlan:
    """What one switch does, decided before any step runs."""

    action: str  # deploy or rollback
    release: str
    manifest: Manifest
    current: st.Current | None
    fingerprint: str
    reuse: bool  # keep the serving app containers (the apps did not change)
    app_release: str  # whose app containers will serve
    app: Project
    base: Project
    running_base: Mapping[str, str]
    base_images: Mapping[str, str]  # what the running base containers were created from (recorded)
    verify_listener: bool  # the release's nginx config has the loopback verify listener
    old_app: Project | None  # the serving containers this switch replaces (None: reuse/first)
    old_manifest: Manifest | None
    drain_override: float | None

    @property
    def first(self) -> bool:
        return self.current is None

    @property
    def bundle(self) -> Path:
        return self.app.bundle

    @property
    def drain_limit_old(self) -> float:
        """How long the old release's in-flight requests may take before it is stopped."""
        if self.drain_override is not None:
            return self.drain_override
        return (self.old_manifest or self.manifest).drain_seconds()

    @property
    def drain_limit_new(self) -> float:
        return self.drain_override if self.drain_override is not None else self.manifest.drain_seconds()


def plan_switch(
    ctx: Context, action: str, release: str, manifest: Manifest, current: st.Current | None
) -> SwitchPlan:
    paths, opts = ctx.paths, ctx.options
    fingerprint = app_fingerprint(paths.release_dir(release), manifest)
    reuse = (
        current is not None
        and paths.release_dir(current.app_release).is_dir()
        and (
            (not opts.fresh and current.fingerprint == fingerprint)
            # its containers are the ones serving now: starting "them" again would stop them on failure
            or current.app_release == release
        )
    )
    app_release = current.app_release if reuse and current is not None else release
    app, base = projects(paths, release, manifest)
    old_app, old_manifest = (None, None)
    if current is not None and not reuse and current.app_release != app_release:
        old_app, old_manifest = app_project(ctx, current.app_release)
    running_base, warning = st.read_base_checked(paths)
    base_images, images_warning = st.read_base_images(paths)
    for text in (warning, images_warning):
        if text:
            ctx.say(f"warning: {text}")
    return SwitchPlan(
        action,
        release,
        manifest,
        current,
        fingerprint,
        reuse,
        app_release,
        app,
        base,
        running_base,
        base_images,
        has_verify_listener(paths.release_dir(release), manifest),
        old_app,
        old_manifest,
        opts.drain,
    )


def backup_addresses(ctx: Context, plan: SwitchPlan) -> dict[str, str] | None:
    """The serving containers per upstream name, as nginx ``backup`` servers while the new release
    is watched; None when there is nothing to fall back on (or no verify listener to watch with:
    a backup would hide a dead new release from a watch through the public listener)."""
    if plan.old_app is None or plan.old_manifest is None or not plan.verify_listener:
        return None
    try:
        old = upstream_addresses(ctx.runtime, plan.old_manifest, plan.old_app.release)
    except RuntimeFailure:
        return None
    wanted = {s.upstream for s in plan.manifest.app_services}
    return {name: address for name, address in old.items() if name in wanted}
