"""What the remote commands (``components/remote_deploy.py``) send to the droplet on stdin: the
bootstrap archive and the deploy document (pure: no pulumi import)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

from bankflow_infra.render import Bundle
from bankflow_infra.render.host_files import FILES_DIR
from bankflow_infra.render.payloads import agent_files, tar_payload

BOOTSTRAP_SCRIPTS: Final = ("bootstrap/host-setup.sh",)
SSHD_DROPIN: Final = "ssh/50-bankflow-hardening.conf"


def _static(path: str, mode: int) -> tuple[str, bytes, int]:
    return (path, (FILES_DIR / path).read_bytes(), mode)


def authorized_keys(admin_ssh_keys: Sequence[str], deploy_public_key: str) -> str:
    """root's authorized_keys: the generated deploy key plus the admins' keys from config."""
    return "\n".join([deploy_public_key.strip(), *admin_ssh_keys]) + "\n"


def bootstrap_payload(admin_ssh_keys: Sequence[str], bundle: Bundle, deploy_public_key: str) -> str:
    """The host setup script, its inputs (host files of the bundle, sshd drop-in) and the agent."""
    files = [_static(p, 0o755) for p in BOOTSTRAP_SCRIPTS]
    files.append(_static(SSHD_DROPIN, 0o644))
    files += [(f.path, f.text.encode(), f.mode) for f in bundle.files if f.path.startswith("host/")]
    files.append(("ssh/authorized_keys", authorized_keys(admin_ssh_keys, deploy_public_key).encode(), 0o600))
    files += [(f"agent/{path}", content, mode) for path, content, mode in agent_files()]
    return tar_payload(files)


def deploy_payload(bundle: Bundle) -> str:
    """The whole release bundle as one JSON document (secret files included: stdin only)."""
    return json.dumps(
        {
            "digest": bundle.digest,
            "files": [
                {"path": f.path, "mode": f.mode, "text": f.text}
                for f in (*bundle.files, *bundle.secret_files)
            ],
        },
        sort_keys=True,
    )
