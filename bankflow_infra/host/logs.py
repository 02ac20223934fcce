"""``logs [SERVICE] [--tail N] [--follow]``: logs of the containers serving now.

Stdlib only; read-only (no lock). The runtime streams the lines to the agent's own stdout.
"""

from __future__ import annotations

from ..contract.exit_codes import FAILED, OK
from . import state as st
from .context import Context, UsageError
from .manifest import load_manifest
from .release_dir import projects
from .runtime import RuntimeFailure


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
        ctx.complain(f"logs: {exc}")
        return FAILED
    return OK if code == 0 else FAILED
