"""Input checks of the day-2 commands that must hold before anything connects anywhere.

- :func:`check_outputs_environment`: the outputs a command reads belong to the stack it was
  asked about. ``health production --outputs staging.json`` would otherwise probe ``qa.*`` and
  report "production healthy". The stack's environment is the committed ``Pulumi.<stack>.yaml``'s
  ``bankflow:environment`` (the same value the program exports as the ``environment`` output);
  a stack without a committed file (a fresh ``production-r1`` before its pull request is
  merged, or a run outside the project) falls back to its name: an environment name itself, or
  ``<environment>-...`` as ``rebuild`` names new stacks. A name that says neither is not
  checked (nothing to compare with).
- :func:`release_argument`: a release named on the command line is a release id before it is
  sent to the host, so ``rollback STACK 'x;rm'`` never opens an SSH connection.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

from bankflow_infra.contract.outputs import OutputsError, StackOutputs
from bankflow_infra.contract.release import RELEASE_ID_LENGTH, is_release_id, release_id
from bankflow_infra.contract.services import ENVIRONMENTS
from bankflow_infra.stackfile import StackFileError, config_of, load_yaml, stack_file_name

ENVIRONMENT_KEY: Final = "bankflow:environment"
# What the agent's rollback matches: a kept release's id. A longer prefix of the bundle digest
# (the `release` output is all 64 digits) names the same release, so it is accepted and cut.
_DIGEST_PREFIX: Final = re.compile(rf"[0-9a-f]{{{RELEASE_ID_LENGTH},64}}")


class InputError(ValueError):
    """An argument refused before anything ran; the message names it and what would be valid."""


def expected_environment(stack: str, project_dir: Path | None) -> tuple[str, str] | None:
    """(environment, where it comes from) for ``stack``, or None when nothing says."""
    path = (project_dir or Path.cwd()) / stack_file_name(stack)
    if path.is_file():
        value = config_of(load_yaml(path), path.name).get(ENVIRONMENT_KEY)
        if isinstance(value, str) and value in ENVIRONMENTS:
            return value, f"{path.name}, {ENVIRONMENT_KEY}"
        raise StackFileError(f"{path.name}: {ENVIRONMENT_KEY} must be one of {', '.join(ENVIRONMENTS)}, "
                             f"got {value!r}")
    for environment in ENVIRONMENTS:
        if stack == environment or stack.startswith(f"{environment}-"):
            return environment, f"the stack name {stack!r}"
    return None


def check_outputs_environment(outputs: StackOutputs, source: str, project_dir: Path | None) -> None:
    """Raise OutputsError when ``outputs`` (read from ``source``) are another environment's."""
    expected = expected_environment(outputs.stack, project_dir)
    if expected is None or expected[0] == outputs.environment:
        return
    environment, said_by = expected
    raise OutputsError(
        f"outputs from {source} are for environment {outputs.environment!r}, but stack "
        f"{outputs.stack!r} is {environment!r} (from {said_by}): pass the outputs of stack "
        f"{outputs.stack!r} (`pulumi stack output --json -s {outputs.stack}`)"
    )


def release_argument(value: str) -> str:
    """A release id from the command line: 12 lowercase hex digits (``releases`` lists them),
    or a longer prefix of the bundle digest, which is cut to its id; InputError otherwise."""
    if is_release_id(value):
        return value
    if _DIGEST_PREFIX.fullmatch(value):
        return release_id(value)
    raise InputError(
        f"{value!r} is not a release id: expected {RELEASE_ID_LENGTH} lowercase hex digits as "
        "`bankflow-infra releases STACK` lists them (or the full 64-digit `release` output)"
    )
