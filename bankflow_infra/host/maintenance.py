"""The maintenance response during a restore: every app hostname answers 503 with the maintenance
page and ``Retry-After`` (never a 502), through nginx's maintenance listener. Stdlib only.

Switching is the release switch's own mechanism: the public upstream include is rewritten so that
every app upstream points at the maintenance listener (``contract.release.MAINTENANCE_LISTEN``,
rendered by ``render/nginx.py``), then ``nginx -t`` and a graceful reload. Ending it is the
release switch's ``restart_apps`` (it rewrites the include for the app containers).
"""

from __future__ import annotations

from ..contract.release import MAINTENANCE_LISTEN
from ..contract.upstreams import render_upstreams
from . import state as st
from .context import Context
from .manifest import Manifest
from .traffic import reload_nginx

ADDRESS = MAINTENANCE_LISTEN  # the tests' nginx listens elsewhere (a free port): they set this


def enable(ctx: Context, manifest: Manifest, release: str) -> None:
    """Every app upstream -> the maintenance listener; nginx reloaded."""
    addresses = {service.upstream: ADDRESS for service in manifest.app_services}
    # app_release "" marks the include as not serving any app release (parse_served reads it)
    text = render_upstreams(addresses, release, app_release="")
    st.write_atomic(ctx.paths.nginx / manifest.upstreams_file, text.encode())
    reload_nginx(ctx.runtime)
    ctx.say("restore: maintenance: every app hostname answers 503 with the maintenance page")
