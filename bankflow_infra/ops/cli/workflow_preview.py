"""``bankflow-infra workflow check-preview-environment``: preview.yml's gate job.

Registered by ``cli.workflow``; the decision is in ``workflow.protection``. It reads GitHub's
saved answer for the environment (the workflow fetches it with the job's read-only token) and
never a secret: the gate job holds none.
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


def register(group: Any, epilog: str) -> None:
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
