"""``bankflow-infra workflow restore-drill``: the weekly restore drill's step (engine:
``ops/workflow/drill.py``), registered by ``cli.workflow``."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bankflow_infra.contract import exit_codes
from bankflow_infra.ops import notify
from bankflow_infra.ops.cli import workflow_handlers as run
from bankflow_infra.ops.cli.workflow_backups import saved_outputs
from bankflow_infra.ops.workflow import drill
from bankflow_infra.ops.workflow import drill_checks as checks
from bankflow_infra.ops.workflow.tools import WorkflowError
from bankflow_infra.render.backup import spaces_endpoint
from bankflow_infra.stackfile import read_stack_file

DEFAULT_PG_BIN = Path("/usr/lib/postgresql/15/bin")


def register_drill(group: Any, epilog: str) -> None:
    parser = group.add_parser(
        "restore-drill",
        help="restore the newest pgBackRest backup into a throwaway PostgreSQL 15 and check it",
        description="Restore the newest backup of the stack's pgBackRest repository into a throwaway "
        "PostgreSQL 15 (pgbackrest restore --type=immediate), run pg_amcheck, count every table's rows, "
        "checksum the largest tables in primary-key order, write --result, and on failure post to "
        f"Slack (${notify.WEBHOOK_ENV}). Secrets only from the environment: ${drill.CIPHER_ENV}, and "
        f"with --repo-type s3 ${drill.S3_KEY_ENVS[0]} and ${drill.S3_KEY_ENVS[1]} (a read-only key).",
        epilog=epilog,
    )
    parser.add_argument("stack", metavar="STACK", help="whose backups (named in the report and the alert)")
    parser.add_argument("--repo-type", choices=("s3", "posix"), default="s3")
    parser.add_argument("--repo-path", default="/pgbackrest", help="repo1-path (default /pgbackrest)")
    parser.add_argument(
        "--s3-bucket", help="the backups bucket (default: the stack file's, bankflow-<bucketStack>-backups)"
    )
    parser.add_argument(
        "--s3-endpoint", help="the bucket's S3 host (default: the stack file's backups.region)"
    )
    parser.add_argument(
        "--project-dir", type=Path, default=Path.cwd(), help="the checkout (Pulumi.STACK.yaml)"
    )
    parser.add_argument(
        "--s3-region", default="us-east-1", help="the signing region (Spaces accepts us-east-1)"
    )
    parser.add_argument(
        "--pg-bin", type=Path, default=DEFAULT_PG_BIN, help=f"PostgreSQL 15 binaries ({DEFAULT_PG_BIN})"
    )
    parser.add_argument(
        "--outputs",
        type=Path,
        help="the stack's saved `pulumi stack output --json --show-secrets`: the cipher pass "
        "(backup_repository) and the read-only drill key (backup_drill_key) come from it",
    )
    parser.add_argument("--work-dir", type=Path, required=True, help="an empty directory on the runner")
    parser.add_argument("--result", type=Path, required=True, help="where to write the JSON result")
    parser.add_argument("--expect", type=Path, help="a JSON of expected row counts/checksums to compare")
    parser.add_argument("--as-user", help="run PostgreSQL and pgBackRest as USER (needed when run as root)")
    parser.add_argument("--checksum-tables", type=int, default=3, help="how many tables to checksum (3)")
    parser.add_argument("--deadline", type=float, default=3 * 3600.0, help="seconds for the whole drill")
    parser.add_argument("--job-retry", type=int, help="pgBackRest job-retry (default: pgBackRest's, 2)")
    parser.set_defaults(handler=run.guarded(run_restore_drill))


def _bucket_of(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """--s3-bucket/--s3-endpoint, else where the stack's server puts its backups (its stack file):
    one source of truth, no repository variable to keep in step."""
    bucket, endpoint = args.s3_bucket, args.s3_endpoint
    if args.repo_type == "s3" and (bucket is None or endpoint is None):
        settings = read_stack_file(args.project_dir, args.stack).settings()
        bucket = bucket or settings.backup_bucket_name
        endpoint = endpoint or urlsplit(spaces_endpoint(settings.backups.region)).hostname
    return bucket, endpoint


def run_restore_drill(args: argparse.Namespace) -> int:
    bucket, endpoint = _bucket_of(args)
    request = drill.DrillRequest(
        args.stack, args.repo_type, args.repo_path, bucket, endpoint, args.s3_region,
        args.pg_bin, args.work_dir, args.expect, args.as_user, args.checksum_tables, args.deadline,
        args.job_retry,
    )  # fmt: skip
    env = _secrets_environment(args)
    problems = drill.check_request(request, env, os.geteuid())
    if args.expect is not None:
        try:
            checks.load_expected(args.expect.read_text(encoding="utf-8"), str(args.expect))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise WorkflowError("Restore drill not started", "; ".join(problems))
    result = drill.run_drill(request, env)
    args.result.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    lines = _report(result)
    print("\n".join(lines), flush=True)
    run.add_summary("### Restore drill: " + ("passed" if result["ok"] else "FAILED") + "\n\n"
                    + "\n".join(f"- {line}" for line in lines) + "\n\n")  # fmt: skip
    if result["ok"]:
        return exit_codes.OK
    run.annotate("error", "Restore drill failed", f"step {result['failed_step']}: {result['message']}")
    _alert(result, env)
    return exit_codes.FAILED


def _secrets_environment(args: argparse.Namespace) -> dict[str, str]:
    """The process environment, plus with --outputs the repository's cipher pass and the drill's
    read-only key from the stack's own outputs (one source: no copy kept as a GitHub secret)."""
    env = dict(os.environ)
    if args.outputs is None:
        return env
    outputs = saved_outputs(args.stack, args.outputs)
    if outputs.backup_repository is None or outputs.backup_drill_key is None:
        raise WorkflowError(
            "Restore drill not started",
            f"{args.outputs}: no backup_repository or backup_drill_key (saved without --show-secrets, "
            f"or stack {args.stack!r} not yet `pulumi up`-ed with backup replicas and repository keys)",
        )
    env[drill.CIPHER_ENV] = outputs.backup_repository.cipher_pass
    env[drill.S3_KEY_ENVS[0]] = outputs.backup_drill_key.access_key
    env[drill.S3_KEY_ENVS[1]] = outputs.backup_drill_key.secret_key
    return env


