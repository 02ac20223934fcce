"""The handlers of ``bankflow-infra workflow ...`` (parsers in ``cli.workflow``).

Every subcommand takes the workflow's values as arguments (raw inputs as ``--name=VALUE``, so a
value starting with ``-`` is never read as a flag), writes its results to ``$GITHUB_OUTPUT`` and
summaries to ``$GITHUB_STEP_SUMMARY`` when those are set (else to stdout), and reports a refusal
as a GitHub annotation with the exit codes of :mod:`bankflow_infra.contract.exit_codes`: 2 for a
bad input, 1 for a check that failed. None of them runs pulumi or needs a credential.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.release import release_id
from bankflow_infra.ops.workflow import git, tools
from bankflow_infra.ops.workflow import text as md
from bankflow_infra.ops.workflow.stack_files import set_release_tag, stack_release_tag
from bankflow_infra.settings import SettingsError
from bankflow_infra.stackfile import StackFileError, stack_file_name

Handler = Callable[[argparse.Namespace], int]


# --- GitHub's files and workflow commands ------------------------------------------------------


def _escape(value: str, *, prop: bool = False) -> str:
    """Workflow-command escaping: a value can never end the line or start another command."""
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return value.replace(":", "%3A").replace(",", "%2C") if prop else value


def annotate(level: str, title: str, message: str) -> None:
    print(f"::{level} title={_escape(title, prop=True)}::{_escape(message)}", flush=True)


def set_outputs(values: Mapping[str, str]) -> None:
    """``name=value`` lines into $GITHUB_OUTPUT (values are checked single-line strings)."""
    for name, value in values.items():
        if "\n" in value or "\r" in value:
            raise tools.WorkflowError("Invalid output", f"output {name} would span lines")
    lines = "".join(f"{name}={value}\n" for name, value in values.items())
    target = os.environ.get("GITHUB_OUTPUT")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(lines)
    else:
        sys.stdout.write(lines)


def add_summary(markdown: str) -> None:
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if target:
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(markdown)
    else:
        sys.stdout.write(markdown)


def saved(path: Path | None) -> str:
    """A file an earlier step may have written: "" when it never did."""
    if path is None or not path.is_file():
        return ""
    return path.read_text(encoding="utf-8", errors="replace")


def saved_tables(paths: Sequence[Path]) -> list[tuple[str, str]]:
    return [(path.stem, saved(path)) for path in paths]


def github_run() -> md.Run:
    env = os.environ
    return md.Run(
        actor=env.get("GITHUB_ACTOR", ""),
        event=env.get("GITHUB_EVENT_NAME", ""),
        server=env.get("GITHUB_SERVER_URL", "https://github.com"),
        repository=env.get("GITHUB_REPOSITORY", ""),
        run_id=env.get("GITHUB_RUN_ID", ""),
    )


def guarded(handler: Handler) -> Handler:
    """Run ``handler``; a refusal becomes an ``::error`` annotation and its exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except tools.WorkflowError as error:
            annotate("error", error.title, str(error))
            return error.exit_code
        except (StackFileError, SettingsError) as error:
            annotate("error", "Stack file not usable", str(error))
            return exit_codes.USAGE
        except OSError as error:
            annotate("error", "File not usable", f"{error.filename}: {error.strerror}")
            return exit_codes.USAGE

    return run


# --- deploy-stack.yml ------------------------------------------------------------------------


def run_branch(args: argparse.Namespace) -> int:
    branch = tools.deploy_branch(args.stack)
    print(branch)
    if os.environ.get("GITHUB_OUTPUT"):
        set_outputs({"branch": branch})
    return exit_codes.OK


def run_deploy_guard(args: argparse.Namespace) -> int:
    branch = tools.check_deploy_ref(args.stack, args.ref)
    print(f"{args.stack} deploys from {branch}: this run is on {args.ref}")
    return exit_codes.OK


def run_served_release(args: argparse.Namespace) -> int:
    digest = tools.served_release(args.value)
    set_outputs({"release": digest, "release-id": release_id(digest) if digest else ""})
    return exit_codes.OK


def run_check_rollback(args: argparse.Namespace) -> int:
    release = tools.rollback_release(args.stack, args.before, args.after)
    annotate("error", "Health gate failed", f"rolling {args.stack} back to release {release}")
    return exit_codes.OK


