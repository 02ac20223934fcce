"""A release's directory on the host (``releases/<release>``): installing a bundle there, its
compose projects, and making its secrets and certificate the live ones.

Stdlib only.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Final

from ..contract.layout import HOME_ENV, SECRET_FILE_MODE, HostPaths
from ..contract.release import (
    BASE_PROJECT,
    ORIGIN_KEY,
    PGBACKREST_CONFIG,
    POSTGRES_UID,
    RELEASE_ENV_VAR,
    SECRETS_BUNDLE_DIR,
    app_project_name,
)
from . import state as st
from .files import check_free_space, tree_size
from .manifest import Manifest, load_manifest
from .runtime import Project

# Bind-mounted as single files (nginx's key, postgres's pgbackrest.conf): rewritten in place, so
# the running container sees the new content (a new inode would leave it the old one).
IN_PLACE_SECRETS: Final = frozenset({ORIGIN_KEY, PGBACKREST_CONFIG})
RELEASE_ENV: Final = "release.env"  # compose interpolation values, written into each release dir
# room for what a switch writes besides the bundle: state files, nginx files, journal, audit lines
STATE_HEADROOM: Final = 1024 * 1024


def release_env(paths: HostPaths, release: str) -> str:
    return f"{RELEASE_ENV_VAR}={release}\n{HOME_ENV}={paths.home}\n"


def projects(paths: HostPaths, release: str, manifest: Manifest) -> tuple[Project, Project]:
    """(app project, base project) of a release dir."""
    bundle = paths.release_dir(release)
    env_file = bundle / RELEASE_ENV
    app = Project(app_project_name(release), bundle, (bundle / manifest.compose_app,), env_file, release)
    base = Project(BASE_PROJECT, bundle, (bundle / manifest.compose_base,), env_file, release)
    return app, base


def install_release(paths: HostPaths, source: Path, release: str) -> Path:
    """The release dir for ``source``: used in place when already there, else copied in."""
    target = paths.release_dir(release)
    if source.resolve() != target.resolve():
        # twice the bundle (the copy, then its temp dir briefly) plus room for the state files
        check_free_space(paths.releases, 2 * tree_size(source) + STATE_HEADROOM, f"release {release}")
        if target.exists():
            shutil.rmtree(target)  # a leftover of an earlier, failed attempt of the same release
        st.copy_bundle(source, target)
    st.lock_down_secrets(target / SECRETS_BUNDLE_DIR)
    st.write_atomic(target / RELEASE_ENV, release_env(paths, release).encode())
    return target


def install_live_files(paths: HostPaths, bundle: Path) -> None:
    """The release's secrets (0600 in the 0700 dir) and certificate become the live ones."""
    # in place: origin.key is a single-file bind mount into the nginx container
    st.mirror_files(bundle / SECRETS_BUNDLE_DIR, paths.secrets, SECRET_FILE_MODE, in_place=IN_PLACE_SECRETS)
    st.lock_down_secrets(paths.secrets)
    pgbackrest = paths.secrets / PGBACKREST_CONFIG
    if pgbackrest.is_file() and os.geteuid() == 0:
        # archive_command runs pgbackrest as the image's postgres user (uid 70) inside the
        # container: it must read its config (0600 stays: nobody else can).
        os.chown(pgbackrest, POSTGRES_UID, POSTGRES_UID)
    hand_secrets_to_containers(paths, bundle)
    st.mirror_files(bundle / "tls", paths.tls, 0o644)


def hand_secrets_to_containers(paths: HostPaths, bundle: Path) -> None:
    """Each container's own copy of a secret (compose ``secrets:``, a bind mount of the file)
    becomes its reader's: the services run as their own uids and the files stay 0600 (issue 12).
    Before a revert's snapshot restore nothing is needed: the snapshot's hard links keep owners."""
    if os.geteuid() != 0:
        return  # tests run as a user: every file is already theirs
    manifest = load_manifest(bundle)
    for name, uid in manifest.container_secrets.items():
        path = paths.secrets / name
        if path.is_file() and not path.is_symlink():
            os.chown(path, uid, uid, follow_symlinks=False)
