"""bankflow-agent: switches releases on the droplet with a health gate; stdlib only.

    bankflow-agent deploy BUNDLE_DIR [--release ID]   validate, pull, migrate, start beside the old
                                                       release, health gate, switch nginx, verify
    bankflow-agent receive --stdin [--deploy]          write a bundle sent as JSON on stdin (Pulumi),
                                                       then deploy it
    bankflow-agent rollback [RELEASE]                  the same switch towards a kept release
    bankflow-agent releases [--json]                   kept releases, current marked
    bankflow-agent status [--json]                     current release and its services
    bankflow-agent logs [SERVICE] [--tail N] [--follow] logs of the current release's app services,
                                                       or of a base service (postgres, redis, nginx)
    bankflow-agent migrate                             run the current release's migrate command
                                                       again (the deploy's migrate step), audited

Exit codes: 0 done (or nothing to do), 1 a step failed and the previous release still serves,
2 bad input (usage, manifest, unknown release), 3 another deploy holds the lock, 4 a step failed
AND restoring the previous nginx state failed too (look now).

``BANKFLOW_VERIFY_URL`` is the default of ``--verify-url`` (nginx as seen from the host): the
Pulumi deploy command's text is fixed, so a host whose nginx is not at the default address --
the over-SSH tests' host -- says so in the SSH session's environment instead.

Runs as ``python3 -m bankflow_infra.host.agent`` or as the shipped directory
(``python3 /opt/bankflow/bin/host ...``, see ``__main__.py``); all imports are relative.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final, TextIO

from ..contract.upstreams import render_upstreams
from . import backup
from . import state as st
from .manifest import (
    RELEASE_LEN,
    Manifest,
    ManifestError,
    app_fingerprint,
    is_release_id,
    load_manifest,
    release_id,
)
from .receive import parse_payload, read_limited, write_release
from .runtime import (
    BASE_PROJECT,
    DockerRuntime,
    Project,
    Runtime,
    RuntimeFailure,
    app_project_name,
)
from .verify import DEFAULT_VERIFY_URL, Target, http_status, parse_target, wait_for_ok

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2
EXIT_LOCKED: Final = 3
EXIT_RESTORE_FAILED: Final = 4

NGINX_SERVICE: Final = "nginx"  # the base service that proxies; it is reloaded, not recreated
RELEASE_ENV: Final = "release.env"  # compose interpolation values, written into each release dir
STALE_UPLOAD_SECONDS: Final = 3600  # a never-activated release dir older than this is pruned
VERIFY_URL_ENV: Final = "BANKFLOW_VERIFY_URL"
LOG_TAIL_DEFAULT: Final = 200
LOG_TAIL_MAX: Final = 100_000  # lines; a bound so a typo never dumps months of logs over SSH


@dataclass(frozen=True)
class Options:
    health_timeout: float = 120.0
    verify_url: str = DEFAULT_VERIFY_URL
    verify_timeout: float = 30.0
    settle: float = 1.0  # after `nginx -s reload` returns, before verifying (the master re-forks)
    drain: float = 5.0  # after the switch, before stopping the old release (in-flight requests)
    keep: int = 5
    fresh: bool = False  # start new app containers even when the app fingerprint is unchanged


@dataclass
class Context:
    paths: st.HostPaths
    runtime: Runtime
    options: Options
    actor: str
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    sleep: Callable[[float], None] = time.sleep

    def say(self, message: str) -> None:
        print(message, file=self.out, flush=True)


class StepFailed(Exception):
    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"step '{step}' failed: {detail}")
        self.step = step


class UsageError(Exception):
    pass


# --------------------------------------------------------------------------- pure helpers


def projects(paths: st.HostPaths, release: str, manifest: Manifest) -> tuple[Project, Project]:
    """(app project, base project) of a release dir."""
    bundle = paths.release_dir(release)
    env_file = bundle / RELEASE_ENV
    app = Project(app_project_name(release), bundle, (bundle / manifest.compose_app,), env_file, release)
    base = Project(BASE_PROJECT, bundle, (bundle / manifest.compose_base,), env_file, release)
    return app, base


def release_env(paths: st.HostPaths, release: str) -> str:
    return f"BANKFLOW_RELEASE={release}\nBANKFLOW_HOME={paths.home}\n"


def changed_base(manifest: Manifest, running: dict[str, str], first: bool) -> list[str]:
    """Base services (other than nginx) whose digest differs from what runs now."""
    return [
        s
        for s in manifest.base_services
        if s != NGINX_SERVICE and (first or running.get(s) != manifest.service_digests[s])
    ]


def upstream_addresses(runtime: Runtime, manifest: Manifest, app_release: str) -> dict[str, str]:
    return {s.upstream: runtime.upstream_address(app_release, s.name, s.port) for s in manifest.app_services}


def previous_release(history: list[dict[str, str]], current: str | None) -> str | None:
    for release in st.releases_by_recency(history):
        if release != current:
            return release
    return None


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


# --------------------------------------------------------------------------- the switch


def install_release(ctx: Context, source: Path, release: str) -> Path:
    """The release dir for ``source``: used in place when already there, else copied in."""
    target = ctx.paths.release_dir(release)
    if source.resolve() != target.resolve():
        if target.exists():
            shutil.rmtree(target)  # a leftover of an earlier, failed attempt of the same release
        st.copy_bundle(source, target)
    st.lock_down_secrets(target / "secrets")
    st.write_atomic(target / RELEASE_ENV, release_env(ctx.paths, release).encode())
    return target


def install_live_files(paths: st.HostPaths, bundle: Path) -> None:
    """The release's secrets (0600 in the 0700 dir) and certificate become the live ones."""
    # in place: origin.key is a single-file bind mount into the nginx container
    st.mirror_files(bundle / "secrets", paths.secrets, st.SECRET_FILE_MODE, in_place=True)
    st.lock_down_secrets(paths.secrets)
    st.mirror_files(bundle / "tls", paths.tls, 0o644)


