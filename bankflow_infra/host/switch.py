"""The release switch: the one way the agent moves nginx from one release to another.

Stdlib only. Used by ``deploy``, ``rollback`` (and so ``receive --deploy``) and, through
:func:`restart_apps`, by ``restore`` when it starts the apps it stopped. The new release's app
containers start BESIDE the serving ones and must pass the health gate; then the upstream
include is rewritten, checked with ``nginx -t`` and loaded with a graceful reload, and every
hostname is verified through nginx. Any failure puts the previous nginx config, secrets and
containers back; only after success is the old release stopped (after a drain) and pruned.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ..contract.exit_codes import FAILED, OK, RESTORE_FAILED
from ..contract.upstreams import render_upstreams
from . import state as st
from .context import Context, StepFailed, describe
from .manifest import Manifest, app_fingerprint, load_manifest
from .prune import prune
from .release_dir import install_live_files, projects
from .runtime import Project, Runtime, RuntimeFailure
from .verify import NginxEndpoint, http_status, parse_nginx_endpoint, wait_for_ok

NGINX_SERVICE: Final = "nginx"  # the base service that proxies; it is reloaded, not recreated


# --------------------------------------------------------------------------- pure helpers


def changed_base(manifest: Manifest, running: dict[str, str], first: bool) -> list[str]:
    """Base services (other than nginx) whose digest differs from what runs now."""
    return [
        s
        for s in manifest.base_services
        if s != NGINX_SERVICE and (first or running.get(s) != manifest.service_digests[s])
    ]


def upstream_addresses(runtime: Runtime, manifest: Manifest, app_release: str) -> dict[str, str]:
    return {s.upstream: runtime.upstream_address(app_release, s.name, s.port) for s in manifest.app_services}


# --------------------------------------------------------------------------- nginx


def write_upstreams(ctx: Context, manifest: Manifest, app_release: str, release: str) -> None:
    """Point the live upstream include at ``app_release``'s containers (not loaded yet)."""
    include = render_upstreams(upstream_addresses(ctx.runtime, manifest, app_release), release)
    st.write_atomic(ctx.paths.nginx / manifest.upstreams_file, include.encode())


def reload_nginx(runtime: Runtime) -> None:
    """``nginx -t``, then a graceful reload: a config nginx refuses is never loaded."""
    runtime.nginx_test()
    runtime.nginx_reload()


def _status_check(endpoint: NginxEndpoint, hostname: str, path: str) -> Callable[[], int]:
    return lambda: http_status(endpoint, hostname, path)


def verify_through_nginx(ctx: Context, manifest: Manifest) -> None:
    endpoint = parse_nginx_endpoint(ctx.options.verify_url)
    for service in manifest.app_services:
        for hostname in service.hostnames:
            check = _status_check(endpoint, hostname, service.health_path)
            status = wait_for_ok(check, ctx.options.verify_timeout, sleep=ctx.sleep)
            if not 200 <= status < 300:
                answer = f"answered {status}" if status else "did not answer"
                raise StepFailed(
                    "verify",
                    f"service {service.name}: GET {service.health_path} for {hostname} "
                    f"through nginx {answer}",
                )


def restart_apps(ctx: Context, release: str, manifest: Manifest, app: Project, timeout: float) -> list[str]:
    """Start the serving release's stopped app containers again and point nginx at them (a new
    container has a new address). Returns the problems; none means healthy and serving."""
    try:
        ctx.runtime.start(app)
        names = manifest.app_names()
        health = ctx.runtime.wait_healthy(app, names, timeout)
        bad = [s for s in names if not health.get(s, False)]
        write_upstreams(ctx, manifest, app.release, release)
        reload_nginx(ctx.runtime)
    except RuntimeFailure as exc:
        return [f"starting the app services failed: {exc}"]
    if bad:
        return [f"app services unhealthy after {timeout:.0f}s: {', '.join(bad)}"]
    return []


# --------------------------------------------------------------------------- the switch


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
    running_base: dict[str, str]

    @property
    def first(self) -> bool:
        return self.current is None

    @property
    def bundle(self) -> Path:
        return self.app.bundle


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
    return SwitchPlan(
        action, release, manifest, current, fingerprint, reuse, app_release, app, base, st.read_base(paths)
    )


