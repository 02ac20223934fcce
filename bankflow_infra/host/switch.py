"""The release switch: the one way the agent moves nginx from one release to another.

Stdlib only. Used by ``deploy``, ``rollback`` (and so ``receive --deploy``) and, through
:func:`restart_apps`, by ``restore`` when it starts the apps it stopped. In order:

1. **journal** -- ``state/intent.json`` says what this attempt is about to do (``journal.py``);
2. **prepare** -- live secrets/certificate, compose validation, login, pull (app AND base images,
   every deploy), base services: postgres/redis recreated when their definition or image changed
   (``plan.stale_base``: what their containers were created from is recorded in
   ``state/base-images.json``), nginx REPLACED beside the serving container when its image or
   definition changed (``Runtime.replace_nginx``; a new config alone is a reload, step 4);
3. **start** -- the new app containers start BESIDE the serving ones, behind their health gate;
4. **stage** -- the release's nginx config (when it differs from the LIVE files) and the
   candidate upstreams pointing at the new containers; ``nginx -t``, graceful reload. The public
   upstreams still point at the serving release: no public request reaches the new one;
5. **verify** -- every hostname through nginx's loopback verify listener (same config, same
   headers, the candidate upstreams);
6. **public switch** -- only after a pass: the public include points at the new containers, with
   the previous ones as ``backup`` servers (a new container that dies is bypassed);
7. **watch** -- a few seconds of checks through the verify listener; a failure reverts;
8. **finish** -- state recorded, the backups dropped, the old release drained, then stopped.

Any failure reverts: the previous nginx files, secrets and certificate come back (hard-link
snapshots: a full disk does not stop a revert), nginx reloads, the drain waits for the requests
the new release had in flight, and only then is the new release stopped. Nothing that did not
change is touched: reused app containers and unchanged base services stay as they are.
A release whose bundle has no verify listener (rendered before it existed) is verified through
the public listener right after the switch, as before, and watched there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..contract.exit_codes import FAILED, RESTORE_FAILED
from ..contract.fleet import LB_HEALTH_INCLUDE
from ..contract.upstreams import CANDIDATE_UPSTREAMS_FILE
from . import journal, traffic
from . import state as st
from .context import Context, StepFailed, describe
from .database_roles import ACTION, apply_roles, load_roles
from .files import Snapshot, put_back, same_files, take_snapshot
from .manifest import Manifest
from .plan import (
    NGINX_SERVICE,
    SwitchPlan,
    backup_addresses,
    changed_base,
    nginx_files_kept,
    plan_switch,
    stale_base,
)
from .prune import prune
from .release_dir import IN_PLACE_SECRETS, install_live_files
from .runtime import Project, RuntimeFailure
from .switch_finish import finish, record


def restart_apps(ctx: Context, release: str, manifest: Manifest, app: Project, timeout: float) -> list[str]:
    """Start the serving release's stopped app containers again and point nginx at them (a new
    container has a new address). Returns the problems; none means healthy and serving."""
    try:
        ctx.runtime.start(app)
        names = manifest.app_names()
        health = ctx.runtime.wait_healthy(app, names, timeout)
        bad = [s for s in names if not health.get(s, False)]
        traffic.write_public(ctx, manifest, release, app.release)
        if (ctx.paths.nginx / CANDIDATE_UPSTREAMS_FILE).is_file():
            traffic.write_candidate(ctx, manifest, release, app.release)
        traffic.reload_nginx(ctx.runtime)
    except (RuntimeFailure, OSError) as exc:
        return [f"starting the app services failed: {describe(exc)}"]
    if bad:
        return [f"app services unhealthy after {timeout:.0f}s: {', '.join(bad)}"]
    return []


@dataclass
class _Progress:
    """The step running now: announced as it starts, journaled, named in the failure."""

    ctx: Context
    plan: SwitchPlan
    intent: journal.Intent
    step: str = "install"

    def run(self, name: str, what: str) -> None:
        self.step = name
        self.ctx.say(f"{self.plan.action} {self.plan.release}: {name}: {what}")
        self.intent = journal.update_step(self.ctx.paths, self.intent, name)


@dataclass
class _Undo:
    """What a failed switch has to put back."""

    live: list[Snapshot] = field(default_factory=list)
    nginx: Snapshot | None = None
    started: Project | None = None
    roles: bool = False  # the release's database passwords were applied to the cluster
    staged: bool = False  # nginx reloaded with the new config / candidate upstreams
    public: bool = False  # the public include pointed at the new release


def switch_release(
    ctx: Context, action: str, release: str, manifest: Manifest, current: st.Current | None
) -> int:
    """Switch nginx to ``release`` (installed in its release dir); the exit code."""
    plan = plan_switch(ctx, action, release, manifest, current)
    roles = load_roles(plan.bundle)  # bad password files: refused before anything changes
    intent = journal.Intent(
        ctx.attempt,
        action,
        ctx.actor,
        release,
        plan.app_release,
        current.release if current else None,
        current.app_release if current else None,
        "journal",
        st.utc_now(),
        os.getpid(),
    )
    journal.write_intent(ctx.paths, intent)  # before anything changes: a crash is then closed
    progress, undo = _Progress(ctx, plan, intent), _Undo()
    try:
        images = _prepare(ctx, plan, progress, undo)
        if roles is not None:  # postgres runs now (apply-base); before migrate and any app start
            progress.run(ACTION, f"roles and passwords of database {roles.database} ({roles.app_role})")
            undo.roles = True
            ctx.say(f"{plan.action} {plan.release}: {ACTION}: {apply_roles(ctx, roles, plan.base, release)}")
        _start_new_apps(ctx, plan, progress, undo)
        _stage(ctx, plan, progress, undo)
        if plan.verify_listener:
            progress.run(
                "verify", f"every hostname through nginx's verify listener at {ctx.options.candidate_url}"
            )
            traffic.verify_through(ctx, manifest, ctx.options.candidate_url, "verify listener")
        _go_public(ctx, plan, progress, undo)
        progress.run("record", "state files name the new release")
        serving = record(ctx, plan, images)
    except Exception as exc:  # ANY failure: put the previous release back, then report it once
        failure = exc if isinstance(exc, StepFailed) else StepFailed(progress.step, describe(exc))
        return _fail(ctx, plan, failure, undo)
    return finish(ctx, plan, serving, progress.run, prune)


def _prepare(ctx: Context, plan: SwitchPlan, progress: _Progress, undo: _Undo) -> dict[str, str]:
    """Live files, compose validation, registry login, image pull, changed base services; what the
    base containers are created from after it (``Runtime.fingerprints``; empty for a rollback)."""
    runtime, manifest, deploy = ctx.runtime, plan.manifest, plan.action == "deploy"
    progress.run("install", "live secrets and certificate from the release")
    undo_dir = ctx.paths.state / "undo"
    undo.live = [
        take_snapshot(ctx.paths.secrets, undo_dir / "secrets", IN_PLACE_SECRETS),
        take_snapshot(ctx.paths.tls, undo_dir / "tls"),
    ]
    install_live_files(ctx.paths, plan.bundle)
    progress.run("validate", "compose config")
    runtime.validate(plan.base)
    if not plan.reuse:
        runtime.validate(plan.app)
    password = plan.bundle / "secrets" / "registry-password"
    if deploy and manifest.registry_username and password.is_file():
        progress.run("login", f"{manifest.registry} as {manifest.registry_username}")
        runtime.login(manifest.registry, manifest.registry_username, password.read_bytes().strip())
    images: dict[str, str] = {}
    if deploy:
        # the base images too, on every deploy: a tag that moved to a new image (or a new digest)
        # is only seen after a pull
        apps = () if plan.reuse else manifest.app_names()
        progress.run("pull", ", ".join((*apps, *manifest.base_services)))
        if not plan.reuse:
            runtime.pull(plan.app)
        runtime.pull(plan.base)
        images = dict(runtime.fingerprints(plan.base, manifest.base_services))
    changes = changed_base(manifest, plan.running_base, plan.first)
    stale = []
    if deploy and not plan.first:
        stale = stale_base(manifest, plan.running_base, plan.base_images, images)
    recreate = [s for s in manifest.base_services if s != NGINX_SERVICE and (s in changes or s in stale)]
    if recreate and deploy:
        progress.run("apply-base", ", ".join(recreate))
        _apply_base(ctx, plan, recreate, changes)
    if NGINX_SERVICE in stale:
        progress.run("replace-nginx", "a new nginx container beside the serving one; the old one drains")
        done = runtime.replace_nginx(plan.base, ctx.options.health_timeout, plan.drain_limit_old)
        ctx.say(f"{plan.action} {plan.release}: replace-nginx: {done}")
    if plan.action == "rollback":
        for service in changes:
            # a rollback never downgrades postgres/redis: their data may already be migrated
            ctx.say(f"base service {service} differs in release {plan.release}: left as it is by rollback")
    return {**plan.base_images, **images}


def _apply_base(ctx: Context, plan: SwitchPlan, changes: list[str], digests_changed: list[str]) -> None:
    base = plan.base
    for service in changes:
        why = "changed" if service in digests_changed else "has a new image"
        ctx.say(f"base service {service} {'starting' if plan.first else why + ': recreating'}")
    if plan.first:
        ctx.runtime.start(base, changes)
    else:  # forced: compose alone would keep a container whose definition text did not change
        ctx.runtime.recreate(base, changes)
    health = ctx.runtime.wait_healthy(base, changes, ctx.options.health_timeout)
    bad = [s for s in changes if not health.get(s, False)]
    if bad:
        raise StepFailed("apply-base", f"base service {', '.join(bad)} unhealthy after recreate")


def _start_new_apps(ctx: Context, plan: SwitchPlan, progress: _Progress, undo: _Undo) -> None:
    """Migrate, then start the new app containers beside the serving ones, behind the health gate."""
    manifest = plan.manifest
    if plan.reuse:
        ctx.say(f"app services unchanged: keeping the containers of release {plan.app_release} (no restart)")
        return
    if plan.action == "deploy" and manifest.migrate is not None and not ctx.options.skip_migrate:
        progress.run("migrate", f"{manifest.migrate.service} {' '.join(manifest.migrate.command)}")
        migrate = manifest.migrate
        ctx.runtime.run_once(plan.app, migrate.service, migrate.command, migrate.environment)
    progress.run("start", plan.app.name + ("" if plan.first else " beside the running release"))
    undo.started = plan.app
    ctx.runtime.start(plan.app)
    progress.run("wait-healthy", f"up to {ctx.options.health_timeout:.0f}s")
    _health_gate(ctx, plan.app, manifest.app_names())


def _health_gate(ctx: Context, project: Project, services: Sequence[str]) -> None:
    health = ctx.runtime.wait_healthy(project, services, ctx.options.health_timeout)
    bad = [s for s in services if not health.get(s, False)]
    if bad:
        noun = "service" if len(bad) == 1 else "services"
        raise StepFailed(
            "wait-healthy", f"{noun} {', '.join(bad)} unhealthy after {ctx.options.health_timeout:.0f}s"
        )


def _stage(ctx: Context, plan: SwitchPlan, progress: _Progress, undo: _Undo) -> None:
    """The release's nginx config (if the LIVE files differ) and the candidate upstreams, loaded:
    public traffic still goes to the serving release."""
    paths, manifest = ctx.paths, plan.manifest
    source = plan.bundle / manifest.nginx_dir
    kept = nginx_files_kept(manifest)
    nginx_changed = not same_files(source, paths.nginx, kept)
    progress.run("stage", ("nginx config and " if nginx_changed else "") + "candidate upstreams")
    undo.nginx = take_snapshot(paths.nginx, paths.state / "undo" / "nginx")
    if nginx_changed:
        st.mirror_files(source, paths.nginx, None, kept)
    public = paths.nginx / manifest.upstreams_file
    if not public.is_file():  # before the first switch: the bundle's placeholder (nothing serves)
        st.write_atomic(public, (source / manifest.upstreams_file).read_bytes())
    lb_health = paths.nginx / LB_HEALTH_INCLUDE
    if not lb_health.is_file() and (source / LB_HEALTH_INCLUDE).is_file():
        # the first load-balanced release: the bundle's include (serving); later ones keep the
        # live file, which only drain/undrain write
        st.write_atomic(lb_health, (source / LB_HEALTH_INCLUDE).read_bytes())
    if plan.verify_listener:
        traffic.write_candidate(ctx, manifest, plan.release, plan.app_release)
    undo.staged = True
    if plan.first:
        progress.run("nginx-start", "base service nginx")
        ctx.runtime.start(plan.base, [NGINX_SERVICE])
        if not ctx.runtime.wait_healthy(plan.base, [NGINX_SERVICE], ctx.options.health_timeout).get(
            NGINX_SERVICE
        ):
            raise StepFailed("nginx-start", "base service nginx unhealthy")
    # also on a first deploy: an nginx already running (bootstrap) still has the placeholder
    progress.run("nginx-test", "nginx -t")
    ctx.runtime.nginx_test()
    progress.run("reload", "graceful nginx reload (public upstreams unchanged)")
    ctx.runtime.nginx_reload()
    ctx.sleep(ctx.options.settle)


def _go_public(ctx: Context, plan: SwitchPlan, progress: _Progress, undo: _Undo) -> None:
    """The public include points at the new release (the old one as backup), reload, watch."""
    manifest, opts = plan.manifest, ctx.options
    progress.run("public-switch", f"public upstreams to the containers of {plan.app_release}")
    undo.public = True
    if traffic.write_public(ctx, manifest, plan.release, plan.app_release, backup_addresses(ctx, plan)):
        traffic.reload_nginx(ctx.runtime)
        ctx.sleep(opts.settle)
    if not plan.verify_listener:
        progress.run("verify", f"every hostname through nginx at {opts.verify_url} (no verify listener)")
        traffic.verify_through(ctx, manifest, opts.verify_url, "public listener")
    url = opts.candidate_url if plan.verify_listener else opts.verify_url
    if opts.watch > 0 and not plan.reuse:
        progress.run("watch", f"{opts.watch:g}s of checks through {url}")
        traffic.watch(ctx, manifest, url, opts.watch)


def _undo(ctx: Context, plan: SwitchPlan, undo: _Undo) -> tuple[list[str], bool]:
    """Put the previous release back: (problems doing so, whether nginx could not be restored)."""
    problems: list[str] = []
    nginx_unrestored = False
    try:
        # secrets and certificate first: the reload below reads them. A first deploy has nothing
        # to put back: nginx was started on this release's config, which reads these files, and
        # emptying them would fail the reload below (and every later one) on a host that only
        # failed to start.
        for snapshot in undo.live if plan.current is not None else ():
            put_back(snapshot)
    except Exception as exc:
        problems.append(f"restoring the live secrets/certificate failed: {describe(exc)}")
    if undo.roles and plan.current is not None:
        problems += _previous_roles(ctx, plan, plan.current.release)
    if undo.nginx is not None and undo.staged:
        try:
            if plan.current is None:  # nothing served before: back to the bundle's placeholders
                _placeholders(ctx, plan)
            else:
                put_back(undo.nginx)
            if plan.current is not None or ctx.runtime.health(plan.base, [NGINX_SERVICE]).get(NGINX_SERVICE):
                traffic.reload_nginx(ctx.runtime)
                ctx.sleep(ctx.options.settle)  # landed before the drain counts workers
        except Exception as exc:
            nginx_unrestored = True
            problems.append(f"restoring the previous nginx config failed: {describe(exc)}")
    if nginx_unrestored:
        # nginx may still route to the new release: stopping it would turn a failed deploy
        # into a full outage.
        if undo.started is not None:
            problems.append(f"left {undo.started.name} running because nginx may still route to it")
        return problems, True
    if undo.started is not None:
        if undo.staged:
            ctx.say(f"{plan.action} {plan.release}: revert: {traffic.drain(ctx, plan.drain_limit_new)}")
        try:
            ctx.runtime.stop(undo.started)
        except Exception as exc:
            problems.append(f"stopping {undo.started.name} failed: {describe(exc)}")
    return problems, False


def _previous_roles(ctx: Context, plan: SwitchPlan, previous: str) -> list[str]:
    """The serving release's passwords back on the cluster: its apps open new connections with
    them. A release rendered before the database roles has none to put back."""
    try:
        roles = load_roles(ctx.paths.release_dir(previous))
        if roles is not None:
            apply_roles(ctx, roles, plan.base, previous)
    except Exception as exc:
        return [f"putting back the database passwords of release {previous} failed: {describe(exc)}"]
    return []


def _placeholders(ctx: Context, plan: SwitchPlan) -> None:
    """A failed first deploy: the includes point where nothing listens again, as shipped."""
    source = plan.bundle / plan.manifest.nginx_dir
    for name in nginx_files_kept(plan.manifest):
        if (source / name).is_file():
            st.write_atomic(ctx.paths.nginx / name, (source / name).read_bytes())


def _fail(ctx: Context, plan: SwitchPlan, failure: StepFailed, undo: _Undo) -> int:
    problems, nginx_unrestored = _undo(ctx, plan, undo)
    current = plan.current
    serving = (
        f"release {current.release} still serving" if current else "no release was serving (first deploy)"
    )
    message = f"{plan.action} {plan.release}: {failure}; {serving}"
    code = FAILED
    if problems:
        message += "; ATTENTION: " + "; ".join(problems)
        code = RESTORE_FAILED if nginx_unrestored else FAILED
    if not nginx_unrestored:
        journal.clear_intent(ctx.paths)  # reverted: nothing left for reconciliation to close
    ctx.complain(message)
    ctx.audit(plan.action, plan.release, "failed", message)
    return code