def _status_check(target: Target, hostname: str, path: str) -> Callable[[], int]:
    return lambda: http_status(target, hostname, path)


def verify_through_nginx(ctx: Context, manifest: Manifest) -> None:
    target = parse_target(ctx.options.verify_url)
    for service in manifest.app_services:
        for hostname in service.hostnames:
            check = _status_check(target, hostname, service.health_path)
            status = wait_for_ok(check, ctx.options.verify_timeout, sleep=ctx.sleep)
            if not 200 <= status < 300:
                answer = f"answered {status}" if status else "did not answer"
                raise StepFailed(
                    "verify",
                    f"service {service.name}: GET {service.health_path} for {hostname} "
                    f"through nginx {answer}",
                )


@dataclass
class _Undo:
    """What a failed switch has to put back."""

    nginx_snapshot: dict[str, tuple[bytes, int]] | None = None
    started: Project | None = None


def _health_gate(ctx: Context, project: Project, services: Sequence[str]) -> None:
    health = ctx.runtime.wait_healthy(project, services, ctx.options.health_timeout)
    bad = [s for s in services if not health.get(s, False)]
    if bad:
        noun = "service" if len(bad) == 1 else "services"
        raise StepFailed(
            "wait-healthy", f"{noun} {', '.join(bad)} unhealthy after {ctx.options.health_timeout:.0f}s"
        )


def _apply_base(ctx: Context, base: Project, changes: list[str], first: bool) -> None:
    for service in changes:
        ctx.say(f"base service {service} {'starting' if first else 'changed: recreating'}")
    ctx.runtime.pull(base, changes)
    ctx.runtime.start(base, changes)
    health = ctx.runtime.wait_healthy(base, changes, ctx.options.health_timeout)
    bad = [s for s in changes if not health.get(s, False)]
    if bad:
        raise StepFailed("apply-base", f"base service {', '.join(bad)} unhealthy after recreate")