@dataclass
class _Progress:
    """The step running now: announced as it starts, named in the failure if it fails."""

    ctx: Context
    plan: SwitchPlan
    step: str = "install"

    def run(self, name: str, what: str) -> None:
        self.step = name
        self.ctx.say(f"{self.plan.action} {self.plan.release}: {name}: {what}")


@dataclass
class _Undo:
    """What a failed switch has to put back."""

    nginx_snapshot: dict[str, tuple[bytes, int]] | None = None
    started: Project | None = None


def switch_release(
    ctx: Context, action: str, release: str, manifest: Manifest, current: st.Current | None
) -> int:
    """Switch nginx to ``release`` (installed in its release dir); the exit code."""
    plan = plan_switch(ctx, action, release, manifest, current)
    progress, undo = _Progress(ctx, plan), _Undo()
    try:
        _prepare(ctx, plan, progress)
        _start_new_apps(ctx, plan, progress, undo)
        _switch_nginx(ctx, plan, progress, undo)
    except Exception as exc:  # ANY failure: put the previous release back, then report it once
        failure = exc if isinstance(exc, StepFailed) else StepFailed(progress.step, describe(exc))
        return _fail(ctx, plan, failure, undo)
    _finish(ctx, plan)
    return OK


def _prepare(ctx: Context, plan: SwitchPlan, progress: _Progress) -> None:
    """Live files, compose validation, registry login, image pull, changed base services."""
    runtime, manifest, deploy = ctx.runtime, plan.manifest, plan.action == "deploy"
    progress.run("install", "live secrets and certificate from the release")
    install_live_files(ctx.paths, plan.bundle)
    progress.run("validate", "compose config")
    runtime.validate(plan.base)
    if not plan.reuse:
        runtime.validate(plan.app)
    password = plan.bundle / "secrets" / "registry-password"
    if deploy and manifest.registry_username and password.is_file():
        progress.run("login", f"{manifest.registry} as {manifest.registry_username}")
        runtime.login(manifest.registry, manifest.registry_username, password.read_bytes().strip())
    if deploy and not plan.reuse:
        progress.run("pull", ", ".join(manifest.app_names()))
        runtime.pull(plan.app)
    changes = changed_base(manifest, plan.running_base, plan.first)
    if changes and deploy:
        progress.run("apply-base", ", ".join(changes))
        _apply_base(ctx, plan.base, changes, plan.first)
    if plan.action == "rollback":
        for service in changes:
            # a rollback never downgrades postgres/redis: their data may already be migrated
            ctx.say(f"base service {service} differs in release {plan.release}: left as it is by rollback")


def _apply_base(ctx: Context, base: Project, changes: list[str], first: bool) -> None:
    for service in changes:
        ctx.say(f"base service {service} {'starting' if first else 'changed: recreating'}")
    ctx.runtime.pull(base, changes)
    ctx.runtime.start(base, changes)
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
    if plan.action == "deploy" and manifest.migrate is not None:
        progress.run("migrate", f"{manifest.migrate.service} {' '.join(manifest.migrate.command)}")
        ctx.runtime.run_once(plan.app, manifest.migrate.service, manifest.migrate.command)
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


def _switch_nginx(ctx: Context, plan: SwitchPlan, progress: _Progress, undo: _Undo) -> None:
    """The release's nginx config and upstreams, nginx -t, graceful reload, verify through nginx."""
    paths, runtime, opts, manifest = ctx.paths, ctx.runtime, ctx.options, plan.manifest
    nginx_digest = manifest.service_digests[NGINX_SERVICE]
    nginx_changed = plan.first or plan.running_base.get(NGINX_SERVICE) != nginx_digest
    progress.run("switch", "nginx config and upstreams" if nginx_changed else "nginx upstreams")
    undo.nginx_snapshot = st.snapshot(paths.nginx)
    if nginx_changed:
        st.mirror_files(
            plan.bundle / manifest.nginx_dir, paths.nginx, None, frozenset({manifest.upstreams_file})
        )
    write_upstreams(ctx, manifest, plan.app_release, plan.release)
    if plan.first:
        progress.run("nginx-start", "base service nginx")
        runtime.start(plan.base, [NGINX_SERVICE])
        if not runtime.wait_healthy(plan.base, [NGINX_SERVICE], opts.health_timeout).get(NGINX_SERVICE):
            raise StepFailed("nginx-start", "base service nginx unhealthy")
    # also on a first deploy: an nginx already running (bootstrap) still has the placeholder
    progress.run("nginx-test", "nginx -t")
    runtime.nginx_test()
    progress.run("reload", "graceful nginx reload")
    runtime.nginx_reload()
    ctx.sleep(opts.settle)
    progress.run("verify", f"health of every hostname through nginx at {opts.verify_url}")
    verify_through_nginx(ctx, manifest)


