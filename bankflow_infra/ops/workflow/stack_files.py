"""The release tag in a committed ``Pulumi.<stack>.yaml``: read it, and set it by one line.

Reading and validating go through :mod:`bankflow_infra.stackfile`; the text edit is the pure
``workflow.tools.replace_release_tag``. A failed check writes nothing: the new text replaces the
file in one rename, after it parsed into the same document but for that key, and into settings.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bankflow_infra.ops.workflow.tools import (
    WorkflowError,
    check_release_tag,
    deploy_environment,
    only_the_tag_changed,
    replace_release_tag,
)
from bankflow_infra.stackfile import StackFileError, read_stack_file, settings_from_stack_file

UNKNOWN = "unknown"


def _parse(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise StackFileError(f"{source}: not readable YAML: {error}") from None


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` by ``text`` in one rename, keeping its mode: never a half-written file."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as out:
            out.write(text)
        os.chmod(temporary, path.stat().st_mode & 0o7777)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def set_release_tag(project_dir: Path, stack: str, tag: str) -> Path:
    """Set ``bankflow:release.tag`` of ``stack`` to ``tag``; return the stack file's path.

    Refuses (WorkflowError, StackFileError, SettingsError) a bad tag, a stack that is not a deploy
    environment, a file whose release block it does not understand, an edit that would change
    anything else, and a result that is not valid settings. The file is then untouched.
    """
    check_release_tag(tag)
    deploy_environment(stack)
    stack_file = read_stack_file(project_dir, stack)
    source = stack_file.path.name
    text = stack_file.path.read_text(encoding="utf-8")
    edited = replace_release_tag(text, tag, source)
    before, after = _parse(text, source), _parse(edited, source)
    if (
        not isinstance(before, dict)
        or not isinstance(after, dict)
        or not only_the_tag_changed(before, after, tag)
    ):
        raise WorkflowError(
            "Stack file not understood",
            f"{source}: the edit would change more than bankflow:release.tag; not written",
        )
    settings_from_stack_file(stack_file.project, stack, after, source)
    if edited != text:
        write_atomically(stack_file.path, edited)
    return stack_file.path


def stack_release_tag(project_dir: Path, stack: str) -> str:
    """The committed ``bankflow:release.tag`` of ``stack`` (what `pulumi config get` reads), or
    "unknown" when the file cannot tell: a summary must still be written."""
    try:
        release = read_stack_file(project_dir, stack).bankflow_values().get("release")
    except StackFileError:
        return UNKNOWN
    tag = release.get("tag") if isinstance(release, dict) else None
    return str(tag) if tag is not None else UNKNOWN
