"""``migrate``: the deploy's migrate step again, for the release serving now, audited.

Stdlib only; runs under the agent's lock (it changes the database).
"""

from __future__ import annotations

from ..contract.exit_codes import FAILED, OK
from . import state as st
from .context import Context, UsageError
from .manifest import load_manifest
from .release_dir import projects
from .runtime import RuntimeFailure


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
        ctx.audit("migrate", release, "noop", message)
        return OK
    app, _ = projects(ctx.paths, current.app_release, manifest)
    what = f"{manifest.migrate.service} {' '.join(manifest.migrate.command)}"
    ctx.say(f"migrate {release}: {what} in {app.name}")
    try:
        ctx.runtime.run_once(app, manifest.migrate.service, manifest.migrate.command)
    except RuntimeFailure as exc:
        message = f"migrate {release}: failed: {exc}; release {release} still serving"
        ctx.complain(message)
        ctx.audit("migrate", release, "failed", message)
        return FAILED
    message = f"migrate {release}: done"
    ctx.say(message)
    ctx.audit("migrate", release, "ok", message)
    return OK
