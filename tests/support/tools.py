"""The real tools the tests run (nginx, sshd, PostgreSQL, rclone, ...), found or refused.

They are installed by ``scripts/install-test-tools``. Locally a missing tool skips its tests with
the reason; under ``CI=true`` it fails them, so CI never passes by skipping.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

REPO = Path(__file__).resolve().parents[2]
_EXTRA_PATHS = ("/usr/sbin", "/usr/lib/postgresql/15/bin")


def find_tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for directory in _EXTRA_PATHS:
        candidate = Path(directory) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def require_tool(name: str) -> str:
    """Path of a real tool; skip locally when missing, fail in CI (nothing is skipped there)."""
    path = find_tool(name)
    if path is None:
        unavailable(f"{name} is not installed: run scripts/install-test-tools")
    return path


def unavailable(message: str) -> NoReturn:
    """What a test cannot run without is missing: skip locally with the reason, fail in CI."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