def _switch(ctx: Context, action: str, release: str, manifest: Manifest, current: st.Current | None) -> int:
    paths, runtime, opts = ctx.paths, ctx.runtime, ctx.options
    bundle = paths.release_dir(release)
    first = current is None
    fingerprint = app_fingerprint(bundle, manifest)
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
    running_base = st.read_base(paths)
    undo = _Undo()
    step = "install"
    serving = (
        f"release {current.release} still serving" if current else "no release was serving (first deploy)"
    )

    def run(name: str, what: str) -> None:
        nonlocal step
        step = name
        ctx.say(f"{action} {release}: {name}: {what}")

    try:
        run("install", "live secrets and certificate from the release")
        install_live_files(paths, bundle)
        run("validate", "compose config")
        runtime.validate(base)
        if not reuse:
            runtime.validate(app)
        password = bundle / "secrets" / "registry-password"
        if action == "deploy" and manifest.registry_username and password.is_file():
            run("login", f"{manifest.registry} as {manifest.registry_username}")
            runtime.login(manifest.registry, manifest.registry_username, password.read_bytes().strip())
        if action == "deploy" and not reuse:
            run("pull", ", ".join(manifest.app_names()))
            runtime.pull(app)
        changes = changed_base(manifest, running_base, first)
        if changes and action == "deploy":
            run("apply-base", ", ".join(changes))
            _apply_base(ctx, base, changes, first)
        if action == "rollback":
            for service in changes:
                # a rollback never downgrades postgres/redis: their data may already be migrated
                ctx.say(f"base service {service} differs in release {release}: left as it is by rollback")
        if reuse:
            ctx.say(f"app services unchanged: keeping the containers of release {app_release} (no restart)")
        else:
            if action == "deploy" and manifest.migrate is not None:
                run("migrate", f"{manifest.migrate.service} {' '.join(manifest.migrate.command)}")
                runtime.run_once(app, manifest.migrate.service, manifest.migrate.command)
            run("start", app.name + ("" if first else " beside the running release"))
            undo.started = app
            runtime.start(app)
            run("wait-healthy", f"up to {opts.health_timeout:.0f}s")
            _health_gate(ctx, app, manifest.app_names())
        nginx_changed = first or running_base.get(NGINX_SERVICE) != manifest.service_digests[NGINX_SERVICE]
        run("switch", "nginx config and upstreams" if nginx_changed else "nginx upstreams")
        undo.nginx_snapshot = st.snapshot(paths.nginx)
        if nginx_changed:
            st.mirror_files(
                bundle / manifest.nginx_dir, paths.nginx, None, frozenset({manifest.upstreams_file})
            )
        include = render_upstreams(upstream_addresses(runtime, manifest, app_release), release)
        st.write_atomic(paths.nginx / manifest.upstreams_file, include.encode())
        if first:
            run("nginx-start", "base service nginx")
            runtime.start(base, [NGINX_SERVICE])
            if not runtime.wait_healthy(base, [NGINX_SERVICE], opts.health_timeout).get(NGINX_SERVICE):
                raise StepFailed("nginx-start", "base service nginx unhealthy")
        # also on a first deploy: an nginx already running (bootstrap) still has the placeholder
        run("nginx-test", "nginx -t")
        runtime.nginx_test()
        run("reload", "graceful nginx reload")
        runtime.nginx_reload()
        ctx.sleep(opts.settle)
        run("verify", f"health of every hostname through nginx at {opts.verify_url}")
        verify_through_nginx(ctx, manifest)
    except Exception as exc:  # ANY failure: put the previous release back, then report it once
        failure = exc if isinstance(exc, StepFailed) else StepFailed(step, _describe(exc))
        return _fail(ctx, action, release, failure, undo, current, serving)

    _finish(ctx, action, release, manifest, current, app_release, fingerprint, reuse, running_base)
    return EXIT_OK


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RuntimeFailure | ManifestError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _fail(
    ctx: Context,
    action: str,
    release: str,
    failure: StepFailed,
    undo: _Undo,
    current: st.Current | None,
    serving: str,
) -> int:
    problems: list[str] = []
    nginx_unrestored = False
    if undo.nginx_snapshot is not None and current is not None:
        try:
            st.restore(ctx.paths.nginx, undo.nginx_snapshot)
            ctx.runtime.nginx_test()
            ctx.runtime.nginx_reload()
        except Exception as exc:
            nginx_unrestored = True
            problems.append(f"restoring the previous nginx config failed: {_describe(exc)}")
    if nginx_unrestored:
        # nginx may still route to the new release: stopping it (or putting the old secrets
        # back under nginx's feet) would turn a failed deploy into a full outage.
        if undo.started is not None:
            problems.append(f"left {undo.started.name} running because nginx may still route to it")
    elif undo.started is not None:
        try:
            ctx.runtime.stop(undo.started)
        except Exception as exc:
            problems.append(f"stopping {undo.started.name} failed: {_describe(exc)}")
    if current is not None and not nginx_unrestored:
        try:
            install_live_files(ctx.paths, ctx.paths.release_dir(current.release))
        except Exception as exc:
            problems.append(f"restoring the live secrets failed: {_describe(exc)}")
    message = f"{action} {release}: {failure}; {serving}"
    code = EXIT_FAILED
    if problems:
        message += "; ATTENTION: " + "; ".join(problems)
        code = EXIT_RESTORE_FAILED if nginx_unrestored else EXIT_FAILED
    print(message, file=ctx.err, flush=True)
    st.audit(ctx.paths.audit_log, ctx.actor, action, release, "failed", message)
    return code


