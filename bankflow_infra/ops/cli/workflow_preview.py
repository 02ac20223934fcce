"""``bankflow-infra workflow check-preview-environment`` and ``check-scheduled-environment``:
the gate jobs of preview.yml and of the scheduled workflows (drift, backup-replica, restore-drill).

Registered by ``cli.workflow``; the decisions are in ``workflow.protection``. They read GitHub's
saved answers for the environment (the workflow fetches them with the job's read-only token) and
never a secret: the gate jobs hold none.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bankflow_infra.contract import exit_codes
from bankflow_infra.ops.cli.workflow_handlers import add_summary, annotate, guarded, saved, set_outputs
from bankflow_infra.ops.workflow import protection
from bankflow_infra.ops.workflow.tools import StepFailed


def run_check_preview_environment(args: argparse.Namespace) -> int:
    verdict = protection.check_preview_environment(args.stack, args.environment, saved(args.document))
    line = protection.verdict_text(verdict)
    add_summary(f"**Preview environment:** {line}\n")
    if verdict.problems:
        raise StepFailed("Production preview refused", line)
    set_outputs({"environment": verdict.environment})
    for warning in verdict.warnings:
        annotate("warning", "Check the preview environment by hand", warning)
    if not verdict.reviewed:
        annotate("notice", "Preview without a reviewer", line)
    else:
        print(line)
    return exit_codes.OK


def run_check_scheduled_environment(args: argparse.Namespace) -> int:
    problems = protection.check_scheduled_environment(
        args.environment, saved(args.document), saved(args.branch_rules)
    )
    if problems:
        raise StepFailed("Environment open to other branches", f"{args.environment}: " + "; ".join(problems))
    line = f"{args.environment}: deployments from `{protection.TRUSTED_BRANCH}` only"
    add_summary(f"**Environment:** {line}\n")
    print(line)
    return exit_codes.OK


def _register_scheduled(group: Any, epilog: str) -> None:
    summary = "refuse a scheduled job whose environment other branches can use"
    parser = group.add_parser(
        "check-scheduled-environment",
        help=summary,
        description=f"{summary}. <stack>-drift and <stack>-backups hold secrets that decrypt the "
        "stack and cannot wait for a reviewer: their deployment branch rule must be `main` only.",
        epilog=epilog,
    )
    parser.set_defaults(handler=guarded(run_check_scheduled_environment))
    parser.add_argument("--environment", required=True, help="the job's environment")
    parser.add_argument("--document", type=Path, help="saved `gh api repos/OWNER/REPO/environments/NAME`")
    parser.add_argument(
        "--branch-rules",
        type=Path,
        help="saved `gh api repos/OWNER/REPO/environments/NAME/deployment-branch-policies`",
    )


def register(group: Any, epilog: str) -> None:
    _register_scheduled(group, epilog)
    summary = "refuse a preview whose environment lets it read production secrets unreviewed"
    parser = group.add_parser(
        "check-preview-environment",
        help=summary,
        description=f"{summary}. production-preview must have required reviewers, self-review "
        "prevented and no administrator bypass (GitHub then holds each production preview until "
        "a reviewer approves it); staging-preview runs unreviewed with staging-only credentials. "
        "Output environment.",
        epilog=epilog,
    )
    parser.set_defaults(handler=guarded(run_check_preview_environment))
    parser.add_argument("stack", metavar="STACK", help="the stack previewed: staging or production")
    parser.add_argument("--environment", required=True, help="the preview job's environment")
    parser.add_argument(
        "--document",
        type=Path,
        help="GitHub's answer to GET /repos/OWNER/REPO/environments/ENVIRONMENT (gh api), saved",
    )