def _undo(ctx: Context, plan: SwitchPlan, undo: _Undo) -> tuple[list[str], bool]:
    """Put the previous release back: (problems doing so, whether nginx could not be restored)."""
    problems: list[str] = []
    nginx_unrestored = False
    current = plan.current
    if undo.nginx_snapshot is not None and current is not None:
        try:
            st.restore(ctx.paths.nginx, undo.nginx_snapshot)
            reload_nginx(ctx.runtime)
        except Exception as exc:
            nginx_unrestored = True
            problems.append(f"restoring the previous nginx config failed: {describe(exc)}")
    if nginx_unrestored:
        # nginx may still route to the new release: stopping it (or putting the old secrets
        # back under nginx's feet) would turn a failed deploy into a full outage.
        if undo.started is not None:
            problems.append(f"left {undo.started.name} running because nginx may still route to it")
    elif undo.started is not None:
        try:
            ctx.runtime.stop(undo.started)
        except Exception as exc:
            problems.append(f"stopping {undo.started.name} failed: {describe(exc)}")
    if current is not None and not nginx_unrestored:
        try:
            install_live_files(ctx.paths, ctx.paths.release_dir(current.release))
        except Exception as exc:
            problems.append(f"restoring the live secrets failed: {describe(exc)}")
    return problems, nginx_unrestored


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
    ctx.complain(message)
    st.audit(ctx.paths.audit_log, ctx.actor, plan.action, plan.release, "failed", message)
    return code


def _record(ctx: Context, plan: SwitchPlan) -> st.Current:
    """The state names the new release. Written first: nginx already serves it, so nothing after
    (an unreadable old manifest, a full disk while stopping) may leave the state naming the old one."""
    manifest = plan.manifest
    base = dict(plan.running_base)
    base[NGINX_SERVICE] = manifest.service_digests[NGINX_SERVICE]
    if plan.action == "deploy":
        base.update({s: manifest.service_digests[s] for s in manifest.base_services})
    serving = st.Current(plan.release, plan.app_release, plan.fingerprint)
    st.write_current(ctx.paths, serving)
    st.append_history(
        ctx.paths,
        {"release": plan.release, "app_release": plan.app_release, "action": plan.action, "actor": ctx.actor},
    )
    st.write_base(ctx.paths, base)
    return serving


def _stop_old(ctx: Context, plan: SwitchPlan, old_release: str) -> None:
    old_manifest = load_manifest(ctx.paths.release_dir(old_release))
    old_app, _ = projects(ctx.paths, old_release, old_manifest)
    ctx.say(f"{plan.action} {plan.release}: stop-old: {old_app.name} after {ctx.options.drain:g}s drain")
    ctx.sleep(ctx.options.drain)  # nginx's old workers finish their in-flight requests
    ctx.runtime.stop(old_app)


def _finish(ctx: Context, plan: SwitchPlan) -> None:
    serving = _record(ctx, plan)
    current = plan.current
    warnings: list[str] = []
    if current is not None and not plan.reuse and current.app_release != plan.app_release:
        try:
            _stop_old(ctx, plan, current.app_release)
        except Exception as exc:  # the new release serves: a leftover old one is a warning
            warnings.append(f"stopping the old release {current.app_release} failed: {describe(exc)}")
    warnings += prune(ctx, serving)
    message = f"{plan.action} {plan.release}: done; release {plan.release} serving"
    if current is not None:
        message += f" (was {current.release})"
    if warnings:
        message += "; warnings: " + "; ".join(warnings)
    ctx.say(message)
    st.audit(ctx.paths.audit_log, ctx.actor, plan.action, plan.release, "ok", message)
