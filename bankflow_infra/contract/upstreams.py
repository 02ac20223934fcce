"""The nginx upstream include: the one file a release switch rewrites.

Stdlib only: the host agent writes it on the droplet, and the renderer imports this same
function for the bundle's first include, so the format has a single definition.
"""

from __future__ import annotations

from collections.abc import Mapping

KEEPALIVE_CONNECTIONS = 16


def render_upstreams(addresses: Mapping[str, str], release: str) -> str:
    """nginx ``upstream`` blocks, one per upstream name, each pointing at ``host:port``.

    ``addresses`` maps an upstream name (``bankflow_site``) to its address; ``release`` is
    recorded in a comment so an operator reading the live file sees what is serving.
    """
    lines = [f"# bankflow release {release} -- written by the host agent; do not edit by hand"]
    for name in sorted(addresses):
        lines += [
            f"upstream {name} {{",
            f"    server {addresses[name]} max_fails=0;",
            f"    keepalive {KEEPALIVE_CONNECTIONS};",
            "}",
        ]
    return "\n".join(lines) + "\n"
