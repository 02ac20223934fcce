"""``bankflow-infra workflow replicate-backups``: the backup-replica workflow's one step.

Registered by ``cli.workflow``; the logic is in ``workflow.replicate``. It reads a saved
``pulumi stack output --json --show-secrets`` document (the workflow writes it 0600 in the
runner's temp directory, in the protected environment, and deletes it after), never the pulumi
CLI: the ``workflow`` group imports no stack access.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.outputs import OutputsError, StackOutputs, parse_outputs
from bankflow_infra.ops.cli.workflow_handlers import add_summary, annotate, guarded, set_outputs
from bankflow_infra.ops.workflow import replicate
from bankflow_infra.ops.workflow.tools import StepFailed, WorkflowError

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"


def saved_outputs(stack: str, path: Path) -> StackOutputs:
    """A `pulumi stack output --json --show-secrets` file, parsed; errors never quote the document."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise WorkflowError(
            "Outputs not readable", f"cannot read the saved outputs of {stack!r}: {error}"
        ) from None
    except json.JSONDecodeError as error:
        # The message holds a position, never the document (it holds the keys).
        raise WorkflowError(
            "Outputs not JSON", f"{path} is not JSON ({error.msg} at {error.pos})"
        ) from None
    try:
        return parse_outputs(stack, document, show_secrets=True)
    except OutputsError as error:
        raise WorkflowError("Outputs not usable", str(error)) from None


def run_replicate_backups(args: argparse.Namespace) -> int:
    outputs = saved_outputs(args.stack, args.outputs)
    plan = replicate.replication_plan(outputs)
    with tempfile.TemporaryDirectory(prefix="bankflow-replica-") as home:
        report = replicate.replicate(plan, Path(home), os.environ.get("PATH", DEFAULT_PATH))
    set_outputs(replicate.outputs_values(report))
    add_summary(replicate.summary(args.stack, plan, report))
    if report.suspicious:
        annotate(
            "warning",
            "Backups replaced in the primary bucket",
            f"{len(report.suspicious)} object(s) that are written once changed in {plan.primary.name}; "
            "their previous versions are kept in the replica (see the job summary)",
        )
    if report.unversioned:
        raise StepFailed(
            "Backup versioning is off",
            f"versioning is not Enabled on {', '.join(report.unversioned)}: overwritten or deleted "
            "backups are no longer kept there (the copy itself succeeded; see the job summary)",
        )
    return exit_codes.OK


def register(group: Any, epilog: str) -> None:
    summary = "copy the environment's backups bucket into its replica (adds, never deletes)"
    parser = group.add_parser(
        "replicate-backups",
        help=summary,
        description=f"{summary}. rclone copy with the replication key from the saved outputs (read "
        "on the bucket, read/write on the replica in another region); replaced objects stay in the "
        "replica as older versions; fails when either bucket's versioning is off. Outputs copied, "
        "replaced, suspicious, unversioned.",
        epilog=epilog,
    )
    parser.set_defaults(handler=guarded(run_replicate_backups))
    parser.add_argument("stack", metavar="STACK", help="the stack whose bucket to replicate")
    parser.add_argument(
        "--outputs",
        type=Path,
        required=True,
        help="saved `pulumi stack output --json --show-secrets` of STACK (holds the replication key)",
    )