def _report(result: dict[str, Any]) -> list[str]:
    backup = result.get("backup") or {}
    head = [
        f"restore drill of {result['stack']}: {'PASSED' if result['ok'] else 'FAILED'} "
        f"in {result['duration_seconds']} s",
        f"backup: {backup.get('type', '?')} {backup.get('label', 'unknown')} "
        f"finished {backup.get('stop_time', '?')}",
    ]
    if not result["ok"]:
        head.append(f"failed at step {result['failed_step']}: {result['message']}")
    findings = checks.Findings(result.get("databases") or {}, result.get("checksums") or {})
    return head + checks.report_lines(findings)


def _alert(result: dict[str, Any], env: dict[str, str]) -> None:
    """``env``: the drill's environment, so the keys read from --outputs are scrubbed too."""
    link = None
    if env.get("GITHUB_RUN_ID") and env.get("GITHUB_REPOSITORY"):
        server = env.get("GITHUB_SERVER_URL", "https://github.com")
        link = f"{server}/{env['GITHUB_REPOSITORY']}/actions/runs/{env['GITHUB_RUN_ID']}"
    backup = result.get("backup") or {}
    notice = notify.Notice(  # scrubbed again by deliver(), and here of the cipher pass too
        "restore drill FAILED",
        result["stack"],
        "danger",
        (
            f"step: {result['failed_step']}",
            f"backup: {backup.get('label', 'unknown')}",
            str(result["message"]),
        ),
        link=link,
    )
    notice = notify.scrub_notice(notice, drill.drill_secrets(env))
    _clean, delivery = notify.deliver(notice, env)
    level = "notice" if delivery.posted else "warning"
    run.annotate(level, "Restore drill alert", f"Slack: {delivery.detail}")
