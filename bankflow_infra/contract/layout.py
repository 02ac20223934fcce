"""The host's directory tree: where the agent, releases, secrets, state and data live.

The renderer writes these paths into compose and unit files, the bootstrap script creates them
(its environment comes from :func:`bootstrap_environment`), the agent works in them and the CLI
runs the agent at :data:`AGENT_BIN`. Tests point the agent at another root with ``BANKFLOW_HOME``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

HOST_ROOT: Final = "/opt/bankflow"
HOME_ENV: Final = "BANKFLOW_HOME"  # overrides HOST_ROOT for the agent (tests, a relocated host)
DATA_VOLUME_MOUNT: Final = "/mnt/bankflow-data"  # the DigitalOcean volume: PostgreSQL and uploads
# Uploaded files live on the data volume when the stack has one (issue 11: uploads are data). The
# app containers keep mounting HostPaths.uploads (/opt/bankflow/uploads): on a stack with a volume
# the agent's one-time migration (host/backups/uploads_migrate.py) makes that path a symlink to
# this directory, so every release -- also one rendered before the move -- sees the same tree.
DATA_UPLOADS_NAME: Final = "uploads"
UPLOADS_ROOT_DISK_COPY: Final = "uploads.root-disk"  # the pre-migration tree, kept until removed by hand
AGENT_NAME: Final = "bankflow-agent"

SECRET_DIR_MODE: Final = 0o700
SECRET_FILE_MODE: Final = 0o600


@dataclass(frozen=True)
class HostPaths:
    """Every folder and state file under one host root."""

    home: Path

    @classmethod
    def from_env(cls, override: str | None = None) -> HostPaths:
        return cls(Path(override or os.environ.get(HOME_ENV) or HOST_ROOT))

    @property
    def bin(self) -> Path:  # the agent (this package's host/ and contract/) and its launcher
        return self.home / "bin"

    @property
    def releases(self) -> Path:  # one folder per kept release bundle
        return self.home / "releases"

    @property
    def nginx(self) -> Path:  # the LIVE nginx dir, mounted by the nginx container
        return self.home / "nginx"

    @property
    def secrets(self) -> Path:  # the live release's secrets (0700 dir, 0600 files)
        return self.home / "secrets"

    @property
    def tls(self) -> Path:  # the live release's public certificate
        return self.home / "tls"

    @property
    def state(self) -> Path:  # root only: the agent's state and the audit log
        return self.home / "state"

    @property
    def logs(self) -> Path:  # mounted read-write by the app containers
        return self.home / "logs"

    @property
    def uploads(self) -> Path:  # mounted read-write by the app containers (a symlink to the volume's)
        return self.home / "uploads"

    @property
    def uploads_root_disk_copy(self) -> Path:  # the root disk's tree after its move onto the volume
        return self.home / UPLOADS_ROOT_DISK_COPY

    @property
    def backups(self) -> Path:  # local database dumps, 0700
        return self.home / "backups"

    @property
    def agent(self) -> Path:
        return self.bin / AGENT_NAME

    @property
    def lock(self) -> Path:
        return self.state / "lock"

    @property
    def current_file(self) -> Path:
        return self.state / "current.json"

    @property
    def history_file(self) -> Path:
        return self.state / "history.json"

    @property
    def base_file(self) -> Path:
        return self.state / "base.json"

    @property
    def audit_log(self) -> Path:
        # In state/ (root only), not logs/: the app containers mount logs/ read-write and must
        # not be able to erase the audit trail or plant a symlink that root then appends to.
        return self.state / "audit.log"

    def release_dir(self, release: str) -> Path:
        return self.releases / release

    def ensure(self) -> None:
        for path in (self.releases, self.nginx, self.tls, self.state, self.logs):
            path.mkdir(parents=True, exist_ok=True)
        self.secrets.mkdir(mode=SECRET_DIR_MODE, parents=True, exist_ok=True)
        os.chmod(self.secrets, SECRET_DIR_MODE)  # mkdir's mode is masked by umask


DROPLET: Final = HostPaths(Path(HOST_ROOT))
# The droplet's paths as strings, for rendered files (compose, units, logrotate).
BIN_DIR: Final = str(DROPLET.bin)
RELEASES_DIR: Final = str(DROPLET.releases)
NGINX_LIVE_DIR: Final = str(DROPLET.nginx)  # the agent copies a release's nginx/ here at each switch
SECRETS_DIR: Final = str(DROPLET.secrets)  # 0700, files 0600, written from SSH stdin only
TLS_DIR: Final = str(DROPLET.tls)  # the agent copies a release's tls/ (public Origin CA cert) here
STATE_DIR: Final = str(DROPLET.state)
LOGS_DIR: Final = str(DROPLET.logs)
UPLOADS_DIR: Final = str(DROPLET.uploads)
DATA_UPLOADS_DIR: Final = f"{DATA_VOLUME_MOUNT}/{DATA_UPLOADS_NAME}"  # the real tree on a volume stack
BACKUPS_DIR: Final = str(DROPLET.backups)
AGENT_BIN: Final = str(DROPLET.agent)


def bootstrap_environment(paths: HostPaths = DROPLET) -> dict[str, str]:
    """The variables files/bootstrap/host-setup.sh reads for the tree it creates."""
    return {
        "BANKFLOW_HOME": str(paths.home),
        "BANKFLOW_BIN_DIR": str(paths.bin),
        "BANKFLOW_RELEASES_DIR": str(paths.releases),
        "BANKFLOW_NGINX_DIR": str(paths.nginx),
        "BANKFLOW_SECRETS_DIR": str(paths.secrets),
        "BANKFLOW_STATE_DIR": str(paths.state),
        "BANKFLOW_LOGS_DIR": str(paths.logs),
        "BANKFLOW_UPLOADS_DIR": str(paths.uploads),
        "BANKFLOW_BACKUPS_DIR": str(paths.backups),
    }
