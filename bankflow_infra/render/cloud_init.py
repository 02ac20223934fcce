"""The droplet's user_data: the generated SSH host key and nothing else.

Changing user_data replaces a droplet, so it must only hold what is stable for the droplet's
life. cloud-init installs the key before sshd first starts, so the very first connection can
pin it (no trust on first use). Everything else is done by remote commands.
"""

from __future__ import annotations

import yaml


def render_host_key_user_data(host_private_key_openssh: str, host_public_key_openssh: str) -> str:
    document = {
        "ssh_deletekeys": True,  # remove the image's keys: only the pinned one may exist
        "ssh_genkeytypes": [],  # and generate none
        "ssh_keys": {
            "ed25519_private": host_private_key_openssh.strip() + "\n",
            "ed25519_public": host_public_key_openssh.strip(),
        },
    }
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=True, default_style=None)
