"""``bankflow-infra health STACK``: probe every public service (see ops/health.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from typing import Any

from bankflow_infra.ops.cli import EXIT_BAD_INPUT, EXIT_UNHEALTHY, add_outputs_arguments, seconds

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
        "pinned to the origin_certificate output) instead of through Cloudflare",
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
        help="also ask the droplet (over SSH) for the newest backup's age; warn past 26 h",
    )
    health.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bankflow_infra.ops.health import (
        Policy,
        check_health,
        format_table,
        parse_resolve,
        report_document,
        with_wait_default,
    )
    from bankflow_infra.ops.outputs import OutputsError, load_outputs

    try:
        resolve = parse_resolve(os.environ.get(HEALTH_RESOLVE_ENV, ""))
    except ValueError as error:
        print(f"bankflow-infra health: {HEALTH_RESOLVE_ENV}: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if resolve:
        # Loud on purpose: a leftover override must never pass for a real production check.
        shown = ", ".join(f"{host} -> {ip}:{port}" for host, (ip, port) in sorted(resolve.items()))
        print(
            f"bankflow-infra health: note: {HEALTH_RESOLVE_ENV} overrides addresses: {shown}", file=sys.stderr
        )
    policy = with_wait_default(Policy(timeout=args.timeout, wait=args.wait), args.deadline)
    try:
        # The deploy key is needed only to ask the droplet about backups over SSH.
        outputs = load_outputs(args.stack, args.outputs, show_secrets=args.backups, cwd=args.project_dir)
        newest_backup = None
        if args.backups:
            from bankflow_infra.ops.backup_commands import newest_backup_time

            def newest_backup() -> datetime | None:
                return newest_backup_time(outputs)

        report = check_health(
            outputs, "origin" if args.origin else "edge", policy, resolve, newest_backup=newest_backup
        )
    except OutputsError as error:
        print(f"bankflow-infra health: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps(report_document(report), indent=2))
    else:
        sys.stdout.write(format_table(report))
    return 0 if report.healthy else EXIT_UNHEALTHY