def _finish(
    ctx: Context,
    action: str,
    release: str,
    manifest: Manifest,
    current: st.Current | None,
    app_release: str,
    fingerprint: str,
    reuse: bool,
    running_base: dict[str, str],
) -> None:
    paths = ctx.paths
    warnings: list[str] = []
    # nginx already serves the new release: record that first, so nothing below (an unreadable
    # old manifest, a full disk while stopping) can leave the state naming the old release.
    base = dict(running_base)
    base[NGINX_SERVICE] = manifest.service_digests[NGINX_SERVICE]
    if action == "deploy":
        base.update({s: manifest.service_digests[s] for s in manifest.base_services})
    st.write_current(paths, st.Current(release, app_release, fingerprint))
    st.append_history(
        paths, {"release": release, "app_release": app_release, "action": action, "actor": ctx.actor}
    )
    st.write_base(paths, base)
    if current is not None and not reuse and current.app_release != app_release:
        try:
            old_manifest = load_manifest(paths.release_dir(current.app_release))
            old_app, _ = projects(paths, current.app_release, old_manifest)
            ctx.say(f"{action} {release}: stop-old: {old_app.name} after {ctx.options.drain:g}s drain")
            ctx.sleep(ctx.options.drain)  # nginx's old workers finish their in-flight requests
            ctx.runtime.stop(old_app)
        except Exception as exc:  # the new release serves: a leftover old one is a warning
            warnings.append(f"stopping the old release {current.app_release} failed: {_describe(exc)}")
    warnings += prune(ctx, st.Current(release, app_release, fingerprint))
    message = f"{action} {release}: done; release {release} serving"
    if current is not None:
        message += f" (was {current.release})"
    if warnings:
        message += "; warnings: " + "; ".join(warnings)
    ctx.say(message)
    st.audit(paths.audit_log, ctx.actor, action, release, "ok", message)


def prune(ctx: Context, current: st.Current) -> list[str]:
    """Delete old release dirs and their app images; returns warnings (never fails a switch)."""
    paths = ctx.paths
    history = st.read_history(paths)
    app_releases = {e["release"]: e.get("app_release", e["release"]) for e in history if "release" in e}
    on_disk = sorted(p.name for p in paths.releases.iterdir() if p.is_dir() and is_release_id(p.name))
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


# --------------------------------------------------------------------------- commands


def cmd_deploy(ctx: Context, bundle: Path, release_override: str | None) -> int:
    manifest = load_manifest(bundle)
    release = release_id(bundle, release_override)
    current = st.read_current(ctx.paths)
    if current is not None and current.release == release:
        message = f"deploy {release}: release {release} is already current; nothing to do"
        ctx.say(message)
        st.audit(ctx.paths.audit_log, ctx.actor, "deploy", release, "noop", message)
        return EXIT_OK
    install_release(ctx, bundle, release)
    return _switch(ctx, "deploy", release, manifest, current)


