"""Is the environment a pull-request preview runs in protected as its credentials need?

A preview runs the pull request's own program with its environment's secrets, and production's
state passphrase decrypts every production secret (the root deploy key, database and JWT
secrets, Spaces keys). So a production preview may start only after a person approved that run:
GitHub's "required reviewers" rule on the environment, with self-review prevented (the author
cannot approve their own code) and no administrator bypass. Staging previews run unapproved by
design: their environment holds staging's credentials only, which decrypt nothing of production.

The rule itself is enforced by GitHub, not here: a pull request can edit this check or the
workflow, but not the environment's settings. What this check adds is that a missing or weakened
rule (an environment deleted and recreated on first use, reviewers removed, self-review allowed)
stops the preview with a red check naming the fix, instead of silently exposing the secrets.

``document`` is GitHub's answer to ``GET /repos/{owner}/{repo}/environments/{name}`` (REST
"Get an environment": ``protection_rules`` entries of ``type`` ``required_reviewers`` carry
``reviewers`` and ``prevent_self_review``; ``can_admins_bypass`` is top level).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from bankflow_infra.ops.workflow.tools import StepFailed, WorkflowError, deploy_environment

# The environment each stack's preview runs in (preview.yml's `environment:`).
PREVIEW_ENVIRONMENT: Final = {"staging": "staging-preview", "production": "production-preview"}
# The stacks whose preview credentials decrypt secrets that must not be read without a reviewer.
NEEDS_REVIEW: Final = frozenset({"production"})
SETTINGS_HINT: Final = "Settings > Environments > {name}"
ADMIN_BYPASS: Final = "Allow administrators to bypass configured protection rules"


@dataclass(frozen=True)
class Verdict:
    """What the check found: ``problems`` empty means the preview may start."""

    stack: str
    environment: str
    reviewed: bool
    problems: tuple[str, ...]
    # What the job's token cannot see, to check by hand (not a refusal: it may be fine).
    warnings: tuple[str, ...] = ()


def parse_document(environment: str, text: str) -> Mapping[str, Any]:
    """The saved API answer as a mapping naming ``environment``, or a WorkflowError saying why not."""
    try:
        document = json.loads(text) if text.strip() else None
    except json.JSONDecodeError as error:
        raise WorkflowError(
            "Environment not readable",
            f"GitHub's answer for environment {environment!r} is not JSON ({error.msg} at {error.pos})",
        ) from None
    if not isinstance(document, dict):
        raise WorkflowError(
            "Environment not readable",
            f"no answer from GitHub for environment {environment!r} (the API call failed: see the "
            "step's log; the job needs `actions: read`)",
        )
    if document.get("name") != environment:
        answer = str(document.get("message") or "an answer for another environment")[:200]
        raise StepFailed(
            "Environment missing",
            f"GitHub has no environment {environment!r} ({answer}); a job naming a missing "
            "environment creates it unprotected, so create it first with its protection "
            "(README, GitHub workflows)",
        )
    return document


def _reviewer_rules(document: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    rules = document.get("protection_rules")
    if not isinstance(rules, list):
        return []
    return [rule for rule in rules if isinstance(rule, dict) and rule.get("type") == "required_reviewers"]


def review_problems(environment: str, document: Mapping[str, Any]) -> list[str]:
    """Every way ``document`` falls short of "a person other than the author approves each run"."""
    where = SETTINGS_HINT.format(name=environment)
    rules = _reviewer_rules(document)
    reviewers = [reviewer for rule in rules for reviewer in (rule.get("reviewers") or [])]
    problems = []
    if not reviewers:
        problems.append(f"no required reviewers ({where}: Required reviewers, add at least one)")
    elif not all(rule.get("prevent_self_review") is True for rule in rules):
        problems.append(
            f"the author of a pull request can approve its own preview ({where}: Prevent self-review)"
        )
    if document.get("can_admins_bypass") is True:
        problems.append(f'administrators can skip the review ({where}: clear "{ADMIN_BYPASS}")')
    return problems


def review_warnings(environment: str, document: Mapping[str, Any]) -> list[str]:
    """What the answer does not show. GitHub's schema has ``can_admins_bypass``, but it may be
    left out for a token without admin rights: then a person checks it in the settings."""
    if "can_admins_bypass" in document:
        return []
    where = SETTINGS_HINT.format(name=environment)
    return [
        f"this token cannot see whether administrators may skip the review: check {where}: {ADMIN_BYPASS}"
    ]


def check_preview_environment(stack: str, environment: str, text: str) -> Verdict:
    """The verdict for ``stack``'s preview in ``environment`` given GitHub's saved answer."""
    deploy_environment(stack)
    expected = PREVIEW_ENVIRONMENT[stack]
    if environment != expected:
        raise WorkflowError(
            "Wrong preview environment",
            f"the {stack} preview runs in {expected!r}, not {environment!r}",
        )
    if stack not in NEEDS_REVIEW:
        # Staging's preview credentials decrypt staging only: automatic by design, nothing to read.
        return Verdict(stack, environment, reviewed=False, problems=())
    document = parse_document(environment, text)
    problems = tuple(review_problems(environment, document))
    warnings = tuple(review_warnings(environment, document))
    return Verdict(stack, environment, reviewed=True, problems=problems, warnings=warnings)


def verdict_text(verdict: Verdict) -> str:
    """One line for the log and the job summary."""
    if not verdict.reviewed:
        return (
            f"{verdict.environment}: runs without a reviewer by design (staging-only credentials, "
            "which cannot decrypt production's secrets)"
        )
    if verdict.problems:
        return f"{verdict.environment} is not protected: " + "; ".join(verdict.problems)
    return (
        f"{verdict.environment}: each preview waits for a required reviewer (self-review "
        "prevented, no administrator bypass)"
    )


# --- environments of scheduled jobs: deployments from `main` only ------------------------------

# Scheduled jobs (drift, backup replication, the restore drill) cannot wait for a reviewer; their
# environments' secrets also decrypt the stack (the state passphrase), so what stands between a
# pushed branch and those secrets is the environment's deployment branch rule: `main` only, the
# branch whose every change was reviewed. ("Protected branches" would also admit `staging`.)
SCHEDULED_SUFFIXES: Final = ("-drift", "-backups")
TRUSTED_BRANCH: Final = "main"


def scheduled_environment(environment: str) -> str:
    """``environment`` if it is a scheduled job's (``<stack>-drift`` / ``<stack>-backups``)."""
    for suffix in SCHEDULED_SUFFIXES:
        stack = environment.removesuffix(suffix)
        if environment.endswith(suffix) and stack in PREVIEW_ENVIRONMENT:
            return environment
    valid = ", ".join(f"<staging|production>{suffix}" for suffix in SCHEDULED_SUFFIXES)
    raise WorkflowError("Invalid environment", f"expected one of {valid}, got {environment!r}")


