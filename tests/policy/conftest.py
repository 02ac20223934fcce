"""The pack lives in policy/ (its own virtualenv in real runs); tests import it from there."""

from __future__ import annotations

import sys

from tests.support.tools import REPO

POLICY_DIR = REPO / "policy"
if str(POLICY_DIR) not in sys.path:
    sys.path.insert(0, str(POLICY_DIR))
