"""Database dump names in the bucket: the host agent writes them, the CLI and the agent read the
stack back from them (a dump of another stack is never restored without an explicit flag).
"""

from __future__ import annotations

import re
from typing import Final

from .grammar import STACK_NAME

# bankflow-<stack>-<UTC time>.dump; the stack may hold '-', the time part is fixed
DUMP_KEY: Final = re.compile(rf"bankflow-(?P<stack>{STACK_NAME.pattern})-(?P<time>\d{{8}}T\d{{6}}Z)\.dump")
LATEST: Final = "latest"


def dump_stack(key: str) -> str | None:
    """The stack a dump key names; None when ``key`` is not a dump key."""
    match = DUMP_KEY.fullmatch(key)
    return match.group("stack") if match else None
