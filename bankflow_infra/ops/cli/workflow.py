"""``bankflow-infra workflow ...``: the steps of the GitHub workflows, so their YAML only wires steps.

    workflow branch STACK                       the branch STACK deploys from
    workflow deploy-guard STACK --ref=REF       refuse a deploy of STACK from another branch
    workflow served-release --value=TEXT        remember the release serving before an up
    workflow check-rollback STACK --before= --after=   roll back only if the up replaced it
    workflow deploy-summary STACK ...           the deploy job's summary
    workflow release-request --stack= --tag=    check a release request, name its branch
    workflow set-release-tag STACK TAG          set bankflow:release.tag in Pulumi.STACK.yaml
    workflow release-pr-body STACK TAG ...      the release pull request's description
    workflow release-summary ...                the release job's summary
    workflow open-pull-request ...              commit the stack files, push, open the PR
    workflow confirm-rebuild ...                check an emergency rebuild's typed confirmation
    workflow collect-stack-config STACK NEW ... the stack config a rebuild leaves to commit
    workflow rebuild-summary STACK NEW ...      the rebuild job's summary
    workflow apply-stack-config --patch= ...    apply the collected stack config
    workflow emergency-pr-body STACK NEW ...    the emergency pull request's description
    workflow emergency-pr-summary STACK NEW ... the emergency pull-request job's summary
    workflow replicate-backups STACK --outputs= copy the backups bucket into its replica
    workflow restore-drill STACK ...            restore the newest backup on the runner, check it
    workflow check-preview-environment STACK --environment= --document=  the preview's gate
    workflow check-scheduled-environment --environment= --document= --branch-rules=  main only

The handlers are in ``cli.workflow_handlers``; the logic in ``workflow.tools`` (decisions),
``workflow.text`` (markdown), ``workflow.stack_files`` (the tag edit) and ``workflow.git``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bankflow_infra.ops.cli import workflow_backups, workflow_preview
from bankflow_infra.ops.cli import workflow_handlers as run
from bankflow_infra.ops.cli.workflow_drill import register_drill

OUTCOME_HELP = "the step's outcome (success, failure, skipped, cancelled; empty: not run)"
TABLE_HELP = "a saved `bankflow-infra health` table, shown under its file name when not empty"
EPILOG = (
    "Results go to $GITHUB_OUTPUT and summaries to $GITHUB_STEP_SUMMARY when set (else stdout). "
    "Exit status: 0 done, 1 a check failed, 2 a bad input (an ::error annotation says which)."
)


def _command(group: Any, name: str, summary: str, description: str, handler: run.Handler) -> Any:
    parser = group.add_parser(name, help=summary, description=f"{summary}. {description}", epilog=EPILOG)
    parser.set_defaults(handler=run.guarded(handler))
    return parser


def _outcomes(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    for name in names:
        parser.add_argument(f"--{name}", default="", metavar="OUTCOME", help=f"{name}: {OUTCOME_HELP}")


def _stacks(parser: argparse.ArgumentParser, new: bool = False) -> None:
    parser.add_argument("stack", metavar="STACK", help="staging or production")
    if new:
        parser.add_argument("new_stack", metavar="NEW_STACK", help="the stack the rebuild created")


def _deploy(group: Any) -> None:
    branch = _command(
        group,
        "branch",
        "print the branch STACK deploys from",
        "staging -> staging, production -> main; any other stack is refused (exit 2).",
        run.run_branch,
    )
    _stacks(branch)
    guard = _command(
        group,
        "deploy-guard",
        "refuse a deploy of STACK from any branch but its own",
        "Git is the record of what runs on a stack.",
        run.run_deploy_guard,
    )
    _stacks(guard)
    guard.add_argument("--ref", required=True, help="the run's ref ($GITHUB_REF)")
    served = _command(
        group,
        "served-release",
        "remember the release serving before an up",
        "Outputs `release` (the bundle digest, empty when TEXT is not one) and `release-id`.",
        run.run_served_release,
    )
    served.add_argument("--value", required=True, metavar="TEXT", help="`pulumi stack output release`")
    rollback = _command(
        group,
        "check-rollback",
        "decide whether a failed health gate rolls STACK back",
        "Only when the up replaced the release serving before it (exit 1 otherwise).",
        run.run_check_rollback,
    )
    _stacks(rollback)
    rollback.add_argument("--before", required=True, help="the served-release output before the up")
    rollback.add_argument("--after", required=True, help="`pulumi stack output release` after it")
    summary = _command(
        group,
        "deploy-summary",
        "write the deploy job's summary",
        "Outcomes, commit, the committed image tag, release, URLs and health tables.",
        run.run_deploy_summary,
    )
    _stacks(summary)
    summary.add_argument("--outputs", type=Path, help="saved `pulumi stack output --json`")
    summary.add_argument("--table", type=Path, action="append", default=[], help=TABLE_HELP)
    summary.add_argument("--project-dir", type=Path, default=Path.cwd(), help="the checkout (Pulumi.yaml)")
    _outcomes(summary, ("up", "health", "rollback"))


def _release(group: Any) -> None:
    request = _command(
        group,
        "release-request",
        "check a release request and name its pull request",
        "The tag grammar settings accept (not `latest`), a deploy stack, a usable branch name; "
        "outputs tag, stack, ref (the stack's branch), branch and title.",
        run.run_release_request,
    )
    request.add_argument("--stack", required=True, help="the requested environment")
    request.add_argument("--tag", required=True, help="the requested image tag")
    edit = _command(
        group,
        "set-release-tag",
        "set bankflow:release.tag in Pulumi.STACK.yaml",
        "One quoted line changes, the rest stays byte for byte; the result must parse into the "
        "same document but for that key, and into valid settings, or nothing is written.",
        run.run_set_release_tag,
    )
    _stacks(edit)
    edit.add_argument("tag", metavar="TAG", help="the image tag the application CI published")
    edit.add_argument("--project-dir", type=Path, default=Path.cwd(), help="directory holding Pulumi.yaml")
    body = _command(
        group,
        "release-pr-body",
        "write the release pull request's description",
        "Reads the run from $GITHUB_ACTOR, $GITHUB_RUN_ID, ...",
        run.run_release_pr_body,
    )
    _stacks(body)
    body.add_argument("tag", metavar="TAG", help="the released image tag")
    body.add_argument("--diff", type=Path, required=True, help="the stack file's diff")
    body.add_argument("--out", type=Path, required=True, help="where to write the markdown")
    summary = _command(
        group,
        "release-summary",
        "write the release job's summary",
        "Links the pull request; says nothing was deployed.",
        run.run_release_summary,
    )
    for name in ("stack", "tag", "base"):
        summary.add_argument(f"--{name}", required=True)
    summary.add_argument("--url", default="", help="the pull request, when one is open")
    summary.add_argument("--diff", type=Path, help="the stack file's diff")
    _outcomes(summary, ("edit", "pr"))
    pull = _command(
        group,
        "open-pull-request",
        "commit the changed stack files on BRANCH and open a pull request",
        "Nothing changed: a notice. A pull request already open: its URL. Needs GH_TOKEN for gh.",
        run.run_open_pull_request,
    )
    pull.add_argument("--base", required=True, help="the stack's branch")
    pull.add_argument("--branch", required=True, help="the branch to push")
    pull.add_argument("--title", required=True, help="commit message and pull request title")
    pull.add_argument(
        "--body", type=Path, required=True, help="the pull request's description (markdown file)"
    )


def _emergency(group: Any) -> None:
    confirm = _command(
        group,
        "confirm-rebuild",
        "check an emergency rebuild's typed confirmation",
        "Outputs stack, new-stack (default <environment>-r<run number>) and branch.",
        run.run_confirm_rebuild,
    )
    confirm.add_argument("--environment", required=True, help="staging or production")
    confirm.add_argument("--confirm", required=True, help='exactly "rebuild <environment>"')
    confirm.add_argument("--new-stack", default="", help="the new stack's name (optional)")
    confirm.add_argument(
        "--ref", required=True, help="the run's ref ($GITHUB_REF): production only from main"
    )
    confirm.add_argument("--run-number", required=True, help="$GITHUB_RUN_NUMBER")
    collect = _command(
        group,
        "collect-stack-config",
        "collect the stack config a rebuild leaves to commit",
        "Pulumi.NEW_STACK.yaml when the rebuild created it; Pulumi.STACK.yaml only after a "
        "successful cutover. Outputs patch=true|false.",
        run.run_collect_stack_config,
    )
    _stacks(collect, new=True)
    collect.add_argument("--cutover", default="", metavar="OUTCOME", help=f"cutover: {OUTCOME_HELP}")
    collect.add_argument("--patch", type=Path, required=True, help="where to write the patch")
    summary = _command(
        group,
        "rebuild-summary",
        "write the rebuild job's summary",
        "Outcomes, the collected patch, what changed but is not committed, health tables.",
        run.run_rebuild_summary,
    )
    _stacks(summary, new=True)
    summary.add_argument("--branch", required=True, help="the stack's branch")
    summary.add_argument("--patch", type=Path, help="the collected patch")
    summary.add_argument("--table", type=Path, action="append", default=[], help=TABLE_HELP)
    _outcomes(summary, run.REBUILD_STEPS)


def _emergency_pull_request(group: Any) -> None:
    apply = _command(
        group,
        "apply-stack-config",
        "apply the collected stack config to this checkout",
        "Refuses a patch touching anything but top-level Pulumi.<stack>.yaml files.",
        run.run_apply_stack_config,
    )
    apply.add_argument("--patch", type=Path, required=True, help="the downloaded patch")
    apply.add_argument("--base", required=True, help="the stack's branch (named in the error)")
    body = _command(
        group,
        "emergency-pr-body",
        "write the emergency pull request's description",
        "Outputs branch (emergency/NEW_STACK) and title.",
        run.run_emergency_pr_body,
    )
    _stacks(body, new=True)
    body.add_argument("--base", required=True, help="the stack's branch")
    body.add_argument("--patch", type=Path, required=True, help="the applied patch")
    body.add_argument("--out", type=Path, required=True, help="where to write the markdown")
    _outcomes(body, run.REBUILD_STEPS)
    pr_summary = _command(
        group,
        "emergency-pr-summary",
        "write the emergency pull-request job's summary",
        "Links the pull request, or says what to commit by hand.",
        run.run_emergency_pr_summary,
    )
    _stacks(pr_summary, new=True)
    pr_summary.add_argument("--base", required=True, help="the stack's branch")
    pr_summary.add_argument("--url", default="", help="the pull request, when one is open")
    _outcomes(pr_summary, ("apply", "pr"))


def register(commands: Any) -> None:
    workflow = commands.add_parser(
        "workflow",
        help="the GitHub workflows' steps (no pulumi)",
        description="The steps of the GitHub workflows (.github/workflows), so their YAML only wires "
        "steps. STEP --help says what each takes. None runs pulumi; only replicate-backups uses a "
        "credential (the replication key, from the saved outputs it is given).",
        epilog=EPILOG,
    )
    group = workflow.add_subparsers(dest="workflow_command", required=True, metavar="STEP")
    _deploy(group)
    _release(group)
    _emergency(group)
    _emergency_pull_request(group)
    workflow_backups.register(group, EPILOG)
    register_drill(group, EPILOG)  # restore-drill.yml (issue 11)
    workflow_preview.register(group, EPILOG)  # the environment gates (issue 12)
