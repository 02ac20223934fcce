"""``releases [--json]`` and ``status [--json]``: what the host keeps and what serves now.

Stdlib only; read-only (no lock).
"""

from __future__ import annotations

import json
import os

from ..contract.exit_codes import OK
from ..contract.layout import HostPaths
from . import state as st
from .context import Context
from .journal import describe_open, open_attempts
from .manifest import Manifest, load_manifest
from .release_dir import projects
from .runtime import RuntimeFailure


def releases_view(paths: HostPaths) -> list[dict[str, object]]:
    current = st.read_current(paths)
    history = st.read_history(paths)
    previous = st.previous_release(history, current.release if current else None)
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


def open_attempts_view(paths: HostPaths) -> list[str]:
    """Attempts with a "started" audit line and no end: running, or killed before any later
    command could close them (the next locked command does)."""
    return [describe_open(entry, _alive(entry.get("pid"))) for entry in open_attempts(paths)]


def _alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cmd_releases(ctx: Context, as_json: bool) -> int:
    rows = releases_view(ctx.paths)
    attempts = open_attempts_view(ctx.paths)
    if as_json:
        ctx.say(json.dumps(rows, indent=2))
        return OK
    if not rows:
        ctx.say("no releases yet")
    for row in rows:
        mark = "* " if row["current"] else "  "
        note = " (current)" if row["current"] else " (previous)" if row["previous"] else ""
        ctx.say(f"{mark}{row['release']}  {row['activated']}  {row['action']}{note}")
    for line in attempts:
        ctx.say(f"! {line}")
    return OK


def service_rows(ctx: Context, current: st.Current, manifest: Manifest) -> list[dict[str, object]]:
    """The serving app services: address, image and health (``unknown`` when the runtime fails)."""
    app, _ = projects(ctx.paths, current.app_release, manifest)
    try:
        health: dict[str, object] = dict(ctx.runtime.health(app, manifest.app_names()))
    except RuntimeFailure:
        health = {s: "unknown" for s in manifest.app_names()}
    return [
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


def cmd_status(ctx: Context, as_json: bool) -> int:
    current = st.read_current(ctx.paths)
    attempts = open_attempts_view(ctx.paths)
    if current is None:
        ctx.say(
            json.dumps({"current": None, "open_attempts": attempts}) if as_json else "no release deployed yet"
        )
        for line in [] if as_json else attempts:
            ctx.say(f"! {line}")
        return OK
    manifest = load_manifest(ctx.paths.release_dir(current.release))
    services = service_rows(ctx, current, manifest)
    view = {
        "current": current.release,
        "app_release": current.app_release,
        "stack": manifest.stack,
        "environment": manifest.environment,
        "services": services,
        "base": st.read_base(ctx.paths),
        "open_attempts": attempts,
    }
    if as_json:
        ctx.say(json.dumps(view, indent=2))
        return OK
    ctx.say(f"current release {current.release} ({manifest.stack}, containers of {current.app_release})")
    for s in services:
        ctx.say(f"  {s['name']:<6} {s['address']:<28} healthy={s['healthy']}  {s['image']}")
    for line in attempts:
        ctx.say(f"! {line}")
    return OK
