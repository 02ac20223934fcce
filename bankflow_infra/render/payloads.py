"""Deterministic archives that travel to the droplet on SSH stdin.

pulumi-command's CopyToRemote cannot take content computed during the deployment and sets no
file modes, so everything reaches the host as text on stdin: a gzip'd tar, base64-encoded.
Fixed timestamps and owners make the bytes -- and so the trigger digests -- depend only on
content and modes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
from collections.abc import Iterable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
HOST_AGENT_PACKAGE = REPO_ROOT / "bankflow_infra" / "host"
# The agent imports the shared contract (stdlib only) relatively: both ship together.
SHIPPED_PACKAGES = ("host", "contract")


def tar_payload(files: Iterable[tuple[str, bytes, int]]) -> str:
    """base64 of a reproducible tar.gz holding ``(relative path, content, mode)`` entries."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for path, content, mode in sorted(files):
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = mode
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            archive.addfile(info, io.BytesIO(content))
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def agent_files() -> list[tuple[str, bytes, int]]:
    """The host agent as shipped: ``bankflow_infra/{host,contract}/**/*.py`` (subpackages such as
    ``host/backups/`` included) plus the package marker and the launcher.

    The droplet runs it with its own python3 through the launcher /opt/bankflow/bin/bankflow-agent
    (stdlib only, so nothing else is installed there).
    """
    files = [
        ("bankflow_infra/__init__.py", b"", 0o644),
        # The launcher: /opt/bankflow/bin/bankflow-agent runs the package with the host's python3.
        ("bankflow-agent", (HOST_AGENT_PACKAGE / "bankflow-agent").read_bytes(), 0o755),
    ]
    for package in SHIPPED_PACKAGES:
        root = REPO_ROOT / "bankflow_infra" / package
        for source in sorted(root.rglob("*.py")):
            relative = source.relative_to(root).as_posix()
            files.append((f"bankflow_infra/{package}/{relative}", source.read_bytes(), 0o644))
    return files
