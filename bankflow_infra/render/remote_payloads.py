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
# PerSourcePenalties (OpenSSH >= 9.8): host-setup.sh installs it only where `sshd -T` knows it.
SSHD_PENALTIES_DROPIN: Final = "ssh/49-bankflow-penalties.conf"
# The deploy key's forced command (issue 12, item 7): only the agent and the deploy's own commands.
SSH_DISPATCH: Final = "ssh/bankflow-ssh-dispatch"
# The data-volume scripts the remote commands run (components/remote_deploy.py); shipped in the
# bootstrap payload so the dispatcher may run exactly these (host-setup.sh records their sha256).
RELEASE_DATA_VOLUME_SCRIPT: Final = "volume/release-data-volume.sh"
GROW_DATA_FILESYSTEM_SCRIPT: Final = "volume/grow-data-filesystem.sh"


def _static(path: str, mode: int) -> tuple[str, bytes, int]:
    return (path, (FILES_DIR / path).read_bytes(), mode)


def authorized_keys(admin_ssh_keys: Sequence[str], deploy_public_key: str) -> str:
    """root's authorized_keys: the generated deploy key only (host-setup.sh gives each line the
    forced command). People log in to their own accounts (server.operators); the settings refuse
    admin keys, so ``admin_ssh_keys`` is always empty and kept only for the call's shape."""
    if admin_ssh_keys:
        raise ValueError("root's authorized_keys holds the deploy key only: use server.operators")
    return deploy_public_key.strip() + "\n"


def bootstrap_payload(admin_ssh_keys: Sequence[str], bundle: Bundle, deploy_public_key: str) -> str:
    """The host setup script, its inputs (host files of the bundle, sshd drop-ins, the deploy key's
    dispatcher and the data-volume scripts it may run) and the agent."""
    files = [_static(p, 0o755) for p in BOOTSTRAP_SCRIPTS]
    files += [_static(SSHD_DROPIN, 0o644), _static(SSHD_PENALTIES_DROPIN, 0o644)]
    files += [_static(SSH_DISPATCH, 0o755)]
    files += [_static(RELEASE_DATA_VOLUME_SCRIPT, 0o644), _static(GROW_DATA_FILESYSTEM_SCRIPT, 0o644)]
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