def cmd_receive(ctx: Context, stdin: BinaryIO, deploy: bool) -> int:
    digest, files = parse_payload(read_limited(stdin))
    release = digest[:RELEASE_LEN]
    current = st.read_current(ctx.paths)
    if current is not None and current.release == release:
        # never rewrite the serving release's dir; the deploy below says it is a no-op
        target = ctx.paths.release_dir(release)
    else:
        target = write_release(ctx.paths, digest, files)
        ctx.say(f"receive {release}: {len(files)} files in {target}")
    if not deploy:
        return EXIT_OK
    return cmd_deploy(ctx, target, release)


def cmd_rollback(ctx: Context, target: str | None) -> int:
    current = st.read_current(ctx.paths)
    history = st.read_history(ctx.paths)
    kept = [r for r in st.releases_by_recency(history) if ctx.paths.release_dir(r).is_dir()]
    release = target or previous_release(history, current.release if current else None)
    if release is None or release not in kept:
        raise UsageError(
            f"rollback: no kept release {release or '(previous)'}; kept: {', '.join(kept) or 'none'}"
        )
    if current is not None and current.release == release:
        message = f"rollback {release}: release {release} is already current; nothing to do"
        ctx.say(message)
        st.audit(ctx.paths.audit_log, ctx.actor, "rollback", release, "noop", message)
        return EXIT_OK
    manifest = load_manifest(ctx.paths.release_dir(release))
    return _switch(ctx, "rollback", release, manifest, current)


def releases_view(paths: st.HostPaths) -> list[dict[str, object]]:
    current = st.read_current(paths)
    history = st.read_history(paths)
    previous = previous_release(history, current.release if current else None)
    last: dict[str, dict[str, str]] = {}
    for entry in history:
        last[entry.get("release", "")] = entry
    rows: list[dict[str, object]] = []
    for release in st.releases_by_recency(history):
        if not paths.release_dir(release).is_dir():
            continue
        entry = last[release]
        rows.append(
            {
                "release": release,
                "current": current is not None and release == current.release,
                "previous": release == previous,
                "activated": entry.get("time", ""),
                "action": entry.get("action", ""),
                "app_release": entry.get("app_release", release),
            }
        )
    return rows


