"""What the Pulumi remote commands send to the droplet on stdin (pure: no pulumi import)."""

from __future__ import annotations

import json
from typing import Final

from bankflow_infra.render import Bundle
from bankflow_infra.render.payloads import REPO_ROOT, agent_files, tar_payload
from bankflow_infra.settings import Settings

FILES_DIR: Final = REPO_ROOT / "files"
BOOTSTRAP_SCRIPTS: Final = ("bootstrap/host-setup.sh",)
SSHD_DROPIN: Final = "ssh/50-bankflow-hardening.conf"


def _static(path: str, mode: int) -> tuple[str, bytes, int]:
    return (path, (FILES_DIR / path).read_bytes(), mode)


def authorized_keys(settings: Settings, deploy_public_key: str) -> str:
    """root's authorized_keys: the generated deploy key plus the admins' keys from config."""
    return "\n".join([deploy_public_key.strip(), *settings.server.admin_ssh_keys]) + "\n"


def bootstrap_payload(settings: Settings, bundle: Bundle, deploy_public_key: str) -> str:
    """The host setup script, its inputs (host files of the bundle, sshd drop-in) and the agent."""
    files = [_static(p, 0o755) for p in BOOTSTRAP_SCRIPTS]
    files.append(_static(SSHD_DROPIN, 0o644))
    files += [(f.path, f.text.encode(), f.mode) for f in bundle.files if f.path.startswith("host/")]
    files.append(("ssh/authorized_keys", authorized_keys(settings, deploy_public_key).encode(), 0o600))
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