def run_deploy_summary(args: argparse.Namespace) -> int:
    try:
        outputs: Any = json.loads(saved(args.outputs) or "{}")
    except json.JSONDecodeError:
        outputs = None
    commit = git.Repo(args.project_dir).git("rev-parse", "HEAD", check=False).stdout.strip() or "unknown"
    steps = {"up": args.up, "health": args.health, "rollback": args.rollback}
    tag = stack_release_tag(args.project_dir, args.stack)
    add_summary(md.deploy_summary(args.stack, commit, tag, outputs, steps, saved_tables(args.table)))
    return exit_codes.OK


# --- release.yml -----------------------------------------------------------------------------


def run_release_request(args: argparse.Namespace) -> int:
    request = tools.release_request(args.stack, args.tag)
    git.check_branch_name(git.Repo(Path.cwd()), request.branch)
    set_outputs(request.outputs())
    print(f"release {request.tag} -> {request.stack} (pull request against branch {request.ref})")
    return exit_codes.OK


def run_set_release_tag(args: argparse.Namespace) -> int:
    path = set_release_tag(args.project_dir, args.stack, args.tag)
    print(f'{path.name}: bankflow:release.tag is "{args.tag}"')
    return exit_codes.OK


def run_release_pr_body(args: argparse.Namespace) -> int:
    request = tools.release_request(args.stack, args.tag)
    body = md.release_pr_body(
        request.stack, request.tag, stack_file_name(request.stack), saved(args.diff), github_run()
    )
    args.out.write_text(body, encoding="utf-8")
    return exit_codes.OK


def run_release_summary(args: argparse.Namespace) -> int:
    steps = {"edit": args.edit, "pr": args.pr}
    add_summary(md.release_summary(args.stack, args.tag, args.base, steps, args.url, saved(args.diff)))
    return exit_codes.OK


def run_open_pull_request(args: argparse.Namespace) -> int:
    repo = git.Repo(Path.cwd())
    url, notice = git.open_pull_request(repo, args.base, args.branch, args.title, args.body)
    annotate(notice.level, notice.title, notice.message)
    if url:
        set_outputs({"url": url})
    return exit_codes.OK


# --- emergency.yml ---------------------------------------------------------------------------


def run_confirm_rebuild(args: argparse.Namespace) -> int:
    request = tools.confirm_rebuild(args.environment, args.confirm, args.new_stack, args.ref, args.run_number)
    set_outputs(request.outputs())
    print(f"rebuild {request.stack} as {request.new_stack} (stack config back to {request.branch})")
    return exit_codes.OK


def run_collect_stack_config(args: argparse.Namespace) -> int:
    repo = git.Repo(Path.cwd())
    files, notices = git.collect_stack_config(repo, args.stack, args.new_stack, args.cutover, args.patch)
    for notice in notices:
        annotate(notice.level, notice.title, notice.message)
    set_outputs({"patch": "true" if files else "false"})
    return exit_codes.OK


def run_rebuild_summary(args: argparse.Namespace) -> int:
    own_diff = git.Repo(Path.cwd()).diff(stack_file_name(args.stack))
    markdown = md.rebuild_summary(
        args.stack,
        args.new_stack,
        args.branch,
        rebuild_steps(args),
        saved(args.patch),
        own_diff,
        saved_tables(args.table),
    )
    add_summary(markdown)
    return exit_codes.OK


def run_apply_stack_config(args: argparse.Namespace) -> int:
    files = git.apply_stack_config(git.Repo(Path.cwd()), args.patch, args.base)
    print("applied: " + ", ".join(files))
    return exit_codes.OK


def run_emergency_pr_body(args: argparse.Namespace) -> int:
    steps = rebuild_steps(args)
    body = md.emergency_pr_body(args.stack, args.new_stack, args.base, steps, saved(args.patch), github_run())
    args.out.write_text(body, encoding="utf-8")
    title = tools.emergency_title(args.stack, args.new_stack, args.cutover)
    set_outputs({"branch": f"emergency/{args.new_stack}", "title": title})
    return exit_codes.OK


def run_emergency_pr_summary(args: argparse.Namespace) -> int:
    steps = {"apply": args.apply, "pr": args.pr}
    add_summary(md.emergency_pr_summary(args.stack, args.new_stack, args.base, steps, args.url))
    return exit_codes.OK


def rebuild_steps(args: argparse.Namespace) -> dict[str, str | None]:
    return {name: getattr(args, name.replace("-", "_")) for name in REBUILD_STEPS}


REBUILD_STEPS = ("rebuild", "health-new", "cutover", "health-cutover")
