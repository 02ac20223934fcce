"""``migrate``: the deploy's migrate step again, for the release serving now, audited.

Stdlib only; runs under the agent's lock (it changes the database).
"""

from __future__ import annotations

from ..contract.exit_codes import FAILED, OK
from ..contract.release import MANIFEST_NAME
from . import state as st
from .context import Context, UsageError
from .manifest import load_manifest
from .release_dir import install_release, projects
from .runtime import RuntimeFailure


def cmd_migrate(ctx: Context, staged: str | None = None) -> int:
    """The deploy's migrate step again, for the current release (e.g. once a failed migration's
    cause is fixed): same service and command, in the project of the containers serving now.

    ``staged`` (issue 13's rolling deploy): the migrations of a release received but not switched
    to yet, run ONCE on the first droplet before the roll switches any droplet; its own project
    (``compose run`` pulls the image), the serving release untouched."""
    current = st.read_current(ctx.paths)
    if staged is not None:
        if not (ctx.paths.release_dir(staged) / MANIFEST_NAME).is_file():
            raise UsageError(f"migrate --release {staged}: that release was not received on this host")
        install_release(ctx.paths, ctx.paths.release_dir(staged), staged)  # in place: its release.env
        release, app_release = staged, staged
    elif current is None:
        raise UsageError("no release deployed yet: nothing to migrate")
    else:
        release, app_release = current.release, current.app_release
    manifest = load_manifest(ctx.paths.release_dir(release))
    if manifest.migrate is None:
        message = f"migrate {release}: the release has no migrate command; nothing to do"
        ctx.say(message)
        ctx.audit("migrate", release, "noop", message)
        return OK
    app, _ = projects(ctx.paths, app_release, manifest)
    what = f"{manifest.migrate.service} {' '.join(manifest.migrate.command)}"
    ctx.say(f"migrate {release}: {what} in {app.name}")
    try:
        migrate = manifest.migrate
        ctx.runtime.run_once(app, migrate.service, migrate.command, migrate.environment)
    except RuntimeFailure as exc:
        serving = current.release if current else "none"
        message = f"migrate {release}: failed: {exc}; release {serving} still serving"
        ctx.complain(message)
        ctx.audit("migrate", release, "failed", message)
        return FAILED
    message = f"migrate {release}: done"
    ctx.say(message)
    ctx.audit("migrate", release, "ok", message)
    return OK
