"""``bankflow-infra doctor STACK``: the pre-flight before a first ``up`` and before every deploy
(engine: ops/doctor.py, ops/doctor_run.py, ops/doctor_apis.py, ops/doctor_ssh.py)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bankflow_infra.contract import exit_codes
from bankflow_infra.contract.outputs import OutputsError, StackOutputs
from bankflow_infra.ops.cli import session
from bankflow_infra.ops.cli.session import seconds
from bankflow_infra.ops.doctor_apis import (
    CLOUDFLARE_TOKEN_ENV,
    CLOUDFLARE_URL,
    CLOUDFLARE_URL_ENV,
    DIGITALOCEAN_TOKEN_ENV,
    DIGITALOCEAN_URL,
    DIGITALOCEAN_URL_ENV,
    ConfigError,
    Endpoint,
    HttpxCloudflare,
    PydoDigitalOcean,
    endpoint,
    token,
)
from bankflow_infra.ops.doctor_report import format_table, report_document
from bankflow_infra.ops.doctor_run import Facts, Outcome, run_doctor
from bankflow_infra.ops.doctor_ssh import DEFAULT_TIMEOUT_SECONDS
from bankflow_infra.ops.outputs import check_stack_name, load_outputs
from bankflow_infra.settings import Settings, SettingsError
from bankflow_infra.stackfile import StackFileError, read_stack_file

COMMAND = "doctor"


def register(commands: Any) -> None:
    doctor = commands.add_parser(
        COMMAND,
        help="pre-flight: tokens, alert e-mails, DNS collisions, VPC ranges, SSH reachability",
        description="Check, read-only, what a `pulumi up` of STACK needs from DigitalOcean, Cloudflare "
        f"and this runner's network. Tokens: {DIGITALOCEAN_TOKEN_ENV}, {CLOUDFLARE_TOKEN_ENV}. "
        "Exit 0 when no check fails, 1 when one does, 2 on bad input (stack file, arguments, "
        "a missing token).",
    )
    doctor.add_argument("stack", metavar="STACK", help="stack name: reads Pulumi.STACK.yaml and its outputs")
    doctor.add_argument(
        "--project-dir",
        type=Path,
        default=None,
        help="directory holding Pulumi.yaml and Pulumi.STACK.yaml (default: current directory)",
    )
    doctor.add_argument(
        "--outputs",
        type=Path,
        metavar="FILE",
        help="saved `pulumi stack output --json` output instead of running pulumi "
        "(without either, a stack with no outputs is taken as a first `up`)",
    )
    doctor.add_argument(
        "--ssh-timeout",
        type=seconds,
        default=DEFAULT_TIMEOUT_SECONDS,
        metavar="S",
        help=f"seconds to wait for the droplet's SSH banner (default {DEFAULT_TIMEOUT_SECONDS:g})",
    )
    doctor.add_argument(
        "--import-file",
        type=Path,
        metavar="FILE",
        help="write a `pulumi import --file` document adopting every colliding DNS record",
    )
    doctor.add_argument("--json", action="store_true", help="print one JSON document instead of a table")
    doctor.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    try:
        check_stack_name(args.stack)
        settings = read_stack_file(args.project_dir or Path.cwd(), args.stack).settings()
        digitalocean_at = endpoint(os.environ, DIGITALOCEAN_URL_ENV, DIGITALOCEAN_URL)
        cloudflare_at = endpoint(os.environ, CLOUDFLARE_URL_ENV, CLOUDFLARE_URL)
        tokens = _tokens(settings)
        outputs, reason = _outputs(args)
    except (OutputsError, StackFileError, SettingsError, ConfigError) as problem:
        session.error(COMMAND, str(problem))
        return exit_codes.USAGE
    notes = _override_notes(digitalocean_at, cloudflare_at)
    for note in notes:
        session.note(note)  # loud on purpose: an override must never pass for a real pre-flight
    facts = Facts(settings, outputs, reason, args.ssh_timeout, datetime.now(UTC))
    outcome = session.guarded(COMMAND, lambda: _check(facts, tokens, digitalocean_at, cloudflare_at, notes))
    if not isinstance(outcome, Outcome):
        return outcome
    if args.import_file and outcome.import_document:
        args.import_file.write_text(json.dumps(outcome.import_document, indent=2) + "\n", encoding="utf-8")
        session.note(
            f"wrote {args.import_file}: `pulumi import --stack {args.stack} --file {args.import_file} "
            "--protect=false --generate-code=false`"
        )
    if args.json:
        print(json.dumps(report_document(outcome.report), indent=2))
    else:
        sys.stdout.write(format_table(outcome.report))
    return exit_codes.OK if outcome.report.ok else exit_codes.FAILED


def _tokens(settings: Settings) -> dict[str, str]:
    """The tokens the stack's layers need: DigitalOcean for the server and the edge's uptime
    checks and bucket, Cloudflare for the edge's records and the server's Origin CA certificate."""
    if not (settings.server.enabled or settings.edge.enabled):
        return {}
    return {name: token(os.environ, name) for name in (DIGITALOCEAN_TOKEN_ENV, CLOUDFLARE_TOKEN_ENV)}


def _outputs(args: argparse.Namespace) -> tuple[StackOutputs | None, str]:
    """Saved outputs (a bad file is bad input), or pulumi's; none from pulumi means a first up."""
    if args.outputs is not None:
        return load_outputs(args.stack, args.outputs, cwd=args.project_dir), ""
    try:
        return load_outputs(args.stack, cwd=args.project_dir), ""
    except OutputsError as error:
        return None, str(error).splitlines()[0]


def _override_notes(*endpoints: Endpoint) -> tuple[str, ...]:
    names = (DIGITALOCEAN_URL_ENV, CLOUDFLARE_URL_ENV)
    return tuple(
        f"{name} overrides the API address: {where.base_url}"
        for name, where in zip(names, endpoints, strict=True)
        if where.overridden
    )


def _check(
    facts: Facts,
    tokens: dict[str, str],
    digitalocean_at: Endpoint,
    cloudflare_at: Endpoint,
    notes: tuple[str, ...],
) -> Any:
    if not tokens:
        return run_doctor(facts, None, None, notes)
    digitalocean = PydoDigitalOcean(tokens[DIGITALOCEAN_TOKEN_ENV], digitalocean_at)
    cloudflare = HttpxCloudflare(tokens[CLOUDFLARE_TOKEN_ENV], cloudflare_at)
    try:
        return run_doctor(facts, digitalocean, cloudflare, notes)
    finally:
        cloudflare.close()
