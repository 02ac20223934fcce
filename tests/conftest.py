"""Shared test set-up. The rigs themselves live in ``tests/support/``."""

from __future__ import annotations

from tests.support.tools import REPO, find_tool, require_tool

__all__ = ["REPO", "find_tool", "require_tool"]
