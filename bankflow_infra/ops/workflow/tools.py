"""The decisions the GitHub workflows make, as pure functions (``bankflow-infra workflow ...``).

The workflow YAML only wires steps: which stack deploys from which branch, what a release
request or an emergency confirmation must look like, how the release tag is written into a
stack file, what a rollback goes back to. Every refusal is a :class:`WorkflowError` naming the
input; the command layer (``cli.workflow``) turns it into an annotation and exit code 2.
Nothing here runs pulumi, git or a network call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from bankflow_infra.contract import exit_codes, grammar
from bankflow_infra.contract.release import release_id
from bankflow_infra.contract.services import DEPLOY_BRANCH, ENVIRONMENTS, Environment

# The `release` stack output: the sha256 of the deployed host bundle.
BUNDLE_DIGEST: Final = re.compile(r"[0-9a-f]{64}")
# A stack an emergency rebuild creates from a workflow: stricter than grammar.NEW_STACK_NAME,
# because it also names a git branch (emergency/<name>) and a DigitalOcean resource, and the
# collected patch may touch only Pulumi.<name>.yaml files of this shape.
WORKFLOW_NEW_STACK: Final = re.compile(r"[a-z][a-z0-9-]{2,39}")
WORKFLOW_NEW_STACK_RULE: Final = "a lowercase letter, then 2-39 of a-z 0-9 -"
STACK_FILE: Final = re.compile(rf"Pulumi\.{WORKFLOW_NEW_STACK.pattern}\.yaml")
NOT_RUN: Final = "not run"


class WorkflowError(ValueError):
    """An input a workflow must refuse; ``title`` heads the annotation, the message says why."""

    exit_code: int = exit_codes.USAGE

    def __init__(self, title: str, message: str) -> None:
        super().__init__(message)
        self.title = title


class StepFailed(WorkflowError):
    """Not a bad input: what the step exists to do did not happen (exit 1, as a failed check)."""

    exit_code = exit_codes.FAILED


def deploy_environment(stack: str) -> Environment:
    """``stack`` as one of the deploy environments, or a WorkflowError naming it."""
    for environment in ENVIRONMENTS:
        if stack == environment:
            return environment
    known = " or ".join(ENVIRONMENTS)
    raise WorkflowError("Invalid environment", f"environment must be {known}, got {stack!r}")


def deploy_branch(stack: str) -> str:
    """The only branch ``stack`` deploys from (staging -> staging, production -> main)."""
    return DEPLOY_BRANCH[deploy_environment(stack)]


def check_deploy_ref(stack: str, ref: str) -> str:
    """The deploy guard: ``stack`` deploys only when the run's ``ref`` is its branch."""
    branch = deploy_branch(stack)
    if ref != f"refs/heads/{branch}":
        raise WorkflowError(
            f"{stack} only from {branch}", f"{stack} deploys run only from the {branch} branch, not {ref!r}"
        )
    return branch


def check_release_tag(tag: str) -> str:
    """The image-tag grammar (contract.grammar) that bankflow:release.tag must match, and never `latest`."""
    if not grammar.is_image_tag(tag) or tag == "latest":
        raise WorkflowError(
            "Invalid release tag",
            f"the tag must be {grammar.IMAGE_TAG_RULE} and not 'latest', got {tag!r}",
        )
    return tag


@dataclass(frozen=True)
class ReleaseRequest:
    tag: str
    stack: Environment
    ref: str  # the stack's branch: the pull request's base

    @property
    def branch(self) -> str:
        return f"release/{self.stack}-{self.tag}"

    @property
    def title(self) -> str:
        return f"release: {self.stack} {self.tag}"

    def outputs(self) -> dict[str, str]:
        return {
            "tag": self.tag,
            "stack": self.stack,
            "ref": self.ref,
            "branch": self.branch,
            "title": self.title,
        }


def release_request(stack: str, tag: str) -> ReleaseRequest:
    """A release request from the dispatch payload or the Run-workflow inputs, checked."""
    check_release_tag(tag)
    environment = deploy_environment(stack)
    return ReleaseRequest(tag=tag, stack=environment, ref=DEPLOY_BRANCH[environment])


@dataclass(frozen=True)
class RebuildRequest:
    stack: Environment
    new_stack: str
    branch: str

    def outputs(self) -> dict[str, str]:
        return {"stack": self.stack, "new-stack": self.new_stack, "branch": self.branch}


