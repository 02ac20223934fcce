"""Reconciliation: at the start of every command, the agent's record is made to agree with the
live host, so whatever killed the previous command (SIGKILL, power loss, a full disk) the state
converges instead of drifting.

Stdlib only. Runs under the deploy lock, so no switch is in flight. In this order:

1. **nginx config** -- the live config must pass ``nginx -t``; if not, the last known-good files
   (saved after every good switch) are put back and loaded, before anything else;
2. **live truth** -- the public upstream include names the release nginx serves and whose
   containers (``contract.upstreams.parse_served``). ``current.json`` is rewritten from it when it
   is missing, garbled or names something else; ``history.json``/``base.json`` come from their
   previous generation, else are rebuilt (each said, naming the file);
3. **the killed attempt** -- a left-over intent journal, and "started" audit lines whose process
   is gone, get an ``interrupted`` end line naming the step;
4. **includes** -- the public include loses any ``backup`` servers, the candidate include points
   at the serving containers (a switch killed mid-way leaves either);
5. **orphans** -- app compose projects other than the serving one are drained, then stopped;
6. **temp files** -- ``releases/.*.incoming-*``, ``.*.tmp-*`` of dead writers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..contract.release import APP_PROJECT_PREFIX, app_project_name, is_release_id
from ..contract.upstreams import CANDIDATE_UPSTREAMS_FILE, DEFAULT_DRAIN_SECONDS, has_backups, parse_served
from . import journal, traffic
from . import state as st
from .context import Context, describe
from .files import TEMP_MARK
from .manifest import Manifest, ManifestError, app_fingerprint, load_manifest
from .plan import app_project
from .runtime import RuntimeFailure
from .switch_finish import KNOWN_GOOD_DIR, save_known_good

PUBLIC_UPSTREAMS_FILE = "upstreams.conf"  # the manifest's upstreams_file (render/nginx.UPSTREAMS_FILE)
INCOMING_MARK = ".incoming-"
RELOAD_SETTLE = 0.5  # seconds for `nginx -s reload` to take effect (it returns at once)


@dataclass
class Report:
    notes: list[str] = field(default_factory=list)  # what was repaired
    problems: list[str] = field(default_factory=list)  # what could not be

    def lines(self) -> list[str]:
        return [f"reconcile: {n}" for n in self.notes] + [f"reconcile: PROBLEM: {p}" for p in self.problems]


def reconcile(ctx: Context) -> Report:
    report = Report()
    if _fresh_host(ctx):
        return report  # nothing was ever deployed or started here: nothing to agree with
    projects = _projects(ctx, report)
    if projects is not None and "bankflow" in projects:
        _check_nginx_config(ctx, report)
    served = _served(ctx)
    manifest = _manifest_of(ctx, served[0]) if served else None
    _state_files(ctx, served, manifest, report)
    interrupted = _close_attempts(ctx, served, report)
    if served is not None and manifest is not None:
        # after an interrupted command the live files may not be what nginx has loaded
        _canonical_includes(ctx, served, manifest, report, reload=interrupted)
    if projects is not None:
        _stop_orphans(ctx, served, projects, report)
    _remove_temp_files(ctx, report)
    for line in report.lines():
        ctx.complain(line)
    return report


def _fresh_host(ctx: Context) -> bool:
    paths = ctx.paths
    empty = [not d.is_dir() or not any(d.iterdir()) for d in (paths.releases, paths.nginx)]
    state = [f.exists() for f in (paths.current_file, paths.history_file, journal.intent_file(paths))]
    return all(empty) and not any(state)


def _projects(ctx: Context, report: Report) -> list[str] | None:
    try:
        return list(ctx.runtime.projects())
    except RuntimeFailure as exc:
        report.problems.append(f"cannot list compose projects: {exc}")
        return None


def _check_nginx_config(ctx: Context, report: Report) -> None:
    try:
        ctx.runtime.nginx_test()
        return
    except RuntimeFailure as exc:
        failure = str(exc)
    good = ctx.paths.state / KNOWN_GOOD_DIR
    if not good.is_dir():
        report.problems.append(
            f"the live nginx config fails nginx -t ({failure}) and no known-good copy exists"
        )
        return
    try:
        st.mirror_files(good, ctx.paths.nginx, None)
        traffic.reload_nginx(ctx.runtime)
    except (RuntimeFailure, OSError) as exc:
        report.problems.append(
            f"the live nginx config fails nginx -t ({failure}); restoring the known-good copy failed too: "
            f"{describe(exc)}"
        )
        return
    report.notes.append(
        f"the live nginx config failed nginx -t ({failure}): restored the known-good copy {good}"
    )


def _served(ctx: Context) -> tuple[str, str] | None:
    """(release, app release) the live public include names; None when it names none."""
    try:
        text = (ctx.paths.nginx / PUBLIC_UPSTREAMS_FILE).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    parsed = parse_served(text)
    if parsed is None or not is_release_id(parsed[0]):
        return None
    release, app_release = parsed
    if app_release is None:  # written by an agent that did not record it: the state knows
        with contextlib.suppress(st.StateCorrupt):
            current = st.read_current(ctx.paths)
            if current is not None and current.release == release:
                app_release = current.app_release
    app_release = app_release or release
    return (release, app_release) if is_release_id(app_release) else None


def _manifest_of(ctx: Context, release: str) -> Manifest | None:
    try:
        return load_manifest(ctx.paths.release_dir(release))
    except ManifestError:
        return None


def _state_files(
    ctx: Context, served: tuple[str, str] | None, manifest: Manifest | None, report: Report
) -> None:
    paths = ctx.paths
    try:
        current = st.read_current(paths)
        problem = None
    except st.StateCorrupt as exc:
        current, problem = None, str(exc)
    live = f"{paths.nginx / PUBLIC_UPSTREAMS_FILE}"
    if served is None:
        if problem is not None:
            paths.current_file.unlink()
            report.notes.append(f"{problem}; nginx serves no release ({live}): removed it")
        return
    release, app_release = served
    if current is None or (current.release, current.app_release) != served:
        fingerprint = app_fingerprint(paths.release_dir(release), manifest) if manifest else ""
        st.write_current(paths, st.Current(release, app_release, fingerprint))
        was = problem or (
            f"state file {paths.current_file} named {current.release}"
            if current
            else f"state file {paths.current_file} is missing"
        )
        report.notes.append(f"{was}; nginx serves release {release} ({live}): rewritten from it")
    _history(ctx, release, app_release, report)
    _base(ctx, manifest, report)


def _history(ctx: Context, release: str, app_release: str, report: Report) -> None:
    paths = ctx.paths
    try:
        history, warning = st.read_history_checked(paths)
    except st.StateCorrupt as exc:
        history, warning = [], f"{exc}; started a new history"
    if warning:
        report.notes.append(warning)
    if not history or history[-1].get("release") != release or warning:
        if not history or history[-1].get("release") != release:
            entry = {
                "release": release,
                "app_release": app_release,
                "action": "reconcile",
                "actor": ctx.actor,
            }
            history.append({**entry, "time": st.utc_now()})
        st.write_generations(paths.history_file, history)


def _base(ctx: Context, manifest: Manifest | None, report: Report) -> None:
    try:
        _, warning = st.read_base_checked(ctx.paths)
    except st.StateCorrupt as exc:
        digests = dict(manifest.service_digests) if manifest else {}
        base = {s: digests[s] for s in (manifest.base_services if manifest else ()) if s in digests}
        st.write_generations(ctx.paths.base_file, base)
        report.notes.append(f"{exc}; rebuilt from the serving release's manifest")
        return
    if warning:
        st.write_generations(ctx.paths.base_file, st.read_base(ctx.paths))
        report.notes.append(warning)


def _close_attempts(ctx: Context, served: tuple[str, str] | None, report: Report) -> bool:
    """Close what a dead process left open; whether there was anything."""
    now = f"release {served[0]} serving" if served else "no release serving"
    intent = journal.read_intent(ctx.paths)
    closed: set[str] = set()
    if intent is not None:
        message = (
            f"{intent.action} {intent.release} by {intent.actor} "
            f"(started {intent.started}, pid {intent.pid}) was interrupted at step '{intent.step}'; "
            f"reconciled: {now}"
        )
        journal.Attempt(intent.attempt, intent.action, intent.actor, intent.release).end(
            ctx.paths, journal.INTERRUPTED, message
        )
        journal.clear_intent(ctx.paths)
        closed.add(intent.attempt)
        report.notes.append(message)
    for entry in journal.open_attempts(ctx.paths):
        pid, attempt = entry.get("pid"), str(entry.get("attempt"))
        if attempt in closed or attempt == ctx.attempt or (isinstance(pid, int) and _alive(pid)):
            continue
        message = f"{journal.describe_open(entry, False)}; reconciled: {now}"
        action, release = str(entry.get("action")), entry.get("release")
        journal.Attempt(
            attempt, action, str(entry.get("actor")), release if isinstance(release, str) else None
        ).end(ctx.paths, journal.INTERRUPTED, message)
        closed.add(attempt)
        report.notes.append(message)
    return bool(closed)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return pid != os.getpid()


def _canonical_includes(
    ctx: Context, served: tuple[str, str], manifest: Manifest, report: Report, reload: bool
) -> None:
    """Public include without backups, candidate include on the serving containers, loaded."""
    release, app_release = served
    live = ctx.paths.nginx / PUBLIC_UPSTREAMS_FILE
    try:
        if has_backups(live.read_text(encoding="utf-8")):
            reload = traffic.write_public(ctx, manifest, release, app_release) or reload
        if (ctx.paths.nginx / CANDIDATE_UPSTREAMS_FILE).is_file():
            reload = traffic.write_candidate(ctx, manifest, release, app_release) or reload
        if reload:
            traffic.reload_nginx(ctx.runtime)
            ctx.sleep(RELOAD_SETTLE)  # the reload lands (old workers draining) before anything stops
            report.notes.append(
                f"nginx reloaded: it serves its live includes (release {release}, containers of "
                f"{app_release})"
            )
        if reload or not (ctx.paths.state / KNOWN_GOOD_DIR).is_dir():
            save_known_good(ctx)
    except (RuntimeFailure, OSError) as exc:
        report.problems.append(
            f"nginx serves release {release} but its includes cannot be rewritten: {describe(exc)}"
        )


def _stop_orphans(ctx: Context, served: tuple[str, str] | None, projects: list[str], report: Report) -> None:
    apps = [p for p in projects if p.startswith(APP_PROJECT_PREFIX)]
    if served is None and _never_served(ctx):
        orphans = apps  # a first deploy that never reached its public switch
    elif served is None:
        if apps:
            # never guess which containers serve: stopping the wrong ones is an outage
            report.problems.append(
                f"{PUBLIC_UPSTREAMS_FILE} names no release; left {', '.join(apps)} running"
            )
        return
    else:
        orphans = [p for p in apps if p != app_project_name(served[1])]
    if not orphans:
        return
    limit = ctx.options.drain if ctx.options.drain is not None else float(DEFAULT_DRAIN_SECONDS)
    report.notes.append(f"drain before stopping orphans: {traffic.drain(ctx, limit)}")
    for name in orphans:
        project, _ = app_project(ctx, name.removeprefix(APP_PROJECT_PREFIX))
        try:
            ctx.runtime.stop(project)
            report.notes.append(f"stopped {name}: no nginx include points at it")
        except RuntimeFailure as exc:
            report.problems.append(f"stopping orphan {name} failed: {exc}")


def _never_served(ctx: Context) -> bool:
    try:
        return st.read_current(ctx.paths) is None and not st.read_history(ctx.paths)
    except st.StateCorrupt:
        return False


def _remove_temp_files(ctx: Context, report: Report) -> None:
    paths = ctx.paths
    removed: list[str] = []
    if paths.releases.is_dir():
        for entry in paths.releases.iterdir():
            if entry.name.startswith(".") and (INCOMING_MARK in entry.name or TEMP_MARK in entry.name):
                _remove(entry)
                removed.append(entry.name)
            elif entry.is_dir():  # a release dir: its release.env is written in place (install_release)
                for temp in entry.glob(f".*{TEMP_MARK}*"):
                    _remove(temp)
                    removed.append(str(temp.relative_to(paths.home)))
    for directory in (paths.nginx, paths.state, paths.secrets, paths.tls):
        if directory.is_dir():
            for entry in directory.rglob(f"*{TEMP_MARK}*"):
                _remove(entry)
                removed.append(str(entry.relative_to(paths.home)))
    if removed:
        report.notes.append(f"removed temp files of interrupted writes: {', '.join(sorted(removed))}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
