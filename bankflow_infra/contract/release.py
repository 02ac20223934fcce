"""Releases and the bundle manifest: what the renderer writes and the agent runs.

A release is one rendered bundle; its id is the first :data:`RELEASE_ID_LENGTH` hex digits of
the bundle's sha256. postgres, redis and nginx form the long-lived base compose project; the app
services of each release run as their own project, so two releases run side by side.
"""

from __future__ import annotations

import re
from typing import Final

RELEASE_ID_LENGTH: Final = 12
_RELEASE_ID: Final = re.compile(rf"[0-9a-f]{{{RELEASE_ID_LENGTH}}}")

MANIFEST_NAME: Final = "release.json"  # in every bundle: what the agent needs, never a secret
MANIFEST_SCHEMA: Final = 1

BASE_PROJECT: Final = "bankflow"  # long-lived base project: postgres, redis, nginx
APP_PROJECT_PREFIX: Final = "bankflow-app-"  # + release id: one compose project per app release
RELEASE_ENV_VAR: Final = "BANKFLOW_RELEASE"  # the agent sets it to the release id for compose


def release_id(digest: str) -> str:
    """The short release id of a bundle digest (sha256 hex)."""
    return digest[:RELEASE_ID_LENGTH]


def is_release_id(value: str) -> bool:
    return _RELEASE_ID.fullmatch(value) is not None


def app_project_name(release: str) -> str:
    return f"{APP_PROJECT_PREFIX}{release}"


def release_alias(service: str, release: str) -> str:
    """Network alias of an app service of one release: unique while two releases run side by side."""
    return f"{service}-{release}"