def confirm_rebuild(
    environment: str, confirm: str, new_stack: str, ref: str, run_number: str
) -> RebuildRequest:
    """The typed confirmation of an emergency rebuild, and the new stack's name."""
    stack = deploy_environment(environment)
    if confirm != f"rebuild {stack}":
        raise WorkflowError("Not confirmed", f"type exactly: rebuild {stack}")
    main = DEPLOY_BRANCH["production"]
    if stack == "production" and ref != f"refs/heads/{main}":
        raise WorkflowError("Production only from main", f"run this workflow from the {main} branch")
    new = new_stack or f"{stack}-r{run_number}"
    if WORKFLOW_NEW_STACK.fullmatch(new) is None or new in ENVIRONMENTS:
        raise WorkflowError(
            "Invalid new stack name",
            f"the new stack name must be {WORKFLOW_NEW_STACK_RULE} and not an existing environment, "
            f"got {new!r}",
        )
    return RebuildRequest(stack=stack, new_stack=new, branch=DEPLOY_BRANCH[stack])


def served_release(output: str) -> str:
    """The bundle digest from `pulumi stack output release`, or "" when it is not one."""
    return output if BUNDLE_DIGEST.fullmatch(output) else ""


def rollback_release(stack: str, before: str, after: str) -> str:
    """The release id to roll ``stack`` back to, if the up replaced the one serving before it.

    The up changed no release (DNS, monitoring, a Cloudflare blip...): switching to an older app
    would not fix that, and could run it against a newer schema. Then: a WorkflowError.
    """
    if not before or before == after:
        raise StepFailed("Health gate failed", f"no new release went out; not rolling {stack} back")
    return release_id(before)


def stack_config_files(names: Iterable[str]) -> list[str]:
    """The files a collected patch touches: Pulumi.<stack>.yaml at the top, nothing else."""
    files = list(names)
    for name in files:
        if STACK_FILE.fullmatch(name) is None:
            raise WorkflowError(
                "Unexpected file", f"the collected patch touches {name}, not only Pulumi.<stack>.yaml"
            )
    return files


def emergency_title(stack: str, new_stack: str, cutover: str) -> str:
    if cutover == "success":
        return f"emergency: {stack} cut over to {new_stack}"
    return f"emergency: stack config of {new_stack} (rebuild of {stack})"


def outcome(value: str | None) -> str:
    """A step outcome as a summary shows it: empty (the step never ran) is "not run"."""
    return value or NOT_RUN


# --- bankflow:release.tag in Pulumi.<stack>.yaml -------------------------------------------


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _key(line: str) -> str:
    return line.split("#", 1)[0].strip()


def _release_block(lines: list[str], source: str) -> tuple[int, list[int]]:
    """The `bankflow:release:` line and the indices of its non-empty lines below it."""
    starts = [i for i, line in enumerate(lines) if _key(line) == "bankflow:release:"]
    if len(starts) != 1:
        raise WorkflowError(
            "Stack file not understood",
            f"{source}: expected one `bankflow:release:` mapping, found {len(starts)}",
        )
    start = starts[0]
    block = []
    for i in range(start + 1, len(lines)):
        if _key(lines[i]) and _indent(lines[i]) <= _indent(lines[start]):
            break
        if _key(lines[i]):
            block.append(i)
    return start, block


def replace_release_tag(text: str, tag: str, source: str) -> str:
    """``text`` with the ``tag:`` of ``bankflow:release:`` set to ``"tag"``, nothing else touched.

    One line changes, written as a quoted string (an all-digit tag stays a string; `pulumi config
    set --path` would store a number). Comments and every other line stay byte for byte.
    """
    lines = text.splitlines(keepends=True)
    _, block = _release_block(lines, source)
    child = min((_indent(lines[i]) for i in block), default=-1)
    found = [i for i in block if _indent(lines[i]) == child and _key(lines[i]).startswith("tag:")]
    if len(found) != 1:
        raise WorkflowError(
            "Stack file not understood",
            f"{source}: expected one `tag:` in `bankflow:release:`, found {len(found)}",
        )
    lines[found[0]] = " " * child + f'tag: "{check_release_tag(tag)}"\n'
    return "".join(lines)


def only_the_tag_changed(before: Mapping[str, object], after: Mapping[str, object], tag: str) -> bool:
    """The parsed file after the edit equals the parsed file before it, but for that one key."""
    config = before.get("config")
    if not isinstance(config, Mapping) or not isinstance(config.get("bankflow:release"), Mapping):
        return False
    release = dict(config["bankflow:release"])
    release["tag"] = tag
    expected = {**before, "config": {**config, "bankflow:release": release}}
    return dict(after) == expected
