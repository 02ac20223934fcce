"""``bankflow-infra status STACK`` (one stack at a glance) and ``bankflow-infra notify ...``
(deploy, rebuild and drift notifications from the workflows).

    status STACK [--json] [--origin] [--drift FILE] [--last N]
    notify deploy-started STACK
    notify deploy-finished STACK --up=O --health=O --rollback=O
    notify rebuild-finished STACK NEW_STACK --rebuild=O --health-new=O --cutover=O --health-cutover=O
    notify drift STACK --preview=O --preview-log=FILE --health-json=FILE --out=FILE

Engines: ops/status.py (gathering, the JSON document), ops/status_render.py (the screen),
ops/status_drift.py (the drift record), ops/notify.py (posting) and ops/notify_events.py (what
each notification says). The Slack webhook comes from $BANKFLOW_SLACK_WEBHOOK only.

Exit codes. status: 0 nothing needs attention, 1 something does (listed under the tables and in
``problems``), 2 bad input. notify: 0 (a notification that could not be posted is a warning,
never a failure of what it reports), 2 bad input; ``notify drift`` exits 1 when the check found
a problem, so the scheduled run shows red.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.outputs import OutputsError, StackOutputs
from bankflow_infra.ops.cli import session
from bankflow_infra.ops.cli.health import resolve_from_env
from bankflow_infra.ops.cli.session import add_outputs_arguments, seconds
from bankflow_infra.ops.cli.workflow_handlers import add_summary, annotate
from bankflow_infra.ops.health import check_health
from bankflow_infra.ops.notify import WEBHOOK_ENV, Delivery, Notice, deliver, summary_markdown
from bankflow_infra.ops.notify_events import (
    OUTCOMES,
    RunContext,
    deploy_finished,
    deploy_started,
    drift_notice,
    drift_record,
    parse_health_json,
    rebuild_finished,
)
from bankflow_infra.ops.probes import Address, Policy
from bankflow_infra.ops.ssh import RemoteError
from bankflow_infra.ops.status import (
    HostFacts,
    Part,
    StatusReport,
    droplet_part,
    problems_of,
    query_host,
    status_document,
)
from bankflow_infra.ops.status_drift import read_drift
from bankflow_infra.ops.status_render import print_screen

DEFAULT_LAST = 5
OUTCOME_CHOICES = ", ".join(o or "empty: not run" for o in OUTCOMES)
EXIT_HELP = "Exit status: 0 nothing needs attention, 1 something does (listed), 2 bad input."


def register(commands: Any) -> None:
    status = commands.add_parser(
        "status", help="one stack at a glance: releases, last deploys, health, backups, certificate, drift",
        description="Show the serving and kept releases and the last deploys (the droplet's agent, over "
        "SSH), the health of every service, the newest backup, the origin certificate's expiry, the "
        "droplet's size and region (Pulumi.STACK.yaml) and the last drift check (--drift). Read-only.",
        epilog=EXIT_HELP)
    add_outputs_arguments(status)
    status.add_argument("--json", action="store_true", help="one JSON document (schema 1, README \"status\")")
    status.add_argument("--origin", action="store_true",
                        help="probe health at the origin, not through Cloudflare")
    status.add_argument("--drift", type=Path, metavar="FILE",
                        help="the last scheduled drift check's record (artifact drift-STACK of drift.yml)")
    status.add_argument("--last", type=int, choices=range(1, 51), default=DEFAULT_LAST, metavar="N",
                        help=f"how many deploys to show (1-50, default {DEFAULT_LAST})")
    status.add_argument("--timeout", type=seconds, default=5.0, metavar="S",
                        help="per-request timeout of the health probes (default 5)")
    status.set_defaults(handler=run_status)
    _register_notify(commands)


# --------------------------------------------------------------------------- status


def run_status(args: argparse.Namespace) -> int:
    resolve = resolve_from_env("status")
    if resolve is None:
        return exit_codes.USAGE
    return session.guarded("status", lambda: _status(args, resolve))


def _status(args: argparse.Namespace, resolve: dict[str, Address]) -> int:
    outputs = session.load(args, show_secrets=True)
    now = datetime.now(UTC)
    drift = Part()
    if args.drift is not None:
        try:
            drift = Part(read_drift(args.drift, args.stack))
        except OutputsError as error:
            drift = Part(error=str(error))
    with session.spinner(f"status of {outputs.stack}: asking the droplet and probing the services"):
        host = _host(outputs, args.last)
        health = _health(outputs, args, resolve)
    droplet = droplet_part(args.stack, args.project_dir)
    report = StatusReport(args.stack, outputs, now, droplet, host, health, drift)
    report.problems.extend(problems_of(report, now))
    document = status_document(report)
    if args.json:
        print(json.dumps(document, indent=2))
    else:
        print_screen(document, Console(file=sys.stdout, soft_wrap=False))
    return exit_codes.FAILED if report.problems else exit_codes.OK


def _host(outputs: StackOutputs, last: int) -> HostFacts | None:
    if outputs.ssh is None:
        return None
    try:
        return query_host(outputs, last, session.note)
    except RemoteError as error:
        # The droplet cannot be reached: every host section says why; health still shows.
        failed = Part(error=str(error))
        return HostFacts(failed, failed, failed)


def _health(outputs: StackOutputs, args: argparse.Namespace, resolve: dict[str, Address]) -> Part:
    try:
        return Part(check_health(outputs, "origin" if args.origin else "edge",
                                 Policy(timeout=args.timeout, deadline=30.0), resolve))
    except OutputsError as error:
        return Part(error=str(error))


# --------------------------------------------------------------------------- notify


def _outcome(parser: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        parser.add_argument(f"--{name}", default="", choices=OUTCOMES, metavar="OUTCOME",
                            help=f"outcome of the {name} step ({OUTCOME_CHOICES})")


def _register_notify(commands: Any) -> None:
    notify = commands.add_parser(
        "notify", help="post a deploy, rebuild or drift notification (Slack webhook + job summary)",
        description="Post to the Slack webhook in $BANKFLOW_SLACK_WEBHOOK (never an argument) and add "
        "the same text to $GITHUB_STEP_SUMMARY. A failed post is a warning, never a failure.")
    events = notify.add_subparsers(dest="event", required=True, metavar="EVENT")
    started = events.add_parser("deploy-started", help="a deploy of STACK begins")
    started.add_argument("stack", metavar="STACK")
    finished = events.add_parser("deploy-finished", help="succeeded, rolled back or failed")
    finished.add_argument("stack", metavar="STACK")
    _outcome(finished, "up", "health", "rollback")
    rebuild = events.add_parser("rebuild-finished", help="an emergency rebuild (and cutover) ended")
    rebuild.add_argument("stack", metavar="STACK")
    rebuild.add_argument("new_stack", metavar="NEW_STACK")
    _outcome(rebuild, "rebuild", "health-new", "cutover", "health-cutover")
    drift = events.add_parser("drift", help="the daily drift/certificate/backup check; writes the record")
    drift.add_argument("stack", metavar="STACK")
    _outcome(drift, "preview")
    drift.add_argument("--preview-log", type=Path, required=True, metavar="FILE",
                       help="the output of `pulumi preview --refresh --expect-no-changes --diff`")
    drift.add_argument("--health-json", type=Path, required=True, metavar="FILE",
                       help="the output of `bankflow-infra health STACK --backups --json`")
    drift.add_argument("--out", type=Path, required=True, metavar="FILE",
                       help="where to write the drift record")
    notify.set_defaults(handler=run_notify)


def _saved(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def publish(notice: Notice, always_post: bool = True) -> Delivery:
    """Post (when ``always_post`` or the notice is not good news), add the job summary, and make
    a failed delivery visible without failing."""
    if always_post or notice.severity != "good":
        notice, delivery = deliver(notice)
    else:
        delivery = Delivery(False, "not posted: nothing needs attention")
    add_summary(summary_markdown(notice, delivery))
    if not delivery.posted and "no webhook" not in delivery.detail and "nothing needs" not in delivery.detail:
        if os.environ.get("GITHUB_ACTIONS") == "true":
            annotate("warning", "Slack notification", delivery.detail)
        else:
            session.note(f"Slack notification {delivery.detail}")
    return delivery


def notify_if_configured(notice: Notice) -> None:
    """For the commands operators also run by hand (restore, rebuild): post only when a webhook
    is configured, say on stderr how it went, and add a job summary only inside a workflow."""
    if not os.environ.get(WEBHOOK_ENV, "").strip():
        return
    notice, delivery = deliver(notice)
    session.note(f"Slack notification {delivery.detail}")
    if os.environ.get("GITHUB_STEP_SUMMARY"):
        add_summary(summary_markdown(notice, delivery))


def run_notify(args: argparse.Namespace) -> int:
    run = RunContext.from_env()
    if args.event == "deploy-started":
        publish(deploy_started(args.stack, run))
    elif args.event == "deploy-finished":
        publish(deploy_finished(args.stack, args.up, args.health, args.rollback, run))
    elif args.event == "rebuild-finished":
        outcomes = {"rebuild": args.rebuild, "health of the new server": args.health_new,
                    "cutover": args.cutover, "health after the cutover": args.health_cutover}
        publish(rebuild_finished(args.stack, args.new_stack, outcomes, run))
    else:
        return _notify_drift(args, run)
    return exit_codes.OK


def _notify_drift(args: argparse.Namespace, run: RunContext) -> int:
    log = _saved(args.preview_log)
    record = drift_record(args.stack, args.preview, log, parse_health_json(_saved(args.health_json)),
                          datetime.now(UTC), run)
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record.document(), indent=2) + "\n", encoding="utf-8")
    except OSError as error:
        session.error("notify drift", f"cannot write the drift record {args.out}: {error}")
        return exit_codes.USAGE
    publish(drift_notice(record, log, run), always_post=False)
    return exit_codes.FAILED if record.problems else exit_codes.OK
