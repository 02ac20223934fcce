"""``bankflow-infra health STACK``: probe every public service (engine: ops/health.py, ops/probes.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from typing import Any

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.outputs import StackOutputs
from bankflow_infra.ops import health_backups as recovery
from bankflow_infra.ops.backups import newest_backup_time
from bankflow_infra.ops.cli import session
from bankflow_infra.ops.cli.session import add_outputs_arguments, seconds
from bankflow_infra.ops.health import (
    NewestBackup,
    check_health,
    format_table,
    report_document,
    with_wait_default,
)
from bankflow_infra.ops.health_backups import fetch_drill_runs, fetch_pitr_status
from bankflow_infra.ops.probes import Address, Mode, Policy, parse_resolve

# Test/ops-only: "host=IP:PORT,..." sends a hostname's probes to IP:PORT (Host and SNI unchanged).
HEALTH_RESOLVE_ENV = "BANKFLOW_HEALTH_RESOLVE"


def register(commands: Any) -> None:
    health = commands.add_parser(
        "health",
        help="probe every public service's health path, through Cloudflare or the origin",
        description="Probe each service in the stack's `health` output, concurrently. Exit 0 when all "
        "are healthy, 1 when any is not, 2 on bad input (outputs, arguments).",
    )
    add_outputs_arguments(health)
    health.add_argument(
        "--origin",
        action="store_true",
        help="probe the droplet directly (origin_ip:443, Host/SNI = hostname, certificate "
        "pinned to the origin_certificate output, presenting the origin_pull_client certificate "
        "as Cloudflare does; reads the outputs with secrets) instead of through Cloudflare; a "
        "load-balanced stack: every droplet of origin_ips (with a PROXY protocol line, as the load "
        "balancer sends) and load_balancer_ip, one row per service and target",
    )
    health.add_argument(
        "--wait", action="store_true", help="poll until every service is healthy or the deadline passes (CI)"
    )
    health.add_argument(
        "--timeout", type=seconds, default=5.0, metavar="S", help="per-request timeout in seconds (default 5)"
    )
    health.add_argument(
        "--deadline",
        type=seconds,
        default=None,
        metavar="S",
        help="overall deadline in seconds, retries included (default 30; 300 with --wait)",
    )
    health.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    health.add_argument(
        "--backups",
        action="store_true",
        help="also ask the droplet (over SSH) for the newest dump's and pgBackRest backup's age (warn past "
        "26 h) and the WAL archive lag (warn over 5 min), and GitHub (gh) for the last restore drill "
        "(warn when it failed or none passed in 8 days)",
    )
    health.set_defaults(handler=run)


def resolve_from_env(command: str) -> dict[str, Address] | None:
    """The test/ops-only address overrides (None when the variable is malformed: reported)."""
    try:
        resolve = parse_resolve(os.environ.get(HEALTH_RESOLVE_ENV, ""))
    except ValueError as error:
        session.error(command, f"{HEALTH_RESOLVE_ENV}: {error}")
        return None
    if resolve:
        # Loud on purpose: a leftover override must never pass for a real production check.
        shown = ", ".join(f"{host} -> {ip}:{port}" for host, (ip, port) in sorted(resolve.items()))
        session.error(command, f"note: {HEALTH_RESOLVE_ENV} overrides addresses: {shown}")
    return resolve


def run(args: argparse.Namespace) -> int:
    resolve = resolve_from_env("health")
    if resolve is None:
        return exit_codes.USAGE
    policy = with_wait_default(Policy(timeout=args.timeout, wait=args.wait), args.deadline)
    return session.guarded("health", lambda: _probe(args, policy, resolve))


def _probe(args: argparse.Namespace, policy: Policy, resolve: dict[str, Address]) -> int:
    # Secrets only when needed: the deploy key to ask the droplet about backups over SSH; the
    # origin-pull client certificate to get past the origin's Authenticated Origin Pulls check.
    outputs = session.load(args, show_secrets=args.backups or args.origin)
    newest = _newest_backup(outputs) if args.backups else None
    what = "waiting until every service is healthy" if args.wait else "probing every service"
    with session.spinner(f"health of {outputs.stack}: {what} (deadline {policy.deadline:.0f} s)"):
        mode: Mode = "origin" if args.origin else "edge"
        # A managed database has no pgBackRest on the droplet: its point in time is DigitalOcean's.
        managed = outputs.database.cluster if args.backups and outputs.database is not None else None
        report = check_health(
            outputs, mode, policy, resolve, newest_backup=newest,
            pitr_status=_pitr_status(outputs) if args.backups and managed is None else None,
            drill_runs=(lambda: fetch_drill_runs()) if args.backups else None, managed_cluster=managed,
        )  # fmt: skip
    if args.json:
        print(json.dumps(report_document(report), indent=2))
    else:
        sys.stdout.write(format_table(report))
    return exit_codes.OK if report.healthy else exit_codes.FAILED


def _pitr_status(outputs: StackOutputs) -> recovery.PitrStatus:
    return lambda: fetch_pitr_status(outputs, note=session.note)


def _newest_backup(outputs: StackOutputs) -> NewestBackup:
    def newest() -> datetime | None:
        return newest_backup_time(outputs, note=session.note)

    return newest
