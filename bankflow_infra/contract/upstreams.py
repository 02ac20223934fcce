"""The nginx upstream includes: the files a release switch rewrites.

Stdlib only: the host agent writes them on the droplet, and the renderer imports these same
functions for the bundle's first includes, so the format has a single definition.

Two includes:

- ``upstreams.conf`` (the manifest's ``upstreams_file``): what the public servers proxy to. Its
  first line names the release nginx serves (and whose containers): the agent's state is rebuilt
  from it after a crash (:func:`parse_served`), so it is the live truth.
- ``upstreams-candidate.conf``: the ``<name>_candidate`` upstreams, used only by the loopback
  verify listener (:data:`CANDIDATE_PORT`). A switch points them at the new release and checks it
  through nginx -- same config, same headers -- before any public request can reach it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

KEEPALIVE_CONNECTIONS = 16
CANDIDATE_UPSTREAMS_FILE: Final = "upstreams-candidate.conf"
CANDIDATE_SUFFIX: Final = "_candidate"
# The verify listener: nginx listens here (published on the host's 127.0.0.1 only) with a server
# per public hostname that proxies to the candidate upstreams.
CANDIDATE_PORT: Final = 8443
DEFAULT_CANDIDATE_URL: Final = f"https://127.0.0.1:{CANDIDATE_PORT}"
# How long the previous release may take to finish its in-flight requests (per app service; the
# manifest may say otherwise). nginx's worker_shutdown_timeout is the same bound.
DEFAULT_DRAIN_SECONDS: Final = 30

_SERVED_RE: Final = re.compile(r"^# bankflow release (\S+)(?: app (\S+))? -- ")


def candidate_upstream(name: str) -> str:
    return f"{name}{CANDIDATE_SUFFIX}"


def render_upstreams(
    addresses: Mapping[str, str],
    release: str,
    *,
    app_release: str | None = None,
    backups: Mapping[str, str] | None = None,
    suffix: str = "",
) -> str:
    """nginx ``upstream`` blocks, one per upstream name, each pointing at ``host:port``.

    ``addresses`` maps an upstream name (``bankflow_site``) to its address; ``release`` and
    ``app_release`` (whose containers serve it; default ``release``) are recorded in the first line,
    which :func:`parse_served` reads back. ``backups``: the previous release's address per
    upstream, used by nginx only when the new one refuses or times out (``proxy_next_upstream``),
    during the watch right after a public switch. ``suffix`` names the candidate upstreams.
    """
    app = "" if app_release == "" else f" app {app_release or release}"  # "": a placeholder
    lines = [f"# bankflow release {release}{app} -- written by the host agent; do not edit by hand"]
    for name in sorted(addresses):
        lines += [f"upstream {name}{suffix} {{", f"    server {addresses[name]} max_fails=0;"]
        backup = (backups or {}).get(name)
        if backup and backup != addresses[name]:
            lines.append(f"    server {backup} backup max_fails=0;")
        lines += [f"    keepalive {KEEPALIVE_CONNECTIONS};", "}"]
    return "\n".join(lines) + "\n"


def parse_served(text: str) -> tuple[str, str | None] | None:
    """(release, app release) named by an upstream include's first line; None for anything else.

    The app release is None in a file written before it was recorded there (the agent then
    takes it from its state, when that names the same release)."""
    match = _SERVED_RE.match(text.split("\n", 1)[0])
    if match is None:
        return None
    return match.group(1), match.group(2)


def has_backups(text: str) -> bool:
    return " backup " in text
