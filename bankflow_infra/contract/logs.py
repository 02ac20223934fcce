"""How many log lines `logs --tail N` may ask for: the ops CLI refuses what the agent would."""

from __future__ import annotations

import argparse
from typing import Final

LOG_TAIL_DEFAULT: Final = 200
LOG_TAIL_MAX: Final = 100_000  # lines; a bound so a typo never dumps months of logs over SSH


def tail_lines(text: str) -> int:
    """argparse type: a log line count in 1..LOG_TAIL_MAX (agent and ops CLI alike)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= LOG_TAIL_MAX:
        raise argparse.ArgumentTypeError(f"{text!r} is not a line count in 1..{LOG_TAIL_MAX}")
    return value
