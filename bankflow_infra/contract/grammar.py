"""What names look like where they cross a boundary (a stack file, a CLI argument, a workflow
input, an argv on the droplet). Every check matches the *whole* value: ``re.fullmatch``, so a
trailing newline never slips through a ``$``.
"""

from __future__ import annotations

import re
from typing import Final

# A stack of this project as named in Pulumi.<stack>.yaml and in bankflow:* keys that name stacks.
# Never starts with '-': a stack name ends up in argv (`pulumi ... -s NAME`), never as a flag.
STACK_NAME: Final = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]{0,99}")
STACK_NAME_RULE: Final = "letters, digits, _ . - (at most 100, not starting with -)"
# What the CLI accepts: a stack name, or org/project/stack as Pulumi Cloud spells it. Never
# starts with '-', so it can never be read as a flag.
QUALIFIED_STACK_NAME: Final = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.-]*(?:/[A-Za-z0-9_.-]+){0,2}")
QUALIFIED_STACK_NAME_RULE: Final = "letters, digits, _ . -, optionally org/project/stack"
# A stack that `rebuild` creates: also a file name, a branch name and a DigitalOcean name part.
NEW_STACK_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,99}")
NEW_STACK_NAME_RULE: Final = "a letter, then letters, digits, _ . - (at most 100)"

# An OCI image tag (the distribution spec's grammar).
IMAGE_TAG: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
IMAGE_TAG_RULE: Final = "1-128 characters of A-Z a-z 0-9 _ . -, not starting with . or -"


def is_stack_name(value: str) -> bool:
    return STACK_NAME.fullmatch(value) is not None


def is_qualified_stack_name(value: str) -> bool:
    return QUALIFIED_STACK_NAME.fullmatch(value) is not None


def is_new_stack_name(value: str) -> bool:
    return NEW_STACK_NAME.fullmatch(value) is not None


def is_image_tag(value: str) -> bool:
    return IMAGE_TAG.fullmatch(value) is not None
