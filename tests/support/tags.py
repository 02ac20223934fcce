"""Image tags a release request must accept and refuse (the contract's grammar, never `latest`);
shared by the workflow logic's unit tests and the workflow wiring tests."""

from __future__ import annotations

GOOD_TAGS = ["2026.11.26-1", "v1.2.3", "sha-0123abc", "1", "_build.7", "a" * 128]
BAD_TAGS = [
    "",
    "latest",
    "$(id)",
    "`id`",
    "1.0;rm -rf /",
    "a b",
    "-rf",
    ".hidden",
    "1.0\n::add-mask::x",
    "tag/../../x",
    "a" * 129,
    "ção",
    "2026.11.26-1\n",
]