def cmd_releases(ctx: Context, as_json: bool) -> int:
    rows = releases_view(ctx.paths)
    if as_json:
        ctx.say(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        ctx.say("no releases yet")
    for row in rows:
        mark = "* " if row["current"] else "  "
        note = " (current)" if row["current"] else " (previous)" if row["previous"] else ""
        ctx.say(f"{mark}{row['release']}  {row['activated']}  {row['action']}{note}")
    return EXIT_OK


def cmd_status(ctx: Context, as_json: bool) -> int:
    current = st.read_current(ctx.paths)
    if current is None:
        ctx.say(json.dumps({"current": None}) if as_json else "no release deployed yet")
        return EXIT_OK
    manifest = load_manifest(ctx.paths.release_dir(current.release))
    app, _ = projects(ctx.paths, current.app_release, manifest)
    try:
        health: dict[str, object] = dict(ctx.runtime.health(app, manifest.app_names()))
    except RuntimeFailure:
        health = {s: "unknown" for s in manifest.app_names()}
    services = [
        {
            "name": s.name,
            "port": s.port,
            "image": s.image,
            "upstream": s.upstream,
            "address": ctx.runtime.upstream_address(current.app_release, s.name, s.port),
            "healthy": health.get(s.name),
            "hostnames": list(s.hostnames),
        }
        for s in manifest.app_services
    ]
    view = {
        "current": current.release,
        "app_release": current.app_release,
        "stack": manifest.stack,
        "environment": manifest.environment,
        "services": services,
        "base": st.read_base(ctx.paths),
    }
    if as_json:
        ctx.say(json.dumps(view, indent=2))
        return EXIT_OK
    ctx.say(f"current release {current.release} ({manifest.stack}, containers of {current.app_release})")
    for s in services:
        ctx.say(f"  {s['name']:<6} {s['address']:<28} healthy={s['healthy']}  {s['image']}")
    return EXIT_OK


def cmd_logs(ctx: Context, service: str | None, tail: int, follow: bool) -> int:
    """Logs of the containers serving now: the app project holding the current release's app
    containers (all app services when no SERVICE), or the base project for a base service."""
    current = st.read_current(ctx.paths)
    if current is None:
        raise UsageError("no release deployed yet: no logs to show")
    manifest = load_manifest(ctx.paths.release_dir(current.release))
    app, _ = projects(ctx.paths, current.app_release, manifest)
    _, base = projects(ctx.paths, current.release, manifest)
    if service is None or service in manifest.app_names():
        project = app
    elif service in manifest.base_services:
        project = base
    else:
        names = ", ".join((*manifest.app_names(), *manifest.base_services))
        raise UsageError(f"unknown service {service!r}; services of release {current.release}: {names}")
    ctx.out.flush()  # the runtime writes to the same stdout: our lines first
    try:
        code = ctx.runtime.logs(project, [service] if service else [], tail, follow)
    except RuntimeFailure as exc:
        print(f"logs: {exc}", file=ctx.err, flush=True)
        return EXIT_FAILED
    return EXIT_OK if code == 0 else EXIT_FAILED


def cmd_migrate(ctx: Context) -> int:
    """The deploy's migrate step again, for the current release (e.g. once a failed migration's
    cause is fixed): same service and command, in the project of the containers serving now."""
    current = st.read_current(ctx.paths)
    if current is None:
        raise UsageError("no release deployed yet: nothing to migrate")
    release = current.release
    manifest = load_manifest(ctx.paths.release_dir(release))
    if manifest.migrate is None:
        message = f"migrate {release}: the release has no migrate command; nothing to do"
        ctx.say(message)
        st.audit(ctx.paths.audit_log, ctx.actor, "migrate", release, "noop", message)
        return EXIT_OK
    app, _ = projects(ctx.paths, current.app_release, manifest)
    what = f"{manifest.migrate.service} {' '.join(manifest.migrate.command)}"
    ctx.say(f"migrate {release}: {what} in {app.name}")
    try:
        ctx.runtime.run_once(app, manifest.migrate.service, manifest.migrate.command)
    except RuntimeFailure as exc:
        message = f"migrate {release}: failed: {exc}; release {release} still serving"
        print(message, file=ctx.err, flush=True)
        st.audit(ctx.paths.audit_log, ctx.actor, "migrate", release, "failed", message)
        return EXIT_FAILED
    message = f"migrate {release}: done"
    ctx.say(message)
    st.audit(ctx.paths.audit_log, ctx.actor, "migrate", release, "ok", message)
    return EXIT_OK


# --------------------------------------------------------------------------- CLI


def tail_lines(text: str) -> int:
    """argparse type: a log line count in 1..LOG_TAIL_MAX (the ops CLI uses the same check)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= LOG_TAIL_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not a line count in 1..{LOG_TAIL_MAX}")
    return value


Handler = Callable[[Context, argparse.Namespace, BinaryIO | None], int]

# subcommand -> (handler, whether it runs under the deploy lock). Whatever changes the host or
# its containers takes the lock, so it never interleaves with a deploy. A new subcommand is its
# parser in build_parser plus one entry here.
COMMANDS: Final[dict[str, tuple[Handler, bool]]] = {
    "deploy": (lambda ctx, a, _: cmd_deploy(ctx, a.bundle, a.release), True),
    "receive": (lambda ctx, a, stdin: cmd_receive(ctx, stdin or sys.stdin.buffer, a.deploy), True),
    "rollback": (lambda ctx, a, _: cmd_rollback(ctx, a.release), True),
    "migrate": (lambda ctx, _a, _: cmd_migrate(ctx), True),
    "releases": (lambda ctx, a, _: cmd_releases(ctx, a.json), False),
    "status": (lambda ctx, a, _: cmd_status(ctx, a.json), False),
    "logs": (lambda ctx, a, _: cmd_logs(ctx, a.service, a.tail, a.follow), False),
    **backup.COMMANDS,
}
SWITCH_COMMANDS: Final = ("deploy", "rollback", "receive")  # the ones taking the switch options


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bankflow-agent", description="BankFlow release switch on the host")
    parser.add_argument("--home", help=f"host root (default: ${st.HOME_ENV} or {st.DEFAULT_HOME})")
    parser.add_argument(
        "--actor", help="who is acting, for the audit log (default: BANKFLOW_ACTOR/SUDO_USER/USER)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    switch = argparse.ArgumentParser(add_help=False)
    switch.add_argument("--health-timeout", type=float, default=Options.health_timeout)
    switch.add_argument(
        "--verify-url",
        default=os.environ.get(VERIFY_URL_ENV) or Options.verify_url,
        help=f"nginx as seen from the host (default: ${VERIFY_URL_ENV} or {Options.verify_url})",
    )
    switch.add_argument("--verify-timeout", type=float, default=Options.verify_timeout)
    switch.add_argument("--settle", type=float, default=Options.settle, help=argparse.SUPPRESS)
    switch.add_argument(
        "--drain", type=float, default=Options.drain, help="seconds before stopping the old release"
    )
    switch.add_argument("--keep", type=int, default=Options.keep, help="releases to keep")
    switch.add_argument("--fresh", action="store_true", help="new app containers even if unchanged")
    deploy = sub.add_parser("deploy", parents=[switch], help="deploy a release bundle dir")
    deploy.add_argument("bundle", type=Path)
    deploy.add_argument("--release", help="release id (default: the bundle dir's hex name, else its digest)")
    rollback = sub.add_parser("rollback", parents=[switch], help="switch back to a kept release")
    rollback.add_argument("release", nargs="?")
    receive = sub.add_parser("receive", parents=[switch], help="write a bundle sent as JSON on stdin")
    receive.add_argument("--stdin", action="store_true", required=True, help="read the bundle from stdin")
    receive.add_argument("--deploy", action="store_true", help="then deploy it")
    for name in ("releases", "status"):
        sub.add_parser(name).add_argument("--json", action="store_true")
    logs = sub.add_parser("logs", help="logs of the serving containers (app services, or a base service)")
    logs.add_argument("service", nargs="?", help="one service (default: every app service)")
    logs.add_argument("--tail", type=tail_lines, default=LOG_TAIL_DEFAULT, help="lines per service")
    logs.add_argument("--follow", action="store_true", help="keep printing new lines")
    sub.add_parser("migrate", help="run the current release's migrate command again")
    backup.register(sub)
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    runtime: Runtime | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    stdin: BinaryIO | None = None,
) -> int:
    args = build_parser().parse_args(argv)
    paths = st.HostPaths.from_env(args.home)
    options = Options()
    if args.command in SWITCH_COMMANDS:
        options = Options(
            args.health_timeout,
            args.verify_url,
            args.verify_timeout,
            args.settle,
            args.drain,
            max(args.keep, 2),
            args.fresh,
        )
    ctx = Context(
        paths, runtime or DockerRuntime(), options, st.actor(args.actor), out or sys.stdout, err or sys.stderr
    )
    handler, locked = COMMANDS[args.command]
    try:
        parse_target(options.verify_url)
        paths.ensure()
        if not locked:
            return handler(ctx, args, stdin)
        with st.exclusive_lock(paths.lock):
            return handler(ctx, args, stdin)
    except st.LockBusy as exc:
        print(f"{args.command}: {exc}", file=ctx.err)
        st.audit(paths.audit_log, ctx.actor, args.command, None, "refused", str(exc))
        return EXIT_LOCKED
    except (ManifestError, UsageError, ValueError) as exc:
        print(f"{args.command}: {exc}", file=ctx.err)
        if locked:
            st.audit(paths.audit_log, ctx.actor, args.command, None, "refused", str(exc))
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