def _branch_names(environment: str, text: str) -> list[str]:
    """The names in GitHub's answer to ``GET .../environments/{name}/deployment-branch-policies``."""
    try:
        answer = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        answer = None
    policies = answer.get("branch_policies") if isinstance(answer, dict) else None
    if not isinstance(policies, list):
        raise WorkflowError(
            "Branch rules not readable",
            f"no list of deployment branch rules from GitHub for {environment!r} (the API call "
            "failed: see the step's log; the job needs `actions: read`)",
        )
    return [
        str(policy.get("name")) if policy.get("type", "branch") == "branch" else f"tag {policy.get('name')}"
        for policy in policies
        if isinstance(policy, dict)
    ]


def branch_problems(environment: str, document: Mapping[str, Any], policies_text: str) -> list[str]:
    """Every way ``environment`` admits a deployment from anything but ``main``."""
    where = SETTINGS_HINT.format(name=environment)
    fix = f"{where}: Deployment branches and tags: Selected, only `{TRUSTED_BRANCH}`"
    rule = document.get("deployment_branch_policy")
    if not isinstance(rule, dict):
        return [f"any branch can use it ({fix})"]
    if rule.get("protected_branches") is True or rule.get("custom_branch_policies") is not True:
        return [f"branches other than `{TRUSTED_BRANCH}` can use it ({fix})"]
    names = _branch_names(environment, policies_text)
    if names != [TRUSTED_BRANCH]:
        return [f"its deployment rules are {names or 'empty'}, not `{TRUSTED_BRANCH}` only ({fix})"]
    return []


def check_scheduled_environment(environment: str, text: str, policies_text: str) -> tuple[str, ...]:
    """The problems of a scheduled job's environment, given GitHub's two saved answers."""
    scheduled_environment(environment)
    return tuple(branch_problems(environment, parse_document(environment, text), policies_text))
